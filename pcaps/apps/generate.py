#!/usr/bin/env python3
"""Application-layer test captures for Tidewatch (Python 3.11, standard library only).

    python3 pcaps/apps/generate.py [--out DIR]     (default DIR: the folder of this script)
    python3 pcaps/apps/generate.py --check [--out DIR]   regenerate, then compare with tshark

Writes small classic pcap files (little-endian, DLT 1 Ethernet, microsecond
timestamps) plus EXPECTED.json (machine-readable ground truth) and EXPECTED.md
(how each file was built and what tshark 4.0 shows).  Every packet is built in
memory; no socket is opened.  Output is byte-for-byte identical on every run:
all "random" bytes come from random.Random seeded with fixed strings.

Self-contained on purpose (does not import ../generate.py), so that edits to the
big generator cannot change these files; its only import from the repository is the
shared pcap writer, python/tidewatch_tools/pcapio.py (tested by python/tests).

Wire conventions: IPv4 header 20 bytes (DF, TTL 64 unless noted), TCP header 20
bytes except SYN / SYN-ACK (12 option bytes: MSS 1460, NOP NOP SACK_PERM, NOP
WS), Ethernet frames not padded to 60 bytes, all checksums correct.  Flow byte
counts in EXPECTED.json are Ethernet frame lengths (pcap caplen == origlen);
payload_* counts are TCP/UDP payload bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
from tidewatch_tools.pcapio import write_pcap  # noqa: E402

BASE_T = 1767312000  # 2026-01-02T00:00:00Z
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
M32 = 0xFFFFFFFF

# ============================================================ wire encoding


def csum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def mac(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def mcast_mac(ip: str) -> bytes:
    b = ip4(ip)
    return bytes([0x01, 0x00, 0x5E, b[1] & 0x7F, b[2], b[3]])


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int) -> bytes:
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000,
                    ttl, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def tcp(src, dst, sport, dport, seq, ack, flags, win, payload=b"", opts=b"") -> bytes:
    h = struct.pack("!HHIIBBHHH", sport, dport, seq & M32, ack & M32,
                    ((20 + len(opts)) // 4) << 4, flags, win, 0, 0) + opts
    seg = h + payload
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src, dst, sport, dport, payload) -> bytes:
    n = 8 + len(payload)
    d = struct.pack("!HHHH", sport, dport, n, 0) + payload
    c = csum(src + dst + struct.pack("!BBH", 0, 17, n) + d) or 0xFFFF
    return d[:6] + struct.pack("!H", c) + d[8:]


SYN_OPTS = struct.pack("!BBH", 2, 4, 1460) + b"\x01\x01\x04\x02" + b"\x01\x03\x03\x07"


# ============================================================ capture model


class Host:
    def __init__(self, ip: str, mac_s: str, ident: int):
        self.ip, self.ipb, self.mac, self.ident = ip, ip4(ip), mac(mac_s), ident

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident


class Flow:
    """Bidirectional 5-tuple statistics plus application ground truth."""

    def __init__(self, proto, client, server):
        self.proto, self.client, self.server = proto, client, server
        self.pc = self.ps = self.bc = self.bs = self.lc = self.ls = 0
        self.info: dict = {}

    def count(self, c2s: bool, frame_len: int, payload_len: int):
        if c2s:
            self.pc += 1
            self.bc += frame_len
            self.lc += payload_len
        else:
            self.ps += 1
            self.bs += frame_len
            self.ls += payload_len

    def as_json(self):
        d = {"proto": self.proto, "client": self.client, "server": self.server,
             "packets_c2s": self.pc, "packets_s2c": self.ps,
             "bytes_c2s": self.bc, "bytes_s2c": self.bs,
             "payload_c2s": self.lc, "payload_s2c": self.ls}
        d.update(self.info)
        return d


class Capture:
    def __init__(self, name: str, t0: int):
        self.name, self.t = name, t0 * 1_000_000
        self.records: list[tuple[int, bytes]] = []
        self.flows: dict[tuple, Flow] = {}
        self.notes: list[str] = []

    def wait(self, ms: float):
        self.t += round(ms * 1000)

    def flow(self, proto, client, server) -> Flow:
        k = (proto, client, server)
        if k not in self.flows:
            self.flows[k] = Flow(proto, client, server)
        return self.flows[k]

    def emit(self, src: Host, dst_ipb: bytes, dst_mac: bytes, proto: int, l4: bytes, ttl: int = 64):
        frame = dst_mac + src.mac + b"\x08\x00" + ipv4(src.ipb, dst_ipb, proto, l4, src.next_ident(), ttl)
        self.records.append((self.t, frame))
        return len(frame)

    def write(self, outdir):
        write_pcap(os.path.join(outdir, self.name), 1, self.records)  # DLT 1: Ethernet

    def size(self):
        return 24 + sum(16 + len(f) for _, f in self.records)


class UdpFlow:
    def __init__(self, cap: Capture, cli: Host, cport: int, srv_ip: str, sport: int,
                 srv: Host | None = None, ttl: int = 64):
        self.cap, self.cli, self.cport, self.sport, self.srv, self.ttl = cap, cli, cport, sport, srv, ttl
        self.srv_ipb = ip4(srv_ip)
        self.srv_mac = srv.mac if srv else mcast_mac(srv_ip)
        self.flow = cap.flow("udp", f"{cli.ip}:{cport}", f"{srv_ip}:{sport}")

    def send(self, side: str, payload: bytes, dt_ms: float):
        self.cap.wait(dt_ms)
        if side == "c":
            n = self.cap.emit(self.cli, self.srv_ipb, self.srv_mac, 17,
                              udp(self.cli.ipb, self.srv_ipb, self.cport, self.sport, payload), self.ttl)
        else:
            n = self.cap.emit(self.srv, self.cli.ipb, self.cli.mac, 17,
                              udp(self.srv_ipb, self.cli.ipb, self.sport, self.cport, payload), self.ttl)
        self.flow.count(side == "c", n, len(payload))


class TcpConn:
    """One TCP connection; seq/ack bookkeeping assumes every segment arrives."""

    WIN = {"c": 502, "s": 509}           # scaled (wscale 7) data windows
    SYN_WIN = {"c": 64240, "s": 65160}

    def __init__(self, cap: Capture, cli: Host, cport: int, srv: Host, sport: int, isn_c: int, isn_s: int):
        self.cap, self.h = cap, {"c": cli, "s": srv}
        self.port = {"c": cport, "s": sport}
        self.isn = {"c": isn_c & M32, "s": isn_s & M32}
        self.nxt = dict(self.isn)
        self.stream = {"c": bytearray(), "s": bytearray()}
        self.flow = cap.flow("tcp", f"{cli.ip}:{cport}", f"{srv.ip}:{sport}")
        self.flow.info["connections"] = self.flow.info.get("connections", 0) + 1
        self.cnt = [0, 0, 0, 0]  # this connection only: packets c2s, s2c, frame bytes c2s, s2c
        self.server_isn_sent = False

    def seg(self, side, flags, payload=b"", dt=0.0, seq=None, ack=None, win=None, opts=b"", advance=True):
        o = "s" if side == "c" else "c"
        self.cap.wait(dt)
        if seq is None:
            seq = self.nxt[side]
        if ack is None:
            ack = self.nxt[o] if flags & ACK else 0
        if win is None:
            win = self.SYN_WIN[side] if flags & SYN else self.WIN[side]
        src, dst = self.h[side], self.h[o]
        l4 = tcp(src.ipb, dst.ipb, self.port[side], self.port[o], seq, ack, flags, win, payload, opts)
        n = self.cap.emit(src, dst.ipb, dst.mac, 6, l4)
        self.flow.count(side == "c", n, len(payload))
        self.cnt[0 if side == "c" else 1] += 1
        self.cnt[2 if side == "c" else 3] += n
        if side == "s" and flags & SYN:
            self.server_isn_sent = True
        if advance:
            self.nxt[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & M32
            self.stream[side] += payload

    def open(self, rtt=20.0):
        self.seg("c", SYN, opts=SYN_OPTS)
        self.seg("s", SYN | ACK, dt=rtt / 2, opts=SYN_OPTS)
        self.seg("c", ACK, dt=rtt / 2)

    def send(self, side, payload, dt):
        self.seg(side, PSH | ACK, payload, dt)

    def ack(self, side, dt):
        self.seg(side, ACK, dt=dt)

    def close(self, first="c", dt=5.0, rtt=20.0):
        o = "s" if first == "c" else "c"
        self.seg(first, FIN | ACK, dt=dt)
        self.seg(o, FIN | ACK, dt=rtt / 2)
        self.seg(first, ACK, dt=rtt / 2)

    def run(self, steps, rtt=20.0):
        """steps: (side, payload, dt_ms).  A pure ACK is sent by the receiver when
        the sender's next step is again data from the same side after a pause of
        more than 40 ms, or at the end (delayed ACK style)."""
        for i, (side, payload, dt) in enumerate(steps):
            self.send(side, payload, dt)
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            if nxt is None or (nxt[0] == side and nxt[2] > 40):
                self.ack("s" if side == "c" else "c", rtt / 2)


# ============================================================ DNS

QT = {"A": 1, "NS": 2, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33, "OPT": 41}
QT_NAME = {v: k for k, v in QT.items()}
PTR_Q = b"\xc0\x0c"  # compression pointer to the first question name


def dname(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def rr(name: bytes, rtype: str, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return name + struct.pack("!HHIH", QT[rtype], rclass, ttl, len(rdata)) + rdata


OPT_RR = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)


def dns_msg(qid, flags, questions, answers=(), authority=(), additional=()) -> bytes:
    h = struct.pack("!HHHHHH", qid, flags, len(questions), len(answers), len(authority), len(additional))
    q = b"".join(dname(n) + struct.pack("!HH", QT[t], c) for n, t, c in questions)
    return h + q + b"".join(answers) + b"".join(authority) + b"".join(additional)


def txt_rdata(s: bytes) -> bytes:
    out = b""
    while s:
        out += bytes([min(255, len(s))]) + s[:255]
        s = s[255:]
    return out


def b32ish(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz234567") for _ in range(n))


def soa_rdata(zone: str) -> bytes:
    return dname("ns1." + zone) + dname("hostmaster." + zone) + struct.pack("!IIIII", 2026010201, 3600, 600, 86400, 60)


# ============================================================ TLS

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def u16list(vals, lenbytes=2) -> bytes:
    body = b"".join(struct.pack("!H", v) for v in vals)
    return len(body).to_bytes(lenbytes, "big") + body


PROFILES = {
    # Chrome-like browser hello (proxies)
    "browser": dict(
        ciphers=[0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035],
        order=["G1", 0x0000, 0x0017, 0xFF01, 0x000A, 0x000B, 0x0023, 0x0010, 0x0005, 0x000D,
               0x0012, 0x0033, 0x002D, 0x002B, 0x001B, "G2"],
        groups=[0x001D, 0x0017, 0x0018],
        pf=[0],
        sigalgs=[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601],
        versions=[0x0304, 0x0303]),
    # OpenSSL-like mail/directory client hello, with GREASE added (cipher, extension, group, version)
    "mail": dict(
        ciphers=[0x1302, 0x1303, 0x1301, 0xC02C, 0xC030, 0x009F, 0xCCA9, 0xCCA8, 0xCCAA,
                 0xC02B, 0xC02F, 0x009E, 0x00FF],
        order=["G1", 0x0000, 0x000B, 0x000A, 0x0023, 0x0010, 0x0016, 0x0017, 0x000D, 0x002B,
               0x002D, 0x0033],
        groups=[0x001D, 0x0017, 0x001E, 0x0019, 0x0018],
        pf=[0, 1, 2],
        sigalgs=[0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080A, 0x080B, 0x0804, 0x0805,
                 0x0806, 0x0401, 0x0501, 0x0601],
        versions=[0x0304, 0x0303]),
}


def client_hello(rng: random.Random, sni: str, alpn: list[str], profile: str) -> tuple[bytes, bytes]:
    """Returns (TLS record, legacy session id)."""
    p = PROFILES[profile]
    g = rng.sample(GREASE, 4)  # cipher, ext1, ext2 / group, version
    sid = rng.randbytes(32)
    name = sni.encode()
    alpn_b = b"".join(bytes([len(a)]) + a.encode() for a in alpn)
    ext_data = {
        0x0000: struct.pack("!HBH", len(name) + 3, 0, len(name)) + name,
        0x0005: b"\x01\x00\x00\x00\x00",
        0x000A: u16list([g[2]] + p["groups"]),
        0x000B: bytes([len(p["pf"])] + p["pf"]),
        0x000D: u16list(p["sigalgs"]),
        0x0010: struct.pack("!H", len(alpn_b)) + alpn_b,
        0x0012: b"",
        0x0016: b"",
        0x0017: b"",
        0x001B: b"\x02\x00\x02",
        0x0023: b"",
        0x002B: bytes([2 * (1 + len(p["versions"]))]) + b"".join(struct.pack("!H", v) for v in [g[3]] + p["versions"]),
        0x002D: b"\x01\x01",
        0xFF01: b"\x00",
    }
    ks = struct.pack("!HH", g[2], 1) + b"\x00" + struct.pack("!HH", 0x001D, 32) + rng.randbytes(32)
    ext_data[0x0033] = struct.pack("!H", len(ks)) + ks
    exts = b""
    for e in p["order"]:
        if e == "G1":
            exts += struct.pack("!HH", g[1], 0)
        elif e == "G2":
            g2 = GREASE[(GREASE.index(g[1]) + 5) % 16]
            exts += struct.pack("!HH", g2, 1) + b"\x00"
        else:
            exts += struct.pack("!HH", e, len(ext_data[e])) + ext_data[e]
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([32]) + sid +
            u16list([g[0]] + p["ciphers"]) + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs, sid


def server_hello(rng: random.Random, sid: bytes, cipher: int) -> bytes:
    exts = struct.pack("!HHH", 0x002B, 2, 0x0304) + struct.pack("!HHHH", 0x0033, 36, 0x001D, 32) + rng.randbytes(32)
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([len(sid)]) + sid +
            struct.pack("!HB", cipher, 0) + struct.pack("!H", len(exts)) + exts)
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


CCS = b"\x14\x03\x03\x00\x01\x01"


def appdata(rng: random.Random, n: int) -> bytes:
    return b"\x17\x03\x03" + struct.pack("!H", n) + rng.randbytes(n)


# --- independent parser + fingerprints (works on the bytes, not on the builder inputs)

def parse_hello(rec: bytes) -> dict:
    assert rec[0] == 0x16
    hs = rec[5:5 + struct.unpack("!H", rec[3:5])[0]]
    typ, body = hs[0], hs[4:4 + int.from_bytes(hs[1:4], "big")]
    out = {"type": typ, "version": struct.unpack("!H", body[:2])[0]}
    i = 2 + 32
    i += 1 + body[i]
    if typ == 1:
        n = struct.unpack("!H", body[i:i + 2])[0]
        out["ciphers"] = [struct.unpack("!H", body[j:j + 2])[0] for j in range(i + 2, i + 2 + n, 2)]
        i += 2 + n
        i += 1 + body[i]
    else:
        out["cipher"] = struct.unpack("!H", body[i:i + 2])[0]
        i += 3
    end = i + 2 + struct.unpack("!H", body[i:i + 2])[0]
    i += 2
    out["exts"], out["groups"], out["pf"], out["sigalgs"], out["versions"], out["alpn"] = [], [], [], [], [], []
    while i < end:
        t, ln = struct.unpack("!HH", body[i:i + 4])
        d = body[i + 4:i + 4 + ln]
        i += 4 + ln
        out["exts"].append(t)
        if t == 0x000A:
            out["groups"] = [struct.unpack("!H", d[j:j + 2])[0] for j in range(2, len(d), 2)]
        elif t == 0x000B:
            out["pf"] = list(d[1:])
        elif t == 0x000D:
            out["sigalgs"] = [struct.unpack("!H", d[j:j + 2])[0] for j in range(2, len(d), 2)]
        elif t == 0x002B and typ == 1:
            out["versions"] = [struct.unpack("!H", d[j:j + 2])[0] for j in range(1, len(d), 2)]
        elif t == 0x002B:
            out["versions"] = [struct.unpack("!H", d)[0]]
        elif t == 0x0010:
            j = 2
            while j < len(d):
                out["alpn"].append(d[j + 1:j + 1 + d[j]].decode())
                j += 1 + d[j]
        elif t == 0x0000:
            out["sni"] = d[5:].decode()
    return out


def ja3(h: dict) -> tuple[str, str]:
    f = lambda vs: "-".join(str(v) for v in vs if not is_grease(v))  # noqa: E731
    s = ",".join([str(h["version"]), f(h["ciphers"]), f(h["exts"]), f(h["groups"]), f(h["pf"])])
    return s, hashlib.md5(s.encode()).hexdigest()


def ja3s(h: dict) -> tuple[str, str]:
    s = ",".join([str(h["version"]), str(h["cipher"]), "-".join(str(e) for e in h["exts"])])
    return s, hashlib.md5(s.encode()).hexdigest()


def ja4(h: dict) -> tuple[str, str]:
    vers = [v for v in h["versions"] if not is_grease(v)]
    v = max(vers) if vers else h["version"]
    vs = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0200: "s2", 0x0100: "s1"}.get(v, "00")
    ciphers = [c for c in h["ciphers"] if not is_grease(c)]
    exts = [e for e in h["exts"] if not is_grease(e)]
    a0 = h["alpn"][0] if h["alpn"] else ""
    alpn = (a0[0] + a0[-1]) if a0 else "00"
    a = "t%s%s%02d%02d%s" % (vs, "d" if 0 in exts else "i", min(99, len(ciphers)), min(99, len(exts)), alpn)
    cs = ",".join("%04x" % c for c in sorted(ciphers))
    es = ",".join("%04x" % e for e in sorted(exts) if e not in (0x0000, 0x0010))
    sa = ",".join("%04x" % s for s in h["sigalgs"])
    c_in = es + ("_" + sa if sa else "")
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()[:12]  # noqa: E731
    return f"{a}_{cs}_{c_in}", f"{a}_{sha(cs)}_{sha(c_in)}"


def _ja4_selftest():
    # example from FoxIO's JA4 technical_details/JA4.md
    cs = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"
    assert hashlib.sha256(cs.encode()).hexdigest()[:12] == "8daaf6152771"
    e = ("0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
         "0403,0804,0401,0503,0805,0501,0806,0601")
    assert hashlib.sha256(e.encode()).hexdigest()[:12] == "e5627efa2ab1"


# ============================================================ hosts

def lan():
    return {
        "cli": Host("192.168.56.10", "02:00:00:00:56:10", 0x2A00),
        "dns": Host("192.168.56.1", "02:00:00:00:56:01", 0x7100),
        "web": Host("192.168.56.2", "02:00:00:00:56:02", 0x5300),
        "proxy": Host("192.168.56.3", "02:00:00:00:56:03", 0x6400),
        "syn": Host("192.168.56.4", "02:00:00:00:56:04", 0x1500),
        "mail": Host("192.168.56.25", "02:00:00:00:56:25", 0x3300),
        "llmnr": Host("192.168.56.30", "02:00:00:00:56:30", 0x0C00),
    }


# ============================================================ 1. dns-many.pcap

def build_dns():
    rng = random.Random("tidewatch-apps-dns")
    cap = Capture("dns-many.pcap", BASE_T)
    H = lan()
    cli, srv = H["cli"], H["dns"]
    zone = "t.tunnel.example"

    # --- 40 query/response pairs on one UDP flow
    f = UdpFlow(cap, cli, 40001, srv.ip, 53, srv)
    names, seen = [], set()
    while len(names) < 40:
        lab = "%06x" % rng.getrandbits(24)
        if lab not in seen and not lab.isdigit():
            seen.add(lab)
            names.append(lab + "." + zone)
    qtypes = ["TXT" if rng.random() < 0.5 else "A" for _ in names]
    qtypes[0], qtypes[1] = "A", "TXT"
    nx_index = 23
    queries = []
    qid = 0x3A10
    for i, (name, qt) in enumerate(zip(names, qtypes)):
        qid = (qid * 31 + 0x1D3) & 0xFFFF
        f.send("c", dns_msg(qid, 0x0100, [(name, qt, 1)], additional=[OPT_RR]), 40 + rng.randrange(160) if i else 0)
        if i == nx_index:
            resp = dns_msg(qid, 0x8183, [(name, qt, 1)], authority=[rr(dname(zone), "SOA", 60, soa_rdata(zone))],
                           additional=[OPT_RR])
            rc = "NXDOMAIN"
        elif qt == "A":
            resp = dns_msg(qid, 0x8180, [(name, qt, 1)],
                           answers=[rr(PTR_Q, "A", 0, bytes([10, 77, rng.randrange(256), 1 + rng.randrange(254)]))],
                           additional=[OPT_RR])
            rc = "NOERROR"
        else:
            resp = dns_msg(qid, 0x8180, [(name, qt, 1)],
                           answers=[rr(PTR_Q, "TXT", 0, txt_rdata(b32ish(rng, 40 + rng.randrange(120))))],
                           additional=[OPT_RR])
            rc = "NOERROR"
        f.send("s", resp, 2 + rng.randrange(3000) / 1000)
        queries.append({"name": name, "qtype": qt, "rcode": rc})
    f.flow.info.update(app="dns", dns_queries=queries)

    # --- DNS over TCP: 8 queries / 8 responses
    cap.wait(300)
    c = TcpConn(cap, cli, 40002, srv, 53, 0x5EED0001, 0x0BADC0DE)
    c.open(rtt=2.0)
    tq = [("big%d.%s" % (i, zone), qt) for i, qt in
          enumerate(["TXT", "A", "TXT", "AAAA", "TXT", "MX", "A", "TXT"], 1)]
    msgs_q, msgs_r = [], []
    tqueries = []
    for i, (name, qt) in enumerate(tq):
        qid = 0x7700 + i
        q = dns_msg(qid, 0x0100, [(name, qt, 1)], additional=[OPT_RR])
        if qt == "TXT":
            ans = [rr(PTR_Q, "TXT", 30, txt_rdata(b32ish(rng, 300 + 40 * i)))]
        elif qt == "A":
            ans = [rr(PTR_Q, "A", 30, bytes([10, 77, 0, i]))]
        elif qt == "AAAA":
            ans = [rr(PTR_Q, "AAAA", 30, bytes.fromhex("fd00005600000000000000000000%04x" % i))]
        else:
            ans = [rr(PTR_Q, "MX", 30, struct.pack("!H", 10) + dname("mx." + zone))]
        r = dns_msg(qid, 0x8180, [(name, qt, 1)], answers=ans, additional=[OPT_RR])
        msgs_q.append(struct.pack("!H", len(q)) + q)
        msgs_r.append(struct.pack("!H", len(r)) + r)
        tqueries.append({"name": name, "qtype": qt, "rcode": "NOERROR"})
    c.send("c", msgs_q[0], 1)
    c.send("s", msgs_r[0], 1.5)
    c.send("c", msgs_q[1], 20)
    c.send("s", msgs_r[1], 1.5)
    c.send("c", msgs_q[2] + msgs_q[3], 20)          # two queries in one segment
    c.send("s", msgs_r[2], 1.5)
    c.send("s", msgs_r[3], 0.1)
    c.send("c", msgs_q[4], 20)
    split = 2 + 60                                   # length prefix + 60 bytes, then the rest
    c.send("s", msgs_r[4][:split], 1.5)              # one response split over two segments
    c.ack("c", 1.0)
    c.send("s", msgs_r[4][split:], 1.0)
    for k in (5, 6, 7):
        c.send("c", msgs_q[k], 20)
        c.send("s", msgs_r[k], 1.5)
    c.ack("c", 1.0)
    c.close("c", dt=50, rtt=2.0)
    c.flow.info.update(app="dns", dns_queries=tqueries,
                       note="query 3+4 share one TCP segment; response 5 is split after 62 bytes "
                            "(2-byte length prefix + 60 bytes of the message)")

    # --- mDNS: three messages from one host to 224.0.0.251:5353
    cap.wait(400)
    m = UdpFlow(cap, cli, 5353, "224.0.0.251", 5353, ttl=255)
    m.send("c", dns_msg(0, 0x0000, [("_http._tcp.local", "PTR", 1), ("_ipp._tcp.local", "PTR", 1)]), 0)
    ans = [rr(dname("_http._tcp.local"), "PTR", 4500, dname("office-printer._http._tcp.local")),
           rr(dname("_ipp._tcp.local"), "PTR", 4500, dname("Office Printer._ipp._tcp.local"))]
    m.send("c", dns_msg(0, 0x8400, [], answers=ans), 120)
    m.send("c", dns_msg(0, 0x0000, [("_ipps._tcp.local", "PTR", 1)]), 1000)
    m.flow.info.update(app="mdns", dns_queries=[
        {"name": "_http._tcp.local", "qtype": "PTR"}, {"name": "_ipp._tcp.local", "qtype": "PTR"},
        {"name": "_ipps._tcp.local", "qtype": "PTR"}],
        mdns_answers=[{"name": "_http._tcp.local", "type": "PTR", "data": "office-printer._http._tcp.local"},
                      {"name": "_ipp._tcp.local", "type": "PTR", "data": "Office Printer._ipp._tcp.local"}],
        note="multicast, one direction only: query (2 questions), response (2 answers, QR=1 AA=1, "
             "sent by the same host, which advertises its own services), query (1 question)")

    # --- LLMNR: multicast query, unicast answer
    cap.wait(500)
    lq = UdpFlow(cap, cli, 50531, "224.0.0.252", 5355, ttl=1)
    lq.send("c", dns_msg(0x4C1E, 0x0000, [("printer", "A", 1)]), 0)
    lr = UdpFlow(cap, cli, 50531, H["llmnr"].ip, 5355, H["llmnr"], ttl=64)
    lr.send("s", dns_msg(0x4C1E, 0x8000, [("printer", "A", 1)],
                         answers=[rr(PTR_Q, "A", 30, ip4(H["llmnr"].ip))]), 3.2)
    lq.flow.info.update(app="llmnr", dns_queries=[{"name": "printer", "qtype": "A"}])
    lr.flow.info.update(app="llmnr", llmnr_answer={"name": "printer", "type": "A", "data": H["llmnr"].ip},
                        note="unicast response from the responder 192.168.56.30:5355 to the querier's port; "
                             "a different 5-tuple than the multicast query, and its first (only) packet is "
                             "server->client")
    return cap


# ============================================================ 2. http-keepalive.pcap

def http_req(method, uri, host, extra=(), body=b""):
    lines = [f"{method} {uri} HTTP/1.1", f"Host: {host}", "User-Agent: curl/8.5.0", "Accept: */*", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_resp(status, reason, headers, body=b""):
    lines = [f"HTTP/1.1 {status} {reason}", "Server: nginx/1.24.0", "Date: Fri, 02 Jan 2026 00:00:05 GMT",
             *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def png_chunk(typ: bytes, data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + typ + data + struct.pack("!I", zlib.crc32(typ + data))


def png_image(rng: random.Random) -> bytes:
    """A valid 28x8 8-bit grayscale PNG of exactly 300 bytes (IDAT = stored deflate block)."""
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(28)) for _ in range(8))
    idat = zlib.compress(raw, 0)
    png = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack("!IIBBBBB", 28, 8, 8, 0, 0, 0, 0)) +
           png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))
    assert len(png) == 300, len(png)
    return png


def build_http():
    rng = random.Random("tidewatch-apps-http")
    cap = Capture("http-keepalive.pcap", BASE_T + 3600)
    H = lan()
    cli, srv = H["cli"], H["web"]
    c = TcpConn(cap, cli, 40100, srv, 80, 0x1A2B3C4D, 0x6F5E4D3C)
    c.open()
    tx = []

    html = (b"<!DOCTYPE html>\n<html><head><title>a.example</title></head>\n<body><h1>It works</h1>\n" +
            b"<p>" + b32ish(rng, 200) + b"</p>\n</body></html>\n")
    png = png_image(rng)
    post = b'{"user":"alice","action":"ping","seq":12345678901}'
    assert len(post) == 50
    jres = b'{"status":"ok","id":42}'
    chunks = [b"first chunk 16b\n", b"second chunk carries 32 bytes!!\n", b"third: 11b\n"]
    assert [len(x) for x in chunks] == [16, 32, 11]
    chunked = b"".join(b"%x\r\n" % len(x) + x + b"\r\n" for x in chunks) + b"0\r\n\r\n"

    r1 = http_req("GET", "/", "a.example")
    p1 = http_resp(200, "OK", ["Content-Type: text/html", f"Content-Length: {len(html)}", "Connection: keep-alive"],
                   html)
    r2 = http_req("GET", "/img.png", "a.example")
    p2 = http_resp(200, "OK", ["Content-Type: image/png", "Content-Length: 300", "Connection: keep-alive"], png)
    r3 = http_req("POST", "/api", "a.example", ["Content-Type: application/json", "Content-Length: 50"], post)
    p3 = http_resp(200, "OK", ["Content-Type: application/json", f"Content-Length: {len(jres)}",
                               "Connection: keep-alive"], jres)
    r4 = http_req("HEAD", "/x", "a.example")
    p4 = http_resp(200, "OK", ["Content-Type: text/plain", "Content-Length: 1234", "Connection: keep-alive"])
    r5 = http_req("GET", "/chunked", "a.example")
    p5 = http_resp(200, "OK", ["Content-Type: text/plain", "Transfer-Encoding: chunked", "Connection: keep-alive"],
                   chunked)

    c.send("c", r1, 1)
    c.ack("s", 10)
    c.send("s", p1, 2)
    c.send("c", r2, 30)
    c.ack("s", 10)
    c.send("s", p2, 3)
    c.send("c", r3, 30)
    c.ack("s", 10)
    c.send("s", p3, 4)
    c.send("c", r4, 30)       # pipelined: HEAD /x and GET /chunked leave before any answer
    c.send("c", r5, 0.2)
    c.ack("s", 10)
    c.send("s", p4, 2)
    c.send("s", p5, 0.3)
    c.ack("c", 10)
    c.close("c", dt=200)
    U = "curl/8.5.0"
    tx = [
        dict(method="GET", host="a.example", uri="/", user_agent=U, status=200, content_type="text/html",
             request_body_len=0, response_body_len=len(html)),
        dict(method="GET", host="a.example", uri="/img.png", user_agent=U, status=200, content_type="image/png",
             request_body_len=0, response_body_len=300),
        dict(method="POST", host="a.example", uri="/api", user_agent=U, status=200, content_type="application/json",
             request_body_len=50, response_body_len=len(jres), request_content_type="application/json"),
        dict(method="HEAD", host="a.example", uri="/x", user_agent=U, status=200, content_type="text/plain",
             request_body_len=0, response_body_len=0, content_length=1234, pipelined=True),
        dict(method="GET", host="a.example", uri="/chunked", user_agent=U, status=200, content_type="text/plain",
             request_body_len=0, response_body_len=sum(len(x) for x in chunks),
             response_body_wire_len=len(chunked), transfer_encoding="chunked", chunks=[len(x) for x in chunks],
             pipelined=True),
    ]
    c.flow.info.update(app="http", http=tx)

    # --- second connection: 100 Continue then 200
    cap.wait(1500)
    d = TcpConn(cap, cli, 40101, srv, 8080, 0x22334455, 0x66778899)
    d.open()
    body = b'{"ok":true}\n'
    d.send("c", http_req("GET", "/status", "a.example:8080"), 1)
    d.send("s", b"HTTP/1.1 100 Continue\r\n\r\n", 12)
    d.send("s", http_resp(200, "OK", ["Content-Type: application/json", f"Content-Length: {len(body)}"], body), 8)
    d.ack("c", 10)
    d.close("c", dt=100)
    d.flow.info.update(app="http", http=[dict(
        method="GET", host="a.example:8080", uri="/status", user_agent=U, status=200, interim_status=[100],
        content_type="application/json", request_body_len=0, response_body_len=len(body))])
    return cap


# ============================================================ 3. STARTTLS and proxies

TLS_CASES = [
    # file, server host key, port, sni, alpn, profile, server cipher, kind
    ("smtp-starttls.pcap", "mail", 25, "mail.example.org", ["smtp"], "mail", 0x1302, "smtp"),
    ("imap-starttls.pcap", "mail", 143, "imap.example.org", ["imap"], "mail", 0x1301, "imap"),
    ("pop3-stls.pcap", "mail", 110, "pop.example.org", ["pop3"], "mail", 0x1303, "pop3"),
    ("ftp-authtls.pcap", "mail", 21, "ftp.example.org", ["ftp"], "mail", 0x1302, "ftp"),
    ("ldap-starttls.pcap", "mail", 389, "ldap.example.org", ["ldap"], "mail", 0x1301, "ldap"),
    ("xmpp-starttls.pcap", "mail", 5222, "xmpp.example.org", ["xmpp-client"], "mail", 0x1301, "xmpp"),
    ("socks4.pcap", "proxy", 1080, "socks4.example.org", ["h2", "http/1.1"], "browser", 0x1301, "socks4"),
    ("socks4a.pcap", "proxy", 1080, "socks4a.example.org", ["h2", "http/1.1"], "browser", 0x1301, "socks4a"),
    ("socks5.pcap", "proxy", 1080, "socks5.example.org", ["h2", "http/1.1"], "browser", 0x1302, "socks5"),
    ("http-connect.pcap", "proxy", 3128, "proxied.example.org", ["h2", "http/1.1"], "browser", 0x1303, "http-connect"),
]

LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def ber(tag: int, content: bytes) -> bytes:
    n = len(content)
    assert n < 128
    return bytes([tag, n]) + content


def cleartext_steps(kind: str):
    """Returns (steps, extra ground truth) of the cleartext part; steps: (side, bytes, dt_ms)."""
    S = lambda x: x.encode()  # noqa: E731
    if kind == "smtp":
        return [("s", S("220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n"), 30),
                ("c", S("EHLO client.example.net\r\n"), 2),
                ("s", S("250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
                        "250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
                        "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"), 21),
                ("c", S("STARTTLS\r\n"), 2),
                ("s", S("220 2.0.0 Ready to start TLS\r\n"), 21)], {"upgrade_from": "smtp"}
    if kind == "imap":
        caps = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED"
        return [("s", S(f"* OK [CAPABILITY {caps}] Dovecot (Debian) ready.\r\n"), 30),
                ("c", S("a001 CAPABILITY\r\n"), 2),
                ("s", S(f"* CAPABILITY {caps}\r\na001 OK Pre-login capabilities listed, post-login "
                        "capabilities have more.\r\n"), 21),
                ("c", S("a002 STARTTLS\r\n"), 2),
                ("s", S("a002 OK Begin TLS negotiation now.\r\n"), 21)], {"upgrade_from": "imap"}
    if kind == "pop3":
        return [("s", S("+OK Dovecot (Debian) ready.\r\n"), 30),
                ("c", S("STLS\r\n"), 2),
                ("s", S("+OK Begin TLS negotiation now.\r\n"), 21)], {"upgrade_from": "pop3"}
    if kind == "ftp":
        return [("s", S("220 (vsFTPd 3.0.5)\r\n"), 30),
                ("c", S("AUTH TLS\r\n"), 2),
                ("s", S("234 AUTH TLS OK.\r\n"), 21)], {"upgrade_from": "ftp"}
    if kind == "ldap":
        req = ber(0x30, ber(0x02, b"\x01") + ber(0x77, ber(0x80, LDAP_STARTTLS_OID)))
        res = ber(0x30, ber(0x02, b"\x01") + ber(0x78, ber(0x0A, b"\x00") + ber(0x04, b"") + ber(0x04, b"") +
                                                  ber(0x8A, LDAP_STARTTLS_OID)))
        return [("c", req, 1), ("s", res, 21)], {"upgrade_from": "ldap"}
    if kind == "xmpp":
        ns = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'"
        return [("c", S(f"<?xml version='1.0'?><stream:stream to='xmpp.example.org' {ns}>"), 1),
                ("s", S(f"<?xml version='1.0'?><stream:stream from='xmpp.example.org' "
                        f"id='d4f6c0a1-3b7e-4c55-9f0e-2a8f7d1c9b31' {ns}>"), 21),
                ("s", S("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/>"
                        "</starttls></stream:features>"), 0.3),
                ("c", S("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), 2),
                ("s", S("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"), 21)], {"upgrade_from": "xmpp"}
    if kind == "socks4":
        return [("c", b"\x04\x01\x01\xbb" + ip4("93.184.216.34") + b"\x00", 1),
                ("s", b"\x00\x5a\x01\xbb" + ip4("93.184.216.34"), 40)], \
            {"proxy": "socks4", "proxy_target": "93.184.216.34:443"}
    if kind == "socks4a":
        return [("c", b"\x04\x01\x01\xbb\x00\x00\x00\x01" + b"\x00" + b"socks4a.example.org\x00", 1),
                ("s", b"\x00\x5a\x00\x00\x00\x00\x00\x00", 40)], \
            {"proxy": "socks4a", "proxy_target": "socks4a.example.org:443"}
    if kind == "socks5":
        dom = b"socks5.example.org"
        return [("c", b"\x05\x01\x00", 1), ("s", b"\x05\x00", 21),
                ("c", b"\x05\x01\x00\x03" + bytes([len(dom)]) + dom + b"\x01\xbb", 1),
                ("s", b"\x05\x00\x00\x01" + ip4("192.168.56.3") + struct.pack("!H", 54321), 40)], \
            {"proxy": "socks5", "proxy_target": "socks5.example.org:443"}
    if kind == "http-connect":
        return [("c", S("CONNECT proxied.example.org:443 HTTP/1.1\r\nHost: proxied.example.org:443\r\n"
                        "User-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"), 1),
                ("s", S("HTTP/1.1 200 Connection established\r\n\r\n"), 40)], \
            {"proxy": "http-connect", "proxy_target": "proxied.example.org:443",
             "http": [{"method": "CONNECT", "host": "proxied.example.org:443", "uri": "proxied.example.org:443",
                       "user_agent": "curl/8.5.0", "status": 200, "request_body_len": 0}]}
    raise ValueError(kind)


def build_tls(idx, case):
    fname, srv_key, port, sni, alpn, profile, cipher, kind = case
    rng = random.Random("tidewatch-apps-" + fname)
    cap = Capture(fname, BASE_T + 7200 + 600 * idx)
    H = lan()
    cli, srv = H["cli"], H[srv_key]
    c = TcpConn(cap, cli, 40200 + idx, srv, port, rng.getrandbits(32), rng.getrandbits(32))
    c.open()
    steps, extra = cleartext_steps(kind)
    ch, sid = client_hello(rng, sni, alpn, profile)
    sh = server_hello(rng, sid, cipher)
    flight = sh + CCS + appdata(rng, 1100 + rng.randrange(150))   # EE+Cert+CV+Finished, encrypted
    steps = list(steps) + [
        ("c", ch, 2),
        ("s", flight, 22),
        ("c", CCS + appdata(rng, 53), 3),                          # client Finished
        ("c", appdata(rng, 120 + rng.randrange(60)), 0.4),         # request
        ("s", appdata(rng, 250 + rng.randrange(300)) + appdata(rng, 250 + rng.randrange(300)), 25),
        ("c", appdata(rng, 19), 5),                                # close_notify
    ]
    # first step of the server-speaks-first protocols follows the handshake
    c.run(steps)
    c.close("c", dt=1)
    hc, hs_ = parse_hello(ch), parse_hello(sh)
    assert hc["sni"] == sni and hs_["cipher"] == cipher
    j3s, j3 = ja3(hc)
    j3ss, j3s_ = ja3s(hs_)
    j4r, j4 = ja4(hc)
    info = dict(app="tls", sni=sni, alpn=alpn, ja3=j3, ja3_string=j3s, ja3s=j3s_, ja3s_string=j3ss,
                ja4=j4, ja4_r=j4r,
                tls_c2s_offset=bytes(c.stream["c"]).index(ch),
                tls_s2c_offset=bytes(c.stream["s"]).index(sh))
    info.update(extra)
    c.flow.info.update(info)
    return cap


# ============================================================ 4. syn-retrans.pcap

def build_syn():
    cap = Capture("syn-retrans.pcap", BASE_T + 14400)
    H = lan()
    cli, srv = H["cli"], H["syn"]
    eps = {}

    def rst_ack(c, isn, dt):
        c.seg("s", RST | ACK, dt=dt, seq=0, ack=isn + 1, win=0, advance=False)

    def data_exchange(c):
        c.send("c", b"GET /ping HTTP/1.1\r\nHost: 192.168.56.4\r\nUser-Agent: curl/8.5.0\r\n\r\n", 1)
        c.send("s", b"HTTP/1.1 204 No Content\r\nServer: nginx/1.24.0\r\n\r\n", 11)
        c.ack("c", 10)
        c.close("c", dt=2)

    # a) SYN X, RST-ACK, SYN X, RST-ACK, SYN X, RST-ACK -> 1 connection
    X = 0x9A000001
    a = TcpConn(cap, cli, 41001, srv, 8081, X, 0)
    for k, dt in enumerate((0, 1000, 2000)):
        a.seg("c", SYN, dt=dt, seq=X, opts=SYN_OPTS, advance=False)
        rst_ack(a, X, 0.3)
    eps["a"] = (a.flow, 1, "SYN (ISN X=%d) answered by RST-ACK, same SYN (same ISN) repeated 1 s and 2 s later, "
                           "each answered by RST-ACK" % X)

    # b) SYN Y x3, unanswered -> 1 connection
    cap.wait(3000)
    Y = 0x9B000002
    b = TcpConn(cap, cli, 41002, srv, 8082, Y, 0)
    for dt in (0, 1000, 2000):
        b.seg("c", SYN, dt=dt, seq=Y, opts=SYN_OPTS, advance=False)
    eps["b"] = (b.flow, 1, "SYN (ISN Y=%d) sent 3 times (t, t+1 s, t+3 s), never answered" % Y)

    # c) full connection ISN Z, 2 s later new ISN W and another full connection -> 2
    cap.wait(3000)
    Z, W = 0x9C000003, 0x9C800003
    c1 = TcpConn(cap, cli, 41003, srv, 80, Z, 0x3C000000)
    c1.open()
    data_exchange(c1)
    cap.wait(2000)
    c2 = TcpConn(cap, cli, 41003, srv, 80, W, 0x3C900000)
    c2.open()
    data_exchange(c2)
    eps["c"] = (c1.flow, 2, "full connection (ISN Z=%d: handshake, request, response, FIN/FIN/ACK), then 2 s "
                            "later a SYN with a new ISN W=%d on the same 5-tuple and a second full connection"
                % (Z, W))

    # d) SYN V, RST-ACK, SYN V2 (new ISN) + normal connection -> 2
    cap.wait(3000)
    V, V2 = 0x9D000004, 0x9D700004
    d1 = TcpConn(cap, cli, 41004, srv, 80, V, 0)
    d1.seg("c", SYN, seq=V, opts=SYN_OPTS, advance=False)
    rst_ack(d1, V, 0.3)
    cap.wait(1000)
    d2 = TcpConn(cap, cli, 41004, srv, 80, V2, 0x3D000000)
    d2.open()
    data_exchange(d2)
    eps["d"] = (d1.flow, 2, "SYN (ISN V=%d) answered by RST-ACK; 1 s later a SYN with a new ISN V2=%d, "
                            "SYN-ACK, normal connection" % (V, V2))

    # e) SYN-ACK retransmitted twice by the server -> 1
    cap.wait(3000)
    E, ES = 0x9E000005, 0x3E000000
    e = TcpConn(cap, cli, 41005, srv, 80, E, ES)
    e.seg("c", SYN, opts=SYN_OPTS)
    e.seg("s", SYN | ACK, dt=0.2, opts=SYN_OPTS)
    e.seg("s", SYN | ACK, dt=1000, seq=ES, opts=SYN_OPTS, advance=False)
    e.seg("s", SYN | ACK, dt=2000, seq=ES, opts=SYN_OPTS, advance=False)
    e.seg("c", ACK, dt=20)
    data_exchange(e)
    eps["e"] = (e.flow, 1, "SYN (ISN %d); the server's SYN-ACK (ISN %d) is seen 3 times (original + "
                           "retransmissions after 1 s and 2 s more: the first two were lost after the "
                           "capture point), then the client's ACK, data, FIN/FIN/ACK" % (E, ES))

    conns = {"a": [a], "b": [b], "c": [c1, c2], "d": [d1, d2], "e": [e]}
    for ep, (flow, n, desc) in eps.items():
        assert flow.info["connections"] == n == len(conns[ep])
        flow.info["connection_details"] = [
            {"client_isn": k.isn["c"], "server_isn": k.isn["s"] if k.server_isn_sent else None,
             "packets_c2s": k.cnt[0], "packets_s2c": k.cnt[1], "bytes_c2s": k.cnt[2], "bytes_s2c": k.cnt[3]}
            for k in conns[ep]]
        flow.info["connections"] = n
        flow.info["episode"] = ep
        flow.info["description"] = desc
    return cap


# ============================================================ ground truth + docs

# Observed with TShark 4.0.17 (Debian 4.0.17-0+deb12u3); `--check` re-verifies the machine-checkable part.
TSHARK_NOTES = """\
## What tshark 4.0 shows

