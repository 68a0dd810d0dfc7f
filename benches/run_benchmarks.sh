#!/usr/bin/env bash
# End-to-end benchmarks: repod's echo_server against the baselines in benches/baselines/
# (Python repod, tokio multi-thread and current-thread, the raw mio floor), loaded by
# examples/loadgen.rs over loopback. See BENCHMARKS.md for the results and how to read them.
#
#   benches/run_benchmarks.sh                 # RUNS=3, about 12 minutes on 2 cores
#   RUNS=5 benches/run_benchmarks.sh
#   SERVERS="ours tokio" SCENARIOS="throughput" RUNS=1 benches/run_benchmarks.sh
#   python3 benches/chart.py                  # medians table + benches/bench.svg
#
# Environment (defaults in brackets):
#   RUNS       runs of every scenario against every server [3]
#   DURATION   measured seconds per run [5]
#   SERVERS    subset of: ours python tokio tokio_st raw [all]
#   SCENARIOS  subset of: rtt1 rtt50 throughput fanout conns [all]
#   CONNS      connections for the conns scenario [15000]
#   PIN        1: server on CPU 0 (taskset -c 0), loadgen on CPU 1; 0: no pinning [0]
#   LG_ARGS    extra loadgen options for every run, e.g. "--threads 2" []
#   OUT        result file [benches/results/<UTC timestamp>.jsonl]; the loadgen output
#              goes next to it as .log
#   PYTHON     interpreter for the venv [~/.pyenv/versions/3.12.1/bin/python, else python3.12]
#   VENV       venv with repodnet==0.1.2, created if missing [target/bench-venv]
#
# Every (run, scenario, server) gets a freshly started server on its own port (127.0.0.1,
# ports from 7300 up), which is killed by pid afterwards; runs are interleaved (run 1 of
# every scenario and server, then run 2, ...). Each result line is loadgen's RESULT json
# with "server", "label" (the scenario name below), "run" and "pin" added in front.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
SERVERS=${SERVERS:-"ours python tokio tokio_st raw"}
SCENARIOS=${SCENARIOS:-"rtt1 rtt50 throughput fanout conns"}
CONNS=${CONNS:-15000}
PIN=${PIN:-0}
LG_ARGS=${LG_ARGS:-}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-benches/results/$STAMP.jsonl}
LOG=${OUT%.jsonl}.log
VENV=${VENV:-target/bench-venv}
HOST=127.0.0.1
PORT=7300

log() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }

# --- build -----------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
: >"$LOG"
log "== build (release)"
cargo build --release --example echo_server --example loadgen
(cd benches/baselines && cargo build --release)
LOADGEN=$ROOT/target/release/examples/loadgen
OURS=$ROOT/target/release/examples/echo_server
TOKIO=$ROOT/benches/baselines/target/release/tokio_echo
RAW=$ROOT/benches/baselines/target/release/raw_echo

if [[ " $SERVERS " == *" python "* ]]; then
  if ! "$VENV/bin/python" -c 'import repod' 2>/dev/null; then
    PY=${PYTHON:-}
    if [[ -z $PY ]]; then
      if [[ -x $HOME/.pyenv/versions/3.12.1/bin/python ]]; then
        PY=$HOME/.pyenv/versions/3.12.1/bin/python
      else
        PY=$(command -v python3.12 || command -v python3)
      fi
    fi
    log "== creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet repodnet==0.1.2
  fi
  log "python: $("$VENV/bin/python" --version), repodnet $("$VENV/bin/python" -c \
    'import importlib.metadata as m; print(m.version("repodnet"))')"
fi

# --- servers ---------------------------------------------------------------------------
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

if [[ $PIN == 1 ]]; then
  SRV_PIN=(taskset -c 0)
  LG_PIN=(taskset -c 1)
else
  SRV_PIN=()
  LG_PIN=()
fi

