#!/usr/bin/env bash
# What sessions (`Config::resume_window`, `echo_server --resume-secs`) cost, paired against the
# same server with them off: pipelined throughput (benches/ab.sh, pinned, the load generator
# taking and acknowledging the sessions with --session) and the memory of idle connections
# that took their session (15,000 by default), alternating off and on.
#
#   benches/sessions_bench.sh            # ~8 min
#
# Environment: PAIRS [20] throughput pairs, CONNS [15000], IDLE_RUNS [2] per side.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${PAIRS:-20}
CONNS=${CONNS:-15000}
IDLE_RUNS=${IDLE_RUNS:-2}
cargo build --release --example echo_server --example loadgen >/dev/null
ECHO=target/release/examples/echo_server
echo "== pipelined throughput, sessions on (B) against off (A), pinned, $PAIRS pairs"
A=$ECHO B=$ECHO B_ARGS="--resume-secs 30" LOADGEN_ARGS="--session" PIN=2 PAIRS=$PAIRS \
  SCENARIOS=throughput benches/ab.sh
echo "== $CONNS idle connections that took their session: server memory per connection"
net=200
for i in $(seq "$IDLE_RUNS"); do
  for side in off on; do
    args=()
    [[ $side == on ]] && args=(--resume-secs 30)
    port=$((7600 + i * 2 + ${#args[@]}))
    "$ECHO" 127.0.0.1 $port "${args[@]}" >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    net=$((net % 254 + 1))
    line=$(target/release/examples/loadgen conns --addr 127.0.0.1:$port --conns "$CONNS" \
      --sources 4 --source-from "127.$net.0.1" --settle-ms 1000 --pid $pid --session | grep '^RESULT')
    kill $pid; wait $pid 2>/dev/null || true
    per=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1].split(" ",1)[1]); print(r.get("bytes_per_conn", r))' "$line")
    echo "sessions $side run $i: $per bytes per connection"
  done
done