Verified with TShark 4.0.17 (Debian 4.0.17-0+deb12u3), default preferences unless noted;
`python3 pcaps/apps/generate.py --check` re-derives per-flow packet/byte counts, `tcp.stream` counts,
DNS question names/types, HTTP requests/responses and SNI/JA3/JA3S from tshark and compares them with
EXPECTED.json (exit status 1 on an unexplained difference).

- **All files:** with `-o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE`
  no bad checksum and no malformed packet. Per-direction frame and byte counts of `-z conv,tcp` /
  `-z conv,udp` equal packets_*/bytes_* of EXPECTED.json for every flow (tshark lists a
  conversation once per TCP stream, so the two reused 5-tuples of syn-retrans.pcap appear twice).
- **dns-many.pcap:** 4 UDP conversations + 1 TCP conversation. tshark lists the LLMNR answer as
  `192.168.56.30:5355 <-> 192.168.56.10:50531` (it orders by first packet), i.e. a separate conversation
  from the multicast query, as EXPECTED.json does. Every query name/type matches, in order; frame 48 is
  the NXDOMAIN ("No such name", SOA in authority). DNS over TCP: frame 88 carries both big3 and big4
  queries and tshark decodes both (`dns.qry.name` = `big3...,big4...`); the split response 5 is frame 92
  (`[TCP segment of a reassembled PDU]`, 62 bytes) + frame 94 (reassembled DNS response). mDNS frames
  are shown as MDNS (query with 2 "QM" questions, response with 2 PTR answers, query), LLMNR as LLMNR.
