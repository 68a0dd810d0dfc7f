#!/usr/bin/env bash
# TLS against its anchors: repod's own TLS (`echo_server --tls-cert --tls-key`), HAProxy 2.6
# terminating TLS in front of repod's plain echo_server (`mode tcp`, `bind ... ssl crt`), and
# the ordinary tokio way (benches/baselines `tokio_rustls_echo`), with repod over plain TCP as
# the reference. Prints markdown tables on stdout (progress on stderr):
#
#   mem         idle memory per TLS connection at 3,000 and 15,000 connections (loadgen conns
#               --tls; VmRSS growth / connections; HAProxy: its processes and the repod behind
#               it, reported apart and summed)
#   throughput  pipelined echo over TLS (loadgen throughput --tls: 50 clients x 16 in flight,
#               64 B), servers not pinned, as in BENCHMARKS.md
#   handshakes  full TLS handshakes per second with the server side pinned to CPU 0 and
#               loadgen to CPU 1 (loadgen handshakes --tls --pid: handshakes per server CPU
#               second too, which holds even when the client is the limit)
#   rtt         ping-pong p50 in one probe (examples/rtt_pair.rs), everything pinned to CPU 0:
#               repod plain, ws, tls and wss, HAProxy tls and wss, tokio-rustls tls
#
#   benches/tls_bench.sh                                   # everything, RUNS=3: about 5 minutes + builds
#   PARTS="mem" SERVERS="repod haproxy" benches/tls_bench.sh
#   RUNS=1 DUR=1 SECS=2 CONNS="300 1000" benches/tls_bench.sh             # smoke, about 1 minute
#
# Environment (defaults in brackets):
#   PARTS       which measurements ["mem throughput handshakes rtt"]
#   SERVERS     repod (TLS), haproxy (HAProxy + repod plain), tokio (tokio_rustls_echo,
#               multi-thread; current-thread in `handshakes`, on one core), tokio1t
#               (tokio_rustls_echo --single-thread), plain (repod without TLS, the reference)
#               ["repod haproxy tokio plain"]
#   RUNS        runs per server and measurement, server order rotated per run [3]
#   DUR         seconds per throughput and handshakes run [5]
#   SECS        seconds of the rtt probe [20]; BLOCK round trips per turn [500]
#   CONNS       connection counts of `mem` ["3000 15000"]
#   HS_CLIENTS  connections handshaking in parallel [16]
#   WARMUP      mem: connections opened and closed before the first memory reading [1]
#   HS_VERIFY   1: loadgen verifies the certificate in `handshakes` too; 0: --tls-no-verify,
#               so its two signature checks per handshake leave more of CPU 1 for handshaking
#               (the server's work is the same either way) [0]
#   KEY         ec (P-256) or rsa (2048 bits): the server key and the CA's [ec]
#   OUT         where logs and raw RESULT lines go [a new /tmp/tls_bench.XXXXXX, kept]
#   FD_LIMIT    open files per process, which sets HAProxy's maxconn and process count
#               [ulimit -n]
#   BUILD=0     skip building the main crate's examples; EXAMPLES: where they are
#               [target/release/examples]
#
# The certificates: a throwaway CA and a `localhost` (and 127.0.0.1) server certificate made
# with the openssl CLI in a temporary directory, deleted on exit; nothing secret is kept.
# The open-file limit here is 20,000 and cannot be raised (no CAP_SYS_RESOURCE), while HAProxy
# needs two descriptors per connection (client side and server side): for 15,000 connections
# two HAProxy processes share the port (SO_REUSEPORT, which HAProxy sets), each `nbthread 1`
# and `maxconn` (FD_LIMIT - 200) / 2, and their RSS is summed. Elsewhere HAProxy is one
# process with one thread, like repod's reactor. The TLS client is loadgen's / rtt_pair's
# rustls, X25519 key share, no resumption. tokio_rustls_echo is built with the crypto provider
# that repod's Cargo.toml gives rustls (ring or aws-lc-rs).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DUR=${DUR:-5}
SECS=${SECS:-20}
BLOCK=${BLOCK:-500}
CONNS=${CONNS:-"3000 15000"}
PARTS=${PARTS:-"mem throughput handshakes rtt"}
SERVERS=${SERVERS:-"repod haproxy tokio plain"}
HS_CLIENTS=${HS_CLIENTS:-16}
WARMUP=${WARMUP:-1}
HS_VERIFY=${HS_VERIFY:-0}
KEY=${KEY:-ec}
FD_LIMIT=${FD_LIMIT:-$(ulimit -n)}
HAP_MAXCONN=$(((FD_LIMIT - 200) / 2)) # HAProxy: two descriptors per connection
OUT=${OUT:-$(mktemp -d /tmp/tls_bench.XXXXXX)}
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
: >"$RESULTS"

