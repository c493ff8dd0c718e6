#!/usr/bin/env python3
"""Peer comparisons of issue 4: Tidewatch against tshark and nDPI on the public corpus.

Parts (default: all):
  --flows     flow table: `tshark -z conv,tcp -z conv,udp` vs Tidewatch flows summed per 5-tuple
  --streams   reassembled TCP streams: `tidewatchd flows --streams` vs `tshark -z follow,tcp,raw,N`
  --metadata  TLS/QUIC SNI, HTTP host, DNS query name: tshark `-T fields` vs the flow records
  --ndpi      application protocol vs nDPI's expected results (ndpi-expected/*.out)

Prints agreement tables and writes them as Markdown to build/peers/agreement.md.
Exits non-zero only on a script error (a disagreement is a result, not an error).
Python 3 standard library only; runs at most 2 processes in parallel.
"""

import argparse
import collections
import functools
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from multiprocessing import Pool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TW = None  # set in main (worker processes inherit it through fork)
TSHARK = "tshark"
JOBS = 2
TAPP = {"http", "tls", "dns", "ssh", "quic"}


# ---------------------------------------------------------------- helpers


def run(cmd, timeout=600):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def tw_flows(pcap, streams_dir=None, stats=None):
    """Tidewatch's flow records for one capture (empty list when the capture cannot be opened).
    With `stats` (a dict), fills it with the engine's counters (--stats json)."""
    cmd = [TW, "flows", pcap, "--output", "json:-", "--workers", "0", "--stats", "json"]
    if streams_dir:
        cmd += ["--streams", streams_dir]
    rc, out, err = run(cmd)
    if rc not in (0, 2):
        raise RuntimeError("tidewatchd exited %d on %s: %s" % (rc, pcap, err.strip()[:300]))
    if stats is not None:
        for line in err.splitlines():
            if line.startswith("{"):
                stats.update(json.loads(line))
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@functools.lru_cache(maxsize=65536)
def norm_ip(ip):
    """One spelling per address (nDPI compresses a single zero group of IPv6 with '::', tshark does not)."""
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return ip


def ep(ip, port):
    return "%s:%s" % (norm_ip(str(ip)), port)


def tuple_key(proto, a, b):
    """Direction-free key of a conversation: (proto, lower endpoint, higher endpoint)."""
    return (proto,) + tuple(sorted((a, b)))