- **http-keepalive.pcap:** requests are all decoded (method, Host, URI, User-Agent match). Responses 1-3
  are decoded with the right status, Content-Type and Content-Length (PNG body recognised as PNG, JSON
  bodies as JSON). **Disagreement:** the responses to the pipelined HEAD /x and GET /chunked (frames 16
  and 17) are not decoded as HTTP. tshark 4.0 evidently decides "this response has no body" from the
  *most recent* request of the connection (GET /chunked), not from the HEAD it answers: it waits for the
  1234 body bytes announced by the HEAD response and swallows the chunked response as that body
  (`[TCP segment of a reassembled PDU]`, never completed). With `-o http.desegment_body:FALSE` both
  responses are decoded, but tshark links frame 16 (the HEAD answer) to request frame 14 (GET /chunked)
  and frame 17 to no request. The ground truth is FIFO request/response matching: response 4 belongs
  to HEAD /x and has no body, response 5 is the 59-byte chunked body. (The same exchange without
  pipelining is decoded correctly by tshark.) Port 8080: tshark shows both `HTTP/1.1 100 Continue`
  (frame 26, `http.request_in` = 25) and `HTTP/1.1 200 OK` (frame 27, no `http.request_in`: tshark links
  only the first response to a request).
- **STARTTLS / proxy captures:** tshark 4.0 decodes the TLS part of all ten without any decode-as or
  preference: SMTP (STARTTLS/220), IMAP (STARTTLS/OK), POP (STLS/+OK), FTP (AUTH TLS/234), LDAP
  (extendedReq/extendedResp LDAP_START_TLS_OID), XMPP (starttls/proceed), SOCKS4/4a/5 (Connect
  Response -> TLS) and HTTP CONNECT (200) all hand over to TLS, so
  `tshark -r F -T fields -e tls.handshake.extensions_server_name -e tls.handshake.ja3 -e tls.handshake.ja3s`
  prints the SNI and the JA3 on the ClientHello frame and the JA3S on the ServerHello frame, all equal
  to EXPECTED.json (tshark's JA3 also drops GREASE). The ClientHello is labelled `TLSv1` (record version
  0x0301), later records `TLSv1.3`. tshark 4.0 has no JA4 field (only later Wireshark releases
  have one); the JA4 values are computed by this script per FoxIO's spec (self-tested on the
  spec's example hashes). Cosmetic expert notes on xmpp-starttls.pcap: the XMPP dissector reports
  "Unknown attribute" for to/from/id/version of stream:stream and "Unknown element: starttls" inside
  stream:features; the starttls/proceed exchange itself is recognised (Info STARTTLS / PROCEED).