log() { echo "tls_bench: $*" >&2; }
has() { [[ " $2 " == *" $1 "* ]]; }

EXAMPLES=${EXAMPLES:-target/release/examples}
BASELINES=benches/baselines/target/release

# --- builds -------------------------------------------------------------------------------
if [[ ${BUILD:-1} == 1 ]]; then
  log "building (release): echo_server, loadgen, rtt_pair"
  cargo build --release -q --example echo_server --example loadgen --example rtt_pair
fi
# tokio_rustls_echo with the crypto provider repod's rustls dependency enables.
PROVIDER=ring
grep -Eq '^rustls *=.*aws_lc_rs' Cargo.toml && PROVIDER=aws-lc-rs
if [[ ${BUILD:-1} == 1 ]] && { has tokio "$SERVERS" || has tokio1t "$SERVERS"; }; then
  feat=()
  [[ $PROVIDER == aws-lc-rs ]] && feat=(--no-default-features --features aws-lc-rs)
  log "building (release): tokio_rustls_echo with $PROVIDER"
  (cd benches/baselines && cargo build --release -q --bin tokio_rustls_echo "${feat[@]}")
fi
if has haproxy "$SERVERS" && ! command -v haproxy >/dev/null; then
  log "installing haproxy"
  apt-get update -qq && apt-get install -y -qq haproxy >/dev/null
fi

# --- certificates -------------------------------------------------------------------------
CERTS=$(mktemp -d /tmp/tls_bench_certs.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$CERTS"
}
trap cleanup EXIT

genkey() {
  case $KEY in
    ec) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null ;;
    rsa) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null ;;
    *) log "KEY must be ec or rsa"; exit 2 ;;
  esac
}
genkey "$CERTS/ca.key"
openssl req -x509 -new -key "$CERTS/ca.key" -sha256 -days 2 -subj "/CN=repod tls_bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$CERTS/ca.pem" 2>/dev/null
genkey "$CERTS/server.key"
openssl req -new -key "$CERTS/server.key" -subj "/CN=localhost" -out "$CERTS/server.csr" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
  "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$CERTS/server.ext"
openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" \
  -CAcreateserial -sha256 -days 2 -extfile "$CERTS/server.ext" -out "$CERTS/server.pem" 2>/dev/null
cat "$CERTS/server.pem" "$CERTS/server.key" >"$CERTS/combined.pem" # HAProxy's crt
CA=$CERTS/ca.pem
TLS_SERVER=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key")
TLS_CLIENT=(--tls --tls-ca "$CA")

# --- servers ------------------------------------------------------------------------------
PORT=7900
alloc_port() { # sets P to a port not used yet in this run
  PORT=$((PORT + 1))
  ((PORT > 8899)) && PORT=7901
  P=$PORT
}