def fmt_size(n):
    """Wireshark 4.0's format_size (SI, integer division) as used by the conv tables."""
    for p, unit in ((10**15, "PB"), (10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "kB")):
        if n >= 10 * p:
            return "%d %s" % (n // p, unit)
    return "%d bytes" % n


def rel(path, corpus):
    return os.path.relpath(path, corpus)


def captures(corpus, sub):
    d = os.path.join(corpus, sub)
    if not os.path.isdir(d):
        return []
    return sorted(
        os.path.join(d, f)
        for f in os.listdir(d)
        if os.path.isfile(os.path.join(d, f)) and re.search(r"\.(pcap|pcapng|cap)$", f)
    )


def pmap(fn, items):
    if len(items) <= 1:
        return [fn(i) for i in items]
    if JOBS <= 1:
        return [fn(i) for i in items]
    with Pool(JOBS) as pool:
        return pool.map(fn, items, chunksize=1)


class Table:
    """A result table: rows of cells, printed as text and as Markdown."""

    def __init__(self, title, header):
        self.title, self.header, self.rows, self.notes = title, header, [], []

    def add(self, *cells):
        self.rows.append([str(c) for c in cells])

    def text(self):
        widths = [max(len(r[i]) for r in [self.header] + self.rows) for i in range(len(self.header))]
        widths = [min(w, 90) for w in widths]
        out = ["", "== " + self.title]
        for r in [self.header] + self.rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        out += ["  " + n for n in self.notes]
        return "\n".join(out)

    def markdown(self):
        esc = lambda c: c.replace("|", "\\|")
        out = ["## " + self.title, "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        if self.notes:
            out += [""] + ["- " + n for n in self.notes]
        return "\n".join(out) + "\n"


DETAILS_DIR = os.path.join(REPO, "build", "peers")


def write_details(part, rows):
    """Every disagreement of a part, one JSON object a line, to build/peers/<part>-details.jsonl."""
    os.makedirs(DETAILS_DIR, exist_ok=True)
    with open(os.path.join(DETAILS_DIR, part + "-details.jsonl"), "w") as fh:
        for r in rows:
            fh.write(json.dumps(r, default=str) + "\n")


def pct(a, b):
    return "%.1f%%" % (100.0 * a / b) if b else "n/a"


# ---------------------------------------------------------------- part 1: flow table

CONV_RE = re.compile(
    r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+([\d,]+ \w+)\s+(\d+)\s+([\d,]+ \w+)\s+(\d+)\s+([\d,]+ \w+)\s"
)


UNITS = {"bytes": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}


def size_interval(text):
    """tshark's printed size ("5564 bytes", "143 kB") as the interval of byte counts it stands for."""
    num, unit = text.replace(",", "").split()
    n, u = int(num), UNITS[unit]
    return (n * u, n * u + u - 1)


def tshark_conv(pcap):
    """{(proto, epA, epB): {endpoint: [frames sent, bytes lo, bytes hi], "rows": n}} keyed direction-free.

    tshark 4.0 may list one 5-tuple in several rows (its conversation framework splits a 5-tuple when a
    dissector, e.g. SIP/SDP setting up RTP, creates a new conversation): rows are summed."""
    rc, out, err = run([TSHARK, "-r", pcap, "-q", "-z", "conv,tcp", "-z", "conv,udp"])
    convs, proto = {}, None
    for line in out.splitlines():
        if "TCP Conversations" in line:
            proto = "tcp"
        elif "UDP Conversations" in line:
            proto = "udp"
        m = CONV_RE.match(line)
        if m and proto:
            a, b = ep(m.group(1), m.group(2)), ep(m.group(3), m.group(4))
            k = tuple_key(proto, a, b)
            rec = convs.setdefault(k, {a: [0, 0, 0], b: [0, 0, 0], "rows": 0})
            rec["rows"] += 1
            for e, fr, by in ((a, m.group(7), m.group(8)), (b, m.group(5), m.group(6))):
                lo, hi = size_interval(by)
                rec[e][0] += int(fr)
                rec[e][1] += lo
                rec[e][2] += hi
    return convs, rc, err


def tshark_packet_facts(pcap):
    """Per-capture facts used to name disagreement classes: the IP addresses seen in fragments, in frames cut
    by the snaplen, in malformed packets, in ICMP errors, and in packets embedded in another protocol."""
    fields = ["frame.len", "frame.cap_len", "ip.flags.mf", "ip.frag_offset", "ipv6.fraghdr.ident",
              "_ws.malformed", "_ws.expert.message", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
              "icmp.type", "icmpv6.type", "frame.protocols"]
    cmd = [TSHARK, "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    rc, out, err = run(cmd)
    facts = {"frag": set(), "trunc": set(), "malformed": set(), "icmp_err": set(), "embedded": {}}
    for line in out.splitlines():
        c = (line.split("\t") + [""] * len(fields))[: len(fields)]
        ips = set(x for f in (c[7], c[8], c[9], c[10]) for x in f.split(",") if x)
        if c[0] and c[1] and int(c[1]) < int(c[0]):
            facts["trunc"] |= ips
        if "1" in c[2].split(",") or any(x not in ("", "0") for x in c[3].split(",")) or c[4]:
            facts["frag"] |= ips
        if c[5] or "Malformed" in c[6]:
            facts["malformed"] |= ips
        if any(t in ("3", "11", "12", "4", "5") for t in c[11].split(",")) or any(
            t in ("1", "2", "3", "4") for t in c[12].split(",")
        ):
            facts["icmp_err"] |= ips
        protos = c[13].split(":")
        ipl = [i for i, p in enumerate(protos) if p in ("ip", "ipv6")]
        if len(ipl) > 1:
            carrier = next((p for p in protos[ipl[0] + 1:] if p not in ("tcp", "udp")), "?")
            for x in ips:
                facts["embedded"].setdefault(x, carrier)
    return facts


DROP_NAMES = {
    "truncated": "IP total length exceeds the frame: tshark counts the packet, Tidewatch drops it (truncated)",
    "not_ip": "frames Tidewatch does not decode as IP (not_ip; e.g. Cisco FabricPath), tshark does",
    "unsupported_link_type": "link type Tidewatch does not decode",
    "bad_ip_header": "bad IP header: Tidewatch drops the packet",
    "bad_transport_header": "bad TCP/UDP header: Tidewatch drops the packet",
    "truncated_transport": "transport header cut: Tidewatch drops the packet",
}
LINK_TYPES = {}  # capture path relative to the corpus -> link type (MANIFEST.tsv)


def ip_of(e):
    return e.rsplit(":", 1)[0]


def flows_one(pcap):
    convs, rc, err = tshark_conv(pcap)
    stats = {}
    flows = tw_flows(pcap, stats=stats)
    drops = sorted(k for k, v in stats.get("drops", {}).items() if v and k != "ip_fragment")
    tw = {}  # key -> {ep: [frames, bytes sent]}, plus the flows
    tw_flows_by = collections.defaultdict(list)
    tunnel_outer = set()
    for f in flows:
        if f.get("tunnel"):
            t = f["tunnel"]
            tunnel_outer.add(tuple(sorted((str(t.get("outer_src_ip")), str(t.get("outer_dst_ip"))))))
        if f["proto"] not in ("tcp", "udp"):
            continue
        s, d = ep(f["src_ip"], f["src_port"]), ep(f["dst_ip"], f["dst_port"])
        k = tuple_key(f["proto"], s, d)
        r = tw.setdefault(k, {s: [0, 0], d: [0, 0]})
        r[s][0] += f["fwd_packets"]
        r[s][1] += f["fwd_bytes"]
        r[d][0] += f["bwd_packets"]
        r[d][1] += f["bwd_bytes"]
        tw_flows_by[k].append(f)
    results = []  # (class, key, detail)
    facts = None
    for k in sorted(set(convs) | set(tw)):
        c, t = convs.get(k), tw.get(k)
        tunneled = any(f.get("tunnel") for f in tw_flows_by.get(k, []))
        if c and t:
            same = all(c[e][0] == t[e][0] and c[e][1] <= t[e][1] <= c[e][2] for e in k[1:])
            if same:
                results.append(("agree" + (" (tunnel inner)" if tunneled else "")
                                + (" (tshark lists the 5-tuple in %d rows)" % c["rows"] if c["rows"] > 1 else ""),
                                k, ""))
                continue
            detail = "; ".join(
                "%s sent: tshark %d frames/%s bytes, tw %d/%d" % (
                    e, c[e][0], c[e][1] if c[e][1] == c[e][2] else "%d-%d" % (c[e][1], c[e][2]), t[e][0], t[e][1])
                for e in k[1:]
            )
            results.append(("counts", k, detail))
        elif c:
            pair = tuple(sorted((ip_of(k[1]), ip_of(k[2]))))
            if pair in tunnel_outer:
                results.append(("tshark only: tunnel outer conversation", k, ""))
            else:
                results.append(("tshark only", k, "%s sent %s; %s sent %s" % (k[1], c[k[1]], k[2], c[k[2]])))
        else:
            if tunneled:
                results.append(("tidewatch only: tunnel inner flow", k, ""))
            else:
                results.append(("tidewatch only", k, "%s sent %s; %s sent %s" % (k[1], t[k[1]], k[2], t[k[2]])))
    # name the remaining classes from facts about the packets
    if any(r[0] in ("counts", "tshark only", "tidewatch only") for r in results):
        facts = tshark_packet_facts(pcap)
        named = []
        for cls, k, detail in results:
            if cls in ("counts", "tshark only", "tidewatch only"):
                ips = {ip_of(k[1]), ip_of(k[2])}
                tws = tw_flows_by.get(k, [])
                emb = sorted(set(facts["embedded"][x] for x in ips if x in facts["embedded"]))
                if ips & facts["frag"]:
                    cls += (": IP fragments (tshark counts the datagram once, on its last fragment's frame; "
                            "Tidewatch counts it once with all its fragments' frame bytes)")
                elif ips & facts["trunc"]:
                    cls += ": snaplen/truncated frames"
                elif cls == "tshark only" and emb:
                    cls += (": packet embedded in %s (tshark dissects the inner packet; Tidewatch keeps the outer "
                            "flow)" % "/".join(emb))
                elif cls == "tidewatch only" and ips & facts["icmp_err"]:
                    cls += ": in ICMP error"
                elif cls == "counts" and any(f.get("tunnel") for f in tws):
                    cls += ": tunnel inner"
                elif drops:
                    names = [DROP_NAMES.get(d, d) for d in drops]
                    if "unsupported_link_type" in drops:
                        lt = LINK_TYPES.get(os.path.basename(pcap), "?")
                        names = ["link type %s not decoded by Tidewatch" % lt]
                    cls += ": " + "; ".join(names)
                elif ips & facts["malformed"]:
                    cls += ": malformed packets (tshark's dissector stops)"
                else:
                    cls += ": other"
            named.append((cls, k, detail))
        results = named
    return pcap, results, rc


def part_flows(corpus, files):
    res = pmap(flows_one, files)
    classes = collections.Counter()
    examples = {}
    n_conv = 0
    detail_out = []
    for pcap, results, rc in res:
        for cls, k, detail in results:
            if not cls.startswith("agree"):
                detail_out.append({"capture": rel(pcap, corpus), "class": cls, "key": k, "detail": detail})
            classes[cls] += 1
            n_conv += 1
            examples.setdefault(cls, "%s %s %s<->%s %s" % (rel(pcap, corpus), k[0], k[1], k[2], detail))
    write_details("flows", detail_out)
    agree = sum(v for c, v in classes.items() if c.startswith("agree"))
    t = Table("1. Flow table: tshark conv,tcp/conv,udp vs Tidewatch flows summed per 5-tuple",
              ["class", "count", "share", "example"])
    for cls, v in sorted(classes.items(), key=lambda x: (not x[0].startswith("agree"), -x[1])):
        t.add(cls, v, pct(v, n_conv), examples[cls][:200] if not cls.startswith("agree") else examples[cls][:120])
    t.notes.append("captures: %d (protocols/); conversations (union of both sides): %d; exact agreement "
                   "(frames and bytes per direction; bytes at tshark's printed precision): %d = %s"
                   % (len(files), n_conv, agree, pct(agree, n_conv)))
    return t


# ---------------------------------------------------------------- part 2: streams

STREAM_NAME_RE = re.compile(r"retrans|dupack|ooo|out_of_order|overlap|reorder|frag|miss|lost|loss|zerowindow|"
                            r"asymmetric|mid_flow|starting_with_reply|split|lines-split|reasm|tso|gso|"
                            r"latency|nowebaccess|stranded|broken|working", re.I)


def tshark_tcp_streams(pcap):
    """tcp.stream index -> (first frame time, endpoint A, endpoint B) from -T fields."""
    rc, out, err = run([TSHARK, "-r", pcap, "-T", "fields", "-E", "separator=\t", "-Y", "tcp",
                        "-e", "tcp.stream", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ipv6.src",
                        "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport"])
    streams = {}
    for line in out.splitlines():
        c = line.split("\t")
        if len(c) < 8 or not c[0] or "," in c[0]:
            continue
        s = int(c[0])
        if s not in streams:
            src = ep((c[2] or c[3]).split(",")[-1], c[4])
            dst = ep((c[5] or c[6]).split(",")[-1], c[7])
            streams[s] = (float(c[1]), src, dst)
    return streams


def tshark_follow(pcap, indices):
    """Stream index -> (node0, node1, bytes from node0, bytes from node1)."""
    res = {}
    for i in range(0, len(indices), 50):
        chunk = indices[i:i + 50]
        cmd = [TSHARK, "-r", pcap, "-q"]
        for n in chunk:
            cmd += ["-z", "follow,tcp,raw,%d" % n]
        rc, out, err = run(cmd)
        for block in out.split("===================================================================\nFollow: ")[1:]:
            m = re.search(r"Filter: tcp.stream eq (\d+)\nNode 0: (.*)\nNode 1: (.*)\n", block)
            if not m:
                continue
            n = int(m.group(1))
            d0, d1 = bytearray(), bytearray()
            body = block[m.end():]
            for line in body.split("\n"):
                if line.startswith("====="):
                    break
                if line.startswith("\t"):
                    d1 += bytes.fromhex(line.strip())
                elif line.strip():
                    d0 += bytes.fromhex(line.strip())
            res[n] = (m.group(2), m.group(3), bytes(d0), bytes(d1))
    return res


GAP_MARK_RE = re.compile(rb"\[\d+ bytes missing in capture file\]\x00?")


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def streams_one(args):
    pcap, max_streams = args
    with tempfile.TemporaryDirectory(prefix="tw-peers-") as d:
        flows = [f for f in tw_flows(pcap, d) if f["proto"] == "tcp"]
        tw_data = {}
        for f in flows:
            c2s, s2c = b"", b""
            p = os.path.join(d, "%d.c2s" % f["flow_id"])
            if os.path.exists(p):
                c2s = open(p, "rb").read()
            p = os.path.join(d, "%d.s2c" % f["flow_id"])
            if os.path.exists(p):
                s2c = open(p, "rb").read()
            tw_data[f["flow_id"]] = (c2s, s2c)
    if not flows:
        return pcap, []
    streams = tshark_tcp_streams(pcap)
    by_pair_ts = collections.defaultdict(list)
    for n, (ts, a, b) in sorted(streams.items()):
        by_pair_ts[tuple(sorted((a, b)))].append(n)
    by_pair_tw = collections.defaultdict(list)
    for f in sorted(flows, key=lambda f: f["first_ts"]):
        by_pair_tw[tuple(sorted((ep(f["src_ip"], f["src_port"]), ep(f["dst_ip"], f["dst_port"]))))].append(f)
    pairs = sorted(set(by_pair_tw) & set(by_pair_ts))
    # only connections carrying data on at least one side are interesting
    pairs = [p for p in pairs if any(sum(map(len, tw_data[f["flow_id"]])) or f["fwd_payload_bytes"]
                                     or f["bwd_payload_bytes"] for f in by_pair_tw[p])]
    if max_streams:
        pairs = pairs[:max_streams]
    need = sorted(n for p in pairs for n in by_pair_ts[p])
    fol = tshark_follow(pcap, need)
    results = []
    for p in pairs:
        tws, tss = by_pair_tw[p], by_pair_ts[p]
        src = ep(tws[0]["src_ip"], tws[0]["src_port"])

        def ts_dirs(n):
            node0, node1, d0, d1 = fol.get(n, ("", "", b"", b""))
            if node0 == src or (node1 != src and streams[n][1] == src):
                return d0, d1
            return d1, d0

        t_c2s = b"".join(ts_dirs(n)[0] for n in tss)
        t_s2c = b"".join(ts_dirs(n)[1] for n in tss)
        w_c2s = b"".join(tw_data[f["flow_id"]][0] if ep(f["src_ip"], f["src_port"]) == src
                         else tw_data[f["flow_id"]][1] for f in tws)
        w_s2c = b"".join(tw_data[f["flow_id"]][1] if ep(f["src_ip"], f["src_port"]) == src
                         else tw_data[f["flow_id"]][0] for f in tws)
        info = {
            "pair": p, "src": src, "flows": len(tws), "streams": len(tss),
            "flow_ids": [f["flow_id"] for f in tws], "tcp_stream": tss,
            "gaps": sum(f["fwd_gaps"] + f["bwd_gaps"] for f in tws),
            "reassembly": sorted(set(f.get("reassembly", "") for f in tws)),
            "lens": (len(w_c2s), len(t_c2s), len(w_s2c), len(t_s2c)),
        }
        if w_c2s == t_c2s and w_s2c == t_s2c:
            cls = "exact match" + (" (split by Tidewatch, concatenation equal)" if len(tws) > len(tss) else "")
        else:
            bad = [(nm, w, t) for nm, w, t in (("c2s", w_c2s, t_c2s), ("s2c", w_s2c, t_s2c)) if w != t]
            nm, w, t = bad[0]
            i = first_diff(w, t)
            info["dir"], info["offset"] = nm, i
            strip = lambda b: GAP_MARK_RE.sub(b"", b)
            if len(tws) > len(tss):
                why = "/".join(sorted(set(f.get("end_reason", "?") for f in tws[:-1])))
                cls = ("connection split by Tidewatch (flow ended by %s, later packets start a new midstream flow); "
                       "tshark keeps one stream" % why)
            elif len(tws) < len(tss):
                cls = "tshark splits the connection into more streams than Tidewatch (lossy/odd handshake)"
            elif (strip(t_c2s), strip(t_s2c)) == (w_c2s, w_s2c):
                cls = "gap in capture: equal once tshark's '[N bytes missing in capture file]' marker is removed"
            elif info["gaps"] and all(ww.startswith(strip(tt)) for ww, tt in ((w_c2s, t_c2s), (w_s2c, t_s2c))):
                cls = "gap in capture: tshark's follow stops at the hole, Tidewatch skips it and goes on"
            elif info["gaps"]:
                cls = "gap in capture, different bytes around it"
            elif GAP_MARK_RE.search(t_c2s + t_s2c):
                cls = ("tshark's follow marks bytes as missing that are in the capture (Tidewatch has them, "
                       "no gap)")
            elif len(w) == len(t):
                cls = "same length, different bytes (overlap: different copy kept)"
            elif len(w) < len(t) and t.endswith(w) and not info["gaps"]:
                cls = ("Tidewatch stream is a suffix of tshark's, no gap recorded: the direction's first data "
                       "segment came out of order and the earlier bytes were dropped (Tidewatch bug)")
            elif i == len(w) and len(w) < len(t):
                cls = ("Tidewatch stream is a prefix of tshark's (e.g. bytes sent past the FIN: Tidewatch stops "
                       "at the FIN, tshark keeps them)")
            elif i == len(t) and len(t) < len(w):
                cls = "tshark stream is a prefix of Tidewatch's (tshark shorter: e.g. a second SYN-ACK with " \
                      "another ISN restarts tshark's sequence space)"
            else:
                cls = "differ inside the stream"
        results.append((cls, info))
    return pcap, results


def part_streams(corpus, files_proto, files_edge, files_attacks, limit):
    edge_sel = [f for f in files_edge if STREAM_NAME_RE.search(os.path.basename(f))]
    jobs = [(f, 0) for f in edge_sel] + [(f, 0) for f in files_attacks] + [(f, 8) for f in files_proto]
    res = pmap(streams_one, jobs)
    classes, examples = collections.Counter(), {}
    n = 0
    n_caps = 0
    detail_out = []
    for pcap, results in res:
        if results:
            n_caps += 1
        for cls, info in results:
            detail_out.append(dict(info, capture=rel(pcap, corpus), **{"class": cls}))
            n += 1
            classes[cls] += 1
            if cls not in examples:
                examples[cls] = "%s %s tw flows %s tcp.stream %s lens(tw c2s,ts c2s,tw s2c,ts s2c)=%s%s" % (
                    rel(pcap, corpus), "<->".join(info["pair"]), info["flow_ids"], info["tcp_stream"],
                    info["lens"], " first diff %s@%d" % (info["dir"], info["offset"]) if "dir" in info else "")
    write_details("streams", detail_out)
    ok = sum(v for c, v in classes.items() if c.startswith("exact"))
    t = Table("2. Streams: tidewatchd --streams vs tshark follow,tcp,raw (byte for byte)",
              ["class", "connections", "share", "example"])
    for cls, v in sorted(classes.items(), key=lambda x: (not x[0].startswith("exact"), -x[1])):
        t.add(cls, v, pct(v, n), examples[cls][:260])
    t.notes.append("connections with payload compared: %d from %d captures (edge/ selected by name: %d files; "
                   "attacks/ all; protocols/ first 8 per capture); exact: %d = %s"
                   % (n, n_caps, len(edge_sel), ok, pct(ok, n)))
    return t


# ---------------------------------------------------------------- part 3: metadata

META_FIELDS = [("sni", "tls.handshake.extensions_server_name"), ("http.host", "http.host"),
               ("dns.query", "dns.qry.name")]


STARTTLS_PORTS = {21, 25, 110, 143, 587, 389, 5222, 5269, 3306, 5432}


def tw_meta(f, name):
    app = f.get("app") or {}
    if name == "sni":
        for p in ("tls", "quic"):
            v = (app.get(p) or {}).get("sni")
            if v:
                return v
        return None
    if name == "http.host":
        return (app.get("http") or {}).get("host") or None
    return (app.get("dns") or {}).get("query") or None


def metadata_one(pcap):
    cmd = [TSHARK, "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
           "-Y", " or ".join(f for _, f in META_FIELDS)]
    for f in ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "udp.dstport", "ip.proto", "ipv6.nxt"] + [f for _, f in META_FIELDS]:
        cmd += ["-e", f]
    rc, out, err = run(cmd)
    first = {}  # (key, name) -> value
    for line in out.splitlines():
        c = (line.split("\t") + [""] * 13)[:13]
        last = lambda s: s.split("|")[-1] if s else ""
        src, dst = last(c[0]) or last(c[1]), last(c[2]) or last(c[3])
        if c[4]:
            proto, sp, dp = "tcp", last(c[4]), last(c[5])
        elif c[6]:
            proto, sp, dp = "udp", last(c[6]), last(c[7])
        else:
            continue
        k = tuple_key(proto, ep(src, sp), ep(dst, dp))
        for (name, _), v in zip(META_FIELDS, c[10:13]):
            if v and (k, name) not in first:
                first[(k, name)] = v.split("|")[0]
    if not first:
        return pcap, []
    flows = tw_flows(pcap)
    by = collections.defaultdict(list)
    for f in sorted(flows, key=lambda f: f["first_ts"]):
        if f["proto"] in ("tcp", "udp"):
            by[tuple_key(f["proto"], ep(f["src_ip"], f["src_port"]), ep(f["dst_ip"], f["dst_port"]))].append(f)
    results = []
    for (k, name), v in sorted(first.items()):
        fs = by.get(k, [])
        vals = [tw_meta(f, name) for f in fs]
        got = next((x for x in vals if x), None)
        if not fs:
            cls = "no Tidewatch flow for the 5-tuple"
        elif got == v:
            cls = "agree"
        elif got is None:
            apps = sorted(set(f.get("app_proto") for f in fs))
            ports = {int(e.rsplit(":", 1)[1]) for e in k[1:]}
            if name == "dns.query" and v == "<Root>":
                cls = "query for the root zone (tshark '<Root>', Tidewatch empty)"
            elif name == "http.host" and k[0] == "udp":
                cls = "HTTP over UDP (SSDP/UPnP): Tidewatch does not parse HTTP in datagrams"
            elif name == "sni" and k[0] == "tcp" and apps == ["unknown"] and ports & STARTTLS_PORTS:
                cls = "TLS after STARTTLS (mail/FTP/XMPP): Tidewatch detects the app protocol at stream start only"
            elif k[0] == "tcp" and (1080 in ports or (name == "sni" and apps == ["http"])):
                cls = ("behind a proxy handshake (SOCKS/shadowsocks on 1080, HTTP CONNECT): Tidewatch detects the "
                       "app protocol at stream start only")
            elif name == "sni" and k[0] == "udp" and 3389 in ports:
                cls = "TLS inside RDP over UDP: not parsed by Tidewatch"
            elif name == "dns.query" and v.startswith("<"):
                cls = "name tshark cannot print (%s): Tidewatch empty" % v
            elif any((f.get("app") or {}).get("method") == "port" for f in fs):
                cls = ("Tidewatch guessed %s by port, content not parsed (e.g. Google QUIC T050/T051, a PROXY "
                       "protocol header before the ClientHello, a CHAOS-class DNS query)" % "/".join(apps))
            else:
                cls = "Tidewatch has no value (app_proto %s)" % "/".join(apps)
        elif got.lower() == v.lower():
            cls = "differs in case only"
        elif v in vals:
            cls = "agree on a later flow of the 5-tuple"
        else:
            cls = "different value"
        results.append((name, cls, "%s %s<->%s tshark=%r tw=%r" % (k[0], k[1], k[2], v, got)))
    return pcap, results


def part_metadata(corpus, files):
    res = pmap(metadata_one, files)
    per = collections.defaultdict(collections.Counter)
    caps = collections.defaultdict(set)
    examples = {}
    detail_out = []
    for pcap, results in res:
        for name, cls, ex in results:
            if cls != "agree":
                detail_out.append({"capture": rel(pcap, corpus), "field": name, "class": cls, "detail": ex})
            per[name][cls] += 1
            caps[name].add(pcap)
            examples.setdefault((name, cls), rel(pcap, corpus) + " " + ex)
    write_details("metadata", detail_out)
    t = Table("3. Metadata: tshark -T fields (first value per 5-tuple) vs flow records",
              ["field", "captures", "5-tuples", "agree", "share", "disagreement classes (count: example)"])
    for name, field in META_FIELDS:
        c = per[name]
        tot = sum(c.values())
        dis = "; ".join("%s %d: %s" % (cls, v, examples[(name, cls)][:160])
                        for cls, v in c.most_common() if cls != "agree")
        t.add("%s (%s)" % (field, "app.tls.sni/app.quic.sni" if name == "sni" else "app." + name),
              len(caps[name]), tot, c["agree"], pct(c["agree"], tot), dis or "-")
    t.notes.append("captures scanned: %d (protocols/ and attacks/)" % len(files))
    return t


# ---------------------------------------------------------------- part 4: nDPI

NDPI_RE = re.compile(r"^\t\d+\t(\w+) (\S+) (<->|->) (\S+) \[proto: [\d.]+/([^\]]+)\]")


def split_ep(s):
    m = re.match(r"^\[(.*)\]:(\d+)$", s) or re.match(r"^(.*):(\d+)$", s)
    return ep(m.group(1), m.group(2)) if m else s


def ndpi_one(args):
    pcap, out_file = args
    flows = tw_flows(pcap)
    by = collections.defaultdict(list)
    for f in sorted(flows, key=lambda f: f["first_ts"]):
        by[tuple_key(f["proto"], ep(f["src_ip"], f["src_port"]), ep(f["dst_ip"], f["dst_port"]))].append(f)
    results = []
    with open(out_file, "rb") as fh:
        text = fh.read().decode("utf-8", "replace")
    for line in text.splitlines():
        m = NDPI_RE.match(line)
        if not m:
            continue
        l4 = m.group(1).lower()
        name = m.group(5)
        master = name.split(".")[0].lower()
        if master not in TAPP:
            continue
        k = tuple_key(l4, split_ep(m.group(2)), split_ep(m.group(4)))
        conf = re.search(r"\[Confidence: ([^\]]+)\]", line)
        conf = conf.group(1) if conf else "?"
        dpi = conf == "DPI" or conf.startswith("DPI")
        fs = by.get(k, [])
        apps = [f.get("app_proto") for f in fs]
        if not fs:
            cls = "no Tidewatch flow for the 5-tuple"
        elif master in apps:
            cls = "agree"
        else:
            cls = "Tidewatch says " + "/".join(sorted(set(apps)))
            if not any(f.get("fwd_payload_bytes") or f.get("bwd_payload_bytes") for f in fs):
                cls += " (no payload)"
            elif all(f.get("reassembly") == "midstream" for f in fs):
                cls += " (midstream: no handshake in the capture)"
            if any((f.get("app") or {}).get("method") == "port" for f in fs):
                cls += " (Tidewatch guessed by port)"
        cls += "" if cls == "agree" else " [nDPI: %s]" % conf
        results.append((master, dpi, cls, "%s %s<->%s nDPI=%s tw=%s" % (l4, k[1], k[2], name, apps)))
    return pcap, results


def part_ndpi(corpus, limit):
    jobs = []
    for sub in ("protocols", "edge", "attacks"):
        d = os.path.join(corpus, sub, "ndpi-expected")
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            pcap = os.path.join(corpus, sub, f[:-4])
            if f.endswith(".out") and os.path.isfile(pcap):
                jobs.append((pcap, os.path.join(d, f)))
    if limit:
        jobs = jobs[:limit]
    res = pmap(ndpi_one, jobs)
    per = collections.defaultdict(collections.Counter)
    examples = {}
    detail_out = []
    per_dpi = collections.defaultdict(collections.Counter)
    for pcap, results in res:
        for master, dpi, cls, ex in results:
            if cls != "agree":
                detail_out.append({"capture": rel(pcap, corpus), "proto": master, "class": cls, "detail": ex})
            per[master][cls] += 1
            if dpi:
                per_dpi[master][cls == "agree"] += 1
            examples.setdefault((master, cls), rel(pcap, corpus) + " " + ex)
    write_details("ndpi", detail_out)
    t = Table("4. App protocol vs nDPI (flows nDPI names HTTP/TLS/DNS/SSH/QUIC, incl. master.app names)",
              ["nDPI proto", "flows", "Tidewatch same", "share", "nDPI by DPI: flows", "same", "share",
               "main disagreement kinds (count: example)"])
    for p in ("http", "tls", "dns", "ssh", "quic"):
        c, d = per[p], per_dpi[p]
        tot = sum(c.values())
        dis = "; ".join("%s %d: %s" % (cls, v, examples[(p, cls)][:150])
                        for cls, v in c.most_common(5) if cls != "agree")
        t.add(p.upper(), tot, c["agree"], pct(c["agree"], tot), d[True] + d[False], d[True],
              pct(d[True], d[True] + d[False]), dis or "-")
    t.notes.append("captures with nDPI expected results: %d; Tidewatch flows matched to nDPI flows by "
                   "direction-free 5-tuple (agree if any Tidewatch flow of the 5-tuple says the same)" % len(jobs))
    return t


# ---------------------------------------------------------------- main


def main():
    global TW, JOBS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flows", action="store_true", help="part 1: flow table vs tshark conv")
    ap.add_argument("--streams", action="store_true", help="part 2: reassembled streams vs tshark follow")
    ap.add_argument("--metadata", action="store_true", help="part 3: SNI/host/query vs tshark fields")
    ap.add_argument("--ndpi", action="store_true", help="part 4: app protocol vs nDPI expected results")
    ap.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "pcaps", "public"))
    ap.add_argument("--tidewatchd", default=os.path.join(REPO, "target", "release", "tidewatchd"))
    ap.add_argument("--limit", type=int, default=0, help="at most N captures per directory (quick runs)")
    ap.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="parallel processes (at most 2)")
    ap.add_argument("--match", default="", help="only captures whose path matches this regular expression")
    ap.add_argument("--markdown", default=os.path.join(REPO, "build", "peers", "agreement.md"))
    a = ap.parse_args()
    TW = os.path.abspath(a.tidewatchd)
    JOBS = a.jobs
    if not os.access(TW, os.X_OK):
        sys.exit("compare-peers: %s not found (cargo build --release -p tidewatchd)" % TW)
    if not os.path.isdir(a.corpus):
        sys.exit("compare-peers: corpus %s not found" % a.corpus)
    corpus = os.path.abspath(a.corpus)
    manifest = os.path.join(corpus, "MANIFEST.tsv")
    if os.path.isfile(manifest):
        with open(manifest) as fh:
            for row in fh.read().splitlines()[1:]:
                c = row.split("\t")
                if len(c) > 4:
                    LINK_TYPES[os.path.basename(c[0])] = c[4]
    parts = [p for p in ("flows", "streams", "metadata", "ndpi") if getattr(a, p)] or [
        "flows", "streams", "metadata", "ndpi"]

    def lim(lst):
        lst = [f for f in lst if re.search(a.match, f)]
        return lst[: a.limit] if a.limit else lst

    proto, edge, attacks = (lim(captures(corpus, s)) for s in ("protocols", "edge", "attacks"))
    tables = []
    for p in parts:
        if p == "flows":
            t = part_flows(corpus, proto)
        elif p == "streams":
            t = part_streams(corpus, proto, lim(captures(corpus, "edge")) if a.match else captures(corpus, "edge"),
                             attacks, a.limit)
        elif p == "metadata":
            t = part_metadata(corpus, proto + attacks)
        else:
            t = part_ndpi(corpus, a.limit)
        print(t.text(), flush=True)
        tables.append(t)
    os.makedirs(os.path.dirname(a.markdown), exist_ok=True)
    with open(a.markdown, "w") as fh:
        fh.write("# Tidewatch peer agreement (issue 4)\n\n")
        fh.write("Generated by `scripts/compare-peers.py %s` with %s\n\n"
                 % (" ".join(sys.argv[1:]), run([TSHARK, "--version"])[1].splitlines()[0]))
        for t in tables:
            fh.write(t.markdown() + "\n")
    print("\nwrote " + a.markdown)


if __name__ == "__main__":
    main()