- **syn-retrans.pcap:** `-T fields -e tcp.stream -e tcp.flags -e tcp.seq_raw` gives
  a) frames 1-6 all stream 0, the 2nd and 3rd SYN flagged "(suspected) retransmission";
  b) frames 7-9 stream 1, 2nd and 3rd SYN retransmissions; c) frames 10-18 stream 2, frames 19-27
  stream 3 (frame 19: "A new tcp session is started with the same ports as an earlier session");
  d) frames 28-29 stream 4, frames 30-38 stream 5 (port-reuse note on frame 30); e) frames 39-49 stream 6,
  the 2nd and 3rd SYN-ACK flagged as retransmissions. So tshark's per-5-tuple connection counts are
  a=1, b=1, c=2, d=2, e=1: it agrees with the rule and with EXPECTED.json. `-z conv,tcp` prints 7
  conversations:

```
192.168.56.10:41005 <-> 192.168.56.4:80     5 355 bytes   6 402 bytes  11 757 bytes  21.1932  3.0642
192.168.56.10:41003 <-> 192.168.56.4:80     3 223 bytes   6 402 bytes   9 625 bytes  12.0009  0.0640
192.168.56.10:41003 <-> 192.168.56.4:80     3 223 bytes   6 402 bytes   9 625 bytes  14.0649  0.0640
192.168.56.10:41004 <-> 192.168.56.4:80     3 223 bytes   6 402 bytes   9 625 bytes  18.1292  0.0640
192.168.56.10:41001 <-> 192.168.56.4:8081   3 162 bytes   3 198 bytes   6 360 bytes   0.0000  3.0009
192.168.56.10:41002 <-> 192.168.56.4:8082   0 0 bytes     3 198 bytes   3 198 bytes   6.0009  3.0000
192.168.56.10:41004 <-> 192.168.56.4:80     1 54 bytes    1 66 bytes    2 120 bytes  17.1289  0.0003
```
  (columns: frames/bytes server->client ("<-"), client->server ("->"), total, relative start, duration).