# wait_line LOG PATTERN PID: until LOG has PATTERN (10 s), or the process died.
wait_line() {
  local i
  for ((i = 0; i < 200; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || break
    sleep 0.05
  done
  log "server did not come up ($2): $(tail -3 "$1" 2>/dev/null | tr '\n' ' ')"
  return 1
}

# wait_listen PORT N: until N sockets listen on PORT (10 s).
wait_listen() {
  local i
  for ((i = 0; i < 200; i++)); do
    (($(ss -Hltn "sport = :$1" | wc -l) >= $2)) && return 0
    sleep 0.05
  done
  log "nothing listens on port $1"
  return 1
}

# launch LOG CMD...: starts CMD in the background (with $PIN in front), sets SPID.
PIN=()
launch() {
  local out=$1
  shift
  "${PIN[@]}" "$@" >"$out" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
}

stop() {
  local p
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

# start_server KIND TAG [HAPROXY_PROCS]: sets ADDR (TLS or TCP), WSURL (or empty), MPIDS (the
# processes to measure, comma separated: HAProxy's first, then the repod behind it), ALL (every
# pid started), NAME (for the tables). Returns 1 if the server does not start.
start_server() {
  local kind=$1 tag=$2 procs=${3:-1} log=$OUT/$2.log p1 p2
  WSURL=
  case $kind in
    repod)
      alloc_port; p1=$P; alloc_port; p2=$P
      launch "$log" "$EXAMPLES/echo_server" 127.0.0.1 "$p1" --ws "$p2" "${TLS_SERVER[@]}"
      ALL=$SPID MPIDS=$SPID ADDR=127.0.0.1:$p1 WSURL=wss://127.0.0.1:$p2/ NAME="repod TLS"
      wait_line "$log" "websocket on" "$SPID" || { stop "$SPID"; return 1; }
      ;;
    plain)
      alloc_port; p1=$P; alloc_port; p2=$P
      launch "$log" "$EXAMPLES/echo_server" 127.0.0.1 "$p1" --ws "$p2"
      ALL=$SPID MPIDS=$SPID ADDR=127.0.0.1:$p1 WSURL=ws://127.0.0.1:$p2/ NAME="repod plain TCP (reference)"
      wait_line "$log" "websocket on" "$SPID" || { stop "$SPID"; return 1; }
      ;;
    tokio | tokio1t)
      alloc_port; p1=$P
      local mode=()
      [[ $kind == tokio1t ]] && mode=(--single-thread)
      launch "$log" "$BASELINES/tokio_rustls_echo" 127.0.0.1 "$p1" "${TLS_SERVER[@]}" "${mode[@]}"
      ALL=$SPID MPIDS=$SPID ADDR=127.0.0.1:$p1
      NAME="tokio-rustls ($([[ $kind == tokio1t ]] && echo current-thread || echo multi-thread))"
      wait_line "$log" "listening on" "$SPID" || { stop "$SPID"; return 1; }
      ;;
    haproxy)
      local back=$OUT/$tag.backend.log bp bwp hp hwp cfg=$OUT/$tag.haproxy.cfg i pids=()
      alloc_port; bp=$P; alloc_port; bwp=$P; alloc_port; hp=$P; alloc_port; hwp=$P
      launch "$back" "$EXAMPLES/echo_server" 127.0.0.1 "$bp" --ws "$bwp"
      local backend=$SPID
      wait_line "$back" "websocket on" "$backend" || { stop "$backend"; return 1; }
      cat >"$cfg" <<EOF
global
    maxconn $HAP_MAXCONN
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    maxconn $HAP_MAXCONN
frontend tls
    bind 127.0.0.1:$hp ssl crt $CERTS/combined.pem
    default_backend repod
frontend wss
    bind 127.0.0.1:$hwp ssl crt $CERTS/combined.pem
    default_backend repod_ws
backend repod
    server repod 127.0.0.1:$bp
backend repod_ws
    server repod 127.0.0.1:$bwp
EOF
      for ((i = 0; i < procs; i++)); do
        launch "$log.$i" haproxy -f "$cfg" -db
        pids+=("$SPID")
      done
      ALL="${pids[*]} $backend"
      MPIDS="$(
        IFS=,
        echo "${pids[*]}"
      ),$backend"
      ADDR=127.0.0.1:$hp WSURL=wss://127.0.0.1:$hwp/
      NAME="HAProxy $(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p') + repod plain"
      ((procs > 1)) && NAME="$NAME ($procs HAProxy processes)"
      # shellcheck disable=SC2086
      wait_listen "$hp" "$procs" || { stop $ALL; return 1; }
      ;;
    *)
      log "unknown server $kind"
      return 1
      ;;
  esac
}

# record PART SERVER PARAM RUN LOGFILE: keeps the RESULT line of a loadgen run.
record() {
  local line
  line=$(grep '^RESULT ' "$5" | tail -1 | cut -c8-) || true
  if [[ -z $line ]]; then
    log "$1 $2 $3 run $4: no RESULT ($(tail -2 "$5" | tr '\n' ' '))"
    return
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$line" >>"$RESULTS"
}

# rotate RUN LIST...: the list rotated by RUN places.
rotate() {
  local r=$1
  shift
  local a=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s ' "${a[$(((i + r) % n))]}"; done
}

LG=$EXAMPLES/loadgen
tls_args() { [[ $1 == plain ]] || printf '%s\n' "${TLS_CLIENT[@]}"; }

