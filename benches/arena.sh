#!/usr/bin/env bash
# The arena's figures for BENCHMARKS-HISTORY.md: arena_server with BOTS bots at 30 Hz, watched by
# SPECTATORS spectators (arena_client --spectators, one process) for SECONDS seconds. Prints
# the server's own report lines (tick handler time, overruns, bytes per client per second),
# the spectators' summary, and the server process's CPU per tick (user + system, from
# /proc/PID/stat, all of it: the tick handler, the writes, the accepts).
#
#   BOTS=200 SPECTATORS=1 benches/arena.sh; BOTS=200 SPECTATORS=1000 benches/arena.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BOTS=${BOTS:-200}
SPECTATORS=${SPECTATORS:-1}
SECONDS_=${SECONDS_:-20}
PORT=${PORT:-5180}
target/release/examples/arena_server --bind 127.0.0.1:$PORT --bots "$BOTS" --report-secs "$SECONDS_" >/tmp/arena-bench.log 2>&1 &
pid=$!
sleep 0.5
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
c0=$(cpu)
target/release/examples/arena_client 127.0.0.1:$PORT --spectators "$SPECTATORS" --seconds "$SECONDS_"
c1=$(cpu)
sleep 1
kill $pid
wait $pid 2>/dev/null || true
grep '^report:' /tmp/arena-bench.log | tail -1
ticks=$((SECONDS_ * 30))
echo "server CPU: $(( (c1 - c0) * 10 )) ms over ${SECONDS_} s = $(python3 -c "print(f'{($c1-$c0)*10000/$ticks:.0f}')") us per tick (about $ticks ticks)"
