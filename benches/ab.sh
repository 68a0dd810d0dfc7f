#!/usr/bin/env bash
# A/B of two echo_server builds, run alternately against the same loadgen scenarios, a fresh
# server each run, which of the two goes first alternating from pair to pair: the way to see
# what one change costs on this noisy machine (the pairs share its state of the minute). Prints
# one RESULT line per run and the per-pair ratios B/A.
#
#   A=/tmp/old/target/release/examples/echo_server B=target/release/examples/echo_server \
#     PAIRS=5 benches/ab.sh
#
# Environment: A, B (binaries), PAIRS [5], DURATION [5], A_ARGS (extra flags for A only: swap
# two configurations to see whether the order within a pair matters), B_ARGS (extra flags for B only, e.g.
# "--busy-poll-us 50", or "--resume-secs 30" for sessions on), LOADGEN_ARGS (extra loadgen flags
# for both, e.g. "--session", so that B's sessions are taken and acknowledged), SCENARIOS ["throughput rtt"], PIN (2: server and loadgen both on CPU 0,
# so a ping-pong never waits for another vCPU to wake up; 0: not pinned [0]).
set -euo pipefail
cd "$(dirname "$0")/.."
A=${A:?path of build A}
B=${B:?path of build B}
PAIRS=${PAIRS:-5}
DURATION=${DURATION:-5}
B_ARGS=${B_ARGS:-}
A_ARGS=${A_ARGS:-}
SCENARIOS=${SCENARIOS:-"throughput rtt"}
LOADGEN=${LOADGEN:-target/release/examples/loadgen}
LOADGEN_ARGS=${LOADGEN_ARGS:-}
PIN=${PIN:-0}
pin=()
[[ $PIN == 2 ]] && pin=(taskset -c 0)
PORT=7400
run() { # bin, scenario, extra args
  local bin=$1 scenario=$2; shift 2
  PORT=$((PORT + 1))
  "${pin[@]}" "$bin" 127.0.0.1 $PORT "$@" >/dev/null 2>&1 &
  local pid=$!
  sleep 0.3
  local out
  case $scenario in
    throughput) out=$("${pin[@]}" $LOADGEN throughput --addr 127.0.0.1:$PORT --clients 50 --window 16 --size 64 --duration "$DURATION" $LOADGEN_ARGS | grep '^RESULT') ;;
    rtt) out=$("${pin[@]}" $LOADGEN rtt --addr 127.0.0.1:$PORT --clients 1 --size 64 --duration "$DURATION" $LOADGEN_ARGS | grep '^RESULT') ;;
  esac
  kill $pid; wait $pid 2>/dev/null || true
  echo "$out"
}
metric() { # scenario, RESULT line
  python3 -c 'import json,sys; r=json.loads(sys.argv[2].split(" ",1)[1]); print(r["ops_per_sec"] if sys.argv[1]=="throughput" else r["p50_us"])' "$1" "$2"
}
for scenario in $SCENARIOS; do
  ratios=()
  for i in $(seq "$PAIRS"); do
    # Which runs first alternates: the second run of a pair is measurably slower on this
    # machine (an A/A control measured 0.992), and that must not count against B.
    if (( i % 2 )); then
      a=$(run "$A" "$scenario" $A_ARGS); b=$(run "$B" "$scenario" $B_ARGS)
    else
      b=$(run "$B" "$scenario" $B_ARGS); a=$(run "$A" "$scenario" $A_ARGS)
    fi
    ma=$(metric "$scenario" "$a"); mb=$(metric "$scenario" "$b")
    r=$(python3 -c "print(f'{$mb/$ma:.3f}')")
    ratios+=("$r")
    echo "$scenario pair $i: A $ma  B $mb  B/A $r"
  done
  python3 -c "import statistics,sys; xs=sorted(map(float,sys.argv[1:])); print(f'$scenario: median B/A {statistics.median(xs):.3f} [{xs[0]:.3f}-{xs[-1]:.3f}]')" "${ratios[@]}"
done