"""


def build_all():
    _ja4_selftest()
    caps = [build_dns(), build_http()]
    caps += [build_tls(i, case) for i, case in enumerate(TLS_CASES)]
    caps.append(build_syn())
    return caps


def expected_json(caps) -> dict:
    out = {}
    for cap in caps:
        out[cap.name] = {"packets": len(cap.records), "file_bytes": cap.size(),
                         "flows": [f.as_json() for f in cap.flows.values()]}
    return out


def expected_md(caps, exp) -> str:
    L = ["# Application-layer test captures (`pcaps/apps/`)", "",
         "Generated by `python3 pcaps/apps/generate.py` (standard library only, deterministic: same bytes "
         "on every run; `--check` re-runs tshark against EXPECTED.json). Classic pcap, little-endian, "
         "DLT 1 (Ethernet II), microsecond timestamps, snaplen 65535, frames not padded to 60 bytes, all IPv4/TCP/"
         "UDP checksums correct. Client 192.168.56.10; servers 192.168.56.1 (DNS), .2 (web), .3 (proxy), "
         ".4 (SYN tests), .25 (mail/directory/chat), .30 (LLMNR responder). TCP: SYN and SYN-ACK carry MSS 1460, "
         "SACK_PERM, WS 7 (12 option bytes); other segments have 20-byte headers; client window 502, server "
         "509 (x128). Every TCP connection has a full 3-way handshake and FIN/FIN/ACK teardown (client closes "
         "first) unless stated otherwise; seq/ack numbers are exact (no loss besides the syn-retrans episodes).",
         "",
         "EXPECTED.json: `{file: {packets, file_bytes, flows: [...]}}`; a flow is a bidirectional 5-tuple, "
         "`client` = the side that sent the first packet of a TCP connection (the SYN) or the querier for UDP. "
         "`bytes_*` are Ethernet frame lengths (caplen = origlen), `payload_*` TCP/UDP payload bytes. "
         "`connections` = TCP connections carried by the 5-tuple. TLS flows give `sni`, `alpn`, `ja3` (+ "
         "`ja3_string`), `ja3s` (+ string), `ja4` (+ `ja4_r`, the unhashed JA4_r form) and the byte offsets "
         "in each direction's TCP payload stream where TLS starts (`tls_c2s_offset`, `tls_s2c_offset`); "
         "STARTTLS flows say `upgrade_from`, proxy flows `proxy` and `proxy_target`. DNS-like flows list "
         "`dns_queries` (every question of every query, in order, with qtype and, for unicast DNS, the "
         "response rcode). HTTP transactions are listed in request order; `response_body_len` is the "
         "entity length after de-chunking (`response_body_wire_len` = chunked bytes on the wire), "
         "`content_length` is given where it differs from the body (HEAD), `interim_status` lists 1xx "
         "responses, `pipelined` marks requests sent before the previous response. syn-retrans flows add "
         "`episode`, `description` and `connection_details` (per connection: ISNs and counts).",
         "", "## Files", "",
         "| file | packets | bytes | flows |", "|---|---|---|---|"]
    for cap in caps:
        e = exp[cap.name]
        L.append(f"| {cap.name} | {e['packets']} | {e['file_bytes']} | {len(e['flows'])} |")
    L += ["", "## How each file was built", ""]
    L += [
        "### dns-many.pcap", "",
        "- UDP 192.168.56.10:40001 -> 192.168.56.1:53: 40 query/response pairs (80 packets), names "
        "`<6 hex>.t.tunnel.example`, all distinct, qtypes A and TXT mixed (see EXPECTED.json for the order), "
        "every query carries an EDNS OPT RR (UDP 1232). Query #24 (index 23) is answered with NXDOMAIN "
        "(rcode 3, SOA of t.tunnel.example in the authority section); A answers are 10.77.x.y, TXT answers one "
        "40-159 character string. Queries 40-200 ms apart, answers 2-5 ms after the query.",
        "- TCP 192.168.56.10:40002 -> 192.168.56.1:53 (DNS over TCP, RFC 7766 length prefix on every message): "
        "8 queries and 8 responses (big1..big8.t.tunnel.example: TXT, A, TXT, AAAA, TXT, MX, A, TXT). "
        "Queries 3 and 4 are sent in one TCP segment (both answered in separate segments); response 5 "
        "(a TXT answer) is split over two segments: the 2-byte length prefix plus 60 bytes, then the rest "
        "(the client ACKs in between).",
        "- mDNS 192.168.56.10:5353 -> 224.0.0.251:5353 (TTL 255, MAC 01:00:5e:00:00:fb), three messages from "
        "the same host so that it is a single 5-tuple: a query with 2 questions (_http._tcp.local PTR, "
        "_ipp._tcp.local PTR), 120 ms later a response (QR=1, AA=1, no questions) with 2 PTR answers, 1 s "
        "later a query for _ipps._tcp.local PTR.",
        "- LLMNR: query 192.168.56.10:50531 -> 224.0.0.252:5355 (TTL 1, MAC 01:00:5e:00:00:fc) for `printer` "
        "A, and 3.2 ms later the unicast answer 192.168.56.30:5355 -> 192.168.56.10:50531 (TTL 64; printer A "
        "192.168.56.30). "
        "These are two different 5-tuples; EXPECTED.json lists both, the second with client = the querier.",
        "", "### http-keepalive.pcap", "",
        "- TCP 192.168.56.10:40100 -> 192.168.56.2:80, one connection, 5 request/response pairs, every "
        "request with Host a.example and User-Agent curl/8.5.0: GET / (200 text/html, Content-Length), "
        "GET /img.png (200 image/png, Content-Length 300, body starts with the PNG signature), POST /api "
        "(application/json request body of exactly 50 bytes with Content-Length 50; 200 application/json), "
        "HEAD /x (200 with Content-Length: 1234 and no body), GET /chunked (200, Transfer-Encoding: chunked, "
        "3 chunks of 16, 32 and 11 bytes = 59 decoded bytes, then the 0 chunk). Requests 4 (HEAD) and 5 "
        "are pipelined: both are sent (in two segments 0.2 ms apart) before the response to 4; the two "
        "responses then follow in two segments. Each request and response is one TCP segment.",
        "- TCP 192.168.56.10:40101 -> 192.168.56.2:8080: GET /status, answered by an (unsolicited) "
        "`HTTP/1.1 100 Continue` in its own segment and then `HTTP/1.1 200 OK` (application/json, 12 bytes).",
        "", "### STARTTLS and proxy captures", "",
        "One TCP connection each, client 192.168.56.10:402NN. After the cleartext prelude the client sends a "
        "TLS ClientHello (record version 0x0301, legacy version 0x0303, 32-byte session id, a GREASE cipher "
        "first, GREASE extensions, a GREASE group in supported_groups and key_share, a GREASE value in "
        "supported_versions next to 0x0304/0x0303, SNI, ALPN, signature_algorithms). The GREASE values "
        "differ from file to file; fingerprints ignore them. The server answers with a TLS 1.3 ServerHello "
        "(legacy 0x0303, echoes the session id, supported_versions 0x0304, key_share x25519) + "
        "ChangeCipherSpec + one application_data record in the same segment; the client sends CCS + a "
        "53-byte application_data record (Finished), then an application_data request, the server two "
        "application_data records, the client a 19-byte application_data record (close_notify), then FIN. "
        "Two client profiles: `mail` (OpenSSL-like, 13 ciphers, 11 extensions) for the STARTTLS captures "
        "and `browser` (Chrome-like, 15 ciphers, 14 extensions, ALPN h2,http/1.1) for the proxy captures. "
        "The mail ALPN ids are `smtp`, `imap`, `pop3`, `ftp`, `ldap`, `xmpp-client` (smtp and ldap are not "
        "IANA-registered ALPN ids; they are here to vary JA4's ALPN field).",
        "",
        "| file | server | prelude | SNI | ALPN | server cipher |", "|---|---|---|---|---|---|",
        "| smtp-starttls.pcap | 192.168.56.25:25 | 220 banner, EHLO, 250- lines incl. 250-STARTTLS, STARTTLS, "
        "220 2.0.0 Ready to start TLS | mail.example.org | smtp | 0x1302 |",
        "| imap-starttls.pcap | 192.168.56.25:143 | `* OK [CAPABILITY ...]`, a001 CAPABILITY, a002 STARTTLS, "
        "a002 OK Begin TLS negotiation now. | imap.example.org | imap | 0x1301 |",
        "| pop3-stls.pcap | 192.168.56.25:110 | +OK, STLS, +OK Begin TLS negotiation now. | pop.example.org | "
        "pop3 | 0x1303 |",
        "| ftp-authtls.pcap | 192.168.56.25:21 | 220, AUTH TLS, 234 AUTH TLS OK. | ftp.example.org | ftp | "
        "0x1302 |",
        "| ldap-starttls.pcap | 192.168.56.25:389 | LDAPMessage id 1 ExtendedRequest requestName "
        "1.3.6.1.4.1.1466.20037 (31 bytes BER); ExtendedResponse resultCode success(0), responseName = the "
        "same OID (38 bytes) | ldap.example.org | ldap | 0x1301 |",
        "| xmpp-starttls.pcap | 192.168.56.25:5222 | client stream header, server stream header, "
        "stream:features with starttls (required), client starttls, server proceed | xmpp.example.org | "
        "xmpp-client | 0x1301 |",
        "| socks4.pcap | 192.168.56.3:1080 | SOCKS4 CONNECT 93.184.216.34:443 (empty user id), reply 0x5a "
        "| socks4.example.org | h2 | 0x1301 |",
        "| socks4a.pcap | 192.168.56.3:1080 | SOCKS4a CONNECT 0.0.0.1:443 + domain socks4a.example.org, reply "
        "0x5a | socks4a.example.org | h2 | 0x1301 |",
        "| socks5.pcap | 192.168.56.3:1080 | greeting (1 method: no-auth), reply 05 00, CONNECT ATYP=3 "
        "socks5.example.org:443, reply success (bound 192.168.56.3:54321) | socks5.example.org | h2 | 0x1302 |",
        "| http-connect.pcap | 192.168.56.3:3128 | CONNECT proxied.example.org:443 HTTP/1.1 + Host, "
        "HTTP/1.1 200 Connection established | proxied.example.org | h2 | 0x1303 |",
        "",
    ]
    L += ["Fingerprints (computed by this script from the bytes it wrote; JA3/JA3S per Salesforce's "
          "spec with GREASE removed, JA4 per FoxIO's JA4 spec):", "",
          "| file | JA3 | JA3S | JA4 |", "|---|---|---|---|"]
    for cap in caps:
        for f in cap.flows.values():
            if f.info.get("app") == "tls":
                L.append(f"| {cap.name} | {f.info['ja3']} | {f.info['ja3s']} | {f.info['ja4']} |")
    seen = set()
    L += [""]
    for cap in caps:
        for f in cap.flows.values():
            i = f.info
            if i.get("app") == "tls" and i["ja3_string"] not in seen:
                seen.add(i["ja3_string"])
                L.append(f"- JA3 string ({cap.name} and all files of the same profile): `{i['ja3_string']}`")
                L.append(f"- JA4_r ({cap.name}): `{i['ja4_r']}`")
    L += ["- JA3S strings: `771,4865,43-51` (0x1301), `771,4866,43-51` (0x1302), `771,4867,43-51` (0x1303).", ""]
    L += ["### syn-retrans.pcap", "",
          "Rule under test: a SYN that repeats the flow's initial sequence number is a retransmission in "
          "the same connection; a new connection on the same 5-tuple starts only with a new ISN. Five "
          "episodes on distinct 5-tuples, client 192.168.56.10, server 192.168.56.4, 3 s apart:", "",
          "| episode | 5-tuple | what happens | expected connections |", "|---|---|---|---|"]
    for cap in caps:
        if cap.name == "syn-retrans.pcap":
            for f in cap.flows.values():
                L.append(f"| {f.info['episode']} | {f.client} -> {f.server} | {f.info['description']} | "
                         f"{f.info['connections']} |")
    L += [""]
    L += [TSHARK_NOTES.rstrip(), ""]
    return "\n".join(L)


# ============================================================ tshark check

def tshark(path, *args):
    r = subprocess.run(["tshark", "-n", "-r", path, *args], capture_output=True, text=True, check=False)
    return r.stdout


def _flow_filter(f):
    (ca, cp), (sa, sp) = f["client"].rsplit(":", 1), f["server"].rsplit(":", 1)
    p = f["proto"]
    return f"ip.addr=={ca} && ip.addr=={sa} && {p}.port=={cp} && {p}.port=={sp}"


def _fields(path, flt, *fields):
    args = ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    if flt:
        args += ["-Y", flt]
    for f in fields:
        args += ["-e", f]
    return [ln.split("\t") for ln in tshark(path, *args).splitlines()]


# Disagreements between tshark 4.0 and the ground truth that are understood (see EXPECTED.md).
KNOWN_DIFFS = {("http-keepalive.pcap", "192.168.56.10:40100", "http responses")}


def check(outdir, exp):
    """Re-derive what tshark sees and compare it with EXPECTED.json."""
    if not shutil.which("tshark"):
        print("tshark not found", file=sys.stderr)
        return 2
    print(tshark_version())
    unexpected = 0
    for name, e in exp.items():
        p = os.path.join(outdir, name)
        diffs = []
        rows = _fields(p, None, "frame.len", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
                       "udp.srcport", "udp.dstport", "tcp.stream")
        if len(rows) != e["packets"]:
            diffs.append(("*", "packets", f"{len(rows)} != {e['packets']}"))
        for f in e["flows"]:
            c, s_ = f["client"], f["server"]
            pc = ps = bc = bs = 0
            streams = set()
            for flen, src, dst, ts, td, us, ud, st in rows:
                sp, dp = (ts, td) if f["proto"] == "tcp" else (us, ud)
                a, b = f"{src}:{sp}", f"{dst}:{dp}"
                if (a, b) == (c, s_):
                    pc, bc = pc + 1, bc + int(flen)
                elif (a, b) == (s_, c):
                    ps, bs = ps + 1, bs + int(flen)
                else:
                    continue
                if st:
                    streams.add(st)
            got = (pc, ps, bc, bs)
            want = (f["packets_c2s"], f["packets_s2c"], f["bytes_c2s"], f["bytes_s2c"])
            if got != want:
                diffs.append((c, "counts", f"tshark {got} != {want}"))
            if f["proto"] == "tcp" and len(streams) != f["connections"]:
                diffs.append((c, "connections", f"tshark tcp.stream {sorted(streams)} != {f['connections']}"))
            flt = _flow_filter(f)
            if "dns_queries" in f:
                got = []
                for names, types in _fields(p, flt + " && dns.flags.response==0", "dns.qry.name", "dns.qry.type"):
                    got += list(zip(names.split(","), (QT_NAME[int(t)] for t in types.split(","))))
                want = [(q["name"], q["qtype"]) for q in f["dns_queries"]]
                if got != want:
                    diffs.append((c, "dns queries", f"tshark {got} != {want}"))
            if "http" in f:
                got = [tuple(r) for r in _fields(p, flt + " && http.request", "http.request.method", "http.host",
                                                 "http.request.uri", "http.user_agent")]
                want = [(t["method"], t["host"], t["uri"], t["user_agent"]) for t in f["http"]]
                if got != want:
                    diffs.append((c, "http requests", f"tshark {got} != {want}"))
                got = [tuple(r) for r in _fields(p, flt + " && http.response", "http.response.code",
                                                 "http.content_type")]
                want = []
                for t in f["http"]:
                    want += [(str(k), "") for k in t.get("interim_status", [])]
                    if t["method"] != "CONNECT":
                        want.append((str(t["status"]), t["content_type"]))
                    else:
                        want.append((str(t["status"]), ""))
                if got != want:
                    diffs.append((c, "http responses", f"tshark {got} != {want}"))
            if f.get("app") == "tls":
                got = _fields(p, flt + " && (tls.handshake.type==1 || tls.handshake.type==2)",
                              "tls.handshake.extensions_server_name", "tls.handshake.ja3", "tls.handshake.ja3s")
                want = [[f["sni"], f["ja3"], ""], ["", "", f["ja3s"]]]
                if got != want:
                    diffs.append((c, "tls", f"tshark {got} != {want}"))
        if not diffs:
            print(f"{name}: OK")
        for c, what, msg in diffs:
            known = (name, c, what) in KNOWN_DIFFS
            unexpected += not known
            print(f"{name}: {'known difference' if known else 'MISMATCH'} [{c} {what}] {msg}")
    return 1 if unexpected else 0


def tshark_version():
    r = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=False)
    return r.stdout.splitlines()[0] if r.stdout else "tshark ?"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--check", action="store_true", help="also run tshark over the files")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    caps = build_all()
    for cap in caps:
        cap.write(a.out)
    exp = expected_json(caps)
    with open(os.path.join(a.out, "EXPECTED.json"), "w") as fh:
        json.dump(exp, fh, indent=1)
        fh.write("\n")
    with open(os.path.join(a.out, "EXPECTED.md"), "w") as fh:
        fh.write(expected_md(caps, exp) + "\n")
    for cap in caps:
        print(f"{cap.name}: {len(cap.records)} packets, {cap.size()} bytes")
    if a.check:
        return check(a.out, exp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
