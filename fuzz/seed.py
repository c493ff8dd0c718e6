#!/usr/bin/env python3
"""Builds seed corpora for the fuzz targets from a directory of captures.

Usage: seed.py PCAP_DIR OUT_DIR   (OUT_DIR/<target>/ is created; git-ignored)

Standard library only. Reads classic pcap (both byte orders, µs and ns) and
pcapng with python/tidewatch_tools/pcapio.py, and writes:
  decode/      one file per frame: a selector byte (link type index, as in
               fuzz/src/harness.rs LINK_TYPES) then the frame (first 40 frames of each capture)
  pcap_file/   small captures as they are; larger classic pcaps cut to the
               header and their first 16 records
  flow_table/  each capture's first 256 IP packets turned into the target's
               8-byte records (hosts and ports folded onto its small sets)
  reassembly/  the TCP segments of each capture's first conversations (relative
               sequence numbers, flags, lengths)
  app/         the payloads of each capture's first TCP/UDP conversations, with their ports
  defrag/      a few hand-made fragment sequences (complete, IPv6, overlap, reordered, never completed)
"""
import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from tidewatch_tools import flowkey, pcapio  # noqa: E402

LINK_TYPES = [1, 0, 108, 101, 12, 14, 228, 229, 113, 276]  # harness.rs LINK_TYPES order
PORTS = [0, 1, 53, 80, 443, 1024, 40000, 65535]


def read_pcap(data):
    """Yields (linktype, ts, frame) of a capture's bytes; nothing more after a broken record.

    ts: microseconds for classic pcap; for pcapng the block's timestamp in its interface's
    units (microseconds only with the default if_tsresol), as this script has always used
    it: flow_table seeds take time steps from it, so a change would change those seeds.
    """
    ng = data[:4] == b"\x0a\x0d\x0d\x0a"
    for p in pcapio.read_packets(data, max_caplen=262144):
        yield p.linktype, (p.ts_sec * p.ts_res + p.ts_frac if ng else p.ts_us), p.data


def ip_of_ethernet(frame):
    """(proto, v6, src, dst, sport, dport, flags, payload_len) of an Ethernet frame, or None."""
    off = 12
    et = frame[off:off + 2]
    while et in (b"\x81\x00", b"\x88\xa8"):
        off += 4
        et = frame[off:off + 2]
    off += 2
    if et == b"\x08\x00" and len(frame) >= off + 20:
        ihl = (frame[off] & 15) * 4
        proto, src, dst = frame[off + 9], frame[off + 12:off + 16], frame[off + 16:off + 20]
        total = struct.unpack(">H", frame[off + 2:off + 4])[0]
        l4, v6, plen = off + ihl, False, max(0, total - ihl)
    elif et == b"\x86\xdd" and len(frame) >= off + 40:
        proto, src, dst = frame[off + 6], frame[off + 8:off + 24], frame[off + 24:off + 40]
        l4, v6, plen = off + 40, True, struct.unpack(">H", frame[off + 4:off + 6])[0]
    else:
        return None
    sport = dport = flags = 0
    if len(frame) >= l4 + 4:
        sport, dport = struct.unpack(">HH", frame[l4:l4 + 4])
    if proto == 6 and len(frame) >= l4 + 14:
        flags = frame[l4 + 13]
    elif proto in (1, 58) and len(frame) >= l4 + 1:
        flags = frame[l4]
    return proto, v6, bytes(src), bytes(dst), sport, dport, flags, plen


def l4_payload(frame):
    """(proto, src, dst, sport, dport, flags, seq, payload) of an Ethernet IPv4/IPv6 TCP/UDP frame, or None."""
    ip = ip_of_ethernet(frame)
    if ip is None or ip[0] not in (6, 17):
        return None
    proto, v6, src, dst, sport, dport, flags, _ = ip
    off = 12
    while frame[off:off + 2] in (b"\x81\x00", b"\x88\xa8"):
        off += 4
    off += 2
    l4 = off + (40 if v6 else (frame[off] & 15) * 4)
    if proto == 6:
        if len(frame) < l4 + 20:
            return None
        seq = struct.unpack(">I", frame[l4 + 4:l4 + 8])[0]
        data = frame[l4 + (frame[l4 + 12] >> 4) * 4:]
    else:
        seq, data = 0, frame[l4 + 8:]
    return proto, src, dst, sport, dport, flags, seq, bytes(data)


APP_PORTS = [80, 443, 53, 22, 8080, 8443, 5353, 137, 853, 25, 21, 3306, 1, 40000, 65535, 0]