# --- mem ----------------------------------------------------------------------------------
if has mem "$PARTS"; then
  src=$((20 + RANDOM % 100)) # a fresh source range per run: no TIME_WAIT pile-up at bind()
  for ((run = 0; run < RUNS; run++)); do
    for n in $CONNS; do
      for s in $(rotate "$run" $SERVERS); do
        [[ $s == tokio1t ]] && continue
        procs=1
        # HAProxy: two descriptors per connection, FD_LIMIT per process; the kernel spreads
        # connections over the processes at random, hence the 10% margin.
        [[ $s == haproxy ]] && procs=$(((n * 11 / 10 + HAP_MAXCONN - 1) / HAP_MAXCONN))
        start_server "$s" "mem-$s-$n-$run" "$procs" || continue
        echo "$NAME" >"$OUT/name-$s"
        sleep 0.3
        log "mem: $NAME, $n connections, run $((run + 1))/$RUNS"
        out=$OUT/mem-$s-$n-$run.out
        mapfile -t targs < <(tls_args "$s")
        # One warm-up connection first, for every server alike: the first TLS handshake pages
        # in the TLS library's code and builds its one-time tables (about 1 MB here), a cost
        # of the process rather than of each connection. WARMUP=0 counts it.
        "$LG" conns --addr "$ADDR" "${targs[@]}" --conns "$n" --pid "$MPIDS" --warmup "$WARMUP" \
          --source-from "127.$src.0.1" --timeout 300 >"$out" 2>&1 || true
        src=$((src + 1))
        ((src > 250)) && src=20
        record mem "$s" "$n" "$run" "$out"
        # shellcheck disable=SC2086
        stop $ALL
      done
    done
  done
fi

# --- throughput ---------------------------------------------------------------------------
if has throughput "$PARTS"; then
  for ((run = 0; run < RUNS; run++)); do
    for s in $(rotate "$run" $SERVERS); do
      start_server "$s" "tp-$s-$run" || continue
      echo "$NAME" >"$OUT/name-$s"
      sleep 0.3
      log "throughput: $NAME, run $((run + 1))/$RUNS"
      out=$OUT/tp-$s-$run.out
      mapfile -t targs < <(tls_args "$s")
      "$LG" throughput --addr "$ADDR" "${targs[@]}" --duration "$DUR" >"$out" 2>&1 || true
      record throughput "$s" - "$run" "$out"
      # shellcheck disable=SC2086
      stop $ALL
    done
  done
fi

