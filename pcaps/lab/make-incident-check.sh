#!/usr/bin/env bash
# Incident-grouping check: one real attack per capture, to see whether the engine reports each
# as one incident with a handful of updates ("a 1000-port scan, a 3 s flood of 300 k SYNs and a
# hydra run are each one incident").
#   bash pcaps/lab/make-incident-check.sh [--out build/incidents] [--no-rand] [--no-fast]
# -> OUT/scan.pcap        nmap -sS --top-ports 1000 -T4 against a victim with sshd:22 and HTTP:80 open
#    OUT/synflood.pcap    timeout 3 hping3 -S --flood -p 80 (real source address)
#    OUT/synflood-rand.pcap  the same with --rand-source (skipped with --no-rand)
#    OUT/hydra.pcap       hydra -l root -P <200 passwords> -t 4 ssh://VICTIM (to completion, at most 60 s)
#                         against sshd with OpenSSH's default MaxAuthTries 6: sshd drops each connection
#                         after 6 tries and hydra 9.4 then waits ~32 s (its default -w) before the next
#                         round, so the 60 s cap stops it after ~2 rounds (~9 connections, ~48 tries).
#    OUT/hydra-fast.pcap  the same against MaxAuthTries 64: 4 connections run the whole list in ~1 s
#                         (skipped with --no-fast)
#    each with X.txt: command, attacker/victim address, start/end, packet count, tcpdump's drops.
# Needs root (namespaces, tcpdump). Installs the Debian packages it uses when missing, as
# make-lab.sh does. Two namespaces (attacker, victim) joined by one veth pair; their
# addresses exist only inside them, neither has a default route, and the root namespace
# has no interface on the link, so nothing leaves. tcpdump runs in the victim namespace.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/incidents; RAND=1; FAST=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --no-rand) RAND=0; shift ;;
        --no-fast) FAST=0; shift ;;
        *) echo "usage: $0 [--out DIR] [--no-rand] [--no-fast]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "make-incident-check.sh: run as root (network namespaces, tcpdump)" >&2; exit 2; fi
need=()
for pair in nmap:nmap hping3:hping3 hydra:hydra sshd:openssh-server ssh-keygen:openssh-client \
            tcpdump:tcpdump ip:iproute2 ss:iproute2 ethtool:ethtool python3:python3; do
    bin=${pair%%:*}; pkg=${pair#*:}
    [ "$bin" = python3 ] && { [ -x /usr/bin/python3 ] || need+=("$pkg"); continue; }
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
    echo "make-incident-check.sh: installing ${need[*]}" >&2
    apt-get update -qq
    # policy-rc.d keeps the packages' own services (sshd) from starting on the host.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    trap '[ $own_policy = 0 ] || rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [ $own_policy = 0 ] || rm -f /usr/sbin/policy-rc.d
    trap - EXIT
fi

PREFIX="twi$$-"            # this run's namespaces only (the prefix holds this script's PID)
ATT="${PREFIX}att"; VIC="${PREFIX}vic"
ATT_IP=10.213.77.10; VIC_IP=10.213.77.20; NET=24
RUN=$(mktemp -d /tmp/tw-incident.XXXXXX)
CAP_PID=""
cleanup() {
    set +e
    [ -z "$CAP_PID" ] || kill -TERM "$CAP_PID" 2>/dev/null
    for ns in "$ATT" "$VIC"; do
        ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
    done
    sleep 0.5
    for ns in "$ATT" "$VIC"; do
        ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

log() { echo "[incident $(date +%H:%M:%S)] $*" >&2; }
now() { date +%s.%N; }
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%S.%3NZ; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Wait (at most $2 s) until command "${@:3}" succeeds.
wait_for() {
    local what=$1 limit=$2; shift 2
    local t0=$SECONDS
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -lt "$limit" ] || { log "timed out waiting for $what"; return 1; }
        sleep 0.2
    done
}
pkts() {   # packets in a capture
    if command -v capinfos >/dev/null 2>&1; then
        { capinfos -c -M "$1" 2>/dev/null || true; } | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}'
    else
        { timeout 90 tcpdump -r "$1" -n 2>/dev/null || true; } | wc -l
    fi
}
count() { { timeout 90 tcpdump -r "$1" -n "$2" 2>/dev/null || true; } | wc -l; }

