#!/usr/bin/env bash
# Try your game at 64 kbit/s: a server and a client on the two ends of a slow link, on this
# machine. Two network namespaces joined by a veth pair (the same set-up as
# tests/support/shaped.rs): the server's side holds 10.214.$NET.1, the far side 10.214.$NET.2,
# and what the server sends is shaped with htb to $RATE behind a $QUEUE-byte bfifo (what the
# far side sends goes at full speed). The server command runs in the server's namespace, the
# client command in the far one, so the client sees the game through the slow link; a client
# run in the server's namespace (or on loopback there) does not.
#
#   benches/shaped_link.sh --server "cargo run --release --example arena_server -- --bind 10.214.9.1:5080 --bots 64" \
#                          --client "target/release/examples/snapshot_lag 10.214.9.1:5080 --seconds 30"
#   RATE=32kbit benches/shaped_link.sh --server "..." --client "... > /tmp/slow.txt"
#   SHELL=1 benches/shaped_link.sh --server "..."    # then, in the shell: arena_client 10.214.9.1:5080
#
# Options:
#   --server CMD    run CMD (with bash -c) in the server's namespace, bound to 10.214.$NET.1
#   --client CMD    run CMD (with bash -c) in the far namespace, once the server listens
#   --seconds N     stop after N seconds
# It runs until Ctrl-C, --seconds, the client's exit, or the server's exit, whichever comes first,
# then stops every process in the two namespaces and deletes them (also on errors and Ctrl-C).
# Commands run from the repository's root; their output comes out here (redirect it inside CMD).
#
# Environment: RATE, a tc rate [64kbit]; QUEUE, the bfifo limit in bytes [2000]; NET, the third
# byte of the addresses and part of the namespaces' names [9]; SHELL=1: an interactive bash in
# the far namespace (after the client starts, if any); the run ends when it exits. READY, how
# long to wait for the server to listen, in seconds [600: cargo may build first].
#
# Needs root, `ip` and `tc` (htb, bfifo). netem and tbf are not needed (this kernel lacks them).
set -euo pipefail
cd "$(dirname "$0")/.."

rate=${RATE:-64kbit}
queue=${QUEUE:-2000}
net=${NET:-9}
ready=${READY:-600}
# $SHELL is normally the login shell's path: only the exact value 1 asks for a shell here.
want_shell=0
[[ ${SHELL:-} == 1 ]] && want_shell=1
server_cmd=
client_cmd=
seconds=

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}
while (($#)); do
  case $1 in
    --server) server_cmd=${2?--server needs a command}; shift 2 ;;
    --client) client_cmd=${2?--client needs a command}; shift 2 ;;
    --seconds) seconds=${2?--seconds needs a number}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $server_cmd ]] || { echo "--server is required" >&2; usage; }
((EUID == 0)) || { echo "needs root (ip netns, tc)" >&2; exit 1; }

srv_ns=repod-link$net-srv
far_ns=repod-link$net-far
srv_dev=rpls$net
far_dev=rplf$net
srv_ip=10.214.$net.1
far_ip=10.214.$net.2
for ns in "$srv_ns" "$far_ns"; do
  if ip netns list | grep -qw "^$ns"; then
    echo "namespace $ns already exists: another run with NET=$net? If not, remove it with" >&2
    echo "  ip netns pids $ns | xargs -r kill; ip netns del $ns" >&2
    exit 1
  fi
done

made=0
timer_pid=
cleanup() {
  trap - EXIT INT TERM
  if [[ -n $timer_pid ]]; then kill "$timer_pid" 2>/dev/null || true; fi
  ((made)) || return 0
  made=0
  echo "--- shaped link: $(ip netns exec "$srv_ns" tc -s qdisc show dev "$srv_dev" 2>/dev/null |
    grep -A1 '^qdisc bfifo' | tr -s ' \n' ' ')"
  # Every process in our two namespaces is one this script started (or a child of one).
  for sig in TERM KILL; do
    pids=$( { ip netns pids "$srv_ns"; ip netns pids "$far_ns"; } 2>/dev/null || true)
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086
    kill -$sig $pids 2>/dev/null || true
    if [[ $sig == TERM ]]; then sleep 1; fi
  done
  ip netns del "$far_ns" 2>/dev/null || true
  ip netns del "$srv_ns" 2>/dev/null || true
  echo "--- removed $srv_ns and $far_ns"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }
made=1
ip netns add "$srv_ns"
ip netns add "$far_ns"
ip link add "$srv_dev" netns "$srv_ns" type veth peer name "$far_dev" netns "$far_ns"
in_ns "$srv_ns" ip addr add "$srv_ip/30" dev "$srv_dev"
in_ns "$far_ns" ip addr add "$far_ip/30" dev "$far_dev"
for ns in "$srv_ns" "$far_ns"; do in_ns "$ns" ip link set lo up; done
in_ns "$srv_ns" ip link set "$srv_dev" up
in_ns "$far_ns" ip link set "$far_dev" up
in_ns "$srv_ns" tc qdisc add dev "$srv_dev" root handle 1: htb default 10
# At such rates tc warns that the class's quantum is small: harmless, there is one class.
in_ns "$srv_ns" tc class add dev "$srv_dev" parent 1: classid 1:10 htb rate "$rate" ceil "$rate"
in_ns "$srv_ns" tc qdisc add dev "$srv_dev" parent 1:10 handle 10: bfifo limit "$queue"

cat <<EOF
--- shaped link: server $srv_ip (namespace $srv_ns) -> far $far_ip (namespace $far_ns)
    server to far: $rate behind a $queue-byte bfifo; far to server: not shaped
    run more in them: ip netns exec $far_ns COMMAND   (or $srv_ns: unshaped, for comparison)
EOF

# setsid: each command in a session of its own, so Ctrl-C here reaches only this script, which
# then stops everything. ip netns exec keeps the working directory.
ip netns exec "$srv_ns" setsid bash -c "$server_cmd" &
server_pid=$!
echo "--- server (pid $server_pid) in $srv_ns: $server_cmd"
# The client starts once something listens in the server's namespace.
waited=0
until [[ -n $(in_ns "$srv_ns" ss -Hltn) ]]; do
  kill -0 "$server_pid" 2>/dev/null || { echo "--- the server exited before listening" >&2; exit 1; }
  ((waited < ready * 10)) || { echo "--- the server did not listen within ${ready}s" >&2; exit 1; }
  sleep 0.1
  waited=$((waited + 1))
done
echo "--- listening in $srv_ns: $(in_ns "$srv_ns" ss -Hltn | awk '{print $4}' | tr '\n' ' ')"

watch=("$server_pid")
if [[ -n $client_cmd ]]; then
  ip netns exec "$far_ns" setsid bash -c "$client_cmd" &
  client_pid=$!
  watch+=("$client_pid")
  echo "--- client (pid $client_pid) in $far_ns: $client_cmd"
fi
if [[ -n $seconds ]]; then
  sleep "$seconds" &
  timer_pid=$!
  watch+=("$timer_pid")
fi

if ((want_shell)); then
  echo "--- a shell in $far_ns (through the slow link to $srv_ip); exit it to stop"
  in_ns "$far_ns" env PS1="[$far_ns] \\w\\$ " bash --norc -i || true
else
  echo "--- running; Ctrl-C stops${seconds:+, or after ${seconds}s}"
  # Until the first of the server, the client and the timer ends.
  wait -n "${watch[@]}" || true
fi