# start_server NAME PORT: starts it in the background, sets SERVER_PID, waits for
# "listening on".
start_server() {
  local name=$1 port=$2 out
  out=$(mktemp)
  case $name in
    ours) "${SRV_PIN[@]}" "$OURS" "$HOST" "$port" >"$out" 2>&1 & ;;
    python) "${SRV_PIN[@]}" "$VENV/bin/python" benches/baselines/python_echo_server.py \
      "$HOST" "$port" >"$out" 2>&1 & ;;
    tokio) "${SRV_PIN[@]}" "$TOKIO" "$HOST" "$port" >"$out" 2>&1 & ;;
    tokio_st) "${SRV_PIN[@]}" "$TOKIO" "$HOST" "$port" --single-thread >"$out" 2>&1 & ;;
    raw) "${SRV_PIN[@]}" "$RAW" "$HOST" "$port" >"$out" 2>&1 & ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    if grep -q '^listening on' "$out"; then
      rm -f "$out"
      return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  log "server $name did not start:"; cat "$out" >&2; rm -f "$out"
  cleanup
  return 1
}

# loadgen arguments per scenario
scenario_args() {
  case $1 in
    rtt1) echo "rtt --clients 1 --duration $DURATION" ;;
    rtt50) echo "rtt --clients 50 --duration $DURATION" ;;
    throughput) echo "throughput --clients 50 --window 16 --size 64 --duration $DURATION" ;;
    fanout) echo "fanout --clients 500 --rate 30 --size 200 --duration $DURATION" ;;
    conns) echo "conns --conns $CONNS --sources 4 --source-from 127.$SRC_NET.0.1 --settle-ms 1000 --pid $SERVER_PID" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

# Every conns run binds its clients to a /24 of its own (127.N.0.1-4): the TIME_WAIT sockets
# 15,000 connections leave behind for 60 s make the kernel's free-port search at bind() on the
# same addresses crawl (a third run in a row took 12-40 s to connect instead of 0.2 s).
SRC_NET=$((RANDOM % 200 + 20))

# --- runs ------------------------------------------------------------------------------
log "== $(date -u +%FT%TZ) RUNS=$RUNS DURATION=$DURATION PIN=$PIN LG_ARGS='$LG_ARGS'"
log "   servers: $SERVERS; scenarios: $SCENARIOS; results: $OUT"
START=$SECONDS
for run in $(seq "$RUNS"); do
  for scen in $SCENARIOS; do
    # Rotate the server order every run, so no server always runs first (or right after a
    # heavy scenario).
    read -r -a order <<<"$SERVERS"
    shift_by=$(( (run - 1) % ${#order[@]} ))
    rotated=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
    for srv in "${rotated[@]}"; do
      if [[ $srv == raw && $scen == fanout ]]; then continue; fi # raw_echo has no broadcast
      PORT=$((PORT + 1))
      if [[ $scen == conns ]]; then SRC_NET=$((SRC_NET % 254 + 1)); fi
      start_server "$srv" "$PORT" || continue
      # shellcheck disable=SC2046
      args=$(scenario_args "$scen")
      log "-- run $run/$RUNS $scen $srv (port $PORT, pid $SERVER_PID): loadgen $args $LG_ARGS"
      set +e
      # shellcheck disable=SC2086
      res=$(timeout 120 "${LG_PIN[@]}" "$LOADGEN" $args --addr "$HOST:$PORT" $LG_ARGS 2>&1)
      rc=$?
      set -e
      printf '%s\n' "$res" >>"$LOG"
      line=$(printf '%s\n' "$res" | grep '^RESULT ' | tail -1 || true)
      prefix="\"server\":\"$srv\",\"label\":\"$scen\",\"run\":$run,\"pin\":$PIN"
      if [[ $rc == 0 && -n $line ]]; then
        printf '{%s,%s\n' "$prefix" "${line#RESULT \{}" >>"$OUT"
        printf '%s\n' "$res" | grep -E 'latency|/s|growth' | sed 's/^/   /' >&2 || true
      else
        err=$(printf '%s' "$res" | tail -1 | tr -d '"\\')
        printf '{%s,"error":"exit %s: %s"}\n' "$prefix" "$rc" "$err" >>"$OUT"
        log "   FAILED (exit $rc): $err"
      fi
      cleanup
      sleep 0.2
    done
  done
done
log "== done in $((SECONDS - START)) s: $OUT"
