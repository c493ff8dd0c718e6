#!/usr/bin/env python3
"""Run Tidewatch and its peers on one capture, N rounds, and print the table.

Called by compare.sh (which installs and builds what is missing); standard
library only. Every round runs every tool once, in the same order, so slow
drift of the machine hits all tools alike; the median of the N rounds is
reported. Writes the same table as JSON to build/peers.json.

seconds (what is timed):
  tidewatch  its own `wall_seconds` (engine.run: read, decode, flows,
             features, ONNX inference, JSON to /dev/null; excludes process
             start and model load)
  nfstream   NFStreamer() construction to the last flow iterated (excludes
             the Python interpreter's start and imports)
  flowscope  pcap open to the last flow's features (excludes process start)
  tshark     whole-process wall time minus the median wall time of the same
             command on a 1-packet cut of the file (tshark's start-up:
             dissector registration), measured in the same rounds
The whole-process wall time of every tool is also recorded (JSON and the
second table).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run(cmd, timeout=3600):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    return p, wall


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise ValueError("no JSON line in output")


def why(p):
    tail = (p.stderr or p.stdout or "").strip().splitlines()
    return f"exit {p.returncode}: " + (tail[-1] if tail else "(no output)")


def capture_packets(path):
    if shutil.which("capinfos"):
        p = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True)
        m = re.search(r"Number of packets:\s*(\d+)", p.stdout)
        if m:
            return int(m.group(1))
    return None


class Tool:
    def __init__(self, name, version, cmd, parse):
        self.name, self.version, self.cmd, self.parse = name, version, cmd, parse
        self.samples = []  # dicts: packets, flows, seconds, wall
        self.error = None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tidewatchd", default=str(ROOT / "target/release/tidewatchd"))
    ap.add_argument("--venv-python", default=str(ROOT / ".venv-peers/bin/python"))
    ap.add_argument("--flowscope-bin", default="/tmp/peers-target/release/flowscope-peer")
    ap.add_argument("--nfstream-dissections", type=int, default=0)
    ap.add_argument("--json-out", default=str(ROOT / "build/peers.json"))
    a = ap.parse_args()

    cap = Path(a.file).resolve()
    if not cap.is_file():
        sys.exit(f"compare: no such capture: {cap}")
    cap_packets = capture_packets(cap)
    skipped = []  # (tool, reason)
    tools = []

    # ---- Tidewatch --------------------------------------------------------
    tw = a.tidewatchd
    tw_version = subprocess.run([tw, "--version"], capture_output=True, text=True).stdout.strip()
    helptext = subprocess.run([tw, "replay", "--help"], capture_output=True, text=True).stdout

    def parse_tw(p):
        j = last_json_line(p.stderr)
        return {"packets": j["packets"], "flows": j["flows"], "seconds": j["wall_seconds"]}

    base = [tw, "replay", str(cap), "--output", "json:/dev/null", "--stats", "json"]
    if "--workers" in helptext:
        tools.append(Tool("tidewatch", tw_version + " (default workers)", base, parse_tw))
        tools.append(Tool("tidewatch --workers 1", tw_version, base + ["--workers", "1"], parse_tw))
    else:
        tools.append(Tool("tidewatch", tw_version, base, parse_tw))

    # ---- nfstream ---------------------------------------------------------
    if os.environ.get("PEER_SKIP_NFSTREAM"):
        skipped.append(("nfstream", os.environ["PEER_SKIP_NFSTREAM"]))
    else:
        def parse_nf(p):
            j = last_json_line(p.stdout)
            nf.version = f"{j['version']} (n_meters={j['n_meters']}, n_dissections={j['n_dissections']})"
            return {k: j[k] for k in ("packets", "flows", "seconds")}

        nf = Tool("nfstream", "?", [a.venv_python, str(HERE / "nfstream_peer.py"), str(cap),
                                    str(a.nfstream_dissections)], parse_nf)
        tools.append(nf)

    # ---- tshark -----------------------------------------------------------
    tshark_cut = None
    if os.environ.get("PEER_SKIP_TSHARK"):
        skipped.append(("tshark", os.environ["PEER_SKIP_TSHARK"]))
    else:
        tsv = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"(\d+\.\d+\.\d+)", tsv)
        tsv = m.group(1) if m else "?"
        tmpdir = tempfile.mkdtemp(prefix="peers-")
        if shutil.which("editcap"):
            tshark_cut = os.path.join(tmpdir, "first-packet.pcap")
            subprocess.run(["editcap", "-r", str(cap), tshark_cut, "1"], capture_output=True)
            if not os.path.isfile(tshark_cut):
                tshark_cut = None

        def ts_cmd(f):
            return ["tshark", "-q", "-z", "conv,tcp", "-z", "conv,udp", "-r", f]

        def parse_ts(p):
            flows = sum(1 for line in p.stdout.splitlines() if "<->" in line)
            return {"packets": cap_packets, "flows": flows, "seconds": None}

        tools.append(Tool("tshark conv,tcp+udp", tsv, ts_cmd(str(cap)), parse_ts))
        if tshark_cut:
            tools.append(Tool("_tshark_startup", tsv, ts_cmd(tshark_cut), parse_ts))

    # ---- flowscope --------------------------------------------------------
    if os.environ.get("PEER_SKIP_FLOWSCOPE"):
        skipped.append(("flowscope", os.environ["PEER_SKIP_FLOWSCOPE"]))
    elif not os.access(a.flowscope_bin, os.X_OK):
        skipped.append(("flowscope", f"{a.flowscope_bin} not built"))
    else:
        def parse_fs(p):
            j = last_json_line(p.stdout)
            if j.get("read_errors"):
                print(f"compare: flowscope stopped at a bad record after {j['packets']} packets",
                      file=sys.stderr)
            return {k: j[k] for k in ("packets", "flows", "seconds")}

        tools.append(Tool("flowscope 0.22 CIC", "0.22.0", [a.flowscope_bin, str(cap)], parse_fs))

    # ---- rounds -----------------------------------------------------------
    def fingerprint():
        st = cap.stat()
        return (st.st_size, st.st_mtime_ns)

    before = fingerprint()
    with open(cap, "rb") as f:  # warm the page cache so round 1 is not the only cold read
        while f.read(1 << 24):
            pass
    for r in range(a.runs):
        for t in tools:
            if t.error:
                continue
            try:
                p, wall = run(t.cmd)
                if p.returncode != 0:
                    raise RuntimeError(why(p))
                s = t.parse(p)
                s["wall"] = wall
                t.samples.append(s)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                t.error = str(e)
                print(f"compare: {t.name} failed: {t.error}", file=sys.stderr)
        print(f"compare: round {r + 1}/{a.runs} done", file=sys.stderr)
    changed = fingerprint() != before

    startup = None
    for t in tools:
        if t.name == "_tshark_startup" and t.samples:
            startup = statistics.median(s["wall"] for s in t.samples)
    for t in tools:
        if t.name.startswith("tshark") and t.samples:
            for s in t.samples:
                s["seconds"] = max(s["wall"] - (startup or 0.0), 1e-9)
    tools = [t for t in tools if t.name != "_tshark_startup"]
    for t in tools:
        if t.error and not t.samples:
            skipped.append((t.name, "failed: " + t.error))
    ok = [t for t in tools if t.samples]

    rows = []
    for t in ok:
        secs = statistics.median(s["seconds"] for s in t.samples)
        n_pk = t.samples[-1]["packets"] if t.samples[-1]["packets"] is not None else cap_packets
        flows = [s["flows"] for s in t.samples]
        rows.append({
            "tool": t.name,
            "version": t.version,
            "packets": n_pk,
            "flows": flows[-1],
            "flows_stable": len(set(flows)) == 1,
            "flows_all": flows,
            "seconds_median": secs,
            "seconds_all": [s["seconds"] for s in t.samples],
            "process_wall_median": statistics.median(s["wall"] for s in t.samples),
            "packets_per_s": (cap_packets or n_pk) / secs,
        })
    tw_row = next((r for r in rows if r["tool"] == "tidewatch"), None)
    for r in rows:
        r["tidewatch_ratio"] = (tw_row["packets_per_s"] / r["packets_per_s"]) if tw_row else None
        r["tidewatch_ratio_process_wall"] = (
            r["process_wall_median"] / tw_row["process_wall_median"] if tw_row else None)

    # ---- print ------------------------------------------------------------
    def pps(x):
        return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"

    head = ["tool", "packets", "flows", "seconds (median)", "packets/s", "tidewatch ÷ tool"]
    body = [[r["tool"], str(r["packets"]), str(r["flows"]) + ("" if r["flows_stable"] else "*"),
             f"{r['seconds_median']:.3f}", pps(r["packets_per_s"]),
             f"{r['tidewatch_ratio']:.2f}" if r["tidewatch_ratio"] is not None else "-"]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]

    def line(cells):
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(f"\n{cap} — {cap_packets} packets, median of {a.runs} run(s), {os.cpu_count()} CPUs")
    print(line(head))
    print("-+-".join("-" * w for w in widths))
    for b in body:
        print(line(b))
    print("packets/s = capture packets ÷ seconds; tidewatch ÷ tool > 1 means Tidewatch is faster.")
    print("whole process (start-up included), median s: " + ", ".join(
        f"{r['tool']} {r['process_wall_median']:.3f}" for r in rows)
        + (f"; tshark start-up subtracted above: {startup:.3f}" if startup is not None else ""))
    for r in rows:
        if not r["flows_stable"]:
            print(f"* {r['tool']}: flow count differed between runs")
    if changed:
        print(f"WARNING: {cap} changed while the rounds ran: these figures mix two files; run again")
    print("versions: " + "; ".join(f"{r['tool']} {r['version']}" for r in rows))
    for name, reason in skipped:
        print(f"SKIPPED {name}: {reason}")

    out = {
        "file": str(cap),
        "capture_packets": cap_packets,
        "runs": a.runs,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tshark_startup_seconds": startup,
        "capture_changed_during_run": changed,
        "tools": rows,
        "skipped": [{"tool": n, "reason": r} for n, r in skipped],
    }
    Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"table written to {a.json_out}")
    return 0 if tw_row else 1


if __name__ == "__main__":
    sys.exit(main())
