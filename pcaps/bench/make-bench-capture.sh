#!/usr/bin/env bash
# make-bench-capture.sh — record a large benchmark capture of REAL mixed traffic.
#
#   sudo bash pcaps/bench/make-bench-capture.sh [--out PATH] [--packets N] [--max-seconds S]
#
# Builds a private lab out of network namespaces (one "switch" namespace holding
# a Linux bridge, two server namespaces, four client namespaces, veth pairs, the
# private ranges 10.203.0.0/24 and fd74:7762::/64 that exist only there, no
# default route anywhere), runs real Debian servers (nginx HTTP/HTTPS, dnsmasq
# DNS, iperf3) and clients (curl, dig, iperf3, ping) in them, and captures on
# the bridge with tcpdump until the packet target (or the time limit) is hit.
# Everything it creates is removed on exit, also on failure or Ctrl-C.
# See README.md beside this file.
set -Eeuo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
ROOT=$(cd "$HERE/../.." && pwd)
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Never let a client reach for a proxy (or anything else) outside the lab.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy no_proxy NO_PROXY

# --- the lab's addresses (exist only inside the namespaces) ------------------
S1_4=10.203.0.1   S1_6=fd74:7762::1    # web (nginx :80 :443) + DNS (dnsmasq :53)
S2_4=10.203.0.2   S2_6=fd74:7762::2    # bulk (iperf3 :5201-5206)
# clients c1-c4: 10.203.0.11-14, fd74:7762::11-14
export S1_4 S1_6 S2_4 S2_6

# --- traffic generators (run inside a client namespace as: SELF __gen KIND ID)
# Each is a loop bounded in count (ITERS) and, from outside, in time (timeout);
# every single client command has its own timeout too.
ITERS=100000
CURL=(curl -q -s -g --noproxy '*' --connect-timeout 3)

addr() { # addr 4|6 s1|s2 -> the server's address
  local v="S${2#s}_$1"
  echo "${!v}"
}
url_host() { # url_host 4|6 s1|s2 -> the address as a URL host ([v6])
  if [[ $1 == 6 ]]; then echo "[$(addr "$1" "$2")]"; else addr "$1" "$2"; fi
}

gen_http() { # many short HTTP/1.1 connections, some keep-alive, a few refused
  local id=$1 i fam
  for ((i = 0; i < ITERS; i++)); do
    fam=$(((i + id) % 2 ? 6 : 4))
    if ((i % 3 == 2)); then # keep-alive: the whole list over one connection
      timeout 30 "${CURL[@]}" --http1.1 -K "$TWB_TMP/urls-http-ka-v$fam.txt"
    else # one connection per request
      timeout 30 "${CURL[@]}" --http1.1 -H 'Connection: close' -K "$TWB_TMP/urls-http-short-v$fam.txt"
    fi
    if ((i % 8 == 7)); then # closed port: SYN, RST
      timeout 5 "${CURL[@]}" "http://$(url_host $fam s1):8080/"
    fi
    sleep "$TWB_PAUSE"
  done
}

gen_https() { # TLS: new handshakes per request, keep-alive, HTTP/2, TLS 1.2 and 1.3
  local id=$1 i fam
  for ((i = 0; i < ITERS; i++)); do
    fam=$(((i + id) % 2 ? 6 : 4))
    case $((i % 4)) in
      0) timeout 30 "${CURL[@]}" -k --http1.1 -H 'Connection: close' -K "$TWB_TMP/urls-https-short-v$fam.txt" ;;
      1) timeout 30 "${CURL[@]}" -k --http1.1 -K "$TWB_TMP/urls-https-ka-v$fam.txt" ;;
      2) timeout 30 "${CURL[@]}" -k --http2 -K "$TWB_TMP/urls-https-ka-v$fam.txt" ;;
      3) timeout 30 "${CURL[@]}" -k --http1.1 --tlsv1.2 --tls-max 1.2 -H 'Connection: close' -K "$TWB_TMP/urls-https-short-v$fam.txt" ;;
    esac
    sleep "$TWB_PAUSE"
  done
}

