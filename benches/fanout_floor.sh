#!/usr/bin/env bash
# Fan-out against its floor: repod's echo_server, the raw broadcast floor
# (benches/baselines' raw_broadcast: single-threaded mio, every frame written to every
# connection, no msgpack) and tokio_echo (multi-thread), each loaded with
#
#   loadgen fanout --clients 500 --rate 30 --size 200 --duration 10
#
# RUNS rounds; in every round each server is started fresh on a port of its own, loaded once and
# killed (by pid), and the server order rotates from one round to the next. Prints a markdown
# table of medians [min–max] per server and the paired ratios repod ÷ raw_broadcast and
# repod ÷ tokio (the median of the per-round ratios [min–max]): the target is repod's p99 at
# most 1.10x raw_broadcast's.
#
#   benches/fanout_floor.sh                       # RUNS=5, DURATION=10: about 3 minutes
#   RUNS=1 DURATION=2 benches/fanout_floor.sh     # smoke test
#
# Environment (defaults in brackets):
#   RUNS       rounds [5]
#   DURATION   measured seconds per run [10]
#   CLIENTS    loadgen --clients [500]
#   RATE       loadgen --rate, broadcasts per second [30]
#   SIZE       loadgen --size, payload bytes [200]
#   SERVERS    subset of: repod raw_broadcast tokio [all three, in that order]
#   LG_ARGS    extra loadgen options, e.g. "--threads 2" []
#   PORT       the first run uses PORT+1, every run the next port [7500]
#   OUT_DIR    where results go [a new mktemp -d directory]
#
# OUT_DIR gets results.jsonl (each run's loadgen RESULT json, with "server", "run" and the
# 1-minute load average before and after the run added in front), loadgen.log (loadgen's full
# output), loadavg.txt (/proc/loadavg once a second during the runs), meta.txt (commit,
# uncommitted changes, command line) and table.md (the table printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-500}
RATE=${RATE:-30}
SIZE=${SIZE:-200}
SERVERS=${SERVERS:-"repod raw_broadcast tokio"}
LG_ARGS=${LG_ARGS:-}
PORT=${PORT:-7500}
HOST=127.0.0.1
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/fanout_floor.XXXXXX)}
mkdir -p "$OUT_DIR"
RES=$OUT_DIR/results.jsonl
LOG=$OUT_DIR/loadgen.log
LOADS=$OUT_DIR/loadavg.txt
: >"$RES"
: >"$LOG"
echo "results in $OUT_DIR" >&2

# --- build -----------------------------------------------------------------------------
echo "== build (release)" >&2
cargo build --release --example echo_server --example loadgen
(cd benches/baselines && cargo build --release --bin raw_broadcast --bin tokio_echo)
LOADGEN=$ROOT/target/release/examples/loadgen
REPOD=$ROOT/target/release/examples/echo_server
RAWB=$ROOT/benches/baselines/target/release/raw_broadcast
TOKIO=$ROOT/benches/baselines/target/release/tokio_echo

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "uncommitted changes (git status --short):"
  git status --short 2>/dev/null | sed 's/^/  /'
  echo "fingerprint of the uncommitted changes (git diff HEAD | sha1sum): $(git diff HEAD 2>/dev/null | sha1sum | cut -d' ' -f1)"
  echo "RUNS=$RUNS DURATION=$DURATION CLIENTS=$CLIENTS RATE=$RATE SIZE=$SIZE SERVERS='$SERVERS' LG_ARGS='$LG_ARGS'"
  echo "nproc: $(nproc); uptime at start: $(uptime)"
} >"$OUT_DIR/meta.txt"

# --- servers ---------------------------------------------------------------------------
SERVER_PID=
SAMPLER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
stop_sampler() {
  if [[ -n $SAMPLER_PID ]]; then
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=
  fi
}
trap 'cleanup; stop_sampler' EXIT
trap 'cleanup; stop_sampler; exit 130' INT TERM

# start_server NAME PORT: starts it in the background, sets SERVER_PID, waits for its
# "listening on" line.
start_server() {
  local name=$1 port=$2 out
  out=$(mktemp)
  case $name in
    repod) "$REPOD" "$HOST" "$port" >"$out" 2>&1 & ;;
    raw_broadcast) "$RAWB" "$HOST" "$port" >"$out" 2>&1 & ;;
    tokio) "$TOKIO" "$HOST" "$port" >"$out" 2>&1 & ;;
    *) echo "unknown server $name (repod, raw_broadcast or tokio)" >&2; exit 2 ;;
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
  echo "server $name did not start:" >&2; cat "$out" >&2; rm -f "$out"
  cleanup
  return 1
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# --- runs ------------------------------------------------------------------------------
(while :; do echo "$(date +%s) $(cat /proc/loadavg)"; sleep 1; done) >"$LOADS" &
SAMPLER_PID=$!

