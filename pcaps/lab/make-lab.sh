#!/usr/bin/env bash
# Lab corpus: real tools in network namespaces, labelled from their own record.
#   bash pcaps/lab/make-lab.sh --seed N [--out build/lab] [--duration 170]
# -> OUT/lab-seedN.pcap, .labels.csv (first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label),
#    .flows.csv (+ tool,variant,action), .actions.jsonl, .summary.json. About 3 minutes per seed.
# Needs root (namespaces, tcpdump). Installs the Debian packages it uses when missing.
# Nothing leaves the lab: its addresses exist only inside the namespaces, no host has a
# default route, and the root namespace has no interface on the lab bridge.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SEED=1; OUT=build/lab; DURATION=170
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) SEED=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        *) echo "usage: $0 --seed N [--out DIR] [--duration S]" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then echo "make-lab.sh: run as root (network namespaces, tcpdump)" >&2; exit 2; fi
need=()
for pair in nmap:nmap hping3:hping3 hydra:hydra slowhttptest:slowhttptest nginx:nginx-light \
            sshd:openssh-server ssh:openssh-client dnsmasq:dnsmasq-base vsftpd:vsftpd curl:curl \
            wget:wget openssl:openssl tcpdump:tcpdump dig:bind9-dnsutils ab:apache2-utils \
            ethtool:ethtool ip:iproute2 nft:nftables iodine:iodine nc:netcat-openbsd; do
    bin=${pair%%:*}; pkg=${pair#*:}
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "make-lab.sh: installing ${need[*]}" >&2
    apt-get update -qq
    # policy-rc.d keeps the packages' own services from starting on the host.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.tw && chmod +x /usr/sbin/policy-rc.d.tw
    [ -e /usr/sbin/policy-rc.d ] || { cp /usr/sbin/policy-rc.d.tw /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d.tw
fi
PREFIX="tw${SEED}x$$-"
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
python3 pcaps/lab/lab.py run --seed "$SEED" --out "$OUT" --duration "$DURATION" --prefix "$PREFIX"
echo "make-lab.sh: seed $SEED done in $(( $(date +%s) - start )) s: $OUT/lab-seed$SEED.pcap" >&2
