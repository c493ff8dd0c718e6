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
        def esc(c):
            return c.replace("|", "\\|")

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


def tshark_fragment_extra(pcap):
    """(proto, sending endpoint) -> [datagrams, extra bytes]: what Tidewatch's count of a reassembled IP datagram
    adds to tshark's. tshark counts the datagram once, with its last fragment's frame length; Tidewatch counts it
    once with every fragment's frame length. The fragments are tshark's own list (ip.fragment / ipv6.fragment) in
    the frame that completes the datagram, so the rule is checked, not assumed."""
    fields = ["frame.number", "frame.len", "ip.fragment", "ipv6.fragment", "ip.src", "ipv6.src", "tcp.srcport",
              "udp.srcport", "frame.protocols"]
    cmd = [TSHARK, "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    rc, out, err = run(cmd)
    lens, done = {}, []
    for line in out.splitlines():
        c = (line.split("\t") + [""] * len(fields))[: len(fields)]
        if not c[0] or not c[1]:
            continue
        lens[int(c[0])] = int(c[1])
        frags = [int(x) for x in (c[2] + "," + c[3]).split(",") if x.isdigit()]
        port = (c[6] or c[7]).split(",")[-1]
        if len(frags) < 2 or not port:
            continue
        ips = [p for p in c[8].split(":") if p in ("ip", "ipv6")]
        src = (c[5] if ips and ips[-1] == "ipv6" else c[4]).split(",")[-1]
        done.append((int(c[0]), frags, "tcp" if c[6] else "udp", ep(src, port)))
    extra = {}
    for n, frags, proto, src in done:
        r = extra.setdefault((proto, src), [0, 0])
        r[0] += 1
        r[1] += sum(lens.get(f, 0) for f in frags) - lens[n]
    return extra


DROP_NAMES = {
    "truncated": "IP total length exceeds the frame: tshark counts the packet, Tidewatch drops it (truncated)",
    "not_ip": "frames Tidewatch does not decode as IP (not_ip; e.g. Cisco FabricPath), tshark does",
    "unsupported_link_type": "link type Tidewatch does not decode",
    "bad_ip_header": "bad IP header: Tidewatch drops the packet",
    "bad_transport_header": "bad TCP/UDP header: Tidewatch drops the packet",
    "truncated_transport": "transport header cut: Tidewatch drops the packet",
}
FRAGMENT_AGREE = ("agree on purpose: IP fragments (frames equal; bytes = tshark's plus every earlier fragment's "
                  "frame, from tshark's own fragment list: Tidewatch counts all the bytes that were on the wire)")
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
                    c, t = convs.get(k), tw.get(k)
                    if facts.get("frag_extra") is None:
                        facts["frag_extra"] = tshark_fragment_extra(pcap)
                    x = {e: facts["frag_extra"].get((k[0], e), [0, 0])[1] for e in k[1:]}
                    if c and t and all(c[e][0] == t[e][0] and c[e][1] + x[e] <= t[e][1] <= c[e][2] + x[e]
                                       for e in k[1:]):
                        cls = FRAGMENT_AGREE
                    else:
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
    strict = agree - classes.get(FRAGMENT_AGREE, 0)
    t = Table("1. Flow table: tshark conv,tcp/conv,udp vs Tidewatch flows summed per 5-tuple",
              ["class", "count", "share", "example"])
    for cls, v in sorted(classes.items(), key=lambda x: (not x[0].startswith("agree"), -x[1])):
        t.add(cls, v, pct(v, n_conv), examples[cls][:200] if not cls.startswith("agree") else examples[cls][:120])
    t.notes.append("captures: %d (protocols/); conversations (union of both sides): %d; exact agreement "
                   "(frames and bytes per direction; bytes at tshark's printed precision), a fragmented "
                   "datagram's bytes counted as Tidewatch counts them and checked against tshark's fragment list: "
                   "%d = %s; with tshark's byte rule for fragmented datagrams (last fragment's frame only): %d = %s"
                   % (len(files), n_conv, agree, pct(agree, n_conv), strict, pct(strict, n_conv)))
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

            def strip(b):
                return GAP_MARK_RE.sub(b"", b)

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

# tshark -T fields columns of part 3 (the three META_FIELDS follow them)
META_COLS = ["frame.number", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport",
             "udp.srcport", "udp.dstport", "icmp.type", "icmpv6.type", "dns.flags.response", "dns.count.queries",
             "_ws.malformed", "_ws.expert.message", "http.request.method"]


def tw_meta(f, name):
    """A flow's first value of a metadata field (None when it has none): the 'first value' comparison."""
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


def tw_meta_all(f, name):
    """Every value a flow reports for a metadata field ("" kept: the root zone's DNS query), and whether the
    flow counted more transactions than it stored (transaction_count > 1 + len(transactions))."""
    app = f.get("app") or {}
    if name == "sni":
        return [v for v in ((app.get(p) or {}).get("sni") for p in ("tls", "quic")) if v], False
    m = app.get("http" if name == "http.host" else "dns")
    if not m:
        return [], False
    key = "host" if name == "http.host" else "query"
    vals = [t.get(key) for t in [m] + list(m.get("transactions") or [])]
    over = m.get("transaction_count", 1) > 1 + len(m.get("transactions") or [])
    return [v for v in vals if v is not None], over


def replaced_bytes_match(v, tw_set):
    """tshark prints each byte of a DNS label that is not UTF-8 as U+FFFD, Tidewatch as \\DDD: whether v matches
    a Tidewatch value with \\DDD where tshark has U+FFFD (and is otherwise equal)."""
    if "\ufffd" not in v:
        return False
    rx = re.compile("".join(r"\\\d{3}" if ch == "\ufffd" else re.escape(ch) for ch in v) + "$")
    return any(rx.match(s) for s in tw_set)


def loose(s):
    """A name without escapes and non-printable bytes (to recognise a difference in spelling only)."""
    s = re.sub(r"\\(\d{3}|x[0-9a-fA-F]{2}|.)", "", s)
    return re.sub(r"[^0-9A-Za-z.-]", "", s).lower()


def no_value_class(name, v, k, fs, methods=()):
    """Why no flow of the 5-tuple reports any value of the field (the classes of the first-value comparison)."""
    apps = sorted(set(str(f.get("app_proto")) for f in fs))
    ports = {int(e.rsplit(":", 1)[1]) for e in k[1:]}
    if name == "dns.query" and v == "<Root>":
        return "query for the root zone (tshark '<Root>', Tidewatch no query)"
    if name == "http.host" and k[0] == "udp":
        return "HTTP over UDP (SSDP/UPnP): Tidewatch does not parse HTTP in datagrams"
    if name == "sni" and k[0] == "tcp" and apps == ["unknown"] and ports & STARTTLS_PORTS:
        return "TLS after STARTTLS (mail/FTP/XMPP/DB port): no SNI from Tidewatch (app_proto unknown)"
    if k[0] == "tcp" and name == "sni" and (1080 in ports or apps == ["http"]):
        return "behind a proxy handshake (SOCKS on 1080, HTTP CONNECT): no %s from Tidewatch" % (
            "SNI" if name == "sni" else "host")
    if name == "sni" and k[0] == "udp" and 3389 in ports:
        return "TLS inside RDP over UDP: not parsed by Tidewatch"
    if name == "dns.query" and v.startswith("<"):
        return "name tshark cannot print (%s): Tidewatch empty" % v
    if any((f.get("app") or {}).get("method") == "port" for f in fs):
        if name == "sni" and apps == ["quic"]:
            why = "a QUIC version Tidewatch does not decrypt (Google QUIC T050/T051)"
        elif name == "sni" and apps == ["tls"]:
            why = ("a ClientHello after a prefix the probes reject (PROXY protocol header) in a flow where nothing "
                   "more arrives: the failed direction's buffer is not scanned for a hello")
        elif name == "dns.query" and apps == ["dns"]:
            why = "a message Tidewatch rejects (e.g. a forward compression pointer: nmap's version.bind probe)"
        else:
            why = "content not parsed"
        return "Tidewatch guessed %s by port: %s" % ("/".join(apps), why)
    if name == "http.host" and k[0] == "tcp" and apps == ["unknown"]:
        return ("HTTP after a plaintext prelude (SOCKS4/5 handshake): Tidewatch looks only for TLS after a "
                "prelude")
    if name == "http.host" and apps == ["http"] and methods:
        return ("request with a method Tidewatch does not parse (%s): no host" % "/".join(sorted(methods)))
    if k[0] == "tcp" and any(f.get("fwd_gaps") or f.get("bwd_gaps") for f in fs):
        return "Tidewatch has no value, TCP flow with a gap (app_proto %s)" % "/".join(apps)
    return "Tidewatch has no value (app_proto %s)" % "/".join(apps)


def tshark_meta(pcap):
    """tshark's metadata values of one capture: {(5-tuple key, field): {value: facts}} in packet order, facts =
    {"frame": first frame, "n": packets, "icmp": packets quoting it in an ICMP error, "resp": DNS responses,
    "later": packets where it is question 2+, "malformed": packets tshark marks malformed}."""
    cmd = [TSHARK, "-r", pcap, "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|",
           "-Y", " or ".join(f for _, f in META_FIELDS)]
    for f in META_COLS + [f for _, f in META_FIELDS]:
        cmd += ["-e", f]
    rc, out, err = run(cmd)
    n = len(META_COLS)
    vals = {}

    def last(s):
        return s.split("|")[-1] if s else ""

    for line in out.splitlines():
        c = (line.split("\t") + [""] * (n + 3))[: n + 3]
        col = dict(zip(META_COLS, c))
        src, dst = last(col["ip.src"]) or last(col["ipv6.src"]), last(col["ip.dst"]) or last(col["ipv6.dst"])
        if col["tcp.srcport"]:
            proto, sp, dp = "tcp", last(col["tcp.srcport"]), last(col["tcp.dstport"])
        elif col["udp.srcport"]:
            proto, sp, dp = "udp", last(col["udp.srcport"]), last(col["udp.dstport"])
        else:
            continue
        k = tuple_key(proto, ep(src, sp), ep(dst, dp))
        icmp = bool(col["icmp.type"] or col["icmpv6.type"])
        resp = last(col["dns.flags.response"]) in ("1", "True")
        malformed = bool(col["_ws.malformed"]) or "Malformed" in col["_ws.expert.message"]
        for (name, _), v in zip(META_FIELDS, c[n:]):
            if not v:
                continue
            per = vals.setdefault((k, name), {})
            for i, x in enumerate(v.split("|")):
                if not x:
                    continue
                fx = per.setdefault(x, {"frame": col["frame.number"], "n": 0, "icmp": 0, "resp": 0, "later": 0,
                                        "malformed": 0, "methods": set()})
                fx["n"] += 1
                fx["icmp"] += icmp
                fx["malformed"] += malformed
                if name == "http.host":
                    fx["methods"].update(m for m in col["http.request.method"].split("|") if m)
                if name == "dns.query":
                    fx["resp"] += resp
                    fx["later"] += i > 0
    return vals


def metadata_one(pcap):
    """Part 3 on one capture: (pcap, every-value results, first-value results); a result is
    (field, class, detail dict)."""
    vals = tshark_meta(pcap)
    if not vals:
        return pcap, [], []
    flows = tw_flows(pcap)
    by = collections.defaultdict(list)
    for f in sorted(flows, key=lambda f: f["first_ts"]):
        if f["proto"] in ("tcp", "udp"):
            by[tuple_key(f["proto"], ep(f["src_ip"], f["src_port"]), ep(f["dst_ip"], f["dst_port"]))].append(f)

    def describe(k, name, v, fs, fx=None, tw=None):
        d = {"tuple": "%s %s<->%s" % (k[0], k[1], k[2]), "tshark": v,
             "tw_flows": len(fs), "tw_app_proto": sorted(set(str(f.get("app_proto")) for f in fs))}
        if fx:
            d["frame"], d["tshark_packets"] = fx["frame"], fx["n"]
        if tw is not None:
            d["tw"] = tw
        return d

    every, first = [], []
    for (k, name), per in sorted(vals.items()):
        fs = by.get(k, [])
        tw_set, over = set(), False
        for f in fs:
            vs, o = tw_meta_all(f, name)
            tw_set.update(vs)
            over |= o
        has_value = any(tw_set - {""}) or (name == "dns.query" and "" in tw_set)
        lower = {s.lower() for s in tw_set}
        loosed = {loose(s) for s in tw_set}
        for v, fx in per.items():
            if not fs:
                cls = "no Tidewatch flow for the 5-tuple"
                if fx["icmp"] == fx["n"]:
                    cls += ": only quoted in ICMP errors (tshark dissects the quoted datagram)"
            elif v in tw_set:
                cls = "agree"
            elif v.lower() in lower:
                cls = "differs in case only"
            elif fx["icmp"] == fx["n"]:
                cls = "only quoted in ICMP errors (tshark dissects the quoted datagram, Tidewatch does not)"
            elif name == "dns.query" and v == "<Root>" and "" in tw_set:
                cls = "query for the root zone: spelling only (tshark '<Root>', Tidewatch '')"
            elif name == "dns.query" and replaced_bytes_match(v, tw_set):
                cls = ("name with bytes that are not UTF-8: spelling only (tshark prints U+FFFD for each, "
                       "Tidewatch \\DDD)")
            elif loose(v) and loose(v) in loosed:
                cls = ("spelling only: a label mixing UTF-8 and other bytes (tshark keeps the valid sequences and "
                       "prints U+FFFD for the rest, Tidewatch writes the whole label's bytes as \\DDD)"
                       if "\ufffd" in v else "spelled differently (escapes / non-printable bytes)")
            elif over:
                cls = "beyond the per-flow bound (transaction_count > stored transactions)"
            elif not has_value:
                cls = no_value_class(name, v, k, fs, fx["methods"])
            elif name == "dns.query" and fx["later"] == fx["n"]:
                cls = ("question 2+ of a multi-question %s" %
                       ("response (Tidewatch reads only a response's first question)" if fx["resp"] == fx["n"]
                        else "message"))
            elif fx["malformed"] == fx["n"]:
                cls = "only in packets tshark marks malformed (Tidewatch rejects the message)"
            elif k[0] == "tcp" and any(f.get("fwd_gaps") or f.get("bwd_gaps") for f in fs):
                cls = "Tidewatch has other values for the 5-tuple, not this one (TCP flow with a gap)"
            else:
                cls = "Tidewatch has other values for the 5-tuple, not this one"
            every.append((name, cls, describe(k, name, v, fs, fx, sorted(tw_set)[:8])))
        # the first-value comparison: tshark's first value vs the first value of the 5-tuple's flows
        v = next(iter(per))
        got = next((x for x in (tw_meta(f, name) for f in fs) if x), None)
        firsts = [tw_meta(f, name) for f in fs]
        if not fs:
            cls = "no Tidewatch flow for the 5-tuple"
        elif got == v:
            cls = "agree"
        elif name == "dns.query" and v == "<Root>" and got is None and "" in tw_set:
            cls = "query for the root zone: spelling only (tshark '<Root>', Tidewatch '')"
        elif got is None:
            cls = no_value_class(name, v, k, fs, per[v]["methods"])
        elif got.lower() == v.lower():
            cls = "differs in case only"
        elif v in firsts:
            cls = "agree on a later flow of the 5-tuple"
        elif v in tw_set:
            cls = "Tidewatch's first value is another (tshark's first is a later transaction of Tidewatch)"
        else:
            cls = "different value"
        first.append((name, cls, describe(k, name, v, fs, per[v], got)))
    return pcap, every, first


def metadata_tables(res, idx, corpus, detail_part, title):
    """Summary and class tables of one comparison (idx 1: every value, 2: first value)."""
    per = collections.defaultdict(collections.Counter)
    caps = collections.defaultdict(set)
    tuples = collections.defaultdict(set)
    examples = {}
    detail_out = []
    for r in res:
        pcap = r[0]
        for name, cls, d in r[idx]:
            if cls != "agree":
                detail_out.append(dict({"capture": rel(pcap, corpus), "field": name, "class": cls}, **d))
            per[name][cls] += 1
            caps[name].add(pcap)
            tuples[name].add((pcap, d["tuple"]))
            examples.setdefault((name, cls), "%s %s frame %s tshark=%r tw=%r" % (
                rel(pcap, corpus), d["tuple"], d.get("frame"), d["tshark"], d.get("tw")))
    write_details(detail_part, detail_out)
    t = Table(title, ["field", "captures", "5-tuples", "values compared", "agree", "share"])
    c2 = Table(title + ": disagreement classes", ["field", "class", "count", "share of field", "example"])
    for name, field in META_FIELDS:
        c = per[name]
        tot = sum(c.values())
        t.add("%s (%s)" % (field, "app.tls.sni/app.quic.sni" if name == "sni" else "app." + name),
              len(caps[name]), len(tuples[name]), tot, c["agree"], "%.2f%%" % (100.0 * c["agree"] / tot) if tot
              else "n/a")
        for cls, v in c.most_common():
            if cls != "agree":
                c2.add(name, cls, v, "%.2f%%" % (100.0 * v / tot), examples[(name, cls)][:220])
    if not c2.rows:
        c2.add("-", "none", 0, "-", "-")
    return t, c2


def part_metadata(corpus, files):
    res = pmap(metadata_one, files)
    t1, c1 = metadata_tables(
        res, 1, corpus, "metadata",
        "3. Metadata: every distinct tshark value per (5-tuple, field) vs the union of the 5-tuple's flow records")
    t1.notes.append("captures scanned: %d (protocols/ and attacks/); one comparison per (5-tuple, field, distinct "
                    "tshark value): agree when Tidewatch reports the value exactly (tls.sni/quic.sni; http.host and "
                    "dns.query of the first transaction and of every transactions[] entry) on any flow of the "
                    "5-tuple" % len(files))
    t2, c2 = metadata_tables(
        res, 2, corpus, "metadata-first",
        "3f. Metadata, first value only: tshark's first value per 5-tuple vs the first value of its flows")
    return [t1, c1, t2, c2]


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
        for x in t if isinstance(t, list) else [t]:
            print(x.text(), flush=True)
            tables.append(x)
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