gen_large() { # large-file downloads at a bounded rate (bulk TCP over HTTP/HTTPS)
  local id=$1 i fam
  for ((i = 0; i < ITERS; i++)); do
    fam=$(((i + id) % 2 ? 6 : 4))
    if ((i % 2)); then
      timeout 60 "${CURL[@]}" -k --limit-rate 1M "https://$(url_host $fam s1)/l/16m.bin" >/dev/null
    else
      timeout 60 "${CURL[@]}" --limit-rate 1M "http://$(url_host $fam s1)/l/16m.bin" >/dev/null
    fi
    sleep 1
  done
}

gen_dns() { # DNS over UDP (and a little over TCP) from a batch file, v4 and v6
  local id=$1 i
  for ((i = 0; i < ITERS; i++)); do
    timeout 120 dig +tries=1 +time=1 +noall +answer -f "$TWB_TMP/dns-$id.txt"
    sleep "$(awk -v p="$TWB_PAUSE" 'BEGIN{print p*4}')"
  done
}

gen_ping() { # ICMP / ICMPv6 echo, various sizes (2000 bytes: fragmented)
  local id=$1 i fam sizes=(56 120 512 1000 1400 56 2000) dst
  for ((i = 0; i < ITERS; i++)); do
    fam=$(((i + id) % 2 ? 6 : 4))
    if ((i % 3 == 2)); then dst=s2; else dst=s1; fi
    dst=$(addr $fam $dst)
    timeout 30 ping -"$fam" -q -n -c 50 -i 0.02 -W 1 -s "${sizes[i % ${#sizes[@]}]}" "$dst"
    sleep "$TWB_PAUSE"
  done
}

gen_iperf() { # gen_iperf ID PORT FAM ARGS... : one long-lived iperf3 test (retried, bounded)
  local id=$1 port=$2 fam=$3 i dst
  shift 3
  dst=$(addr "$fam" s2)
  for ((i = 0; i < 20; i++)); do
    timeout "$((TWB_MAXT + 10))" iperf3 -"$fam" -c "$dst" -p "$port" -i 0 -t "$TWB_MAXT" "$@" && break
    sleep 1
  done
}

gen_burst() { # short bulk TCP transfers: 3 s, 2 parallel streams, alternating v4/v6
  local id=$1 port=$2 i fam dst
  for ((i = 0; i < ITERS; i++)); do
    fam=$(((i + id) % 2 ? 6 : 4))
    dst=$(addr "$fam" s2)
    timeout 15 iperf3 -"$fam" -c "$dst" -p "$port" -i 0 -t 3 -P 2 -b 4M
    sleep 2
  done
}

gen_main() {
  set +e
  local kind=$1
  shift
  case $kind in
    http | https | large | dns | ping | iperf | burst) "gen_$kind" "$@" ;;
    *) echo "unknown generator $kind" >&2; exit 2 ;;
  esac
}

# --- the main script ------------------------------------------------------------
usage() {
  cat <<EOF
usage: $0 [--out PATH] [--packets N] [--max-seconds S] [--pause S] [--keep-tmp]
  --out PATH        capture file (default: build/bench/bench.pcap in the repo)
  --packets N       packets to capture (default 1200000); tcpdump stops there
  --max-seconds S   capture time limit (default 480); traffic stops at whichever comes first
  --pause S         pause between short-connection client runs (default 0.5)
  --keep-tmp        keep the temporary directory (configs, logs) for inspection
Run as root. Installs what is missing with apt-get.
EOF
}