ARGS="fanout --clients $CLIENTS --rate $RATE --size $SIZE --duration $DURATION"
echo "== $(date -u +%FT%TZ) RUNS=$RUNS: loadgen $ARGS $LG_ARGS; servers: $SERVERS" >&2
START=$SECONDS
read -r -a order <<<"$SERVERS"
for run in $(seq "$RUNS"); do
  shift_by=$(( (run - 1) % ${#order[@]} ))
  rotated=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for srv in "${rotated[@]}"; do
    PORT=$((PORT + 1))
    start_server "$srv" "$PORT" || continue
    before=$(load1)
    echo "-- run $run/$RUNS $srv (port $PORT, pid $SERVER_PID, load $before)" | tee -a "$LOG" >&2
    set +e
    # shellcheck disable=SC2086
    res=$(timeout $((DURATION + 90)) "$LOADGEN" $ARGS --addr "$HOST:$PORT" $LG_ARGS 2>&1)
    rc=$?
    set -e
    after=$(load1)
    printf '%s\n' "$res" >>"$LOG"
    line=$(printf '%s\n' "$res" | grep '^RESULT ' | tail -1 || true)
    prefix="\"server\":\"$srv\",\"run\":$run,\"load1_before\":$before,\"load1_after\":$after"
    if [[ $rc == 0 && -n $line ]]; then
      printf '{%s,%s\n' "$prefix" "${line#RESULT \{}" >>"$RES"
      printf '%s\n' "$res" | grep -E '^(loss|delivery latency)' | sed 's/^/   /' >&2 || true
    else
      err=$(printf '%s' "$res" | tail -1 | tr -d '"\\')
      printf '{%s,"error":"exit %s: %s"}\n' "$prefix" "$rc" "$err" >>"$RES"
      echo "   FAILED (exit $rc): $err" >&2
    fi
    cleanup
    sleep 0.5
  done
done
stop_sampler
echo "== done in $((SECONDS - START)) s; uptime: $(uptime)" >&2

# --- table -----------------------------------------------------------------------------
python3 - "$RES" "$LOADS" <<'EOF' | tee "$OUT_DIR/table.md"
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if "error" not in r]
names = {"repod": "repod (echo_server)", "raw_broadcast": "raw_broadcast (floor)",
         "tokio": "tokio_echo (multi-thread)"}
servers = [s for s in ("repod", "raw_broadcast", "tokio") if any(r["server"] == s for r in rows)]

def fmt(v, digits):
    return f"{v:,.{digits}f}"

def stat(vals, digits=0):
    if not vals:
        return "—"
    med = statistics.median(vals)
    lo, hi = min(vals), max(vals)
    if fmt(lo, digits) == fmt(hi, digits):
        return fmt(med, digits)
    return f"{fmt(med, digits)} [{fmt(lo, digits)}–{fmt(hi, digits)}]"

print("| server | runs | deliveries/s | lost | p50 µs | p99 µs | p99.9 µs |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for s in servers:
    rs = [r for r in ok if r["server"] == s]
    failed = sum(1 for r in rows if r["server"] == s and "error" in r)
    runs = f"{len(rs)}" + (f" ({failed} failed)" if failed else "")
    print(f"| {names[s]} | {runs} | {stat([r['ops_per_sec'] for r in rs])} | "
          f"{stat([r['loss'] for r in rs])} | {stat([r['p50_us'] for r in rs])} | "
          f"{stat([r['p99_us'] for r in rs])} | {stat([r['p999_us'] for r in rs])} |")

by_run = {}
for r in ok:
    by_run.setdefault(r["run"], {})[r["server"]] = r
print()
print("Paired ratios, repod ÷ other (median of per-run ratios [min–max]; lower is better for repod):")
print()
print("| ratio | pairs | p50 | p99 | p99.9 | p99 per run |")
print("| --- | --- | --- | --- | --- | --- |")
for other in ("raw_broadcast", "tokio"):
    if other not in servers or "repod" not in servers:
        continue
    pairs = [(run, d["repod"], d[other]) for run, d in sorted(by_run.items())
             if "repod" in d and other in d]
    ratio = lambda k: [a[k] / b[k] for _, a, b in pairs if b[k] > 0]
    per_run = ", ".join(f"{a['p99_us'] / b['p99_us']:.2f}" for _, a, b in pairs if b["p99_us"] > 0)
    print(f"| repod ÷ {other} | {len(pairs)} | {stat(ratio('p50_us'), 2)} | "
          f"**{stat(ratio('p99_us'), 2)}** | {stat(ratio('p999_us'), 2)} | {per_run} |")

loads = [float(l.split()[1]) for l in open(sys.argv[2]) if l.strip()]
if loads:
    peak = max(loads)
    note = " (**above 1.5: other work was running; treat the figures with care**)" if peak > 1.5 else ""
    print()
    print(f"1-minute load average during the runs: {min(loads):.2f}–{peak:.2f}{note}")
EOF
echo "results in $OUT_DIR" >&2
