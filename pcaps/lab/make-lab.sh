#!/usr/bin/env bash
# Lab corpus: real tools in network namespaces, labelled from their own record.
#   bash pcaps/lab/make-lab.sh --seed N [--out build/lab] [--duration 170] [--scenario attack|everyday|heldout]
# -> OUT/lab-seedN.pcap (everyday: lab-everyday-seedN.*, heldout: lab-heldout-seedN.*), .labels.csv (first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label),
#    .flows.csv (+ tool,variant,action), .actions.jsonl, .summary.json. About 3 minutes per seed.
# Needs root (namespaces, tcpdump). Installs the Debian packages it uses when missing.
# Nothing leaves the lab: its addresses exist only inside the namespaces, no host has a
# default route, and the root namespace has no interface on the lab bridge.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SEED=1; OUT=build/lab; DURATION=170; SCENARIO=attack
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) SEED=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --scenario) SCENARIO=$2; shift 2 ;;
        *) echo "usage: $0 --seed N [--out DIR] [--duration S] [--scenario attack|everyday|heldout]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "make-lab.sh: run as root (network namespaces, tcpdump)" >&2; exit 2; fi
need=(); extra=()
for pair in nmap:nmap hping3:hping3 hydra:hydra slowhttptest:slowhttptest nginx:nginx-light \
            sshd:openssh-server ssh:openssh-client dnsmasq:dnsmasq-base vsftpd:vsftpd curl:curl \
            wget:wget openssl:openssl tcpdump:tcpdump dig:bind9-dnsutils ab:apache2-utils \
            ethtool:ethtool ip:iproute2 nft:nftables iodine:iodine nc:netcat-openbsd; do
    bin=${pair%%:*}; pkg=${pair#*:}
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
case "$SCENARIO" in
    attack) ;;
    everyday)
        # No recommends: avahi's would bring libnss-mdns, which edits the host's nsswitch.conf.
        extra=()
        for pair in chronyd:chrony udhcpc:udhcpc avahi-daemon:avahi-daemon avahi-browse:avahi-utils \
                    dbus-daemon:dbus rdisc6:ndisc6 rsync:rsync ping:iputils-ping; do
            bin=${pair%%:*}; pkg=${pair#*:}
            command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || extra+=("$pkg")
        done ;;
    heldout)
        # The attack classes made by tools the attack scenario does not use (nping comes with nmap).
        for pair in masscan:masscan ncat:ncat medusa:medusa ncrack:ncrack patator:patator siege:siege \
                    wrk:wrk dns2tcpd:dns2tcp dns2tcpc:dns2tcp; do
            bin=${pair%%:*}; pkg=${pair#*:}
            command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || extra+=("$pkg")
        done
        # scapy for Debian's own Python (lab.py runs it as /usr/bin/python3).
        /usr/bin/python3 -c 'import scapy' 2>/dev/null || extra+=(python3-scapy) ;;
    *) echo "make-lab.sh: unknown scenario $SCENARIO (attack, everyday, heldout)" >&2; exit 2 ;;
esac
if [ ${#need[@]} -gt 0 ] || [ ${#extra[@]} -gt 0 ]; then
    echo "make-lab.sh: installing ${need[*]} ${extra[*]}" >&2
    apt-get update -qq
    # policy-rc.d keeps the packages' own services from starting on the host.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.tw && chmod +x /usr/sbin/policy-rc.d.tw
    own_policy=0
    [ -e /usr/sbin/policy-rc.d ] || { cp /usr/sbin/policy-rc.d.tw /usr/sbin/policy-rc.d; own_policy=1; }
    trap '[ $own_policy = 0 ] || rm -f /usr/sbin/policy-rc.d' EXIT
    [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [ ${#extra[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
    # Removed here, not only at exit: the run's own trap below replaces this one.
    [ $own_policy = 0 ] || rm -f /usr/sbin/policy-rc.d
    rm -f /usr/sbin/policy-rc.d.tw
fi
# Never a prefix of another scenario's (tw<seed>x, twe<seed>x, twh<seed>x).
case "$SCENARIO" in attack) PREFIX="tw${SEED}x$$-" ;; everyday) PREFIX="twe${SEED}x$$-" ;; heldout) PREFIX="twh${SEED}x$$-" ;; esac
cleanup() {
    # Only this run's namespaces (the prefix holds this script's PID).
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^${PREFIX}" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
}
trap cleanup EXIT INT TERM
mkdir -p "$OUT"
start=$(date +%s)
python3 pcaps/lab/lab.py run --seed "$SEED" --out "$OUT" --duration "$DURATION" --prefix "$PREFIX" --scenario "$SCENARIO"
stem=lab-seed$SEED; [ "$SCENARIO" = attack ] || stem=lab-$SCENARIO-seed$SEED
echo "make-lab.sh: seed $SEED ($SCENARIO) done in $(( $(date +%s) - start )) s: $OUT/$stem.pcap" >&2