# --- handshakes ---------------------------------------------------------------------------
if has handshakes "$PARTS"; then
  for ((run = 0; run < RUNS; run++)); do
    for s in $(rotate "$run" $SERVERS); do
      kind=$s
      [[ $s == tokio ]] && kind=tokio1t # one core: the current-thread runtime
      [[ $s == tokio1t ]] && has tokio "$SERVERS" && continue
      PIN=(taskset -c 0)
      start_server "$kind" "hs-$s-$run" || { PIN=(); continue; }
      PIN=()
      echo "$NAME" >"$OUT/name-hs-$s"
      sleep 0.3
      log "handshakes: $NAME, run $((run + 1))/$RUNS"
      out=$OUT/hs-$s-$run.out
      mapfile -t targs < <(tls_args "$s")
      ((${#targs[@]})) && [[ $HS_VERIFY == 0 ]] && targs+=(--tls-no-verify)
      taskset -c 1 "$LG" handshakes --addr "$ADDR" "${targs[@]}" --clients "$HS_CLIENTS" \
        --duration "$DUR" --pid "$MPIDS" >"$out" 2>&1 || true
      record handshakes "$s" - "$run" "$out"
      # shellcheck disable=SC2086
      stop $ALL
    done
  done
fi

# --- rtt ----------------------------------------------------------------------------------
if has rtt "$PARTS"; then
  entries=()
  names=()
  started=()
  PIN=(taskset -c 0)
  for s in plain repod haproxy tokio; do
    has "$s" "$SERVERS" || continue
    start_server "$s" "rtt-$s" || continue
    # shellcheck disable=SC2206
    started+=($ALL)
    case $s in
      plain) entries+=("$ADDR" "$WSURL") names+=("repod, TCP" "repod, WebSocket") ;;
      repod) entries+=("tls://$ADDR" "$WSURL") names+=("repod, TLS" "repod, wss") ;;
      haproxy) entries+=("tls://$ADDR" "$WSURL") names+=("HAProxy + repod, TLS" "HAProxy + repod, wss") ;;
      tokio) entries+=("tls://$ADDR") names+=("tokio-rustls (multi-thread), TLS") ;;
    esac
  done
  sleep 0.4
  if ((${#entries[@]} >= 2)); then
    log "rtt: ${#entries[@]} entries for ${SECS}s, all on CPU 0"
    printf '%s\n' "${names[@]}" >"$OUT/rtt-names"
    "${PIN[@]}" "$EXAMPLES/rtt_pair" "${entries[@]}" --tls-ca "$CA" --secs "$SECS" --block "$BLOCK" \
      >"$OUT/rtt.out" 2>&1 || log "rtt_pair failed: $(tail -2 "$OUT/rtt.out" | tr '\n' ' ')"
  else
    log "rtt: fewer than two entries, skipped"
  fi
  PIN=()
  stop "${started[@]}"
fi

# --- tables -------------------------------------------------------------------------------
{
  echo "# TLS benchmarks, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "$(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -r);" \
    "$(rustc --version | cut -d' ' -f1-2); repod's rustls provider: $PROVIDER; server key: $KEY" \
    "($([[ $KEY == ec ]] && echo ECDSA P-256 || echo RSA 2048)); $(openssl version | cut -d' ' -f1-2);" \
    "$(command -v haproxy >/dev/null && haproxy -v 2>/dev/null | sed -n '1s/^HAProxy version \([^ ]*\).*/HAProxy \1/p')."
  echo "RUNS=$RUNS DUR=${DUR}s SECS=${SECS}s CONNS=\"$CONNS\" HS_CLIENTS=$HS_CLIENTS HS_VERIFY=$HS_VERIFY; raw results: $OUT"
} >"$OUT/header.md"

python3 - "$OUT" "$SERVERS" "$CONNS" <<'PY'
import json, os, re, statistics, sys

out, servers, conns = sys.argv[1], sys.argv[2].split(), [int(c) for c in sys.argv[3].split()]
rows = {}
for line in open(os.path.join(out, "results.tsv")):
    part, server, param, run, js = line.rstrip("\n").split("\t", 4)
    rows.setdefault((part, server, param), {})[int(run)] = json.loads(js)

def name(s, prefix="name-"):
    p = os.path.join(out, prefix + s)
    return open(p).read().strip() if os.path.exists(p) else s

def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"

def med(vals, digits=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m, digits)
    return f"{fmt(m, digits)} [{fmt(min(vals), digits)}–{fmt(max(vals), digits)}]"

def paired(a, b):
    """median of per-run ratios a/b over the runs both have"""
    r = [a[k] / b[k] for k in a if k in b and a[k] and b[k]]
    if not r:
        return "—"
    return f"{statistics.median(r):.2f}" + (f" [{min(r):.2f}–{max(r):.2f}]" if len(r) > 1 else "")

print(open(os.path.join(out, "header.md")).read())

# mem
if any(k[0] == "mem" for k in rows):
    print("\n**Idle memory per connection** (server VmRSS growth ÷ connections, each greeted; "
          "kernel socket buffers are not in RSS; median [min–max] of runs)\n")
    head = "| server | " + " | ".join(f"{n:,} conns: bytes/conn" for n in conns) + \
        f" | connect + greet {conns[-1]:,} s |"
    print(head)
    print("|" + " --- |" * (len(conns) + 2))
    for s in servers:
        if not any((("mem", s, str(n)) in rows) for n in conns):
            continue
        variants = [(name(s), lambda r: r.get("bytes_per_conn"))]
        if s == "haproxy":
            variants = [
                ("HAProxy processes alone (TLS termination)",
                 lambda r: sum(r["bytes_per_conn_each"][:-1]) if "bytes_per_conn_each" in r else None),
                ("HAProxy + the repod plain behind it",
                 lambda r: r.get("bytes_per_conn")),
            ]
        for label, get in variants:
            cells = []
            for n in conns:
                runs = rows.get(("mem", s, str(n)), {})
                cells.append(med([get(r) for r in runs.values()]))
            big = rows.get(("mem", s, str(conns[-1])), {})
            cells.append(med([r.get("connect_secs") for r in big.values()], 2))
            print(f"| {label} | " + " | ".join(cells) + " |")

# throughput
if any(k[0] == "throughput" for k in rows):
    print("\n**Pipelined, 50 clients x window 16, 64 B, over TLS** (not pinned; median [min–max]; "
          "paired = repod TLS ÷ this server within the same run)\n")
    print("| server | runs | replies/s | p50 µs | p99 µs | repod TLS ÷ this, paired |")
    print("| --- | --- | --- | --- | --- | --- |")
    ref = {k: r["ops_per_sec"] for k, r in rows.get(("throughput", "repod", "-"), {}).items()}
    for s in servers:
        runs = rows.get(("throughput", s, "-"))
        if not runs:
            continue
        ops = {k: r["ops_per_sec"] for k, r in runs.items()}
        print(f"| {name(s)} | {len(runs)} | {med(list(ops.values()))} | "
              f"{med([r['p50_us'] for r in runs.values()], 0)} | {med([r['p99_us'] for r in runs.values()], 0)} | "
              f"{paired(ref, ops) if s != 'repod' else '1'} |")

# handshakes
if any(k[0] == "handshakes" for k in rows):
    print("\n**Full handshakes, server side pinned to CPU 0, loadgen on CPU 1** "
          "(a handshake = connect, TLS, greeting received, close; TLS 1.3, X25519, no resumption; "
          "loadgen checks no certificate unless HS_VERIFY=1; "
          "server CPU from /proc: for HAProxy its process plus the repod behind it, both on CPU 0)\n")
    print("| server | runs | handshakes/s | server side CPU % | handshakes per server-side CPU s | "
          "per CPU s of the TLS process alone | loadgen CPU % | connect-to-greeting p50 µs | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in servers:
        runs = rows.get(("handshakes", s, "-"))
        if not runs:
            continue
        rs = list(runs.values())
        tls_alone = [r["ops"] / r["server_cpu_secs_each"][0]
                     if r.get("server_cpu_secs_each") and r["server_cpu_secs_each"][0] > 0 else None
                     for r in rs]
        print(f"| {name(s, 'name-hs-')} | {len(rs)} | {med([r['ops_per_sec'] for r in rs])} | "
              f"{med([100 * r.get('server_cpu_util', 0) for r in rs])} | "
              f"{med([r.get('ops_per_server_cpu_sec') for r in rs])} | {med(tls_alone)} | "
              f"{med([100 * r['client_cpu_secs'] / r['wall_secs'] for r in rs])} | "
              f"{med([r['p50_us'] for r in rs])} | {sum(r['errors'] for r in rs)} |")

# rtt
rtt_out = os.path.join(out, "rtt.out")
if os.path.exists(rtt_out):
    names = open(os.path.join(out, "rtt-names")).read().splitlines()
    text = open(rtt_out).read()
    per = re.findall(r"^(\S+): (\d+) round trips, p50 ([\d.]+) us, p99 ([\d.]+) us, mean ([\d.]+) us$", text, re.M)
    ratios = {m[0]: (m[1], m[2], m[3]) for m in re.findall(
        r"^RATIO (\S+) / \S+: block p50 ratio median ([\d.]+) \[IQR ([\d.]+)-([\d.]+)\]", text, re.M)}
    params = dict(re.findall(r"^(\S+): (TLSv\S+ \S+ \S+)$", text, re.M))
    rounds = re.search(r"^(\d+) rounds of (\d+)", text, re.M)
    print(f"\n**Ping-pong RTT, one probe, everything on CPU 0** (examples/rtt_pair.rs; "
          f"{rounds.group(1) if rounds else '?'} rounds of {rounds.group(2) if rounds else '?'} round trips "
          "per entry; ratio = median over blocks of the block p50 ÷ the first entry's)\n")
    print("| entry | what | p50 µs | p99 µs | mean µs | p50 ÷ first [IQR] | TLS |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i, (entry, n, p50, p99, mean) in enumerate(per):
        r = ratios.get(entry)
        ratio = "1" if i == 0 else (f"{float(r[0]):.3f} [{float(r[1]):.3f}–{float(r[2]):.3f}]" if r else "—")
        what = names[i] if i < len(names) else ""
        print(f"| `{entry}` | {what} | {float(p50):.2f} | {float(p99):.2f} | {float(mean):.2f} | {ratio} | "
              f"{params.get(entry, '')} |")
    if not per:
        print("rtt_pair produced no figures: " + text.strip().splitlines()[-1] if text.strip() else "(empty)")
PY
log "logs and raw RESULT lines: $OUT"
