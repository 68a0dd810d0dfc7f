#!/usr/bin/env bash
# The CPU an echo server spends per ping-pong round trip, split into user and kernel time: the
# server's utime and stime (from /proc/PID/stat) over one `loadgen rtt --clients 1` run,
# divided by the round trips, with server and loadgen both on CPU 0. It tells how much of a
# round trip is the server's own code (user) and how much its syscalls and TCP (kernel).
#
#   benches/cpu_per_round_trip.sh target/release/examples/echo_server 7901
#   benches/cpu_per_round_trip.sh benches/baselines/target/release/raw_echo 7902
#
# Environment: DUR seconds [5]. Clock ticks are 10 ms, so a 5 s run resolves about 0.05 µs.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:?server binary}
PORT=${2:-7901}
taskset -c 0 "$BIN" 127.0.0.1 "$PORT" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.3
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
out=$(taskset -c 0 target/release/examples/loadgen rtt --addr 127.0.0.1:"$PORT" --clients 1 \
  --duration "${DUR:-5}" | grep '^RESULT')
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
python3 - "$out" "$u0" "$s0" "$u1" "$s1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.loads(sys.argv[1].split(" ", 1)[1])
u0, s0, u1, s1, hz = map(int, sys.argv[2:])
us_per_tick, n = 1e6 / hz, r["ops"]
print(f"ops {n} p50 {r['p50_us']} server user {(u1 - u0) * us_per_tick / n:.2f} us/rt "
      f"sys {(s1 - s0) * us_per_tick / n:.2f} us/rt")
PY