main() {
  OUT="$ROOT/build/bench/bench.pcap"
  PACKETS=1200000
  MAXT=480
  PAUSE=0.5
  KEEP_TMP=0
  while (($#)); do
    case $1 in
      --out) OUT=${2:?--out needs a path}; shift 2 ;;
      --out=*) OUT=${1#*=}; shift ;;
      --packets) PACKETS=${2:?--packets needs a number}; shift 2 ;;
      --packets=*) PACKETS=${1#*=}; shift ;;
      --max-seconds) MAXT=${2:?--max-seconds needs a number}; shift 2 ;;
      --max-seconds=*) MAXT=${1#*=}; shift ;;
      --pause) PAUSE=${2:?--pause needs a number}; shift 2 ;;
      --keep-tmp) KEEP_TMP=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *) echo "make-bench-capture: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
  done
  [[ $PACKETS =~ ^[0-9]+$ && $PACKETS -gt 0 ]] || { echo "make-bench-capture: --packets must be a positive integer" >&2; exit 2; }
  [[ $MAXT =~ ^[0-9]+$ && $MAXT -gt 0 ]] || { echo "make-bench-capture: --max-seconds must be a positive integer" >&2; exit 2; }
  [[ $PAUSE =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "make-bench-capture: --pause must be a number" >&2; exit 2; }
  if ((EUID != 0)); then
    echo "make-bench-capture: run as root (it creates network namespaces and installs packages)" >&2
    exit 2
  fi
  [[ $OUT == /* ]] || OUT="$PWD/$OUT"

  T0=$(date +%s.%N)
  NSES=()
  TMPD=""
  POLICY_CREATED=""
  FINISHED=0
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP

  install_missing
  remove_stale_namespaces
  mkdir -p "$(dirname "$OUT")"
  TMPD=$(mktemp -d /tmp/twbench.XXXXXX)
  chmod 0755 "$TMPD"
  prepare_files
  build_lab
  start_servers

  local sw=$NSP-sw rc=0 tstart tend
  log "capturing on br0 in $sw: target $PACKETS packets, time limit ${MAXT}s -> $OUT"
  rm -f "$OUT.partial"
  ip netns exec "$sw" timeout -s INT -k 10 "$MAXT" \
    tcpdump -i br0 -n -s 0 -B 65536 -Z root -c "$PACKETS" -w "$OUT.partial" 2>"$TMPD/tcpdump.log" &
  TCPD=$!
  wait_for "tcpdump" 10 grep -q "listening on" "$TMPD/tcpdump.log"
  tstart=$(date +%s.%N)
  start_clients
  wait "$TCPD" || rc=$?
  tend=$(date +%s.%N)
  stop_ns_procs
  if ((rc == 124)); then
    log "time limit of ${MAXT}s reached before $PACKETS packets"
  elif ((rc != 0)); then
    cat "$TMPD/tcpdump.log" >&2
    die "tcpdump failed (exit $rc)"
  fi
  [[ -s $OUT.partial ]] || die "no capture written"
  mv -f "$OUT.partial" "$OUT"
  FINISHED=1

  local count size info=""
  size=$(stat -c %s "$OUT")
  if command -v capinfos >/dev/null; then
    info=$(capinfos -M -c -E -u -i -z -x "$OUT")
    count=$(awk -F': *' '/^Number of packets/ {print $2}' <<<"$info")
  else
    count=$(tcpdump -n -r "$OUT" 2>/dev/null | wc -l)
  fi
  echo
  echo "== bench capture =="
  echo "file:     $OUT"
  echo "packets:  $count (target $PACKETS)"
  echo "size:     $size bytes ($(awk -v s="$size" 'BEGIN{printf "%.1f", s/1048576}') MiB)"
  echo "traffic:  $(awk -v a="$tstart" -v b="$tend" 'BEGIN{printf "%.1f", b-a}') s"
  echo "tcpdump:  $(grep -E 'captured|received|dropped' "$TMPD/tcpdump.log" | paste -sd ';' | sed 's/;/; /g')"
  echo "wall:     $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s in all (install, setup, capture, counting)"
  if [[ -n $info ]]; then
    grep -E 'encapsulation|Capture duration|Average packet size|Average packet rate|Data bit rate' <<<"$info" || true
  fi
  if ((count < PACKETS)); then
    echo "make-bench-capture: WARNING: only $count of $PACKETS packets (time limit); the file is kept" >&2
    exit 3
  fi
}

log() { printf '[make-bench-capture %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

wait_for() { # wait_for WHAT SECONDS CMD... : poll CMD every 0.2 s
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${secs}s (logs: $TMPD)"
}

# package -> a command it provides
install_missing() {
  local -a need=()
  local pair pkg cmd
  for pair in iproute2:ip iproute2:ss tcpdump:tcpdump nginx:nginx curl:curl openssl:openssl \
    dnsmasq-base:dnsmasq bind9-dnsutils:dig iperf3:iperf3 iputils-ping:ping ethtool:ethtool; do
    pkg=${pair%%:*} cmd=${pair#*:}
    if [[ $cmd == ping ]]; then
      ping -V 2>&1 | grep -q iputils && continue
    else
      command -v "$cmd" >/dev/null 2>&1 && continue
    fi
    [[ " ${need[*]} " == *" $pkg "* ]] || need+=("$pkg")
  done
  ((${#need[@]})) || return 0
  command -v apt-get >/dev/null || die "missing ${need[*]} and no apt-get to install them"
  log "installing: ${need[*]}"
  # Keep the packages' services (nginx, dnsmasq, iperf3) from starting on the host.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [[ -n $POLICY_CREATED ]]; then rm -f /usr/sbin/policy-rc.d; POLICY_CREATED=""; fi
}

# Namespaces of an earlier run of this script that was killed outright (SIGKILL).
remove_stale_namespaces() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^twb-[0-9]+-' || true); do
    pid=${ns#twb-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null && continue
    log "removing stale namespace $ns"
    kill_ns_procs "$ns"
    ip netns del "$ns" 2>/dev/null || true
  done
}

kill_ns_procs() { # kill_ns_procs NS...: end the processes inside our namespaces, by id
  local ns pids i
  for ((i = 0; i < 15; i++)); do
    pids=""
    for ns in "$@"; do pids+=" $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"; done
    [[ -n ${pids// /} ]] || return 0
    if ((i < 10)); then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
    sleep 0.3
  done
}

stop_ns_procs() {
  ((${#NSES[@]})) || return 0
  kill_ns_procs "${NSES[@]}"
  wait 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  set +e
  stop_ns_procs
  local ns
  for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [[ -n $POLICY_CREATED ]] && rm -f /usr/sbin/policy-rc.d
  ((FINISHED)) || rm -f "$OUT.partial"
  if [[ -n $TMPD ]]; then
    if ((KEEP_TMP)); then log "kept $TMPD"; else rm -rf "$TMPD"; fi
  fi
  ((rc == 0)) || log "exit $rc; namespaces and processes cleaned up"
  exit "$rc"
}

prepare_files() {
  local t=$TMPD i f
  mkdir -p "$t/www/s" "$t/www/m" "$t/www/l" "$t/tls" "$t/nginx"
  # Web content of fixed sizes: small pages, medium and large binaries.
  for i in $(seq 1 16); do
    head -c $((i * i * 37 + 180)) /dev/urandom | base64 -w 76 >"$t/www/s/$i.html"
  done
  echo '<html><body>tidewatch bench</body></html>' >"$t/www/index.html"
  for f in 32k 128k 512k; do head -c "${f%k}K" /dev/urandom >"$t/www/m/$f.bin"; done
  head -c 16M /dev/urandom >"$t/www/l/16m.bin"
  chmod -R a+rX "$t/www"

  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test,DNS:www.bench.test,IP:$S1_4,IP:$S1_6" \
    -keyout "$t/tls/key.pem" -out "$t/tls/cert.pem" 2>/dev/null

  cat >"$t/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $t/nginx/nginx.pid;
error_log $t/nginx/error.log warn;
user nobody nogroup;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    keepalive_requests 100000;
    types { text/html html; application/octet-stream bin; }
    default_type application/octet-stream;
    client_body_temp_path $t/nginx/body;
    proxy_temp_path $t/nginx/proxy;
    fastcgi_temp_path $t/nginx/fastcgi;
    uwsgi_temp_path $t/nginx/uwsgi;
    scgi_temp_path $t/nginx/scgi;
    server {
        listen $S1_4:80;
        listen [$S1_6]:80;
        listen $S1_4:443 ssl http2;
        listen [$S1_6]:443 ssl http2;
        server_name bench.test www.bench.test;
        ssl_certificate $t/tls/cert.pem;
        ssl_certificate_key $t/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $t/www;
    }
}
EOF

  # URL lists for curl -K: small pages, a small file and a 404 ("short"); the
  # keep-alive list ("ka") adds medium files.
  local fam host scheme list
  for fam in 4 6; do
    host=$(url_host "$fam" s1)
    for scheme in http https; do
      list="$t/urls-$scheme-short-v$fam.txt"
      : >"$list"
      for i in $(seq 1 16); do echo "url = \"$scheme://$host/s/$i.html\"" >>"$list"; done
      echo "url = \"$scheme://$host/\"" >>"$list"
      echo "url = \"$scheme://$host/m/32k.bin\"" >>"$list"
      echo "url = \"$scheme://$host/missing.html\"" >>"$list"
      cp "$list" "$t/urls-$scheme-ka-v$fam.txt"
      echo "url = \"$scheme://$host/m/128k.bin\"" >>"$t/urls-$scheme-ka-v$fam.txt"
      if [[ $scheme == http ]]; then echo "url = \"$scheme://$host/m/512k.bin\"" >>"$t/urls-$scheme-ka-v$fam.txt"; fi
    done
  done

  # DNS batches for dig -f: A/AAAA/MX/TXT, existing and non-existing names, v4 and v6 server.
  local names=(www api cdn mail db auth static img video git) c n srv
  for c in 1 2 3 4; do
    f="$t/dns-$c.txt"
    : >"$f"
    for i in $(seq 1 400); do
      if (((i + c) % 2)); then srv=$S1_4; else srv=$S1_6; fi
      n=${names[(i * 7 + c) % ${#names[@]}]}
      case $((i % 10)) in
        0 | 5) echo "@$srv h$c-$i.bench.test A" ;;
        1 | 2 | 6) echo "@$srv $n.bench.test A" ;;
        3 | 7) echo "@$srv $n.bench.test AAAA" ;;
        4) echo "@$srv bench.test MX" ;;
        8) echo "@$srv bench.test TXT" ;;
        9) # mostly reverse lookups; now and then over TCP (dig sends ANY over TCP)
          if ((i % 40 == 19)); then echo "@$srv $n.bench.test ANY"
          elif ((i % 40 == 39)); then echo "@$srv $n.bench.test A +tcp"
          else echo "@$srv -x 10.203.0.$((i % 3 == 0 ? 2 : 1))"; fi ;;
      esac >>"$f"
    done
  done
}

NSP="twb-$$"

add_host() { # add_host NAME V4 V6: a namespace with eth0 on the lab bridge
  local name=$1 v4=$2 v6=$3 ns=$NSP-$1 sw=$NSP-sw feat
  ip netns add "$ns"
  NSES+=("$ns")
  ip -n "$sw" link add name "p-$name" type veth peer name eth0 netns "$ns"
  ip -n "$sw" link set "p-$name" master br0
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "$v4/24" dev eth0
  ip -n "$ns" addr add "$v6/64" dev eth0 nodad
  # Real wire-sized frames with correct checksums in the capture: no offloads.
  for feat in tx sg tso gso gro; do
    ip netns exec "$ns" ethtool -K eth0 "$feat" off >/dev/null 2>&1 || true
    ip netns exec "$sw" ethtool -K "p-$name" "$feat" off >/dev/null 2>&1 || true
  done
  ip -n "$ns" link set eth0 up
  ip -n "$sw" link set "p-$name" up
}

build_lab() {
  local sw=$NSP-sw i
  log "building the lab: namespaces $NSP-{sw,s1,s2,c1..c4}"
  ip netns add "$sw"
  NSES+=("$sw")
  ip netns exec "$sw" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$sw" link set lo up
  ip -n "$sw" link add name br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$sw" link set br0 up
  add_host s1 "$S1_4" "$S1_6"
  add_host s2 "$S2_4" "$S2_6"
  for i in 1 2 3 4; do add_host "c$i" "10.203.0.1$i" "fd74:7762::1$i"; done
  # No default route anywhere: only the lab's own /24 and /64 are reachable.
  for i in 1 2 3 4; do
    wait_for "c$i -> s1 (IPv4)" 10 ip netns exec "$NSP-c$i" ping -4 -q -c 1 -W 1 "$S1_4"
    wait_for "c$i -> s1 (IPv6)" 10 ip netns exec "$NSP-c$i" ping -6 -q -c 1 -W 1 "$S1_6"
  done
}

start_servers() {
  local s1=$NSP-s1 s2=$NSP-s2 p
  log "starting nginx and dnsmasq in $s1, iperf3 in $s2"
  ip netns exec "$s1" nginx -e "$TMPD/nginx/error.log" -c "$TMPD/nginx/nginx.conf" \
    >"$TMPD/nginx/stdout.log" 2>&1 &
  ip netns exec "$s1" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --bind-interfaces --listen-address="$S1_4" --listen-address="$S1_6" --port=53 \
    --user=nobody --group=nogroup --pid-file="$TMPD/dnsmasq.pid" --log-facility="$TMPD/dnsmasq.log" \
    --local=/bench.test/ --domain-needed --bogus-priv --cache-size=1000 \
    --host-record=bench.test,"$S1_4","$S1_6" \
    --host-record=www.bench.test,"$S1_4","$S1_6" --host-record=api.bench.test,"$S1_4","$S1_6" \
    --host-record=cdn.bench.test,"$S1_4","$S1_6" --host-record=static.bench.test,"$S1_4","$S1_6" \
    --host-record=img.bench.test,"$S1_4","$S1_6" --host-record=video.bench.test,"$S2_4","$S2_6" \
    --host-record=mail.bench.test,"$S2_4","$S2_6" --host-record=db.bench.test,"$S2_4","$S2_6" \
    --host-record=auth.bench.test,"$S1_4","$S1_6" --host-record=git.bench.test,"$S2_4","$S2_6" \
    --mx-host=bench.test,mail.bench.test,10 --txt-record=bench.test,"v=spf1 -all" \
    --txt-record=bench.test,"tidewatch-bench=1" >"$TMPD/dnsmasq.stdout" 2>&1 &
  for p in 5201 5202 5203 5204 5205 5206; do
    ip netns exec "$s2" iperf3 -s -p "$p" >"$TMPD/iperf3-$p.log" 2>&1 &
  done
  wait_for "nginx" 10 bash -c "ip netns exec $s1 ss -Hltn 'sport = :443' | grep -q ."
  wait_for "dnsmasq" 10 bash -c "ip netns exec $s1 ss -Hlun 'sport = :53' | grep -q ."
  wait_for "iperf3" 10 bash -c "[[ \$(ip netns exec $s2 ss -Hltn 'sport >= :5201 and sport <= :5206' | wc -l) -ge 6 ]]"
  # Smoke test, before the capture starts.
  ip netns exec "$NSP-c1" timeout 10 "${CURL[@]}" -o /dev/null -f "http://$S1_4/" || die "nginx (http) does not answer"
  ip netns exec "$NSP-c1" timeout 10 "${CURL[@]}" -o /dev/null -f -k "https://[$S1_6]/" || die "nginx (https, v6) does not answer"
  ip netns exec "$NSP-c1" timeout 10 dig +short +tries=1 +time=2 "@$S1_4" www.bench.test A | grep -q "$S1_4" ||
    die "dnsmasq does not answer"
}

spawn() { # spawn CLIENT KIND ARGS...: a generator in CLIENT's namespace, bounded in time
  local c=$1 kind=$2
  shift 2
  ip netns exec "$NSP-$c" timeout -k 5 "$((MAXT + 5))" nice -n 10 \
    env TWB_TMP="$TMPD" TWB_PAUSE="$PAUSE" TWB_MAXT="$MAXT" bash "$SELF" __gen "$kind" "$@" \
    >/dev/null 2>>"$TMPD/gen-$c-$kind.log" &
}

start_clients() {
  log "starting clients in $NSP-c1..c4"
  local i
  for i in 1 2 3 4; do
    spawn "c$i" http "$i"
    spawn "c$i" https "$i"
    spawn "c$i" dns "$i"
    spawn "c$i" ping "$i"
  done
  # Long-lived bulk TCP (one each way, v4 and v6) and UDP streams for the whole capture.
  spawn c1 iperf 1 5201 4 -b 2M
  spawn c2 iperf 2 5202 6 -b 2M -R
  spawn c3 iperf 3 5203 4 -u -b 512K -l 160
  spawn c4 iperf 4 5204 6 -u -b 1M -l 1200
  spawn c2 iperf 2 5206 6 -u -b 256K -l 80 -R
  # Short bulk TCP bursts and rate-limited large downloads.
  spawn c3 burst 3 5205
  spawn c4 large 4
}

if [[ ${1:-} == __gen ]]; then
  shift
  gen_main "$@"
else
  main "$@"
fi
