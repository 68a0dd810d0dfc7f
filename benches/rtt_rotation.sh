#!/usr/bin/env bash
# Ping-pong RTT p50 of three servers in rotation, each run a fresh server, server and loadgen
# both pinned to CPU 0 (so a round trip never waits for another vCPU to wake up: the figure
# then resolves the code path rather than the VM's wake-up latency).
#
#   OLD=/tmp/old/target/release/examples/echo_server ROUNDS=8 benches/rtt_rotation.sh
#
# Environment: RAW [benches/baselines/target/release/raw_echo], OLD (another echo_server build),
# NEW [target/release/examples/echo_server], ROUNDS [8], DUR seconds per run [3],
# ORDER [raw old new]. Prints one line per round, then the medians of the per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=${RAW:-benches/baselines/target/release/raw_echo}
OLD=${OLD:?path of the other echo_server build}
NEW=${NEW:-target/release/examples/echo_server}
OUT=$(mktemp)
PORT=7600
for round in $(seq "${ROUNDS:-8}"); do
  line="round $round:"
  for name in ${ORDER:-raw old new}; do
    case $name in raw) bin=$RAW ;; old) bin=$OLD ;; new) bin=$NEW ;; esac
    PORT=$((PORT + 1))
    taskset -c 0 "$bin" 127.0.0.1 $PORT >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    p50=$(taskset -c 0 target/release/examples/loadgen rtt --addr 127.0.0.1:$PORT --clients 1 \
      --duration "${DUR:-3}" | grep '^RESULT' |
      python3 -c 'import json,sys; print(json.loads(sys.stdin.read().split(" ",1)[1])["p50_us"])')
    kill $pid
    wait $pid 2>/dev/null || true
    line="$line $name=$p50"
  done
  echo "$line" | tee -a "$OUT"
done
python3 - "$OUT" <<'PY'
import re, statistics, sys
rows = [dict(re.findall(r'(\w+)=([\d.]+)', l)) for l in open(sys.argv[1])]
def ratio(a, b):
    rs = sorted(float(r[a]) / float(r[b]) for r in rows)
    return f"median {statistics.median(rs):.3f} [{rs[0]:.3f}-{rs[-1]:.3f}]"
print("old/raw", ratio("old", "raw"))
print("new/raw", ratio("new", "raw"))
print("new/old", ratio("new", "old"))
PY
rm -f "$OUT"
