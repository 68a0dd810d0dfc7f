#!/usr/bin/env bash
# End-to-end benchmarks: repod's echo_server against the baselines in benches/baselines/
# (Python repod, tokio multi-thread and current-thread, the raw mio floor), loaded by
# examples/loadgen.rs over loopback. See BENCHMARKS-HISTORY.md for the results and how to read them.
#
#   benches/run_benchmarks.sh                 # RUNS=3, about 12 minutes on 2 cores
#   RUNS=5 benches/run_benchmarks.sh
#   SERVERS="ours tokio" SCENARIOS="throughput" RUNS=1 benches/run_benchmarks.sh
#   python3 benches/chart.py                  # medians table + benches/bench.svg
#
#   SET=ws benches/run_benchmarks.sh          # the WebSocket set: rtt1, throughput, conns against
#                                             # ours (TCP), ours_ws and tungstenite, same rounds
#   python3 benches/chart.py FILE.jsonl       # + WebSocket ratios; chart in benches/bench-ws.svg
#
# Environment (defaults in brackets):
#   RUNS       runs of every scenario against every server [3]
#   DURATION   measured seconds per run [5]
#   SET        tcp: the servers and scenarios below [tcp]; ws: the WebSocket set, whose
#              defaults are SERVERS="ours ours_ws tungstenite" SCENARIOS="rtt1 throughput conns"
#              (our own TCP runs in the same rounds, so WebSocket is paired with it)
#   SERVERS    subset of: ours python tokio tokio_st raw [all], and the WebSocket servers
#              ours_ws (echo_server --ws, loaded with loadgen --ws), tungstenite
#              (baselines' tungstenite_echo: tokio current-thread + tokio-tungstenite) and
#              tungstenite_mt (the same on the multi-thread runtime)
#   SCENARIOS  subset of: rtt1 rtt50 throughput fanout conns [all]
#   CONNS      connections for the conns scenario [15000]
#   PIN        1: server on CPU 0 (taskset -c 0), loadgen on CPU 1; 2: both on CPU 0 (a
#              ping-pong then never waits for another vCPU to wake up); 0: no pinning [0]
#   LG_ARGS    extra loadgen options for every run, e.g. "--threads 2" []
#   WARM       1: keep every CPU awake with a nice-19 busy loop pinned to it for the whole run,
#              so ping-pong latency measures the code path rather than the VM's vCPU wake-ups
#              (see BENCHMARKS-HISTORY.md, WebSocket); result lines then carry "warm":1 [0]
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
SET=${SET:-tcp}
case $SET in
  tcp)
    SERVERS=${SERVERS:-"ours python tokio tokio_st raw"}
    SCENARIOS=${SCENARIOS:-"rtt1 rtt50 throughput fanout conns"}
    ;;
  ws)
    SERVERS=${SERVERS:-"ours ours_ws tungstenite"}
    SCENARIOS=${SCENARIOS:-"rtt1 throughput conns"}
    ;;
  *) echo "SET must be tcp or ws" >&2; exit 2 ;;
esac
CONNS=${CONNS:-15000}
PIN=${PIN:-0}
LG_ARGS=${LG_ARGS:-}
WARM=${WARM:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
if [[ $SET == ws ]]; then
  OUT=${OUT:-benches/results/$STAMP-ws.jsonl}
else
  OUT=${OUT:-benches/results/$STAMP.jsonl}
fi
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
TUNG=$ROOT/benches/baselines/target/release/tungstenite_echo

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
SPINNER_PIDS=()
stop_spinners() {
  for pid in "${SPINNER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SPINNER_PIDS=()
}
trap 'cleanup; stop_spinners' EXIT
trap 'cleanup; stop_spinners; exit 130' INT TERM
if [[ $WARM == 1 ]]; then
  for cpu in $(seq 0 $(( $(nproc) - 1 ))); do
    taskset -c "$cpu" nice -n 19 bash -c 'while :; do :; done' &
    SPINNER_PIDS+=($!)
  done
fi

if [[ $PIN == 1 ]]; then
  SRV_PIN=(taskset -c 0)
  LG_PIN=(taskset -c 1)
elif [[ $PIN == 2 ]]; then
  SRV_PIN=(taskset -c 0)
  LG_PIN=(taskset -c 0)
else
  SRV_PIN=()
  LG_PIN=()
fi

# Servers loaded over WebSocket (loadgen --ws).
is_ws() { [[ $1 == ours_ws || $1 == tungstenite || $1 == tungstenite_mt ]]; }

# start_server NAME PORT: starts it in the background, sets SERVER_PID, waits for its ready
# line ("listening on"; for ours_ws "websocket on", printed once the WebSocket port is bound).
start_server() {
  local name=$1 port=$2 out ready='^listening on'
  out=$(mktemp)
  case $name in
    ours) "${SRV_PIN[@]}" "$OURS" "$HOST" "$port" >"$out" 2>&1 & ;;
    python) "${SRV_PIN[@]}" "$VENV/bin/python" benches/baselines/python_echo_server.py \
      "$HOST" "$port" >"$out" 2>&1 & ;;
    tokio) "${SRV_PIN[@]}" "$TOKIO" "$HOST" "$port" >"$out" 2>&1 & ;;
    tokio_st) "${SRV_PIN[@]}" "$TOKIO" "$HOST" "$port" --single-thread >"$out" 2>&1 & ;;
    raw) "${SRV_PIN[@]}" "$RAW" "$HOST" "$port" >"$out" 2>&1 & ;;
    # The same echo_server as "ours", with its TCP port left to the kernel (port 0) and the
    # WebSocket port on $port.
    ours_ws) "${SRV_PIN[@]}" "$OURS" "$HOST" 0 --ws "$port" >"$out" 2>&1 &
      ready='^websocket on' ;;
    tungstenite) "${SRV_PIN[@]}" "$TUNG" "$HOST" "$port" >"$out" 2>&1 & ;;
    tungstenite_mt) "${SRV_PIN[@]}" "$TUNG" "$HOST" "$port" --multi-thread >"$out" 2>&1 & ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 200); do
    if grep -q "$ready" "$out"; then
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
log "== $(date -u +%FT%TZ) SET=$SET RUNS=$RUNS DURATION=$DURATION PIN=$PIN WARM=$WARM LG_ARGS='$LG_ARGS'"
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
      if is_ws "$srv"; then args="$args --ws"; fi
      log "-- run $run/$RUNS $scen $srv (port $PORT, pid $SERVER_PID): loadgen $args $LG_ARGS"
      set +e
      # shellcheck disable=SC2086
      res=$(timeout 120 "${LG_PIN[@]}" "$LOADGEN" $args --addr "$HOST:$PORT" $LG_ARGS 2>&1)
      rc=$?
      set -e
      printf '%s\n' "$res" >>"$LOG"
      line=$(printf '%s\n' "$res" | grep '^RESULT ' | tail -1 || true)
      prefix="\"server\":\"$srv\",\"label\":\"$scen\",\"run\":$run,\"pin\":$PIN"
      if [[ $WARM == 1 ]]; then prefix="$prefix,\"warm\":1"; fi
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
