#!/usr/bin/env bash
# Hostile traffic through `tidewatchd replay`, under /usr/bin/time -v, with
# explicit caps: is every cap held (peak RSS), how fast does it go against
# normal traffic, and do the counters say what was evicted or given up?
#
#   bash benches/floods.sh              # all floods (syn, frag, storm, bulk 3 GB); ~5 min on 2 cores
#   bash benches/floods.sh syn frag     # some of them
#   BULK_GB=1 KEEP=1 bash benches/floods.sh bulk
#
# Captures are written by benches/src/bin/flood_gen.rs into build/floods/
# (several GB: deleted at the end unless KEEP=1). Normal traffic is
# build/bench/bench.pcap if present (make bench), else pcaps/demo.pcap
# replayed 50 times. Caps and what happens when they are reached:
# ARCHITECTURE.md, "Caps and what happens when they are reached".
set -euo pipefail
cd "$(dirname "$0")/.."
floods=("$@")
[[ ${#floods[@]} -gt 0 ]] || floods=(syn frag storm bulk)
out=build/floods
mkdir -p "$out"
MAX_FLOWS=${MAX_FLOWS:-100000}
WORKERS=${WORKERS:-2}
BULK_GB=${BULK_GB:-3}

cargo build --release -q -p tidewatchd -p tidewatch-benches --bin flood_gen
bin=./target/release/tidewatchd
[[ -x /usr/bin/time ]] || { echo "floods: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

# One run: NAME PCAP [extra replay args]; writes $out/NAME.stats.json and $out/NAME.time.
run() {
    local name=$1 pcap=$2
    shift 2
    /usr/bin/time -v -o "$out/$name.time" "$bin" replay "$pcap" --workers "$WORKERS" --max-flows "$MAX_FLOWS" \
        --output json:/dev/null --stats json "$@" 2>"$out/$name.stderr" || {
        echo "floods: $name: tidewatchd failed:" >&2
        tail -n 5 "$out/$name.stderr" >&2
        exit 1
    }
    grep '^{' "$out/$name.stderr" | tail -n 1 >"$out/$name.stats.json"
}

if [[ -f build/bench/bench.pcap ]]; then
    echo "floods: normal traffic: build/bench/bench.pcap"
    run normal build/bench/bench.pcap
else
    echo "floods: normal traffic: pcaps/demo.pcap x 50"
    run normal pcaps/demo.pcap --loop 50
fi

for f in "${floods[@]}"; do
    case $f in
        syn) count=${SYN_PACKETS:-3000000} ;;
        frag) count=${FRAG_PACKETS:-1000000} ;;
        storm) count=${STORM_PACKETS:-2000000} ;;
        bulk) count=$BULK_GB ;;
        *) echo "floods: unknown flood $f (syn, frag, storm, bulk)" >&2; exit 2 ;;
    esac
    [[ -f $out/$f.pcap ]] || ./target/release/flood_gen "$f" "$out/$f.pcap" "$count"
    echo "floods: $f ($(du -h "$out/$f.pcap" | cut -f1))"
    run "$f" "$out/$f.pcap"
    [[ -n ${KEEP:-} ]] || rm -f "$out/$f.pcap"
done

python3 - "$out" "$MAX_FLOWS" "$WORKERS" normal "${floods[@]}" <<'EOF'
import json, re, sys
out, max_flows, workers, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def load(n):
    s = json.load(open(f"{out}/{n}.stats.json"))
    t = open(f"{out}/{n}.time").read()
    s["rss_mb"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    return s
runs = {n: load(n) for n in names}
base = runs["normal"]
print()
print(f"caps: --max-flows {max_flows} in all ({workers} workers share it); host context 65536 sources, 65536 "
      f"destinations, 131072 pairs; defrag 16384 datagrams / 32 MiB; reassembly 1 MiB per connection, "
      f"256 MiB in all (defaults)")
hdr = f"{'traffic':8} {'packets':>10} {'wall s':>7} {'pkt/s':>10} {'vs normal':>9} {'peak RSS':>9} {'flows peak':>10}  counters"
print(hdr)
print("-" * len(hdr))
for n, s in runs.items():
    ends = s["flows_ended"]
    d, r = s.get("defrag", {}), s.get("reassembly", {})
    counters = [f"flows evicted {ends['evicted']}", f"host untracked {s['host_context_untracked']}"]
    if d.get("fragments"):
        counters += [f"frags {d['fragments']}", f"defrag evicted {d['evicted']}", f"timed out {d['timed_out']}",
                     f"peak {d['peak_bytes'] / 2**20:.1f} MiB"]
    if r.get("abandoned") or r.get("gaps") or r.get("peak_buffered"):
        counters += [f"reasm abandoned {r['abandoned']}", f"gaps {r['gaps']} ({r['gap_bytes'] / 2**20:.0f} MiB)",
                     f"peak buffered {r['peak_buffered'] / 2**20:.1f} MiB"]
    ratio = s["packets_per_s"] / base["packets_per_s"] if base["packets_per_s"] else 0
    print(f"{n:8} {s['packets']:>10} {s['wall_seconds']:>7.1f} {s['packets_per_s']:>10.0f} {ratio:>8.2f}x "
          f"{s['rss_mb']:>6.0f} MB {s['flows_peak']:>10}  {', '.join(counters)}")
print(f"\n(pkt/s of the whole run: read, decode, flows, inference of every verdict; RSS from /usr/bin/time -v)")
EOF
