#!/usr/bin/env python3
"""Replays each capture of make-incident-check.sh and prints its verdicts by
label and every incident record: is each attack one incident?

    python3 pcaps/lab/incident_summary.py [--dir build/incidents] [NAME ...]
"""
import argparse
import collections
import json
import pathlib
import subprocess
import sys

FIELDS = ["incident_id", "state", "label", "actor", "src_ip", "src_count", "targets", "ports",
          "flows", "verdicts", "time_to_detect_ms", "ts"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="build/incidents")
    ap.add_argument("--bin", default="target/release/tidewatchd")
    ap.add_argument("names", nargs="*", default=["scan", "synflood", "synflood-rand", "hydra", "hydra-fast"])
    args = ap.parse_args()
    d = pathlib.Path(args.dir)
    for name in args.names:
        pcap, out = d / f"{name}.pcap", d / f"{name}.jsonl"
        if not pcap.exists():
            print(f"== {name}: {pcap} missing (run pcaps/lab/make-incident-check.sh)")
            continue
        subprocess.run([args.bin, "replay", str(pcap), "--output", f"json:{out}", "--workers", "1"],
                       check=True, stderr=subprocess.DEVNULL)
        labels, incidents = collections.Counter(), []
        for line in out.open():
            r = json.loads(line)
            if r["event_type"] == "verdict":
                labels[r["label"]] += 1
            elif r["event_type"] == "incident":
                incidents.append(r)
        ids = collections.Counter(r["incident_id"] for r in incidents)
        print(f"== {name}: verdicts {dict(labels)}; {len(ids)} incident(s), {len(incidents)} record(s)")
        for r in incidents:
            print("   ", {k: r.get(k) for k in FIELDS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
