#!/usr/bin/env bash
# Paired ping-pong RTT: several echo servers measured by one probe, turn and turn about in
# blocks of a few milliseconds (examples/rtt_pair.rs), every server and the probe pinned to
# CPU 0. Resolves differences well under 1% on this noisy machine, where one server after the
# other (rtt_rotation.sh) moves ±10% between runs. Prints each server's exact p50 and mean, and
# the median of per-block p50 ratios against the first server.
#
#   benches/rtt_pair.sh benches/baselines/target/release/raw_echo target/release/examples/echo_server
#
# Where a server stands in the list moves its ratio by about 0.5% (raw ÷ raw reads 0.994-0.997):
# for a verdict, run both orders, `A B A B` and `B A B A`, and count every adjacent pairing.
#
# Arguments: server binaries (the first is the reference; give the same one twice to see the
# instrument's own error). Environment: SECS [20], BLOCK round trips per turn [500], PIN (1: all
# on CPU 0; 0: not pinned, so round trips also wait for the other vCPU to wake) [1].
set -euo pipefail
cd "$(dirname "$0")/.."
pin=(taskset -c 0)
[[ ${PIN:-1} == 0 ]] && pin=()
(($# >= 2)) || { echo "usage: $0 SERVER_A SERVER_B [SERVER ...]" >&2; exit 2; }
cargo build --release --example rtt_pair --example echo_server -q
pids=()
addrs=()
port=7650
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
for bin in "$@"; do
  port=$((port + 1))
  "${pin[@]}" "$bin" 127.0.0.1 $port >/dev/null 2>&1 &
  pids+=($!)
  addrs+=(127.0.0.1:$port)
done
sleep 0.4
i=0
for bin in "$@"; do echo "${addrs[$i]} = $bin"; i=$((i + 1)); done
"${pin[@]}" target/release/examples/rtt_pair "${addrs[@]}" --secs "${SECS:-20}" --block "${BLOCK:-500}"
