#!/usr/bin/env bash
# "Scale on paper" measurements (BENCHMARKS-HISTORY.md): kernel memory per idle TCP connection, and the
# server's CPU per fan-out message. Release builds from run_benchmarks.sh must exist.
#
#   benches/results/20261203-scale.sh kmem N [--ws]      # N idle connections held open
#   benches/results/20261203-scale.sh fanout CLIENTS RATE SIZE [DURATION]
#
# kmem: starts echo_server, snapshots /proc/meminfo, /proc/net/sockstat and /proc/slabinfo,
# opens N connections with `loadgen conns` (held for --settle-ms 6000), snapshots again once
# the server holds N sockets, prints the deltas and the slab caches that grew most. Both ends
# of every connection are on this machine, so the kernel figures cover 2 sockets each.
# fanout: starts echo_server, runs `loadgen fanout` and reads the server's utime+stime
# (/proc/PID/stat, clock ticks) right before and right after; samples /proc/net/sockstat's
# TCP mem (pages charged to socket buffers) every 0.5 s during the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OURS=${OURS:-target/release/examples/echo_server}  # another build: OURS=/path/echo_server
LG=target/release/examples/loadgen
PORT=$((7900 + RANDOM % 90))
TCK=$(getconf CLK_TCK)

start() {
  local out; out=$(mktemp)
  "$OURS" 127.0.0.1 "$@" >"$out" 2>&1 &
  SRV=$!
  for _ in $(seq 100); do grep -q "${READY:-^listening on}" "$out" && break; sleep 0.05; done
  rm -f "$out"
}
stop() { kill "$SRV" 2>/dev/null || true; wait "$SRV" 2>/dev/null || true; }
trap stop EXIT
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, clock ticks
snap() {
  grep -E '^(Slab|SReclaimable|SUnreclaim):' /proc/meminfo | awk '{printf "%s %s\n", $1, $2}'
  awk '/^TCP:/ {print "tcp_inuse", $3; print "tcp_mem_pages", $11}' /proc/net/sockstat
}
slab() { awk 'NR > 2 {print $1, $2 * $4}' /proc/slabinfo | sort; }  # cache, active bytes

case ${1:-} in
  kmem)
    N=$2; WS=${3:-}
    if [[ $WS == --ws ]]; then
      READY='^websocket on' start 0 --ws "$PORT"
    else
      start "$PORT"
    fi
    # Let the sockets of a previous run finish closing first (they count in TCP inuse).
    for _ in $(seq 100); do
      [[ $(awk '/^TCP:/ {print $3}' /proc/net/sockstat) -lt 100 ]] && break; sleep 0.2
    done
    sleep 0.5
    snap >/tmp/kmem.before; slab >/tmp/slab.before
    net=$((RANDOM % 200 + 20))
    "$LG" conns --conns "$N" --sources 4 --source-from "127.$net.0.1" --settle-ms 6000 \
      --pid "$SRV" --addr "127.0.0.1:$PORT" $WS >/tmp/kmem.lg 2>&1 &
    LGP=$!
    # Wait for 2N TCP sockets (not by listing /proc/PID/fd: that creates N proc inodes and
    # dentries, which would count as kernel memory per connection).
    base=$(awk '/^TCP:/ {print $3}' /proc/net/sockstat)
    until [[ $(awk '/^TCP:/ {print $3}' /proc/net/sockstat) -ge $((base + 2 * N)) ]]; do
      kill -0 "$LGP" 2>/dev/null || { echo "loadgen ended first"; exit 1; }; sleep 0.1
    done
    sleep 1.5
    snap >/tmp/kmem.after; slab >/tmp/slab.after
    wait "$LGP"
    grep -E 'growth|RESULT' /tmp/kmem.lg
    join /tmp/kmem.before /tmp/kmem.after | awk -v n="$N" '{
      d = $3 - $2
      if ($1 ~ /:$/) printf "%-14s %+9d kB  = %6.0f B per connection (2 sockets)\n", $1, d, d * 1024 / n
      else if ($1 == "tcp_mem_pages") printf "%-14s %+9d pages\n", $1, d
      else printf "%-14s %+9d\n", $1, d }'
    echo "slab caches that grew most (bytes per connection, 2 sockets):"
    join -a2 -e0 -o 0,1.2,2.2 /tmp/slab.before /tmp/slab.after |
      awk -v n="$N" '{d = $3 - $2; if (d > 0) printf "%8.0f  %s\n", d / n, $1}' | sort -rn | head -12
    ;;
  fanout)
    CLIENTS=$2; RATE=$3; SIZE=$4; DUR=${5:-10}
    start "$PORT"
    ( while sleep 0.5; do awk '/^TCP:/ {print $11}' /proc/net/sockstat; done ) >/tmp/fan.mem &
    SAMPLER=$!
    c0=$(cpu "$SRV"); t0=$(date +%s.%N)
    "$LG" fanout --clients "$CLIENTS" --rate "$RATE" --size "$SIZE" --duration "$DUR" \
      --threads 2 --addr "127.0.0.1:$PORT" >/tmp/fan.lg 2>&1
    c1=$(cpu "$SRV"); t1=$(date +%s.%N)
    kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
    grep -E 'broadcasts|loss|latency' /tmp/fan.lg
    res=$(grep '^RESULT' /tmp/fan.lg)
    recv=$(sed 's/.*"received":\([0-9]*\).*/\1/' <<<"$res")
    lgcpu=$(grep -o 'loadgen_cpu_s=[0-9.]*' /tmp/fan.lg || true)
    awk -v c="$((c1 - c0))" -v tck="$TCK" -v r="$recv" -v w="$(echo "$t1 - $t0" | bc)" \
      -v mem="$(sort -n /tmp/fan.mem | tail -1)" 'BEGIN {
      s = c / tck
      printf "server CPU %.2f s over %.2f s wall (%.0f%% of a core); %d messages delivered\n", s, w, 100 * s / w, r
      printf "=> %.0f messages per server core-second; peak TCP mem %s pages\n", r / s, mem }'
    echo "RESULT_SCALE clients=$CLIENTS rate=$RATE size=$SIZE cpu_ticks=$((c1 - c0)) received=$recv $res"
    ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