def app_and_stream_seeds(packets):
    """Per TCP/UDP conversation: an `app` input and, for TCP, a `reassembly` input."""
    convs = {}
    for lt, _, frame in packets:
        if lt != 1:
            continue
        p = l4_payload(frame)
        if p is None:
            continue
        proto, src, dst, sport, dport = p[:5]
        key = flowkey.between((src, sport), (dst, dport), proto)
        convs.setdefault(key, []).append(p)
    out_app, out_stream = [], []
    for key, pkts in list(convs.items())[:8]:
        proto, src0, _, sport0, dport0 = pkts[0][:5]
        ip_ = APP_PORTS.index(sport0) if sport0 in APP_PORTS else 13
        rp_ = APP_PORTS.index(dport0) if dport0 in APP_PORTS else 13
        a = (1 if proto == 17 else 0) | (ip_ << 1) | ((rp_ & 7) << 5)
        b = rp_ >> 3
        app = bytearray([a, b])
        isn = {}
        stream = bytearray()
        for p in pkts[:32]:
            _, src, _, sport, _, flags, seq, data = p
            d = 1 if (src, sport) == (src0, sport0) else 0
            for i in range(0, len(data), 255):
                chunk = data[i:i + 255]
                app += bytes([d | (4 if proto == 17 else 0), len(chunk)]) + chunk
            if proto == 6:
                rdir = 0 if d else 1
                isn.setdefault(rdir, seq)
                rel = (seq - isn[rdir]) & 0xFFFFFFFF
                stream += bytes([rdir, flags]) + struct.pack("<IH", rel, min(len(data), 2047))
        if len(app) > 2:
            out_app.append(bytes(app))
        if stream:
            out_stream.append(bytes(stream))
    return out_app, out_stream


def defrag_seeds():
    """A few fragment sequences in the `defrag` target's record format."""
    def rec(v6, more, src, ident, udp, off_units, length, step=1):
        b0 = (1 if v6 else 0) | (2 if more else 0) | (src << 2) | (ident << 4) | (0x40 if udp else 0)
        return bytes([b0]) + struct.pack("<HHB", off_units, length, step) + b"\0\0"
    yield rec(0, 1, 0, 0, 1, 0, 16) + rec(0, 0, 0, 0, 1, 2, 20)                       # two fragments, UDP
    yield rec(1, 1, 1, 1, 0, 0, 32) + rec(1, 1, 1, 1, 0, 4, 32) + rec(1, 0, 1, 1, 0, 8, 7)  # IPv6, three
    yield rec(0, 1, 0, 2, 0, 0, 24) + rec(0, 1, 0, 2, 0, 2, 24) + rec(0, 0, 0, 2, 0, 5, 8)  # overlap
    yield rec(0, 0, 0, 3, 1, 3, 8) + rec(0, 1, 0, 3, 1, 0, 24)                        # last first
    yield b"".join(rec(0, 1, s & 3, s >> 2, 1, 0, 8, 0xff) for s in range(16))            # never completed


def near_port(p):
    return min(range(8), key=lambda i: abs(PORTS[i] - p))


def flow_records(packets):
    hosts, out, last = {}, bytearray(), None
    for lt, ts, frame in packets:
        if lt != 1:
            continue
        ip = ip_of_ethernet(frame)
        if ip is None:
            continue
        proto, v6, src, dst, sport, dport, flags, plen = ip
        sel = {6: 0, 17: 1, 1: 2, 58: 2}.get(proto, 3) | (4 if v6 else 0)
        s = hosts.setdefault(src, len(hosts)) & 7
        d = hosts.setdefault(dst, len(hosts)) & 7
        step_ms = 0 if last is None else max(0, min((ts - last) // 1000, 255 * 255))
        last = ts
        a = min(255, max(1, step_ms // 255 + (1 if step_ms % 255 else 0))) if step_ms else 0
        b = min(255, step_ms // a) if a else 0
        a, b = (min(a, 0xFD), b)
        out += bytes([sel, s, d, near_port(sport) | (near_port(dport) << 3), flags, a, b, min(255, plen // 8)])
        if len(out) >= 256 * 8:
            break
    return bytes(out)


def main():
    src_dir, out_dir = sys.argv[1], sys.argv[2]
    counts = {"decode": 0, "pcap_file": 0, "flow_table": 0, "reassembly": 0, "defrag": 0, "app": 0}
    for t in counts:
        os.makedirs(os.path.join(out_dir, t), exist_ok=True)

    def put(target, blob):
        name = hashlib.sha1(blob).hexdigest()
        path = os.path.join(out_dir, target, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(blob)
            counts[target] += 1

    for root, _, files in os.walk(src_dir):
        for fn in sorted(files):
            if not fn.endswith((".pcap", ".pcapng", ".cap")):
                continue
            with open(os.path.join(root, fn), "rb") as f:
                data = f.read()
            packets = []
            try:
                for i, p in enumerate(read_pcap(data)):
                    packets.append(p)
                    if i >= 255:
                        break
            except (struct.error, pcapio.PcapError):
                pass
            for lt, _, frame in packets[:40]:
                sel = LINK_TYPES.index(lt) if lt in LINK_TYPES else 10
                put("decode", bytes([sel]) + frame[:4096])
            if len(data) <= 64 * 1024:
                put("pcap_file", data)
            elif data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
                e = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
                off = 24
                for _ in range(16):
                    if off + 16 > len(data):
                        break
                    off += 16 + struct.unpack(e + "I", data[off + 8:off + 12])[0]
                put("pcap_file", data[:min(off, len(data))])
            recs = flow_records(packets)
            if recs:
                put("flow_table", recs)
            apps, streams = app_and_stream_seeds(packets)
            for a in apps:
                put("app", a)
            for st in streams:
                put("reassembly", st)
    for d in defrag_seeds():
        put("defrag", d)
    for t, n in counts.items():
        print(f"seed: {n} new inputs in {os.path.join(out_dir, t)}")


if __name__ == "__main__":
    main()