# ---------------------------------------------------------------- the lab
mkdir -p "$OUT"
for ns in "$ATT" "$VIC"; do
    ip netns add "$ns"
    mkdir -p "/etc/netns/$ns"
    # No resolver inside: tools never try the host's DNS server.
    printf 'nameserver 127.0.0.1\n' > "/etc/netns/$ns/resolv.conf"
    printf '127.0.0.1 localhost\n%s attacker\n%s victim\n' "$ATT_IP" "$VIC_IP" > "/etc/netns/$ns/hosts"
done
ip -n "$ATT" link add eth0 type veth peer name eth0 netns "$VIC"
for pair in "$ATT:$ATT_IP" "$VIC:$VIC_IP"; do
    ns=${pair%%:*}; addr=${pair#*:}
    in_ns "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6'
    in_ns "$ns" ethtool -K eth0 tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$ns" addr add "$addr/$NET" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    if [ -n "$(ip -n "$ns" route show default)" ]; then
        log "$ns has a default route; refusing to run"; exit 1
    fi
done
# Neighbours known up front (no ARP needed for the kernel's own traffic).
att_mac=$(ip -n "$ATT" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | awk '{print $2}')
vic_mac=$(ip -n "$VIC" -o link show eth0 | grep -o 'link/ether [0-9a-f:]*' | awk '{print $2}')
ip -n "$ATT" neigh replace "$VIC_IP" lladdr "$vic_mac" dev eth0 nud permanent
ip -n "$VIC" neigh replace "$ATT_IP" lladdr "$att_mac" dev eth0 nud permanent
log "attacker $ATT ($ATT_IP, $att_mac) <-> victim $VIC ($VIC_IP, $vic_mac); work dir $RUN"

# ---------------------------------------------------------------- victim services
listening() { in_ns "$VIC" ss -Hltn "sport = :$1" | grep -q LISTEN; }
not_listening() { ! listening "$1"; }
ssh-keygen -q -t ed25519 -N '' -f "$RUN/ssh_host_ed25519_key"
SSHD_PID=""
start_sshd() {   # MaxAuthTries
    local tries=$1
    if [ -n "$SSHD_PID" ]; then
        kill -TERM "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
        SSHD_PID=""
        wait_for "sshd to stop" 15 not_listening 22
    fi
    cat > "$RUN/sshd_config" <<EOF
Port 22
ListenAddress $VIC_IP
HostKey $RUN/ssh_host_ed25519_key
PidFile $RUN/sshd.pid
AuthorizedKeysFile $RUN/authorized_keys
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
MaxStartups 200:30:400
MaxAuthTries $tries
LoginGraceTime 20
UseDNS no
EOF
    # OpenSSH >= 9.8 would penalise the brute-forcing source (connections refused); off so hydra runs its list.
    if /usr/sbin/sshd -t -f <(cat "$RUN/sshd_config"; echo "PerSourcePenalties no") >/dev/null 2>&1; then
        echo "PerSourcePenalties no" >> "$RUN/sshd_config"
    fi
    /usr/sbin/sshd -t -f "$RUN/sshd_config"
    : > "$RUN/sshd.log"
    ip netns exec "$VIC" /usr/sbin/sshd -D -e -f "$RUN/sshd_config" 2> "$RUN/sshd.log" &
    SSHD_PID=$!
    wait_for "sshd" 15 listening 22
}
mkdir -p /run/sshd   # sshd's privilege-separation directory (sshd -t checks it too)
mkdir -p "$RUN/www"; printf '<html><body>victim</body></html>\n' > "$RUN/www/index.html"
ip netns exec "$VIC" /usr/bin/python3 -m http.server 80 --bind "$VIC_IP" --directory "$RUN/www" >/dev/null 2>&1 &
start_sshd 6
wait_for "http" 15 listening 80
log "victim listens on 22 (sshd) and 80 (http)"

# ---------------------------------------------------------------- capture
cap_start() {   # name snaplen
    local name=$1 snap=$2
    rm -f "$OUT/$name.pcap"
    # Not through in_ns: `ip netns exec` execs tcpdump, so $! is tcpdump itself.
    ip netns exec "$VIC" tcpdump -i eth0 -n -s "$snap" -B 65536 -Z root -w "$OUT/$name.pcap" 2> "$RUN/$name.tcpdump.log" &
    CAP_PID=$!
    wait_for "tcpdump ($name)" 15 grep -q "listening on" "$RUN/$name.tcpdump.log" || {
        cat "$RUN/$name.tcpdump.log" >&2; return 1; }
    sleep 0.5
    CAP_T0=$(now)
}
cap_stop() {    # name
    local name=$1
    sleep 2
    # TERM, not INT: a background job of a non-interactive shell ignores SIGINT.
    kill -TERM "$CAP_PID" 2>/dev/null || true
    local t0=$SECONDS
    while kill -0 "$CAP_PID" 2>/dev/null && [ $((SECONDS - t0)) -lt 30 ]; do sleep 0.2; done
    kill -0 "$CAP_PID" 2>/dev/null && kill -9 "$CAP_PID" 2>/dev/null
    wait "$CAP_PID" 2>/dev/null || true
    CAP_PID=""
    CAP_T1=$(now)
    CAP_STATS=$(grep -E "packets (captured|received by filter|dropped by kernel)" "$RUN/$name.tcpdump.log" | paste -sd ';' | sed 's/;/; /g' || true)
    CAP_DROPS=$(awk '/dropped by kernel/ {print $1}' "$RUN/$name.tcpdump.log")
}
note() {        # name tool command t0 t1 extra...
    local name=$1 tool=$2 cmd=$3 t0=$4 t1=$5; shift 5
    local n; n=$(pkts "$OUT/$name.pcap")
    {
        echo "capture: $name.pcap"
        echo "tool: $tool"
        echo "command: $cmd"
        echo "attacker_ip: $ATT_IP (namespace attacker, eth0 $att_mac)"
        echo "victim_ip: $VIC_IP (namespace victim, eth0 $vic_mac; sshd on 22, python3 http.server on 80)"
        echo "tool_start: $(iso "$t0") ($t0)"
        echo "tool_end: $(iso "$t1") ($t1)"
        echo "tool_seconds: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')"
        echo "capture: tcpdump -i eth0 -n -s $SNAP -B 65536 in the victim namespace, $(iso "$CAP_T0") .. $(iso "$CAP_T1")"
        echo "packets: $n"
        echo "tcpdump: $CAP_STATS"
        echo "dropped_by_kernel: ${CAP_DROPS:-?}"
        for x in "$@"; do echo "$x"; done
    } > "$OUT/$name.txt"
    log "$name.pcap: $n packets, tcpdump dropped ${CAP_DROPS:-?} ($OUT/$name.txt)"
}

# ---------------------------------------------------------------- 1. nmap SYN scan
SNAP=0
cap_start scan $SNAP
cmd=(nmap -n -sS --top-ports 1000 -T4 "$VIC_IP")
t0=$(now)
timeout -k 5 85 ip netns exec "$ATT" "${cmd[@]}" > "$RUN/nmap.out" 2>&1 || log "nmap exited $?"
t1=$(now)
cap_stop scan
cp "$RUN/nmap.out" "$OUT/scan.tool.log"
note scan nmap "${cmd[*]}" "$t0" "$t1" \
    "syn_to_victim: $(count "$OUT/scan.pcap" "src $ATT_IP and dst $VIC_IP and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")" \
    "distinct_dst_ports: $(timeout 90 tcpdump -r "$OUT/scan.pcap" -n "src $ATT_IP and dst $VIC_IP and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn" 2>/dev/null | awk '{print $5}' | sed 's/.*\.//; s/://' | sort -u | wc -l)" \
    "nmap_result: $(grep -E '^[0-9]+/tcp|Not shown|Nmap done' "$RUN/nmap.out" | paste -sd ';' | sed 's/;/; /g')"

# ---------------------------------------------------------------- 2. hping3 SYN flood
flood() {   # name extra-args...
    local name=$1; shift
    SNAP=96
    cap_start "$name" $SNAP
    local cmd=(hping3 -S --flood -p 80 "$@" "$VIC_IP")
    local t0 t1
    t0=$(now)
    # SIGINT (not TERM) so hping3 prints its own count; -k: KILL if it ignores that.
    timeout -s INT -k 3 3 ip netns exec "$ATT" "${cmd[@]}" > "$RUN/$name.hping.out" 2>&1 || true
    t1=$(now)
    cap_stop "$name"
    local syn synack rst
    syn=$(count "$OUT/$name.pcap" "dst $VIC_IP and tcp dst port 80 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
    synack=$(count "$OUT/$name.pcap" "src $VIC_IP and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")
    rst=$(count "$OUT/$name.pcap" "dst $VIC_IP and tcp[tcpflags] & tcp-rst != 0")
    note "$name" hping3 "timeout -s INT 3 ${cmd[*]}" "$t0" "$t1" \
        "syn_to_victim: $syn" "synack_from_victim: $synack" "rst_to_victim: $rst" \
        "hping3_says: $(grep -E 'packets transmitted|round-trip' "$RUN/$name.hping.out" | paste -sd ';' | sed 's/;/; /g')"
}
flood synflood
[ "$RAND" = 0 ] || flood synflood-rand --rand-source

# ---------------------------------------------------------------- 3. hydra against sshd
# 200 candidate passwords, none of them right (root may not log in with a password at all).
/usr/bin/python3 - "$RUN/passwords.txt" <<'EOF'
import itertools, sys
base = ["password", "123456", "qwerty", "letmein", "admin", "welcome", "monkey", "dragon", "master",
        "shadow", "sunshine", "princess", "football", "baseball", "trustno1", "superman", "iloveyou",
        "starwars", "passw0rd", "root", "toor", "changeme", "secret", "default", "hunter2"]
suffix = ["", "1", "123", "!", "2023", "2024", "01", "@1"]
words = [b + s for s, b in itertools.product(suffix, base)]
open(sys.argv[1], "w").write("\n".join(words[:200]) + "\n")
EOF
cp "$RUN/passwords.txt" "$OUT/hydra-passwords.txt"
brute() {   # name MaxAuthTries
    local name=$1 tries=$2
    start_sshd "$tries"
    SNAP=0
    cap_start "$name" $SNAP
    local cmd=(hydra -l root -P "$RUN/passwords.txt" -t 4 "ssh://$VIC_IP")
    local t0 t1 rc=0
    rm -f "$RUN/hydra.restore"
    t0=$(now)
    ( cd "$RUN" && timeout -k 5 60 ip netns exec "$ATT" "${cmd[@]}" > "$RUN/$name.out" 2>&1 ) || rc=$?
    t1=$(now)
    [ $rc = 0 ] || log "hydra exited $rc (124: stopped at 60 s)"
    cap_stop "$name"
    tr -d '\r' < "$RUN/$name.out" > "$OUT/$name.tool.log"
    note "$name" hydra "hydra -l root -P hydra-passwords.txt -t 4 ssh://$VIC_IP   (cwd: a fresh temp dir; list: $OUT/hydra-passwords.txt, 200 lines)" "$t0" "$t1" \
        "hydra_exit: $rc$([ $rc = 124 ] && echo ' (stopped by the 60 s cap)')" \
        "tcp_connections_to_22: $(count "$OUT/$name.pcap" "src $ATT_IP and dst $VIC_IP and tcp dst port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")" \
        "hydra_says: $(grep -E 'attacking|completed|valid password|ERROR|WARNING|finished' "$OUT/$name.tool.log" | paste -sd ';' | sed 's/;/; /g')" \
        "sshd_failed_passwords: $(grep -c 'Failed password' "$RUN/sshd.log" || true)" \
        "sshd_config: PasswordAuthentication yes, PermitRootLogin prohibit-password, MaxAuthTries $tries, MaxStartups 200:30:400"
}
brute hydra 6
[ "$FAST" = 0 ] || brute hydra-fast 64
log "done: $(ls "$OUT"/*.pcap | paste -sd ' ')"
