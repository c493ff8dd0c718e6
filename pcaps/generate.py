#!/usr/bin/env python3
"""Tidewatch synthetic capture generator (Python 3.11, standard library only).

Writes protocol-correct synthetic packet captures plus ground-truth flow labels.
It never opens a socket: every packet is built in memory and written to a file.
All addresses are private / documentation ranges (10/8, 192.168/16, fd00::/8).
Output is a pure function of the command line (same --seed => same bytes).

  python3 pcaps/generate.py labeled   --seed N --out DIR [--scale S]
        DIR/lab-seedN.pcap + DIR/lab-seedN.labels.csv
  python3 pcaps/generate.py linktypes --out DIR
        DIR/linktypes/*.pcap, *.pcapng, eth.pcap.gz, malformed.expected.txt,
        EXPECTED.md, EXPECTED.json
  python3 pcaps/generate.py tiny      --out DIR
        DIR/tiny_tcp.pcap + DIR/tiny_tcp.expected.md
  python3 pcaps/generate.py all       --out DIR
        demo.pcap/demo.labels.csv (seed 1, small scale) + linktypes + tiny

Label CSV columns: first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label
(one row per flow, src = initiator; for ICMP the port fields hold type/code of
the initiating message, e.g. echo = 8,0; ICMP errors sent in reply to a flow,
such as port-unreachable answers to a UDP scan, belong to that flow and have no
row of their own; their time is included in that flow's last_ts).
"""
from __future__ import annotations

import argparse
import array
import base64
import binascii
import email.utils
import gzip
import ipaddress
import json
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from tidewatch_tools.labels import LABELS  # noqa: E402
from tidewatch_tools.pcapio import (  # noqa: E402
    PCAPNG_CB,
    PCAPNG_DSB,
    PCAPNG_EPB,
    PCAPNG_ISB,
    PCAPNG_NRB,
    PCAPNG_PB,
    PCAPNG_SPB,
    pcap_bytes,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_option,
    pcapng_options,
    pcapng_shb,
    write_pcap,
    write_pcapng,
)

EPOCH_2026 = 1767225600  # 2026-01-01T00:00:00Z

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MASK32 = 0xFFFFFFFF
ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_8021Q, ETH_8021AD = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8
IPPROTO = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}

DLT_NULL, DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL = 0, 1, 101, 113
DLT_USER0, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 147, 228, 229, 276

MIN_REUSE_GAP = 120.0  # seconds between two flows sharing a (bidirectional) 5-tuple

# ============================================================== wire encoding

_LITTLE = sys.byteorder == "little"


def inet_csum(data: bytes) -> int:
    """RFC 1071 Internet checksum (returned as a big-endian 16-bit value)."""
    if len(data) & 1:
        data += b"\0"
    s = sum(array.array("H", data))  # native-order words; fixed up below
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    s = ~s & 0xFFFF
    return ((s << 8) & 0xFF00) | (s >> 8) if _LITTLE else s


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!I3xB", length, proto)


def ipv4_packet(src, dst, proto, payload, ident, ttl=64, df=True, tos=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident & 0xFFFF,
                      0x4000 if df else 0, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", inet_csum(hdr)) + hdr[12:] + payload


def ipv6_packet(src, dst, nh, payload, hlim=64, flowlabel=0, tclass=0):
    return struct.pack("!IHBB16s16s", (6 << 28) | (tclass << 20) | (flowlabel & 0xFFFFF),
                       len(payload), nh, hlim, src, dst) + payload


def tcp_segment(src, dst, sport, dport, seq, ack, flags, win, payload=b"", opts=b""):
    assert len(opts) % 4 == 0
    hdr = struct.pack("!HHIIBBHHH", sport, dport, seq & MASK32, ack & MASK32,
                      ((20 + len(opts)) // 4) << 4, flags, win, 0, 0) + opts
    seg = hdr + payload
    c = inet_csum(pseudo_header(src, dst, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp_datagram(src, dst, sport, dport, payload):
    ln = 8 + len(payload)
    d = struct.pack("!HHHH", sport, dport, ln, 0) + payload
    c = inet_csum(pseudo_header(src, dst, 17, ln) + d) or 0xFFFF
    return d[:6] + struct.pack("!H", c) + d[8:]


def icmp_message(typ, code, rest4, data, v6=None):
    """ICMP (v6=None) or ICMPv6 (v6=(src, dst)) message with checksum."""
    m = struct.pack("!BBH", typ, code, 0) + rest4 + data
    if v6 is None:
        c = inet_csum(m)
    else:
        c = inet_csum(pseudo_header(v6[0], v6[1], 58, len(m)) + m)
    return m[:2] + struct.pack("!H", c) + m[4:]


def mac_bytes(s: str) -> bytes:
    return bytes(int(x, 16) for x in s.split(":"))


def ethernet(dst_mac: bytes, src_mac: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst_mac + src_mac + struct.pack("!H", ethertype) + payload


# --- TCP options -------------------------------------------------------------

OS_PARAMS = {
    #           SYN win, SYN-ACK win, wscale, data window fields, TTL, ephemeral range
    "linux":   (64240, 65160, 7, (501, 502, 509, 510, 512), 64, (32768, 60999)),
    "windows": (64240, 65535, 8, (1026, 1025, 513, 2052), 128, (49152, 65535)),
    "macos":   (65535, 65535, 6, (2048, 2058, 4096, 4106), 64, (49152, 65535)),
}


def syn_options(os_kind: str, mss: int) -> bytes:
    ws = OS_PARAMS[os_kind][2]
    m = struct.pack("!BBH", 2, 4, mss)
    w = struct.pack("!BBB", 3, 3, ws)
    if os_kind == "windows":
        return m + b"\x01" + w + b"\x01\x01\x04\x02"          # MSS,NOP,WS,NOP,NOP,SACK_PERM
    return m + b"\x01\x01\x04\x02" + b"\x01" + w              # MSS,NOP,NOP,SACK_PERM,NOP,WS


# ============================================================== application payloads

WORDS = ("amber birch cobalt delta ember falcon garnet harbor indigo juniper kestrel lumen "
         "maple nimbus orchid pebble quartz raven sierra tundra umber violet willow xenon "
         "yarrow zephyr atlas beacon cinder drift echo fjord glacier hollow iris jasper karst "
         "lagoon mesa nectar onyx prairie quill ridge summit thistle upland vale wharf "
         "copper lantern meadow oasis pine river stone timber valley").split()
TLDS = ("com", "net", "org", "io", "dev", "cloud")
SUBS = ("www", "static", "cdn", "api", "img", "news", "shop", "docs", "login", "assets",
        "media", "app", "mail", "status")

USER_AGENTS = {
    "windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    ),
    "linux": (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Debian APT-HTTP/1.3 (2.6.1)",
    ),
    "macos": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36",
    ),
}
BOT_UAS = (
    "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; rv:40.0) Gecko/20100101 Firefox/40.1",
    "Go-http-client/1.1",
    "python-requests/2.25.1",
    "Wget/1.21.3",
)
SERVERS = ("nginx/1.24.0", "Apache/2.4.62 (Debian)", "nginx", "cloudflare", "Microsoft-IIS/10.0")

SSH_SERVER_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
SSH_CLIENT_BANNERS = {
    "linux": (b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
    "windows": (b"SSH-2.0-PuTTY_Release_0.81\r\n", b"SSH-2.0-OpenSSH_for_Windows_9.5\r\n"),
    "macos": (b"SSH-2.0-OpenSSH_9.8\r\n",),
}
BRUTE_SSH_BANNERS = (b"SSH-2.0-libssh_0.9.6\r\n", b"SSH-2.0-Go\r\n", b"SSH-2.0-paramiko_3.4.0\r\n",
                     b"SSH-2.0-libssh2_1.10.0\r\n")
USERNAMES = ("root", "admin", "user", "test", "ubuntu", "oracle", "postgres", "pi", "guest",
             "ftp", "deploy", "git", "support", "administrator", "operator", "www-data", "backup")
PASSWORDS = ("123456", "password", "admin", "12345678", "qwerty", "letmein", "root", "toor",
             "changeme", "welcome1", "Passw0rd", "admin123", "111111", "dragon", "monkey",
             "raspberry", "P@ssw0rd", "trustno1", "abc123", "summer2025")

TOP_TCP_PORTS = (21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 179, 389, 443, 445,
                 465, 514, 515, 548, 554, 587, 631, 636, 873, 990, 993, 995, 1025, 1080, 1433,
                 1521, 1723, 1883, 2049, 2121, 2375, 3000, 3128, 3306, 3389, 5000, 5060, 5432,
                 5601, 5900, 5985, 6379, 6443, 7001, 8000, 8008, 8080, 8081, 8443, 8888, 9000,
                 9090, 9200, 9418, 10000, 11211, 27017)
TOP_UDP_PORTS = (7, 9, 17, 19, 49, 53, 67, 68, 69, 88, 111, 120, 123, 135, 136, 137, 138, 139,
                 158, 161, 162, 177, 427, 443, 445, 497, 500, 514, 515, 518, 520, 593, 623, 626,
                 631, 996, 997, 998, 999, 1022, 1023, 1025, 1026, 1027, 1028, 1029, 1030, 1433,
                 1434, 1645, 1646, 1701, 1718, 1719, 1812, 1813, 1900, 2000, 2048, 2049, 2222,
                 2223, 3283, 3456, 3703, 4444, 4500, 5000, 5060, 5353, 5632, 9200, 10000,
                 17185, 20031, 30718, 31337, 32768, 32769, 32771, 32815, 33281, 49152, 49153,
                 49154, 49156, 49181, 49182, 49186, 49190, 49191, 49192, 49193, 49194, 49200)


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def httpdate(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def loguniform(rng, a, b):
    a, b = max(1.0, a), max(1.0, b)
    if b <= a:
        return a
    return math.exp(rng.uniform(math.log(a), math.log(b)))


def text_body(rng, n: int, html: bool) -> bytes:
    head = b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title></head><body>\n" \
        % rng.choice(WORDS).encode() if html else b""
    tail = b"</body></html>\n" if html else b""
    parts = [head]
    size = len(head) + len(tail)
    guard = 0
    while size < n and guard < 200000:
        guard += 1
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
        line = (("<p>" + line + "</p>\n") if html else (line + "\n")).encode()
        parts.append(line)
        size += len(line)
    body = b"".join(parts)[: max(0, n - len(tail))] + tail
    return body


def png_body(rng, n: int) -> bytes:
    def chunk(typ, data):
        return struct.pack("!I", len(data)) + typ + data + struct.pack("!I", binascii.crc32(typ + data))
    w, h = rng.randint(16, 1920), rng.randint(16, 1080)
    ihdr = chunk(b"IHDR", struct.pack("!IIBBBBB", w, h, 8, 6, 0, 0, 0))
    idat_len = max(1, n - 8 - len(ihdr) - 12 - 12)
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", rng.randbytes(idat_len)) + chunk(b"IEND", b"")


def json_body(rng, n: int) -> bytes:
    items, size, guard = [], 2, 0
    while size < n and guard < 10000:
        guard += 1
        it = {"id": rng.randint(1, 10 ** 6), "name": rng.choice(WORDS), "score": round(rng.random(), 4),
              "tags": [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]}
        items.append(it)
        size += len(json.dumps(it)) + 2
    return json.dumps({"items": items, "page": rng.randint(1, 40)}).encode()


def http_request(method, path, host, ua, extra=(), body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {ua}"]
    lines += list(extra)
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_response(status, reason, ctype, body, ts, server="nginx/1.24.0", extra=(), conn="keep-alive"):
    lines = [f"HTTP/1.1 {status} {reason}", f"Date: {httpdate(ts)}", f"Server: {server}"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    lines.append(f"Content-Length: {len(body)}")
    lines += list(extra)
    lines.append(f"Connection: {conn}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- DNS ------------------------------------------------------------------------

def dns_name(name: str) -> bytes:
    out = b""
    for lab in name.rstrip(".").split("."):
        lb = lab.encode()
        assert 0 < len(lb) <= 63, name
        out += bytes([len(lb)]) + lb
    return out + b"\0"


def dns_query(qid, name, qtype, edns=True):
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1 if edns else 0)
    msg += dns_name(name) + struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return msg


def dns_response(qid, name, qtype, answers, rcode=0, edns=True):
    """answers: list of (owner_name or None for the qname, type, ttl, rdata)."""
    msg = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, len(answers), 0, 1 if edns else 0)
    msg += dns_name(name) + struct.pack("!HH", qtype, 1)
    for owner, typ, ttl, rdata in answers:
        msg += (b"\xc0\x0c" if owner is None else dns_name(owner))
        msg += struct.pack("!HHIH", typ, 1, ttl, len(rdata)) + rdata
    if edns:
        msg += b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return msg


# --- NTP ------------------------------------------------------------------------

def ntp_ts(t: float) -> bytes:
    sec = int(t) + 2208988800
    frac = int((t - int(t)) * (1 << 32)) & MASK32
    return struct.pack("!II", sec & MASK32, frac)


def ntp_request(t):
    return struct.pack("!BBbbII4s", 0x23, 0, 6, -20, 0, 0, b"\0" * 4) + b"\0" * 24 + ntp_ts(t)


def ntp_response(req_tx: bytes, t_rx, t_tx, refid: bytes, stratum=2):
    return struct.pack("!BBbbII4s", 0x24, stratum, 6, -24, 0x00000420, 0x00000A12, refid) + \
        ntp_ts(t_rx - 33.7) + req_tx + ntp_ts(t_rx) + ntp_ts(t_tx)


# --- TLS ------------------------------------------------------------------------

def _u16list(vals):
    return struct.pack("!H", 2 * len(vals)) + b"".join(struct.pack("!H", v) for v in vals)


def tls_client_hello(rng, sni: str, profile="browser") -> bytes:
    if profile == "browser":
        suites = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                  0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    else:  # terse client library (beacons)
        suites = [0x1301, 0x1303, 0x1302, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    name = sni.encode()
    exts = [(0x0000, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)]
    if profile == "browser":
        exts += [(0x0017, b""), (0xFF01, b"\x00")]
    exts += [(0x000A, _u16list([0x001D, 0x0017, 0x0018])), (0x000B, b"\x01\x00")]
    if profile == "browser":
        exts += [(0x0023, b"")]
        alpn = b"\x02h2\x08http/1.1"
        exts += [(0x0010, struct.pack("!H", len(alpn)) + alpn), (0x0005, b"\x01\x00\x00\x00\x00")]
    exts += [(0x000D, _u16list([0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601])),
             (0x0033, struct.pack("!HHH", 36, 0x001D, 32) + rng.randbytes(32)),
             (0x002D, b"\x01\x01"), (0x002B, b"\x04\x03\x04\x03\x03")]

    def build(ext_list):
        eb = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in ext_list)
        body = struct.pack("!H", 0x0303) + rng_random + b"\x20" + sid + _u16list(suites) + \
            b"\x01\x00" + struct.pack("!H", len(eb)) + eb
        return b"\x01" + len(body).to_bytes(3, "big") + body

    rng_random, sid = rng.randbytes(32), rng.randbytes(32)
    hs = build(exts)
    if profile == "browser" and len(hs) + 4 <= 512:
        hs = build(exts + [(0x0015, b"\0" * (512 - len(hs) - 4))])
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def tls_server_hello(rng, sid: bytes = b"") -> bytes:
    exts = struct.pack("!HHH", 0x002B, 2, 0x0304) + struct.pack("!HHHH", 0x0033, 36, 0x001D, 32) + \
        rng.randbytes(32)
    body = struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([len(sid)]) + sid + \
        struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs


TLS_CCS = b"\x14\x03\x03\x00\x01\x01"


def tls_appdata(rng, n: int) -> bytes:
    """n bytes of plaintext as TLS 1.3 application_data records (opaque ciphertext)."""
    out, left = [], max(1, n)
    while left > 0:
        k = min(left, 16384)
        left -= k
        out.append(b"\x17\x03\x03" + struct.pack("!H", k + 17) + rng.randbytes(k + 17))
    return b"".join(out)


# --- SSH ------------------------------------------------------------------------

def ssh_string(b: bytes) -> bytes:
    return struct.pack("!I", len(b)) + b


def ssh_packet(rng, payload: bytes) -> bytes:
    pad = 8 - ((len(payload) + 5) % 8)
    if pad < 4:
        pad += 8
    return struct.pack("!IB", len(payload) + 1 + pad, pad) + payload + rng.randbytes(pad)


def ssh_enc(rng, plen: int) -> bytes:
    """Opaque aes128-ctr + hmac-sha2-256-etm@openssh.com packet carrying a plen-byte
    payload: 4-byte packet length in clear, ciphertext (multiple of 16), 32-byte MAC."""
    blk = plen + 1
    pad = 16 - (blk % 16)
    if pad < 4:
        pad += 16
    return struct.pack("!I", blk + pad) + rng.randbytes(blk + pad + 32)


def ssh_kexinit(rng, hybrid: bool, server: bool) -> bytes:
    kex = ("sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,"
           if hybrid else "curve25519-sha256,curve25519-sha256@libssh.org,")
    kex += ("ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,"
            "diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,"
            "diffie-hellman-group18-sha512,diffie-hellman-group14-sha256")
    kex += ",kex-strict-s-v00@openssh.com" if server else ",ext-info-c,kex-strict-c-v00@openssh.com"
    hostkey = ("ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,"
               "rsa-sha2-512-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,"
               "ecdsa-sha2-nistp384,rsa-sha2-512,rsa-sha2-256") if not server else \
        "rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519"
    enc = "aes128-ctr,aes256-ctr,aes192-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com"
    mac = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512"
    comp = "none,zlib@openssh.com"
    p = b"\x14" + rng.randbytes(16)
    for s in (kex, hostkey, enc, enc, mac, mac, comp, comp, "", ""):
        p += ssh_string(s.encode())
    return ssh_packet(rng, p + b"\x00" + b"\0\0\0\0")


def ssh_kex_init(rng, hybrid: bool) -> bytes:
    return ssh_packet(rng, b"\x1e" + ssh_string(rng.randbytes(1190 if hybrid else 32)))


def ssh_kex_reply(rng, hybrid: bool) -> bytes:
    hostkey = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    sig = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(64))
    p = b"\x1f" + ssh_string(hostkey) + ssh_string(rng.randbytes(1071 if hybrid else 32)) + ssh_string(sig)
    return ssh_packet(rng, p) + ssh_packet(rng, b"\x15")  # KEX_ECDH_REPLY + NEWKEYS


# ============================================================== model objects

class Host:
    __slots__ = ("v4", "v6", "v4b", "v6b", "local", "os", "ttl", "hlim", "mac", "ipid",
                 "eph", "used", "name", "tcp_open", "udp_open", "ua")

    def __init__(self, rng, v4=None, v6=None, local=True, os_kind="linux", mac=b"", ttl=None,
                 name="", eph=None):
        self.v4, self.v6 = v4, v6
        self.v4b = ipaddress.IPv4Address(v4).packed if v4 else None
        self.v6b = ipaddress.IPv6Address(v6).packed if v6 else None
        self.local, self.os, self.mac, self.name = local, os_kind, mac, name
        base = OS_PARAMS[os_kind][4]
        self.ttl = ttl if ttl is not None else (base if local else base - rng.randint(5, 18))
        self.hlim = self.ttl
        self.ipid = rng.randrange(65536)
        self.eph = eph or OS_PARAMS[os_kind][5]
        self.used = {6: set(), 17: set()}
        self.tcp_open, self.udp_open = set(), set()
        self.ua = rng.choice(USER_AGENTS[os_kind])

    def next_id(self):
        self.ipid = (self.ipid + 1) & 0xFFFF
        return self.ipid

    def port(self, rng, proto=6) -> int:
        """A fresh ephemeral port: never reused by this host for this protocol."""
        lo, hi = self.eph
        used = self.used[proto]
        for _ in range(64):
            p = rng.randint(lo, hi)
            if p not in used:
                used.add(p)
                return p
        for p in range(lo, hi + 1):
            if p not in used:
                used.add(p)
                return p
        raise RuntimeError("ephemeral ports exhausted")

    def addr(self, fam):
        return self.v4 if fam == 4 else self.v6


class Flow:
    __slots__ = ("proto", "cli", "srv", "sport", "dport", "label", "fam", "first", "last", "npk", "nb", "fl")

    def __init__(self, proto, cli, srv, sport, dport, label, fam, rng):
        assert label in LABELS
        self.proto, self.cli, self.srv = proto, cli, srv
        self.sport, self.dport, self.label, self.fam = sport, dport, label, fam
        self.first = self.last = None
        self.npk = self.nb = 0
        self.fl = (rng.getrandbits(20), rng.getrandbits(20))


class World:
    """Collects packets (as IP datagrams + MACs) and flows."""

    def __init__(self, rng, gw_mac=b"\x00\x00\x5e\x00\x01\x01"):
        self.rng = rng
        self.gw_mac = gw_mac
        self.pkts = []   # (ts_us, ip_bytes, src_mac, dst_mac)
        self.flows = []
        self.icmp_busy = {}

    def flow(self, proto, cli, srv, sport, dport, label, fam=4):
        f = Flow(proto, cli, srv, sport, dport, label, fam, self.rng)
        self.flows.append(f)
        return f

    def mac(self, h):
        return h.mac if h.local else self.gw_mac

    def _put(self, f, t, from_cli, pnum, l4):
        src, dst = (f.cli, f.srv) if from_cli else (f.srv, f.cli)
        if f.fam == 4:
            ip = ipv4_packet(src.v4b, dst.v4b, pnum, l4, src.next_id(), src.ttl, df=(pnum != 1))
        else:
            ip = ipv6_packet(src.v6b, dst.v6b, pnum, l4, src.hlim, f.fl[0 if from_cli else 1])
        ts = int(round(t * 1e6))
        self.pkts.append((ts, ip, self.mac(src), self.mac(dst)))
        if f.first is None or ts < f.first:
            f.first = ts
        if f.last is None or ts > f.last:
            f.last = ts
        f.npk += 1
        f.nb += len(ip) + 30
        return ip

    def _addrs(self, f, from_cli):
        src, dst = (f.cli, f.srv) if from_cli else (f.srv, f.cli)
        return (src.v4b, dst.v4b) if f.fam == 4 else (src.v6b, dst.v6b)

    def tcp(self, f, t, from_cli, seq, ack, flags, win, payload=b"", opts=b""):
        sa, da = self._addrs(f, from_cli)
        sp, dp = (f.sport, f.dport) if from_cli else (f.dport, f.sport)
        return self._put(f, t, from_cli, 6, tcp_segment(sa, da, sp, dp, seq, ack, flags, win, payload, opts))

    def udp(self, f, t, from_cli, payload):
        sa, da = self._addrs(f, from_cli)
        sp, dp = (f.sport, f.dport) if from_cli else (f.dport, f.sport)
        return self._put(f, t, from_cli, 17, udp_datagram(sa, da, sp, dp, payload))

    def icmp(self, f, t, from_cli, typ, code, rest4, data):
        if f.fam == 4:
            return self._put(f, t, from_cli, 1, icmp_message(typ, code, rest4, data))
        return self._put(f, t, from_cli, 58, icmp_message(typ, code, rest4, data, self._addrs(f, from_cli)))

    def icmp_free(self, a: Host, b: Host, start: float, end: float, fam=4) -> bool:
        """Reserve the ICMP 'conversation' between a and b for [start, end] if free."""
        key = (fam, min(a.addr(fam), b.addr(fam)), max(a.addr(fam), b.addr(fam)))
        spans = self.icmp_busy.setdefault(key, [])
        for s, e in spans:
            if start < e + MIN_REUSE_GAP and s < end + MIN_REUSE_GAP:
                return False
        spans.append((start, end))
        return True


class TcpConn:
    """One TCP connection with consistent sequence/ack numbers. side 0 = client, 1 = server."""

    def __init__(self, w: World, f: Flow, mss=None, bw=None):
        rng = w.rng
        self.w, self.f = w, f
        self.nxt = [rng.getrandbits(32), rng.getrandbits(32)]
        base_mss = 1460 if f.fam == 4 else 1440
        if mss is None:
            mss = base_mss if rng.random() < 0.85 else rng.choice((1380, 1400, 1410, 1360))
        self.mss_opt = (mss, base_mss)
        self.mss = min(mss, base_mss)
        self.win = [rng.choice(OS_PARAMS[f.cli.os][3]), rng.choice(OS_PARAMS[f.srv.os][3])]
        self.cwnd = [10, 10]
        both_local = f.cli.local and f.srv.local
        self.lan = rng.uniform(0.00008, 0.0006)
        self.rtt = self.lan * 2 if both_local else rng.uniform(0.004, 0.11)
        self.bw = bw or (rng.uniform(20e6, 110e6) if both_local else rng.uniform(1.0e6, 25e6))

    def lat(self, side):
        """Delay between the capture point seeing a packet and seeing `side`'s reaction."""
        h = self.f.cli if side == 0 else self.f.srv
        base = self.lan if h.local else self.rtt
        return base * self.w.rng.uniform(0.92, 1.12) + self.w.rng.uniform(0.00002, 0.00012)

    def pkt(self, t, side, flags, payload=b"", opts=b"", seq=None, ack=None, win=None):
        other = 1 - side
        if seq is None:
            seq = self.nxt[side]
        if ack is None:
            ack = self.nxt[other] if flags & ACK else 0
        if win is None:
            win = self.win[side]
        self.w.tcp(self.f, t, side == 0, seq, ack, flags, win, payload, opts)
        if seq == self.nxt[side]:
            self.nxt[side] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32
        return t

    def open(self, t):
        f = self.f
        self.pkt(t, 0, SYN, opts=syn_options(f.cli.os, self.mss_opt[0]), win=OS_PARAMS[f.cli.os][0])
        t2 = t + self.lat(1)
        self.pkt(t2, 1, SYN | ACK, opts=syn_options(f.srv.os, self.mss_opt[1]),
                 win=OS_PARAMS[f.srv.os][1])
        t3 = t2 + self.lat(0)
        self.pkt(t3, 0, ACK)
        return t3 + self.w.rng.uniform(0.00002, 0.0004)  # first data follows the ACK shortly

    def send(self, t, side, data, final_ack=True, push=True):
        """Send a byte stream from `side`, MSS-segmented, paced by cwnd/bandwidth; the
        receiver ACKs every second segment. Returns the time of the last packet."""
        if not data:
            return t
        rng = self.w.rng
        other = 1 - side
        mss = self.mss
        n = -(-len(data) // mss)
        path_rtt = self.rtt
        cw = self.cwnd[side]
        t_end = tcur = burst_start = t
        inburst = unacked = 0
        for k in range(n):
            chunk = data[k * mss:(k + 1) * mss]
            last = k == n - 1
            self.pkt(tcur, side, ACK | (PSH if last and push else 0), chunk)
            t_end = max(t_end, tcur)
            unacked += 1
            if unacked == 2 or (last and final_ack):
                ta = tcur + self.lat(other) + (rng.uniform(0.0, 0.04) if unacked == 1 else 0.0)
                self.pkt(ta, other, ACK)
                t_end = max(t_end, ta)
                unacked = 0
            gap = (len(chunk) + 66) / self.bw
            inburst += 1
            if inburst >= cw:
                tcur = max(tcur + gap, burst_start + path_rtt)
                burst_start, inburst, cw = tcur, 0, min(cw * 2, 512)
            else:
                tcur += gap
        self.cwnd[side] = cw
        return t_end

    def exchange(self, t, req, resp, think=None, ack_first=None):
        """Client request, server response (piggy-backed ACK unless the server is slow)."""
        rng = self.w.rng
        if think is None:
            think = rng.uniform(0.0003, 0.025)
        t1 = self.send(t, 0, req, final_ack=False)
        base = t1 + self.lat(1)
        if think > 0.04 or ack_first:
            self.pkt(base + min(think * 0.5, 0.04), 1, ACK)
        return self.send(base + think, 1, resp)

    def close(self, t, side=0, split=None):
        rng = self.w.rng
        other = 1 - side
        if split is None:
            split = rng.random() < 0.3
        self.pkt(t, side, FIN | ACK)
        t2 = t + self.lat(other)
        if split:
            self.pkt(t2, other, ACK)
            t2 += rng.uniform(0.00005, 0.004)
        self.pkt(t2, other, FIN | ACK)
        t3 = t2 + self.lat(side)
        self.pkt(t3, side, ACK)
        return t3

    def reset(self, t, side):
        return self.pkt(t, side, RST | ACK)

    def keepalive(self, t, side):
        self.pkt(t, side, ACK, seq=(self.nxt[side] - 1) & MASK32)
        t2 = t + self.lat(1 - side)
        self.pkt(t2, 1 - side, ACK)
        return t2


# ============================================================== the labeled scenario

def rand_mac(rng) -> bytes:
    ouis = ("3c:ec:ef", "00:50:56", "52:54:00", "f0:1f:af", "b8:27:eb", "a4:83:e7", "00:15:5d",
            "d4:be:d9", "e4:5f:01", "70:85:c2")
    return mac_bytes(rng.choice(ouis)) + rng.randbytes(3)


class Scenario:
    def __init__(self, seed: int, scale: float = 1.0):
        self.seed = seed
        self.scale = scale
        self.rng = rng = random.Random(seed * 1000003 + 17)
        self.w = World(rng, gw_mac=mac_bytes("00:00:5e:00:01") + bytes([rng.randint(1, 250)]))
        self.size_factor = min(1.0, max(0.05, scale))
        self.T0 = EPOCH_2026 + rng.randrange(0, 360 * 86400) + rng.randrange(0, 10 ** 6) / 1e6
        self.dur = rng.uniform(570.0, 640.0)
        self.T1 = self.T0 + self.dur
        self._v4_used = set()
        self._v6_used = set()
        self._setup_network()

    # ---------------------------------------------------------------- helpers
    def sc(self, n, lo=1):
        return max(lo, int(round(n * self.scale)))

    def when(self, span=0.0):
        rng = self.rng
        return self.T0 + rng.uniform(0.5, max(1.0, self.dur - span - 0.5))

    def _v4(self, net: ipaddress.IPv4Network, lo=2):
        for _ in range(1000):
            a = str(net.network_address + self.rng.randint(lo, net.num_addresses - 2))
            if a not in self._v4_used:
                self._v4_used.add(a)
                return a
        raise RuntimeError("v4 pool exhausted")

    def _v6(self, prefix: ipaddress.IPv6Network, small=False):
        for _ in range(1000):
            iid = self.rng.randint(2, 0xFFF) if small else self.rng.getrandbits(64)
            a = str(prefix.network_address + iid)
            if a not in self._v6_used and iid:
                self._v6_used.add(a)
                return a
        raise RuntimeError("v6 pool exhausted")

    def host(self, net4, net6=None, local=True, os_kind=None, name="", small6=False):
        rng = self.rng
        if os_kind is None:
            os_kind = rng.choices(("windows", "linux", "macos"), (0.5, 0.3, 0.2))[0]
        eph = None
        if os_kind == "linux" and rng.random() < 0.2:
            eph = (rng.choice((10000, 15000, 20000)), rng.choice((60999, 64999, 65535)))
        return Host(rng, self._v4(net4) if net4 else None, self._v6(net6, small6) if net6 else None,
                    local, os_kind, rand_mac(rng) if local else b"", name=name, eph=eph)

    def _setup_network(self):
        rng = self.rng
        if rng.random() < 0.5:
            a = rng.randint(1, 99)
            b = rng.randint(0, 240)
            self.lan4 = ipaddress.ip_network(f"10.{a}.{b}.0/24")
            self.srv4 = ipaddress.ip_network(f"10.{a}.{b + rng.randint(1, 15)}.0/24")
        else:
            c = rng.randint(0, 200)
            self.lan4 = ipaddress.ip_network(f"192.168.{c}.0/24")
            self.srv4 = ipaddress.ip_network(f"192.168.{c + rng.randint(1, 50)}.0/24")
        blocks = rng.sample(range(100, 255), 4)
        self.wan4 = ipaddress.ip_network(f"10.{blocks[0]}.0.0/16")
        self.bad4 = ipaddress.ip_network(f"10.{blocks[1]}.0.0/16")
        self.spoof4 = ipaddress.ip_network(f"10.{blocks[2]}.0.0/16")
        self.misc4 = ipaddress.ip_network(f"10.{blocks[3]}.0.0/16")
        g = rng.getrandbits(40)
        site = f"fd{g >> 32:02x}:{(g >> 16) & 0xFFFF:04x}:{g & 0xFFFF:04x}"
        self.lan6 = ipaddress.ip_network(f"{site}:{rng.randint(1, 0xFF):x}::/64")
        self.srv6 = ipaddress.ip_network(f"{site}:{rng.randint(0x100, 0xFFF):x}::/64")
        g2 = rng.getrandbits(40)
        self.wan6 = ipaddress.ip_network(f"fd{g2 >> 32:02x}:{(g2 >> 16) & 0xFFFF:04x}:{g2 & 0xFFFF:04x}:"
                                         f"{rng.randint(1, 0xFFFF):x}::/64")
        self.corp = f"{rng.choice(WORDS)}{rng.choice(('corp', 'lan', 'internal', 'office'))}.{rng.choice(TLDS)}"

        # ---- remote sites (names <-> addresses, used by DNS answers)
        self.sites = []
        used_names = set()
        for _ in range(rng.randint(25, 45)):
            for _g in range(20):
                nm = f"{rng.choice(SUBS)}.{rng.choice(WORDS)}{rng.choice(('', '-' + rng.choice(WORDS)))}." \
                     f"{rng.choice(TLDS)}"
                if nm not in used_names:
                    break
            used_names.add(nm)
            h = self.host(self.wan4, self.wan6 if rng.random() < 0.35 else None, local=False,
                          os_kind=rng.choice(("linux", "linux", "windows")), name=nm)
            h.tcp_open.update((80, 443))
            self.sites.append(h)
        self.extra_names = {}
        for _ in range(rng.randint(30, 60)):
            nm = f"{rng.choice(SUBS)}.{rng.choice(WORDS)}.{rng.choice(TLDS)}"
            self.extra_names[nm] = (self._v4(self.misc4), self._v6(self.wan6))
        self.nx_names = [f"{rng.choice(WORDS)}{rng.randint(1, 99)}.{self.corp}" for _ in range(8)] + \
            [f"wpad.{self.corp}", f"{rng.choice(WORDS)}.{rng.choice(WORDS)}.local"]

        # ---- internal servers
        def srv(name, os_kind="linux"):
            h = self.host(self.srv4, self.srv6, True, os_kind, name=f"{name}.{self.corp}", small6=True)
            return h
        self.web = srv(rng.choice(("intranet", "portal", "wiki", "www")))
        self.web_port = rng.choice((80, 80, 8080))
        self.web.tcp_open.update((self.web_port, 443))
        self.app = srv(rng.choice(("app", "erp", "crm", "git")))
        self.app.tcp_open.update((80, 443))
        self.ssh = srv(rng.choice(("bastion", "jump", "shell", "build")))
        self.ssh.tcp_open.add(22)
        self.ftp = self.ssh if rng.random() < 0.3 else srv(rng.choice(("ftp", "files", "nas")))
        self.ftp.tcp_open.update((21, 22))
        self.files = srv(rng.choice(("mirror", "repo", "storage", "backup")))
        self.files.tcp_open.update((80, 22))
        self.mqtt = srv(rng.choice(("mqtt", "broker", "iot")))
        self.mqtt.tcp_open.add(1883)
        if rng.random() < 0.6:
            self.resolver = srv(rng.choice(("ns1", "dns", "dc01")), rng.choice(("linux", "windows")))
        else:
            self.resolver = self.host(self.wan4, self.wan6, False, "linux", name="resolver", small6=True)
        self.resolver.udp_open.add(53)
        self.resolver.tcp_open.add(53)
        self.internal = [self.web, self.app, self.ssh, self.ftp, self.files, self.mqtt]
        if self.resolver.local:
            self.internal.append(self.resolver)
        self.internal = list(dict.fromkeys(self.internal))
        self.ntp_servers = [self.host(self.wan4, None, False, "linux", name=f"{i}.pool.ntp.org")
                            for i in range(rng.randint(2, 4))]
        for h in self.ntp_servers:
            h.udp_open.add(123)
        # ---- clients
        self.clients = []
        for _ in range(self.sc(rng.randint(18, 30), 6)):
            self.clients.append(self.host(self.lan4, self.lan6 if rng.random() < 0.45 else None, True))
        self.dual = [c for c in self.clients if c.v6]
        for c in self.clients:
            if c.os == "windows":
                c.tcp_open.update((135, 139, 445))
            if c.os == "linux" and self.rng.random() < 0.4:
                c.tcp_open.add(22)
        for h in self.internal:
            if self.rng.random() < 0.5:
                h.udp_open.add(123)

    # ---------------------------------------------------------------- benign building blocks
    def dns_lookup(self, cli, name, t, qtype=None, label="benign", fam=None):
        rng, w = self.rng, self.w
        res = self.resolver
        if qtype is None:
            qtype = 1 if rng.random() < 0.72 else 28
        if fam is None:
            fam = 6 if (cli.v6 and res.v6 and rng.random() < 0.4) else 4
        f = w.flow("udp", cli, res, cli.port(rng, 17), 53, label, fam)
        qid = rng.getrandbits(16)
        edns = cli.os != "windows" or rng.random() < 0.5
        w.udp(f, t, True, dns_query(qid, name, qtype, edns))
        t2 = t + (rng.uniform(0.0002, 0.002) if rng.random() < 0.7 else rng.uniform(0.005, 0.08))
        site = self._site_by_name.get(name)
        answers, rcode = [], 0
        if site is not None:
            if qtype == 1:
                answers = [(None, 1, rng.choice((60, 300, 3600)), site.v4b)]
            elif site.v6:
                answers = [(None, 28, rng.choice((60, 300, 3600)), site.v6b)]
        elif name in self.extra_names:
            v4, v6 = self.extra_names[name]
            if qtype == 1:
                cname = f"{rng.choice(WORDS)}.edge.{rng.choice(WORDS)}cdn.net"
                if rng.random() < 0.3:
                    answers = [(None, 5, 300, dns_name(cname)),
                               (cname, 1, 60, ipaddress.IPv4Address(v4).packed)]
                else:
                    answers = [(None, 1, 300, ipaddress.IPv4Address(v4).packed)]
            else:
                answers = [(None, 28, 300, ipaddress.IPv6Address(v6).packed)]
        else:
            rcode = 3
        w.udp(f, t2, False, dns_response(qid, name, qtype, answers, rcode, edns))
        return t2

    def pick_response(self, path_kind, size=None):
        rng, sf = self.rng, self.size_factor
        r = rng.random()
        if size is not None:
            n = size
        elif r < 0.75:
            n = loguniform(rng, 200, 3000)
        elif r < 0.97:
            n = loguniform(rng, 3000, 20000)
        else:
            n = loguniform(rng, 20000, max(25000, 80000 * sf))
        n = int(n)
        kind = path_kind
        if kind == "html":
            return "text/html; charset=utf-8", text_body(rng, n, True)
        if kind == "js":
            return "application/javascript", text_body(rng, n, False)
        if kind == "css":
            return "text/css", text_body(rng, n, False)
        if kind == "json":
            return "application/json", json_body(rng, min(n, 20000))
        if kind == "png":
            return "image/png", png_body(rng, n)
        return "application/octet-stream", rng.randbytes(n)

    def random_path(self):
        rng = self.rng
        k = rng.choices(("html", "js", "css", "json", "png", "bin"), (0.3, 0.2, 0.1, 0.15, 0.2, 0.05))[0]
        h = "%08x" % rng.getrandbits(32)
        path = {
            "html": rng.choice(("/", "/index.html", f"/{rng.choice(WORDS)}/",
                                f"/{rng.choice(WORDS)}/{rng.choice(WORDS)}.html")),
            "js": f"/static/js/{rng.choice(WORDS)}.{h}.js",
            "css": f"/static/css/{rng.choice(WORDS)}.{h}.css",
            "json": f"/api/v{rng.randint(1, 3)}/{rng.choice(WORDS)}?page={rng.randint(1, 9)}",
            "png": f"/images/{rng.choice(WORDS)}-{rng.randint(1, 999)}.png",
            "bin": f"/downloads/{rng.choice(WORDS)}-{rng.randint(1, 9)}.{rng.randint(0, 9)}.bin",
        }[k]
        return path, k

    def http_session(self, cli, srv, host_hdr, t, label="benign", port=80, nreq=None, fam=4, big=None):
        rng, w = self.rng, self.w
        f = w.flow("tcp", cli, srv, cli.port(rng), port, label, fam)
        c = TcpConn(w, f)
        t = c.open(t)
        nreq = nreq or rng.choice((1, 1, 1, 1, 2, 2, 3))
        server = rng.choice(SERVERS)
        for i in range(nreq):
            path, kind = self.random_path()
            extra = ("Accept: */*" if kind != "html" else
                     "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                     "Accept-Language: en-US,en;q=0.9", "Connection: keep-alive")
            req = http_request("GET", path, host_hdr, cli.ua, extra)
            r = rng.random()
            if big is not None and i == 0:
                kind = rng.choice(("png", "bin", "js"))
                ctype, body = self.pick_response(kind, big)
                resp = http_response(200, "OK", ctype, body, t, server)
            elif r < 0.04:
                body = text_body(rng, rng.randint(150, 600), True)
                resp = http_response(404, "Not Found", "text/html", body, t, server)
            elif r < 0.07:
                body = text_body(rng, rng.randint(150, 300), True)
                resp = http_response(301, "Moved Permanently", "text/html", body, t, server,
                                     (f"Location: https://{host_hdr}{path}",))
            else:
                ctype, body = self.pick_response(kind)
                resp = http_response(200, "OK", ctype, body, t, server,
                                     ("Cache-Control: max-age=3600",) if kind in ("js", "css", "png") else ())
            t = c.exchange(t, req, resp, think=rng.uniform(0.0005, 0.06))
            if i < nreq - 1:
                t += rng.uniform(0.01, 2.0)
        if rng.random() < 0.75:
            t = c.close(t + rng.uniform(0.05, 4.0), 0)
        else:  # server keep-alive timeout
            t = c.close(t + rng.uniform(5.0, 15.0), 1)
        return t

    def tls_session(self, cli, srv, sni, t, label="benign", port=443, fam=4, sizes=None,
                    profile="browser", close=True):
        rng, w = self.rng, self.w
        f = w.flow("tcp", cli, srv, cli.port(rng), port, label, fam)
        c = TcpConn(w, f)
        t = c.open(t)
        t1 = c.send(t + rng.uniform(0.0002, 0.003), 0, tls_client_hello(rng, sni, profile), final_ack=False)
        if profile == "browser" and rng.random() < 0.25:
            hs_len = rng.randint(150, 400)  # resumed session (PSK): no certificate chain
        elif profile == "browser":
            hs_len = rng.randint(1200, 3000)
        else:
            hs_len = rng.randint(700, 1300)
        flight = tls_server_hello(rng, rng.randbytes(32)) + TLS_CCS + tls_appdata(rng, hs_len)
        t = c.send(t1 + c.lat(1) + rng.uniform(0.0005, 0.01), 1, flight)
        t = c.send(t + rng.uniform(0.0002, 0.004), 0, TLS_CCS + tls_appdata(rng, 36), final_ack=False)
        if sizes is None:
            sizes = []
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                sizes.append((rng.randint(120, 900), int(self.pick_resp_size())))
        for req_n, resp_n in sizes:
            t = c.exchange(t + rng.uniform(0.0002, 0.5), tls_appdata(rng, req_n), tls_appdata(rng, resp_n),
                           think=rng.uniform(0.001, 0.08))
        if close:
            t = c.send(t + rng.uniform(0.05, 5.0), 0, tls_appdata(rng, 2), final_ack=False)
            t = c.close(t + rng.uniform(0.0001, 0.002), 0)
        return t, c

    def pick_resp_size(self):
        rng, sf = self.rng, self.size_factor
        r = rng.random()
        if r < 0.75:
            return loguniform(rng, 200, 2500)
        if r < 0.97:
            return loguniform(rng, 2500, 15000)
        return loguniform(rng, 15000, max(20000, 60000 * sf))

    def browse(self, cli, t, label="benign"):
        """A lookup followed by an HTTP or TLS session to a remote site (or intranet)."""
        rng = self.rng
        if rng.random() < 0.15:
            srv = rng.choice((self.web, self.app))
            name = srv.name
            port = self.web_port if srv is self.web else 80
        else:
            srv = rng.choice(self.sites)
            name = srv.name
            port = 80
        fam = 6 if (cli.v6 and srv.v6 and rng.random() < 0.6) else 4
        if rng.random() < 0.55:
            t = self.dns_lookup(cli, name, t, 28 if fam == 6 else 1, fam=4 if rng.random() < 0.5 else None)
            t += rng.uniform(0.0005, 0.02)
        if rng.random() < 0.4:
            return self.http_session(cli, srv, name, t, label, port, fam=fam)
        return self.tls_session(cli, srv, name, t, label, 443, fam)[0]

    def ssh_prologue(self, c, t, client_banner, hybrid=False):
        """Banner exchange + key exchange up to NEWKEYS + service request."""
        rng = self.rng
        t = c.send(t + c.lat(1) + rng.uniform(0.001, 0.008), 1, SSH_SERVER_BANNER, final_ack=False)
        t = c.send(t + c.lat(0) + rng.uniform(0.0005, 0.004), 0, client_banner, final_ack=False)
        t = c.send(t + rng.uniform(0.0001, 0.002), 0, ssh_kexinit(rng, hybrid, False), final_ack=False)
        t = c.send(t + c.lat(1) + rng.uniform(0.0002, 0.002), 1, ssh_kexinit(rng, hybrid, True), final_ack=False)
        t = c.send(t + c.lat(0) + rng.uniform(0.0005, 0.004), 0, ssh_kex_init(rng, hybrid), final_ack=False)
        t = c.send(t + c.lat(1) + rng.uniform(0.001, 0.006), 1, ssh_kex_reply(rng, hybrid), final_ack=False)
        t = c.send(t + c.lat(0) + rng.uniform(0.001, 0.005), 0, ssh_packet(rng, b"\x15"), final_ack=False)
        t = c.send(t + rng.uniform(0.0001, 0.001), 0, ssh_enc(rng, 17), final_ack=False)  # SERVICE_REQUEST
        t = c.send(t + c.lat(1) + rng.uniform(0.0002, 0.002), 1, ssh_enc(rng, 17), final_ack=False)
        return t

    def ssh_interactive(self, cli, srv, t, label="benign", fam=4, t_stop=None):
        rng, w = self.rng, self.w
        f = w.flow("tcp", cli, srv, cli.port(rng), 22, label, fam)
        c = TcpConn(w, f)
        t = c.open(t)
        t = self.ssh_prologue(c, t, rng.choice(SSH_CLIENT_BANNERS[cli.os]))
        # public-key auth: query, PK_OK, signed request, success; channel open / pty / shell
        for cl, sl in ((380, 330), (650, 24), (80, 120), (240, 180)):
            t = c.exchange(t + rng.uniform(0.001, 0.02), ssh_enc(rng, cl), ssh_enc(rng, sl),
                           think=rng.uniform(0.0005, 0.02))
        t_stop = t_stop or (t + rng.uniform(30, 300))
        keystrokes = 0
        for _cmd in range(200):
            if t > t_stop or keystrokes > 150:
                break
            for _k in range(rng.randint(2, 24)):
                t += rng.uniform(0.06, 0.35)
                t1 = c.send(t, 0, ssh_enc(rng, 10), final_ack=False)
                t = c.send(t1 + c.lat(1) + rng.uniform(0.0001, 0.002), 1, ssh_enc(rng, 10))
                keystrokes += 1
            t += rng.uniform(0.1, 0.4)  # Enter -> output
            t1 = c.send(t, 0, ssh_enc(rng, 10), final_ack=False)
            # command output: one SSH packet per write, each fitting in one segment
            t = t1 + c.lat(1) + rng.uniform(0.002, 0.2)
            for _o in range(rng.randint(1, 6)):
                t = c.send(t, 1, ssh_enc(rng, rng.randint(20, 1200)), final_ack=False) + rng.uniform(0.00005, 0.002)
            c.pkt(t + c.lat(0) + rng.uniform(0.0, 0.03), 0, ACK)
            t = c.f.last / 1e6
            t += rng.choice((rng.uniform(0.8, 6.0), rng.uniform(5.0, 40.0)))
        t = c.exchange(t, ssh_enc(rng, 24), ssh_enc(rng, 60), think=rng.uniform(0.001, 0.01))
        return c.close(t + rng.uniform(0.001, 0.05), 1)

    def bulk_transfer(self, cli, t, nbytes):
        rng, w = self.rng, self.w
        if rng.random() < 0.5:  # HTTP download from internal mirror
            srv = self.files
            f = w.flow("tcp", cli, srv, cli.port(rng), 80, "benign", 4)
            c = TcpConn(w, f, bw=rng.uniform(25e6, 100e6))
            t = c.open(t)
            path = f"/pub/{rng.choice(WORDS)}/{rng.choice(WORDS)}-{rng.randint(1, 12)}.{rng.randint(0, 9)}.tar.xz"
            req = http_request("GET", path, srv.name, cli.ua, ("Accept: */*",))
            resp = http_response(200, "OK", "application/x-xz", rng.randbytes(nbytes), t,
                                 "Apache/2.4.62 (Debian)", ("Accept-Ranges: bytes",))
            t = c.exchange(t, req, resp, think=rng.uniform(0.0005, 0.003))
            return c.close(t + rng.uniform(0.001, 0.2), 0)
        srv = self.files  # scp/rsync-style upload over SSH
        f = w.flow("tcp", cli, srv, cli.port(rng), 22, "benign", 4)
        c = TcpConn(w, f, bw=rng.uniform(20e6, 90e6))
        t = c.open(t)
        t = self.ssh_prologue(c, t, rng.choice(SSH_CLIENT_BANNERS[cli.os]))
        for cl, sl in ((380, 330), (650, 24), (80, 120), (300, 60)):
            t = c.exchange(t + rng.uniform(0.001, 0.02), ssh_enc(rng, cl), ssh_enc(rng, sl))
        sent = 0
        for _ in range(10000):
            if sent >= nbytes:
                break
            blob = b"".join(ssh_enc(rng, 32768) for _ in range(min(8, -(-(nbytes - sent) // 32820))))
            sent += len(blob)
            t = c.send(t, 0, blob)
            t = c.send(t + rng.uniform(0.00005, 0.0004), 1, ssh_enc(rng, 9))  # WINDOW_ADJUST
        t = c.exchange(t, ssh_enc(rng, 40), ssh_enc(rng, 40))
        return c.close(t + rng.uniform(0.001, 0.05), 0)

    def keepalive_conn(self, cli, t):
        rng, w = self.rng, self.w
        if rng.random() < 0.5:  # MQTT with application-level PINGREQ
            f = w.flow("tcp", cli, self.mqtt, cli.port(rng), 1883, "benign", 4)
            c = TcpConn(w, f)
            t = c.open(t)
            cid = f"{rng.choice(WORDS)}-{rng.getrandbits(24):06x}".encode()
            keep = rng.choice((30, 45, 60))
            var = b"\x00\x04MQTT\x04\x02" + struct.pack("!H", keep) + struct.pack("!H", len(cid)) + cid
            t = c.exchange(t, bytes([0x10, len(var)]) + var, b"\x20\x02\x00\x00")
            for _ in range(100):
                t += keep * rng.uniform(0.97, 1.0)
                if t > self.T1:
                    break
                t = c.exchange(t, b"\xc0\x00", b"\xd0\x00", think=rng.uniform(0.0001, 0.001))
            return t
        srv = rng.choice(self.sites)  # idle TLS connection kept open by TCP keep-alive probes
        t, c = self.tls_session(cli, srv, srv.name, t, "benign", 443, 4,
                                sizes=[(rng.randint(200, 600), rng.randint(300, 3000))], close=False)
        period = rng.choice((30.0, 45.0, 60.0, 75.0))
        for _ in range(100):
            t += period * rng.uniform(0.99, 1.01)
            if t > self.T1:
                break
            t = c.keepalive(t, 0)
        return t

    def ntp_client(self, cli, t, mode):
        rng, w = self.rng, self.w
        srv = rng.choice(self.ntp_servers)
        refid = ipaddress.IPv4Address(self._v4(self.misc4)).packed
        poll = rng.choice((32.0, 64.0))
        if mode == "fixed":
            f = w.flow("udp", cli, srv, 123, 123, "benign", 4)
        for _ in range(100):
            if t > self.T1:
                break
            if mode != "fixed":
                f = w.flow("udp", cli, srv, cli.port(rng, 17), 123, "benign", 4)
            req = ntp_request(t)
            w.udp(f, t, True, req)
            t_rx = t + rng.uniform(0.004, 0.04)
            w.udp(f, t_rx + rng.uniform(0.00001, 0.0001), False, ntp_response(req[40:48], t_rx - 0.01, t_rx, refid))
            t += poll * rng.uniform(0.98, 1.02) if mode == "fixed" else poll * rng.uniform(1.0, 2.0)
        return t

    def ping(self, cli, dst, t, fam=4, label="benign", count=None, interval=1.0):
        rng, w = self.rng, self.w
        count = count or rng.randint(3, 8)
        end = t + count * interval + 1
        if not w.icmp_free(cli, dst, t, end, fam):
            return False
        typ = 8 if fam == 4 else 128
        f = w.flow("icmp" if fam == 4 else "icmpv6", cli, dst, typ, 0, label, fam)
        ident = rng.getrandbits(16)
        rtt = rng.uniform(0.0002, 0.001) if dst.local else rng.uniform(0.005, 0.09)
        for seq in range(1, count + 1):
            ts = t + (seq - 1) * interval * rng.uniform(0.999, 1.001)
            if cli.os == "windows":
                data = b"abcdefghijklmnopqrstuvwabcdefghi"
            else:
                sec = int(ts)
                data = struct.pack("<qq", sec, int((ts - sec) * 1e6)) + bytes(range(0x10, 0x38))
            rest = struct.pack("!HH", ident, seq)
            w.icmp(f, ts, True, typ, 0, rest, data)
            w.icmp(f, ts + rtt * rng.uniform(0.9, 1.3), False, 0 if fam == 4 else 129, 0, rest, data)
        return True

    # ---------------------------------------------------------------- benign mix
    def gen_benign_core(self):
        rng = self.rng
        sc = self.sc
        clients = self.clients
        for _ in range(sc(60)):
            self.browse(rng.choice(clients), self.when(20))
        for i in range(sc(2)):  # large objects (up to 500 KB)
            size = int(loguniform(rng, 60000, 150000) * self.size_factor) if i else \
                int(rng.uniform(400000, 500000) * self.size_factor)
            srv = rng.choice(self.sites)
            self.http_session(rng.choice(clients), srv, srv.name, self.when(30), nreq=1, big=max(size, 20000))
        for _ in range(sc(25)):  # explicit IPv6 browsing
            if self.dual:
                cli = rng.choice(self.dual)
                v6sites = [s for s in self.sites if s.v6] or [self.web]
                srv = rng.choice(v6sites)
                t = self.dns_lookup(cli, srv.name, self.when(20), 28, fam=6)
                if rng.random() < 0.5:
                    self.tls_session(cli, srv, srv.name, t + 0.002, "benign", 443, 6)
                else:
                    self.http_session(cli, srv, srv.name, t + 0.002, "benign", 80, fam=6)
        for i in range(sc(6)):
            cli = rng.choice(clients)
            long = i == 0 or rng.random() < 0.2
            t = self.when(400 if long else 120)
            self.ssh_interactive(cli, self.ssh, t, t_stop=(self.T1 - 5 if long else None))
        n_bulk = sc(1)
        for i in range(n_bulk):
            size = int(rng.uniform(1.5e6, 2.0e6) * self.size_factor)
            self.bulk_transfer(rng.choice(clients), self.when(60), size)
        for _ in range(sc(12)):
            self.keepalive_conn(rng.choice(clients), self.T0 + rng.uniform(0.5, 90))
        ntp_hosts = rng.sample(clients, min(len(clients), sc(8)))
        for i, h in enumerate(ntp_hosts):
            self.ntp_client(h, self.T0 + rng.uniform(0.5, 60), "fixed" if i % 3 == 0 else "ephemeral")
        targets = self.internal + rng.sample(self.sites, 5)
        for _ in range(sc(40)):
            cli = rng.choice(clients)
            for _try in range(5):
                if self.ping(cli, rng.choice(targets), self.when(20)):
                    break
        for _ in range(sc(10)):
            if self.dual:
                cli = rng.choice(self.dual)
                for _try in range(5):
                    if self.ping(cli, rng.choice([self.web, self.app, self.ssh]), self.when(20), fam=6):
                        break

    def gen_benign_fill(self, target_flows):
        """DNS lookups and small browsing sessions until benign reaches target_flows."""
        rng = self.rng
        names = [s.name for s in self.sites] + list(self.extra_names) + \
            [h.name for h in self.internal]
        for _ in range(20000):
            n = sum(1 for f in self.w.flows if f.label == "benign")
            if n >= target_flows:
                break
            for _k in range(20):
                cli = rng.choice(self.clients)
                r = rng.random()
                if r < 0.97:
                    nm = rng.choice(self.nx_names) if rng.random() < 0.04 else rng.choice(names)
                    self.dns_lookup(cli, nm, self.when(1))
                else:
                    srv = rng.choice(self.sites)
                    self.tls_session(cli, srv, srv.name, self.when(30), sizes=[(rng.randint(100, 700),
                                                                                 rng.randint(100, 4000))])

    # ---------------------------------------------------------------- scan
    def gen_scan(self):
        rng, w, sc = self.rng, self.w, self.sc
        if rng.random() < 0.5:
            scanner = self.host(self.bad4, None, False, "linux")
        else:
            scanner = self.host(self.lan4, None, True, "linux")
        candidates = self.internal + rng.sample(self.clients, min(4, len(self.clients)))
        rng.shuffle(candidates)
        n_targets = rng.randint(2, 4)
        t = self.when(200)
        # --- SYN scans (nmap -sS): one raw source port per scan
        sport = rng.randint(33000, 65000)
        scanner.used[6].add(sport)
        rate_gap = rng.uniform(0.0005, 0.006)
        for target in candidates[:n_targets]:
            nports = sc(rng.randint(100, 180), 10)
            ports = list(dict.fromkeys(list(TOP_TCP_PORTS) + rng.sample(range(1, 10000), nports)))[:nports]
            ports += [p for p in target.tcp_open if p not in ports]
            rng.shuffle(ports)
            filtered = rng.random() < 0.3
            for p in ports:
                self.syn_probe(scanner, target, sport, p, t, filtered and rng.random() < 0.6)
                t += rate_gap * rng.uniform(0.5, 1.5)
            t += rng.uniform(0.5, 5)
        # --- connect scan (nmap -sT)
        target = candidates[n_targets % len(candidates)]
        t = self.when(120)
        nports = sc(rng.randint(60, 110), 5)
        ports = list(dict.fromkeys(list(TOP_TCP_PORTS) + rng.sample(range(1, 10000), nports)))[:nports]
        ports += [p for p in target.tcp_open if p not in ports]
        for p in ports:
            f = w.flow("tcp", scanner, target, scanner.port(rng), p, "scan")
            c = TcpConn(w, f)
            if p in target.tcp_open:
                t2 = c.open(t)
                c.reset(t2 + rng.uniform(0.00002, 0.0003), 0)
            else:
                c.pkt(t, 0, SYN, opts=syn_options("linux", 1460), win=64240)
                c.pkt(t + c.lat(1), 1, RST | ACK, seq=0, win=0)
            t += rng.uniform(0.001, 0.02)
        # --- UDP scan (nmap -sU), one source port; closed -> ICMP port unreachable
        target = candidates[(n_targets + 1) % len(candidates)]
        t = self.when(120)
        usport = rng.randint(33000, 65000)
        scanner.used[17].add(usport)
        nports = sc(rng.randint(40, 80), 5)
        ports = list(dict.fromkeys(list(TOP_UDP_PORTS[:nports]) + rng.sample(range(1, 65535), nports)))[:nports]
        ports += [p for p in target.udp_open if p not in ports]
        rng.shuffle(ports)
        for p in ports:
            f = w.flow("udp", scanner, target, usport, p, "scan")
            payload = b""
            if p == 53:
                payload = struct.pack("!HHHHHH", rng.getrandbits(16), 0x0000, 0, 0, 0, 0)
            elif p == 123:
                payload = ntp_request(t)
            for attempt in range(2):
                ts = t + attempt * rng.uniform(0.8, 1.2)
                ip = w.udp(f, ts, True, payload)
                lat = rng.uniform(0.0002, 0.0015) if scanner.local else rng.uniform(0.01, 0.06)
                if p in target.udp_open:
                    if p == 53:
                        w.udp(f, ts + lat, False, payload[:2] + b"\x80\x00" + payload[4:])
                    elif p == 123:
                        w.udp(f, ts + lat, False, ntp_response(payload[40:48], ts + lat / 2, ts + lat / 2,
                                                               b"\x0a\x00\x00\x01"))
                    break
                if rng.random() < 0.8:  # not rate limited: port unreachable
                    # quotes the original IP header + 8 bytes (= the whole probe when it is
                    # empty); probes with a payload are quoted whole (RFC 1812 style)
                    w.icmp(f, ts + lat, False, 3, 3, b"\0\0\0\0", ip[:max(28, min(len(ip), 548))])
                    break
            t += rng.uniform(0.05, 0.5)
        # --- slow scan (-T1 style), another scanner
        slow = self.host(self.bad4, None, False, rng.choice(("linux", "windows")))
        target = rng.choice(self.internal)
        nports = sc(rng.randint(25, 45), 3)
        t = self.T0 + rng.uniform(5, 40)
        gap = max(3.0, min(25.0, (self.dur - 60) / nports))
        ssport = rng.randint(33000, 65000)
        ports = rng.sample(TOP_TCP_PORTS, min(nports, len(TOP_TCP_PORTS)))
        for p in ports:
            self.syn_probe(slow, target, ssport, p, t, False, retx=False)
            t += gap * rng.uniform(0.7, 1.3)

    def syn_probe(self, scanner, target, sport, dport, t, filtered, retx=True):
        rng, w = self.rng, self.w
        f = w.flow("tcp", scanner, target, sport, dport, "scan")
        isn = rng.getrandbits(32)
        opts = struct.pack("!BBH", 2, 4, 1460)
        w.tcp(f, t, True, isn, 0, SYN, rng.choice((1024, 2048, 3072, 4096)), opts=opts)
        lat = rng.uniform(0.0001, 0.0012) if (scanner.local and target.local) else rng.uniform(0.01, 0.07)
        if dport in target.tcp_open:
            s_isn = rng.getrandbits(32)
            w.tcp(f, t + lat, False, s_isn, isn + 1, SYN | ACK, OS_PARAMS[target.os][1],
                  opts=syn_options(target.os, 1460))
            w.tcp(f, t + lat + rng.uniform(0.00002, 0.0002), True, isn + 1, 0, RST, 0)
        elif filtered:
            if retx:
                w.tcp(f, t + rng.uniform(0.9, 1.5), True, isn, 0, SYN, 1024, opts=opts)
        else:
            w.tcp(f, t + lat, False, 0, isn + 1, RST | ACK, 0)

    # ---------------------------------------------------------------- dos
    def gen_dos(self):
        rng, w, sc = self.rng, self.w, self.sc
        victim = rng.choice((self.web, self.app))
        vport = self.web_port if victim is self.web else 80
        # --- SYN flood from spoofed sources
        t = self.when(60)
        syn_port = rng.choice((vport, 443))
        n = sc(rng.randint(220, 380), 10)
        rate = rng.uniform(150, 900)
        backlog = rng.randint(60, 180)
        spoof_ips = set()
        for i in range(n):
            for _ in range(50):
                ip = str(self.spoof4.network_address + rng.randint(1, 65534))
                if ip not in spoof_ips:
                    break
            spoof_ips.add(ip)
            src = Host(rng, ip, None, False, rng.choice(("linux", "windows")), ttl=rng.randint(30, 250))
            f = w.flow("tcp", src, victim, rng.randint(1024, 65535), syn_port, "dos")
            isn = rng.getrandbits(32)
            w.tcp(f, t, True, isn, 0, SYN, rng.choice((512, 1024, 5840, 64240, 65535)))
            if i < backlog or rng.random() < 0.1:
                s_isn = rng.getrandbits(32)
                for k, delay in enumerate((0.0, 1.0, 3.0)[: rng.randint(1, 3)]):
                    w.tcp(f, t + rng.uniform(0.00005, 0.0003) + delay, False, s_isn, isn + 1, SYN | ACK,
                          OS_PARAMS[victim.os][1], opts=syn_options(victim.os, 1460))
            t += rng.expovariate(rate)
        # --- UDP flood
        t = self.when(40)
        # random garbage to ports with no registered UDP protocol (so no decoder trips over it)
        dports = (rng.choice((80, 7777, 8888, 9987)), rng.randint(33000, 34000))
        nflows = sc(rng.randint(15, 30), 2)
        attackers = [self.host(self.bad4, None, False, rng.choice(("linux", "windows")))
                     for _ in range(rng.randint(2, 4))]
        flows = []
        for _ in range(nflows):
            a = rng.choice(attackers)
            flows.append((w.flow("udp", a, victim, a.port(rng, 17), rng.choice(dports), "dos"),
                          rng.randint(30, 70)))
        for f, npk in flows:
            ts = t + rng.uniform(0, 3)
            size = rng.randint(16, 160)
            for _ in range(npk):
                pl = "".join(rng.choices(ALNUM, k=size)).encode()  # random printable garbage
                w.udp(f, ts, True, pl)
                ts += rng.expovariate(800)
        # --- ICMP echo flood
        for _ in range(rng.randint(1, 3)):
            a = self.host(self.bad4, None, False, "linux")
            t = self.when(30)
            npk = sc(rng.randint(200, 450), 20)
            gap = rng.uniform(0.0005, 0.004)
            if not w.icmp_free(a, victim, t, t + npk * gap + 1):
                continue
            f = w.flow("icmp", a, victim, 8, 0, "dos")
            ident = rng.getrandbits(16)
            size = rng.choice((56, 56, 64, 100))
            for seq in range(npk):
                data = rng.randbytes(size)
                w.icmp(f, t, True, 8, 0, struct.pack("!HH", ident, seq & 0xFFFF), data)
                if rng.random() < 0.85:
                    w.icmp(f, t + rng.uniform(0.00005, 0.0004), False, 0, 0,
                           struct.pack("!HH", ident, seq & 0xFFFF), data)
                t += gap * rng.uniform(0.6, 1.4)
        # --- slowloris
        a = self.host(self.bad4, None, False, "linux")
        nconn = sc(rng.randint(70, 120), 5)
        t0 = self.when(200)
        for i in range(nconn):
            t = t0 + (i // 40) * rng.uniform(8, 30) + rng.uniform(0, 1.5)
            f = w.flow("tcp", a, victim, a.port(rng), vport, "dos")
            c = TcpConn(w, f)
            t = c.open(t)
            first = (f"GET /?{rng.randint(0, 2000)} HTTP/1.1\r\nUser-Agent: {rng.choice(BOT_UAS)}\r\n"
                     f"Accept-language: en-US,en,q=0.5\r\n").encode()
            t = c.send(t, 0, first)
            life = rng.uniform(40, 160)
            end = t + life
            for _ in range(40):
                t += rng.uniform(9.0, 11.0)
                if t > end or t > self.T1:
                    break
                t = c.send(t, 0, f"X-a: {rng.randint(1, 5000)}\r\n".encode())
            if t <= self.T1:
                body = text_body(rng, 200, True)
                t = c.send(t + rng.uniform(0.1, 2.0), 1,
                           http_response(408, "Request Timeout", "text/html", body, t, "Apache/2.4.62 (Debian)",
                                         conn="close"))
                c.close(t + 0.0005, 1)
        # --- HTTP GET flood
        bots = [self.host(self.bad4, None, False, rng.choice(("linux", "windows"))) for _ in range(rng.randint(4, 12))]
        n = sc(rng.randint(130, 200), 10)
        t = self.when(60)
        page = text_body(rng, rng.randint(300, 1500), True)
        for _ in range(n):
            b = rng.choice(bots)
            f = w.flow("tcp", b, victim, b.port(rng), vport, "dos")
            c = TcpConn(w, f)
            t1 = c.open(t)
            req = http_request("GET", rng.choice(("/", "/", "/index.html", f"/?{rng.getrandbits(32)}")),
                               victim.name, rng.choice(BOT_UAS), ("Accept: */*",))
            t1 = c.exchange(t1, req, http_response(200, "OK", "text/html", page, t1, "nginx/1.24.0"))
            c.close(t1 + rng.uniform(0.0001, 0.01), 0)
            t += rng.expovariate(rng.uniform(20, 80))

    # ---------------------------------------------------------------- bruteforce
    def gen_bruteforce(self):
        rng, w, sc = self.rng, self.w, self.sc
        a = self.host(self.bad4, None, False, "linux") if rng.random() < 0.7 else \
            self.host(self.lan4, None, True, "linux")
        # --- SSH
        banner = rng.choice(BRUTE_SSH_BANNERS)
        t = self.when(150)
        for _ in range(sc(rng.randint(90, 140), 5)):
            f = w.flow("tcp", a, self.ssh, a.port(rng), 22, "bruteforce")
            c = TcpConn(w, f)
            t1 = c.open(t)
            t1 = self.ssh_prologue(c, t1, banner, hybrid=False)
            t1 = c.exchange(t1, ssh_enc(rng, 40), ssh_enc(rng, 24))  # 'none' auth -> methods
            for _k in range(rng.randint(1, 3)):
                u, p = rng.choice(USERNAMES), rng.choice(PASSWORDS)
                t1 = c.exchange(t1 + rng.uniform(0.001, 0.05), ssh_enc(rng, 52 + len(u) + len(p)),
                                ssh_enc(rng, 24), think=rng.uniform(1.5, 3.0))
            c.close(t1 + rng.uniform(0.0005, 0.01), 0)
            t += rng.uniform(0.15, 1.6)
        # --- HTTP basic auth
        srv = rng.choice((self.web, self.app))
        port = self.web_port if srv is self.web else 80
        path = rng.choice(("/admin/", "/manager/html", "/login", "/wp-admin/"))
        t = self.when(150)
        body = text_body(rng, rng.randint(300, 500), True)
        for _ in range(sc(rng.randint(80, 140), 5)):
            f = w.flow("tcp", a, srv, a.port(rng), port, "bruteforce")
            c = TcpConn(w, f)
            t1 = c.open(t)
            cred = base64.b64encode(f"{rng.choice(USERNAMES)}:{rng.choice(PASSWORDS)}".encode()).decode()
            req = http_request("GET", path, srv.name, "Mozilla/5.0 (Hydra)",
                               (f"Authorization: Basic {cred}", "Connection: close"))
            resp = http_response(401, "Unauthorized", "text/html; charset=iso-8859-1", body, t1,
                                 "Apache/2.4.62 (Debian)", ('WWW-Authenticate: Basic realm="Restricted"',),
                                 conn="close")
            t1 = c.exchange(t1, req, resp)
            c.close(t1 + rng.uniform(0.0001, 0.002), 1)
            t += rng.uniform(0.05, 0.8)
        # --- FTP
        t = self.when(150)
        for _ in range(sc(rng.randint(50, 90), 3)):
            f = w.flow("tcp", a, self.ftp, a.port(rng), 21, "bruteforce")
            c = TcpConn(w, f)
            t1 = c.open(t)
            t1 = c.send(t1 + c.lat(1) + rng.uniform(0.001, 0.01), 1, b"220 (vsFTPd 3.0.3)\r\n")
            user = rng.choice(USERNAMES)
            for _k in range(rng.randint(1, 3)):
                t1 = c.exchange(t1 + rng.uniform(0.001, 0.02), f"USER {user}\r\n".encode(),
                                b"331 Please specify the password.\r\n")
                t1 = c.exchange(t1 + rng.uniform(0.001, 0.02), f"PASS {rng.choice(PASSWORDS)}\r\n".encode(),
                                b"530 Login incorrect.\r\n", think=rng.uniform(0.8, 3.0))
            if rng.random() < 0.5:
                t1 = c.exchange(t1 + 0.001, b"QUIT\r\n", b"221 Goodbye.\r\n")
                c.close(t1 + 0.0003, 1)
            else:
                c.close(t1 + rng.uniform(0.001, 0.01), 0)
            t += rng.uniform(0.2, 2.5)

    # ---------------------------------------------------------------- exfil
    def gen_exfil(self):
        rng, w = self.rng, self.w
        host = rng.choice(self.clients)
        domain = f"{rng.choice(WORDS)}{rng.choice(('-sync', '-cdn', 'stat', '-api', ''))}{rng.randint(1, 99)}." \
                 f"{rng.choice(('net', 'com', 'info', 'xyz'))}"
        enc = rng.choice(("b32", "hex"))
        qtype = rng.choice((16, 16, 1))
        count = self.sc(rng.randint(300, 420), 10)
        period = min(rng.uniform(0.8, 2.2), (self.dur - 20) / count)
        t = self.T0 + rng.uniform(2, max(3, self.dur - count * period - 5))
        sess = rng.getrandbits(16)
        for seq in range(count):
            labels = []
            room = 253 - len(domain) - 6
            for _ in range(rng.randint(2, 4)):
                L = rng.randint(40, 63)
                if room - (L + 1) < 0:
                    break
                raw = rng.randbytes(40)
                s = base64.b32encode(raw).decode().rstrip("=").lower() if enc == "b32" else raw.hex()
                labels.append(s[:L])
                room -= L + 1
            qname = ".".join(labels + [f"{sess:04x}{seq & 0xFF:02x}"[:5], domain])
            f = w.flow("udp", host, self.resolver, host.port(rng, 17), 53, "exfil")
            qid = rng.getrandbits(16)
            w.udp(f, t, True, dns_query(qid, qname, qtype, True))
            tr = t + rng.uniform(0.01, 0.09)
            if qtype == 16:
                txt = base64.b32encode(rng.randbytes(rng.randint(2, 12))).decode().rstrip("=").lower()
                rdata = bytes([len(txt)]) + txt.encode()
            else:
                rdata = bytes([10, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)])
            w.udp(f, tr, False, dns_response(qid, qname, qtype, [(None, qtype, 0, rdata)], 0, True))
            t += period * rng.uniform(0.9, 1.1)

    # ---------------------------------------------------------------- c2
    def gen_c2(self):
        rng, w = self.rng, self.w
        period = rng.uniform(5, 45)
        jitter = rng.uniform(0.0, 0.3)
        target = self.sc(rng.randint(280, 360), 10)
        per_host = max(1, int((self.dur - 30) / period))
        nhosts = max(1, min(len(self.clients) - 2, 25, -(-target // per_host)))
        infected = rng.sample(self.clients, nhosts)
        c2_http = self.host(self.bad4, None, False, "linux", name=f"{rng.choice(WORDS)}-{rng.choice(WORDS)}.com")
        c2_tls = self.host(self.bad4, None, False, "linux", name=f"{rng.choice(SUBS)}.{rng.choice(WORDS)}"
                                                                 f"{rng.randint(1, 9)}.net")
        http_port = rng.choice((80, 8080))
        beacons = 0
        for h in infected:
            channel = rng.choice(("http", "tls"))
            p = period * rng.uniform(0.95, 1.05)
            t = self.T0 + rng.uniform(1, p)
            ident = base64.urlsafe_b64encode(rng.randbytes(9)).decode()
            uri = rng.choice(("/api/v1/status", "/submit.php", "/pixel.gif", "/updates/check", "/jquery-3.3.1.min.js"))
            for _ in range(400):
                if t > self.T1 - 2 or beacons >= target * 1.2:
                    break
                if channel == "http":
                    f = w.flow("tcp", h, c2_http, h.port(rng), http_port, "c2")
                    c = TcpConn(w, f)
                    t1 = c.open(t)
                    if rng.random() < 0.8:
                        req = http_request("GET", f"{uri}?id={ident}", c2_http.name, h.ua,
                                           ("Accept: */*",
                                            "Cookie: session="
                                            f"{base64.b64encode(rng.randbytes(rng.randint(16, 64))).decode()}",
                                            "Connection: close"))
                    else:
                        req = http_request("POST", f"{uri}?id={ident}", c2_http.name, h.ua,
                                           ("Content-Type: application/octet-stream", "Connection: close"),
                                           rng.randbytes(rng.randint(32, 400)))
                    n = rng.randint(0, 64) if rng.random() < 0.9 else rng.randint(500, 3000)
                    resp = http_response(200, "OK", "application/octet-stream", rng.randbytes(n), t1,
                                         "nginx", conn="close")
                    t1 = c.exchange(t1, req, resp, think=rng.uniform(0.005, 0.05))
                    c.close(t1 + rng.uniform(0.0002, 0.002), 1)
                else:
                    n = rng.randint(20, 120) if rng.random() < 0.9 else rng.randint(500, 3000)
                    self.tls_session(h, c2_tls, c2_tls.name, t, "c2", 443, 4,
                                     sizes=[(rng.randint(80, 400), n)], profile="beacon")
                beacons += 1
                t += p * (1 + rng.uniform(-jitter, jitter))
            # the same host also browses normally (benign)
            for _ in range(rng.randint(2, 4)):
                self.browse(h, self.when(30))

    # ---------------------------------------------------------------- driver
    def build(self):
        self._site_by_name = {s.name: s for s in self.sites}
        for h in self.internal:
            self._site_by_name[h.name] = h
        self.gen_benign_core()
        self.gen_scan()
        self.gen_dos()
        self.gen_bruteforce()
        self.gen_exfil()
        self.gen_c2()
        attacks = sum(1 for f in self.w.flows if f.label != "benign")
        self.gen_benign_fill(int(attacks * self.rng.uniform(0.97, 1.08)))
        self.check_flows()

    def check_flows(self):
        """Same bidirectional 5-tuple must never be reused within MIN_REUSE_GAP seconds."""
        spans = {}
        for f in self.w.flows:
            if f.first is None:
                continue
            a = (f.cli.addr(f.fam), f.sport if f.proto in ("tcp", "udp") else 0)
            b = (f.srv.addr(f.fam), f.dport if f.proto in ("tcp", "udp") else 0)
            key = (f.proto, min(a, b), max(a, b))
            spans.setdefault(key, []).append((f.first, f.last))
        for key, lst in spans.items():
            lst.sort()
            for (s1, e1), (s2, e2) in zip(lst, lst[1:]):
                if s2 < e1 + MIN_REUSE_GAP * 1e6:
                    raise RuntimeError(f"5-tuple reused too quickly: {key}")

    def write(self, pcap_path, csv_path):
        w = self.w
        pk = sorted(w.pkts, key=lambda p: p[0])  # stable: ties keep creation order
        def frames():
            for ts, ip, smac, dmac in pk:
                yield ts, ethernet(dmac, smac, ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6, ip)
        n = write_pcap(pcap_path, DLT_EN10MB, frames())
        rows = []
        for f in w.flows:
            if f.first is None:
                continue
            rows.append((f.first, f.last, f.proto, f.cli.addr(f.fam), f.sport, f.srv.addr(f.fam), f.dport, f.label))
        rows.sort(key=lambda r: (r[0], r[1], r[3], r[4]))
        with open(csv_path, "w", newline="") as fh:
            fh.write("first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label\n")
            for r in rows:
                fh.write(f"{r[0] // 1_000_000}.{r[0] % 1_000_000:06d},{r[1] // 1_000_000}.{r[1] % 1_000_000:06d},"
                         f"{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]}\n")
        counts = {k: [0, 0, 0] for k in LABELS}  # flows, packets, bytes (approx., incl. headers)
        for f in w.flows:
            if f.first is not None:
                c = counts[f.label]
                c[0] += 1
                c[1] += f.npk
                c[2] += f.nb
        return n, len(rows), counts


def cmd_labeled(seed, out, scale=1.0, stem=None):
    os.makedirs(out, exist_ok=True)
    stem = stem or f"lab-seed{seed}"
    sc = Scenario(seed, scale)
    sc.build()
    pcap, csv = os.path.join(out, stem + ".pcap"), os.path.join(out, stem + ".labels.csv")
    n, nflows, counts = sc.write(pcap, csv)
    print(f"{pcap}: {n} packets, {os.path.getsize(pcap)} bytes; {csv}: {nflows} flows")
    for k in LABELS:
        fl, pk, nb = counts[k]
        print(f"  {k:<10} flows={fl:<6} packets={pk:<7} bytes~{nb}")


# ============================================================== link-type captures

def conversation():
    """The small reference conversation: TCP (HTTP GET), DNS/UDP, ICMP echo, IPv6 DNS/UDP.
    Returns (packets, client) with packets = [(ts_us, ip_bytes, src_mac, dst_mac)]."""
    rng = random.Random(424242)
    w = World(rng)

    def mk(v4, v6, mac):
        return Host(rng, v4, v6, True, "linux", mac_bytes(mac))

    cli = mk("192.168.56.10", "fd00:56::10", "52:54:00:12:34:56")
    srv = mk("192.168.56.20", None, "52:54:00:ab:cd:ef")
    dns = mk("192.168.56.1", "fd00:56::1", "52:54:00:00:00:01")
    T = EPOCH_2026 + 3600.0
    # TCP: 3-way handshake, request, response, delayed ACK, FIN/FIN/ACK  => 9 packets
    f = w.flow("tcp", cli, srv, 45678, 80, "benign")
    c = TcpConn(w, f, mss=1460)
    c.lan, c.rtt = 0.0003, 0.0006
    t = c.open(T + 0.010)
    req = http_request("GET", "/hello.txt", "192.168.56.20", "curl/8.5.0", ("Accept: */*",))
    t1 = c.send(t + 0.0002, 0, req, final_ack=False)
    body = b"hello from tidewatch\n"
    t = c.send(t1 + 0.002, 1, http_response(200, "OK", "text/plain", body, T, "nginx/1.24.0"), final_ack=False)
    c.pkt(t + 0.030, 0, ACK)
    c.close(t + 0.100, 0, split=False)
    # DNS A over IPv4 => 2 packets
    f = w.flow("udp", cli, dns, 51515, 53, "benign")
    w.udp(f, T + 0.000, True, dns_query(0x1234, "tidewatch.example.com", 1, True))
    w.udp(f, T + 0.001, False, dns_response(0x1234, "tidewatch.example.com", 1,
                                            [(None, 1, 300, bytes([192, 168, 56, 20]))], 0, True))
    # ICMP echo => 2 packets
    f = w.flow("icmp", cli, srv, 8, 0, "benign")
    data = bytes(range(0x10, 0x48))
    w.icmp(f, T + 0.500, True, 8, 0, struct.pack("!HH", 0x0bad, 1), data)
    w.icmp(f, T + 0.5004, False, 0, 0, struct.pack("!HH", 0x0bad, 1), data)
    # IPv6 DNS AAAA => 2 packets
    f = w.flow("udp", cli, dns, 52525, 53, "benign", fam=6)
    w.udp(f, T + 0.700, True, dns_query(0x5678, "tidewatch.example.com", 28, True))
    w.udp(f, T + 0.7008, False, dns_response(0x5678, "tidewatch.example.com", 28,
                                             [(None, 28, 300, ipaddress.IPv6Address("fd00:56::20").packed)], 0, True))
    return sorted(w.pkts, key=lambda p: p[0]), cli


def sll_header(ip, smac, outgoing):
    proto = ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6
    return struct.pack("!HHH8sH", 4 if outgoing else 0, 1, 6, smac + b"\0\0", proto)


def sll2_header(ip, smac, outgoing):
    proto = ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 4 if outgoing else 0, 6, smac + b"\0\0")


def summarize(ips):
    """Counts packets per family and flows per protocol (bidirectional 5-tuples)."""
    flows = {"tcp": set(), "udp": set(), "icmp": set()}
    v4 = v6 = 0
    for ip in ips:
        if ip[0] >> 4 == 4:
            v4 += 1
            ihl = (ip[0] & 15) * 4
            proto, s, d, l4 = ip[9], ip[12:16], ip[16:20], ip[ihl:]
        else:
            v6 += 1
            proto, s, d, l4 = ip[6], ip[8:24], ip[24:40], ip[40:]
        if proto in (6, 17):
            sp, dp = struct.unpack("!HH", l4[:4])
            flows["tcp" if proto == 6 else "udp"].add(tuple(sorted(((s, sp), (d, dp)))))
        elif proto in (1, 58):
            flows["icmp"].add(tuple(sorted((s, d))))
    return len(ips), v4, v6, {k: len(v) for k, v in flows.items()}


# --- extra link types and capture-file formats (linktypes subcommand) ---------------

DLT_PPP, DLT_PPP_SERIAL, DLT_C_HDLC = 9, 50, 104
DLT_IEEE802_11, DLT_IEEE802_11_RADIO, DLT_PPI = 105, 127, 192
PPP_IP, PPP_IPV6, PPP_LCP = 0x0021, 0x0057, 0xC021
ETH_SLARP = 0x8035
LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
WLAN_BSSID = mac_bytes("02:54:57:00:00:01")    # the access point the client is associated with
WLAN_PEER_AP = mac_bytes("02:54:57:00:00:02")  # second AP of the WDS link
SHB_OPTS = ((4, b"tidewatch pcaps/generate.py"),)  # shb_userappl of every pcapng file written here


def is_v4(ip: bytes) -> bool:
    return ip[0] >> 4 == 4


def ppp_frame(ip: bytes, acfc: bool = False) -> bytes:
    """PPP in HDLC-like framing without FCS: ff 03 + protocol + IP (acfc: address/control omitted)."""
    return (b"" if acfc else b"\xff\x03") + struct.pack("!H", PPP_IP if is_v4(ip) else PPP_IPV6) + ip


def lcp_echo_request(ident: int, magic: int) -> bytes:
    return b"\xff\x03" + struct.pack("!HBBHI", PPP_LCP, 9, ident, 8, magic)


def chdlc_frame(ethertype: int, payload: bytes, broadcast: bool = False) -> bytes:
    return struct.pack("!BBH", 0x8F if broadcast else 0x0F, 0, ethertype) + payload


def radiotap_header(flags: int = 0) -> bytes:
    """Flags (bit 1), Rate (bit 2), Channel (bit 3, 2-byte aligned at offset 10), dBm antenna signal (bit 5)."""
    body = struct.pack("<BBHHb", flags, 108, 2437, 0x00C0, -42)  # 54 Mb/s, channel 6, 2.4 GHz OFDM, -42 dBm
    return struct.pack("<BBHI", 0, 0, 8 + len(body), (1 << 1) | (1 << 2) | (1 << 3) | (1 << 5)) + body


def ppi_header(dlt: int, fields: bytes = b"") -> bytes:
    return struct.pack("<BBHI", 0, 0, 8 + len(fields), dlt) + fields


def ppi_80211_common(tsf: int) -> bytes:
    """PPI field type 2 (802.11-Common), 20 bytes: TSF, flags (no FCS), rate, channel, FHSS, signal, noise."""
    return struct.pack("<HH", 2, 20) + struct.pack("<QHHHHBBbb", tsf, 0, 108, 2437, 0x00C0, 0, 0, -42, -95)


def dot11_header(fc0, fc1, a1, a2, a3, seq, a4=None, qos=None, duration=0x002C):
    h = struct.pack("<BBH", fc0, fc1, duration) + a1 + a2 + a3 + struct.pack("<H", (seq & 0xFFF) << 4)
    if a4 is not None:
        h += a4
    if qos is not None:
        h += struct.pack("<H", qos)
    return h


def dot11_data(ip, sm, dm, to_ap, seq, qos=False, wds=False):
    """802.11 data frame (type 2; subtype 0 Data or 8 QoS Data) + LLC/SNAP + IP.
    to_ap: ToDS (addr1 BSSID, addr2 SA, addr3 DA), else FromDS (addr1 DA, addr2 BSSID, addr3 SA);
    wds: ToDS and FromDS (addr1 RA, addr2 TA, addr3 DA, addr4 SA; 30-byte header)."""
    fc0 = 0x88 if qos else 0x08
    q = 0 if qos else None
    if wds:
        h = dot11_header(fc0, 0x03, WLAN_PEER_AP, WLAN_BSSID, dm, seq, a4=sm, qos=q)
    elif to_ap:
        h = dot11_header(fc0, 0x01, WLAN_BSSID, sm, dm, seq, qos=q)
    else:
        h = dot11_header(fc0, 0x02, dm, WLAN_BSSID, sm, seq, qos=q)
    return h + LLC_SNAP + struct.pack("!H", ETH_IPV4 if is_v4(ip) else ETH_IPV6) + ip


def dot11_beacon(seq, tsf):
    ies = (b"\x00\x0d" + b"tidewatch-lab" + b"\x01\x08\x82\x84\x8b\x96\x0c\x12\x18\x24" + b"\x03\x01\x06")
    return dot11_header(0x80, 0x00, b"\xff" * 6, WLAN_BSSID, WLAN_BSSID, seq, duration=0) + \
        struct.pack("<QHH", tsf, 100, 0x0431) + ies


def dot11_protected(sta, seq, body):
    """QoS Data, ToDS, Protected bit (0x40) set: CCMP header + undecryptable body + MIC."""
    ccmp = bytes([0x01, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00])  # PN 1, ExtIV, key id 0
    return dot11_header(0x88, 0x41, WLAN_BSSID, sta, WLAN_BSSID, seq, qos=0) + ccmp + body


def dot11_null(sta, seq):
    """Null function (type 2, subtype 4), ToDS + power management, no body."""
    return dot11_header(0x48, 0x11, WLAN_BSSID, sta, WLAN_BSSID, seq)


def ng_units_to_ns(units, resol):
    """What a pcapng reader (and tshark 4.0) reports: whole seconds + fraction truncated to ns."""
    per_s = 1 << (resol & 0x7F) if resol & 0x80 else 10 ** resol
    return units // per_s * 1_000_000_000 + (units % per_s) * 1_000_000_000 // per_s


def dns_name_record(addr: bytes, *names: str) -> bytes:
    return addr + b"".join(n.encode() + b"\0" for n in names)


def capture_facts(frames, dlts, extra=None):
    """EXPECTED.json entry. frames: [(ts_ns, ip bytes or None)] in file order; dlts: one DLT or a
    per-packet list. Returns (entry, (IPv4 packets, IPv6 packets))."""
    ips = [ip for _, ip in frames if ip is not None]
    n, n4, n6, fl = summarize(ips)
    f = {"packets": len(frames), "ip_packets": n, "non_ip": len(frames) - n,
         "tcp_flows": fl["tcp"], "udp_flows": fl["udp"], "icmp_flows": fl["icmp"],
         "first_ts_ns": frames[0][0], "last_ts_ns": frames[-1][0],
         "link_types": dlts if isinstance(dlts, list) else [dlts] * len(frames)}
    f.update(extra or {})
    return f, (n4, n6)


def linktypes_ext(d, pkts, cli):
    """New link types and capture-file formats. Returns (linktype rows, format rows, facts),
    facts: file -> dict for EXPECTED.json (see fact())."""
    mine = {cli.mac}
    T = pkts[0][0]  # first packet (DNS query), whole second
    lt_rows, fmt_rows, facts = [], [], {}

    def linktype_file(name, dlt, desc, frames, non_ip_desc):
        """frames: [(ts_us, data, ip or None)] in time order."""
        write_pcap(os.path.join(d, name), dlt, [(ts, data) for ts, data, _ in frames])
        f, (n4, n6) = capture_facts([(ts * 1000, ip) for ts, _, ip in frames], dlt)
        facts[name] = f
        lt_rows.append(f"| {name} | {dlt} | {desc} | {f['packets']} | {n4} | {n6} | {f['tcp_flows']} | "
                       f"{f['udp_flows']} | {f['icmp_flows']} | {f['non_ip']}: {non_ip_desc} |")

    def insert(frames, extra):
        return sorted(frames + extra, key=lambda r: r[0])  # stable: extras never tie with conversation times

    # ---- PPP (DLT 9): ff 03 + protocol + IP; frames 5 and 12 (TCP ACK, ICMP echo request) without ff 03
    acfc = {4, 11}
    frames = [(ts, ppp_frame(ip, i in acfc), ip) for i, (ts, ip, sm, dm) in enumerate(pkts)]
    frames = insert(frames, [(T + 200_000, lcp_echo_request(1, 0x54570001), None)])
    linktype_file("ppp.pcap", DLT_PPP, "PPP: ff 03 + 2-byte protocol (0x0021 IPv4, 0x0057 IPv6); the TCP ACK "
                  "(frame 5) and ICMP echo request (frame 13) omit ff 03 (start with 00 21)", frames,
                  "LCP Echo-Request (protocol 0xc021), frame 12")
    # ---- PPP_SERIAL (DLT 50)
    frames = [(ts, ppp_frame(ip), ip) for ts, ip, sm, dm in pkts]
    frames = insert(frames, [(T + 200_000, lcp_echo_request(2, 0x54570002), None)])
    linktype_file("ppp_hdlc.pcap", DLT_PPP_SERIAL, "PPP in HDLC-like framing (PPP_SERIAL): ff 03 + protocol + IP, "
                  "no FCS", frames, "LCP Echo-Request (protocol 0xc021), frame 12")
    # ---- Cisco HDLC (DLT 104): the DNS query (frame 1) is sent to the broadcast address 0x8f
    frames = [(ts, chdlc_frame(ETH_IPV4 if is_v4(ip) else ETH_IPV6, ip, broadcast=(i == 0)), ip)
              for i, (ts, ip, sm, dm) in enumerate(pkts)]
    slarp = chdlc_frame(ETH_SLARP, struct.pack("!IIIH", 2, 5, 4, 0xFFFF))
    frames = insert(frames, [(T + 200_000, slarp, None)])
    linktype_file("chdlc.pcap", DLT_C_HDLC, "Cisco HDLC: address 0x0f (frame 1: 0x8f broadcast), control 0x00, "
                  "ethertype 0x0800/0x86dd", frames, "SLARP keepalive (ethertype 0x8035, address 0x0f), frame 12")

    # ---- 802.11 data framing shared by ppi.pcap and radiotap.pcap
    def wlan(i, ts, ip, sm, dm, seq, **kw):
        return dot11_data(ip, sm, dm, sm in mine, seq, qos=(i % 2 == 1), **kw)

    # ---- PPI (DLT 192): 802.11 inside (pph_dlt 105, one 802.11-Common field, 32-byte header);
    # the ICMP echo pair as Ethernet inside (pph_dlt 1, no fields, 8-byte header)
    frames = []
    for i, (ts, ip, sm, dm) in enumerate(pkts):
        if ip[9] == 1 and is_v4(ip):
            data = ppi_header(DLT_EN10MB) + ethernet(dm, sm, ETH_IPV4, ip)
        else:
            data = ppi_header(DLT_IEEE802_11, ppi_80211_common(ts - T + 1_000_000)) + wlan(i, ts, ip, sm, dm, 100 + i)
        frames.append((ts, data, ip))
    linktype_file("ppi.pcap", DLT_PPI, "PPI: 13 frames pph_dlt 105 (802.11 Data/QoS Data, ToDS from the client, "
                  "FromDS to it, LLC/SNAP) with one 802.11-Common field (header 32 bytes); the ICMP echo pair "
                  "(frames 12, 13) pph_dlt 1 (Ethernet), no fields (header 8 bytes)", frames, "none")

    # ---- radiotap (DLT 127)
    wds_i, fcs_i = 12, 6  # ICMP echo reply over a WDS link; the HTTP response with an FCS
    frames = []
    for i, (ts, ip, sm, dm) in enumerate(pkts):
        if i == wds_i:
            f80211, flags = wlan(i, ts, ip, sm, dm, 200 + i, wds=True), 0
        else:
            f80211, flags = wlan(i, ts, ip, sm, dm, 200 + i), 0
        if i == fcs_i:
            f80211, flags = f80211 + struct.pack("<I", binascii.crc32(f80211)), 0x10
        frames.append((ts, radiotap_header(flags) + f80211, ip))
    wrng = random.Random(127)
    frames = insert(frames, [
        (T + 200_000, radiotap_header() + dot11_beacon(300, 200_000), None),
        (T + 300_000, radiotap_header() + dot11_null(cli.mac, 301), None),
        (T + 400_000, radiotap_header() + dot11_protected(cli.mac, 302, wrng.randbytes(64)), None)])
    linktype_file("radiotap.pcap", DLT_IEEE802_11_RADIO,
                  "radiotap (it_len 15: Flags, Rate, Channel, dBm signal) + 802.11 + LLC/SNAP; conversation "
                  "packets 1, 3, 5, ... are Data (subtype 0, 24-byte header), 2, 4, ... QoS Data (subtype 8, "
                  "26 bytes); ToDS from the client, FromDS to it; frame 7 (HTTP response) has radiotap Flags "
                  "0x10 and a 4-byte FCS (CRC-32, correct); frame 16 (ICMP echo reply) is WDS (ToDS+FromDS, "
                  "4 addresses, 30-byte header)", frames,
                  "beacon (frame 12), Null function without body (frame 13), Protected QoS Data with an "
                  "undecryptable CCMP body (frame 14)")

    # ---- capture-file formats: the eth.pcap packets (ts_ns, frame, ip, sll frame)
    eth = [(ts * 1000, ethernet(dm, sm, ETH_IPV4 if is_v4(ip) else ETH_IPV6, ip), ip,
            sll_header(ip, sm, sm in mine) + ip) for ts, ip, sm, dm in pkts]

    def fmt_file(name, blob, frames, dlts, fmt, extra=None, note="", tshark=None):
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(blob)
        f, _ = capture_facts(frames, dlts, extra)
        facts[name] = f
        lt = dlts if not isinstance(dlts, list) else " ".join(map(str, dlts))
        fmt_rows.append(f"| {name} | {fmt} | {lt} | {tshark or f['packets']} | {f['first_ts_ns'] // 10**9}."
                        f"{f['first_ts_ns'] % 10**9:09d} | {f['last_ts_ns'] // 10**9}.{f['last_ts_ns'] % 10**9:09d} "
                        f"| {note} |")

    conv = [(ts, ip) for ts, _, ip, _ in eth]
    fmt_file("eth-be.pcap", pcap_bytes(DLT_EN10MB, [(ts // 1000, fr) for ts, fr, _, _ in eth], endian=">"), conv,
             DLT_EN10MB, "classic pcap, big-endian (bytes a1 b2 c3 d4), microseconds")
    ns = [(ts + 123, ip) for ts, ip in conv]
    fmt_file("eth-ns.pcap", pcap_bytes(DLT_EN10MB, [(ts + 123, fr) for ts, fr, _, _ in eth], nsec=True), ns,
             DLT_EN10MB, "classic pcap, nanosecond magic a1b23c4d, little-endian (bytes 4d 3c b2 a1)",
             note="every timestamp = eth.pcap's + 123 ns")

    # multi-if.pcapng: interface 0 Ethernet (us), interface 1 Linux SLL (if_tsresol 9); even packets on 0
    blob = pcapng_shb(SHB_OPTS, "<") + pcapng_idb(DLT_EN10MB, 262144, [(2, b"eth0")], "<") + \
        pcapng_idb(DLT_LINUX_SLL, 65535, [(2, b"any"), (9, bytes([9]))], "<")
    for i, (ts, fr, ip, sll) in enumerate(eth):
        blob += pcapng_epb(ts // 1000, fr, interface=0) if i % 2 == 0 else pcapng_epb(ts, sll, interface=1)
    fmt_file("multi-if.pcapng", blob, conv, [DLT_EN10MB if i % 2 == 0 else DLT_LINUX_SLL for i in range(len(eth))],
             "pcapng, 1 section, IDB 0 Ethernet snaplen 262144 (no if_tsresol: us), IDB 1 Linux SLL snaplen 65535 "
             "if_tsresol 9 (ns)", note="packets alternate: odd frame numbers interface 0 (Ethernet), even frame "
             "numbers interface 1 (SLL); timestamps equal eth.pcap's. libpcap 1.10 refuses this file")

    # two-sections.pcapng: LE section (Ethernet, packets 1-8), BE section (raw IP, if_tsresol 6, packets 9-15)
    blob = pcapng_shb(SHB_OPTS, "<") + pcapng_idb(DLT_EN10MB, 65535, [(2, b"eth0")], "<")
    for ts, fr, ip, _ in eth[:8]:
        blob += pcapng_epb(ts // 1000, fr)
    blob += pcapng_shb(SHB_OPTS, ">") + pcapng_idb(DLT_RAW, 65535, [(2, b"raw0"), (9, bytes([6]))], ">")
    for ts, fr, ip, _ in eth[8:]:
        blob += pcapng_epb(ts // 1000, ip, endian=">")
    fmt_file("two-sections.pcapng", blob, conv, [DLT_EN10MB] * 8 + [DLT_RAW] * 7,
             "pcapng, 2 sections: little-endian SHB + IDB Ethernet (us) + 8 EPBs, then big-endian SHB + IDB "
             "LINKTYPE_RAW (if_tsresol 6) + 7 EPBs; interface id 0 in both",
             note="frames 1-8 Ethernet, 9-15 raw IP; timestamps equal eth.pcap's. tshark 4.0 decodes frames 9-15 "
             "as raw IP (encap 7) but labels them frame.interface_name eth0 (section 2, interface id 0)")

    # blocks.pcapng: if_tsresol 0x94 (2^-20 s); EPB, SPB, obsolete PB and blocks to skip
    res = 0x80 | 20

    def units(ts_ns):  # nearest 2^-20 s
        return (ts_ns * (1 << 20) + 500_000_000) // 1_000_000_000

    e = "<"
    blob = pcapng_shb(SHB_OPTS, e) + pcapng_idb(DLT_EN10MB, 65535, [(2, b"eth0"), (9, bytes([res]))], e)
    nrb = pcapng_option(1, dns_name_record(bytes([192, 168, 56, 20]), "web.tidewatch.example"), e) + \
        pcapng_option(1, dns_name_record(bytes([192, 168, 56, 1]), "dns.tidewatch.example"), e) + \
        pcapng_option(2, dns_name_record(ipaddress.IPv6Address("fd00:56::1").packed, "dns.tidewatch.example"), e) + \
        struct.pack(e + "HH", 0, 0)
    secrets = b"CLIENT_RANDOM " + bytes(range(32)).hex().encode() + b" " + bytes(range(48)).hex().encode() + b"\n"
    frames, kinds = [], []
    spb_i, pb_i, opt_i = 5, 8, 6
    for i, (ts, fr, ip, _) in enumerate(eth):
        if i == 2:
            blob += pcapng_block(PCAPNG_NRB, nrb, e)
        if i == 4:
            blob += pcapng_block(PCAPNG_DSB, struct.pack(e + "II", 0x544C534B, len(secrets)) + secrets, e)
        if i == 8:
            blob += pcapng_block(PCAPNG_CB, struct.pack(e + "I", 32473) + b"tidewatch custom block, skip me", e)
        u = units(ts)
        if i == spb_i:  # Simple Packet Block: original length + data, no timestamp, interface 0
            blob += pcapng_block(PCAPNG_SPB, struct.pack(e + "I", len(fr)) + fr, e)
            frames.append((0, ip))
            kinds.append("SPB")
            continue
        if i == pb_i:  # obsolete Packet Block: if id u16, drops u16, ts high, ts low, caplen, len, data
            blob += pcapng_block(PCAPNG_PB, struct.pack(e + "HHIIII", 0, 0, u >> 32, u & MASK32, len(fr), len(fr))
                                 + fr + b"\0" * (-len(fr) % 4), e)
            kinds.append("PB")
        elif i == opt_i:
            blob += pcapng_epb(u, fr, options=[(1, b"tidewatch: EPB with options"), (2, struct.pack(e + "I", 1))],
                               endian=e)
            kinds.append("EPB+opts")
        else:
            blob += pcapng_epb(u, fr, endian=e)
            kinds.append("EPB")
        frames.append((ng_units_to_ns(u, res), ip))
    last_u = units(eth[-1][0])
    blob += pcapng_block(PCAPNG_ISB, struct.pack(e + "III", 0, last_u >> 32, last_u & MASK32) +
                         pcapng_options([(1, b"tidewatch statistics"), (4, struct.pack(e + "Q", 15)),
                                         (5, struct.pack(e + "Q", 0))], e), e)
    fmt_file("blocks.pcapng", blob, frames, DLT_EN10MB,
             "pcapng, IDB Ethernet snaplen 65535 if_tsresol 0x94 (2^-20 s); blocks in order: SHB, IDB, EPB x2, "
             "NRB, EPB x2, DSB (TLS key log), EPB, SPB (packet 6), EPB with opt_comment + epb_flags=1 (inbound) "
             "(packet 7), EPB, custom block 0x00000BAD (PEN 32473), obsolete PB (packet 9), EPB x6, ISB",
             {"no_timestamp_packets": [spb_i + 1]},
             note="times are the nearest multiple of 2^-20 s to eth.pcap's, truncated to ns as tshark prints "
             "them; packet 6 (SPB) has no timestamp (tshark prints an empty frame.time_epoch and then starts "
             "the TCP conversation at time 0); NRB, DSB, ISB and the custom block are not packets, but "
             "tshark 4.0 lists the custom block as a record of its own (frame 9, 32 bytes of data, no "
             "encapsulation), so tshark's frames 10-16 are packets 9-15",
             tshark="15 packets (tshark: 16 records, see notes)")

    # tsoffset.pcapng: if_tsresol 3 (ms), if_tsoffset 1700000000 s; EPB times in ms relative to the offset
    off = 1_700_000_000
    blob = pcapng_shb(SHB_OPTS, e) + \
        pcapng_idb(DLT_EN10MB, 65535, [(2, b"eth0"), (9, bytes([3])), (14, struct.pack(e + "q", off))], e)
    frames = []
    for ts, fr, ip, _ in eth:
        ms = ts // 1_000_000 - off * 1000
        blob += pcapng_epb(ms, fr, endian=e)
        frames.append(((off * 1000 + ms) * 1_000_000, ip))
    fmt_file("tsoffset.pcapng", blob, frames, DLT_EN10MB,
             "pcapng, IDB Ethernet if_tsresol 3 (ms) + if_tsoffset 1700000000 s; EPB times = ms since the offset",
             note="eth.pcap's times truncated to the millisecond")

    # eth.pcap.gz, truncated.pcap, truncated.pcapng
    TRUNC = ("8, then exit status 2: 'The file \"...\" appears to have been cut short in the middle of a "
             "packet.'")
    with open(os.path.join(d, "eth.pcap"), "rb") as fh:
        raw = fh.read()
    fmt_file("eth.pcap.gz", gzip.compress(raw, 9, mtime=0), conv, DLT_EN10MB, "gzip (mtime 0) of eth.pcap",
             note="tshark reads it directly (wiretap's zlib)")
    off_rec, recs = 24, []
    while off_rec < len(raw):
        recs.append(off_rec)
        off_rec += 16 + struct.unpack_from("<I", raw, off_rec + 8)[0]
    caplen9 = struct.unpack_from("<I", raw, recs[8] + 8)[0]
    cut = recs[8] + 16 + caplen9 // 2
    fmt_file("truncated.pcap", raw[:cut], conv[:8], DLT_EN10MB,
             f"eth.pcap cut at byte {cut}: inside the 9th packet's data ({caplen9 // 2} of {caplen9} bytes)",
             {"truncated": True}, note="8 whole packets", tshark=TRUNC)
    with open(os.path.join(d, "eth.pcapng"), "rb") as fh:
        rawng = fh.read()
    off_blk, blocks = 0, []
    while off_blk < len(rawng):
        blocks.append(off_blk)
        off_blk += struct.unpack_from("<I", rawng, off_blk + 4)[0]
    epbs = [o for o in blocks if struct.unpack_from("<I", rawng, o)[0] == PCAPNG_EPB]
    blen9 = struct.unpack_from("<I", rawng, epbs[8] + 4)[0]
    cut = epbs[8] + blen9 // 2
    fmt_file("truncated.pcapng", rawng[:cut], conv[:8], DLT_EN10MB,
             f"eth.pcapng cut at byte {cut}: inside the 9th EPB ({blen9 // 2} of {blen9} bytes)",
             {"truncated": True}, note="8 whole packets", tshark=TRUNC)
    return lt_rows, fmt_rows, facts


def cmd_linktypes(out):
    d = os.path.join(out, "linktypes")
    os.makedirs(d, exist_ok=True)
    pkts, cli = conversation()
    mine = {cli.mac}
    eth = [(ts, ethernet(dm, sm, ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6, ip)) for ts, ip, sm, dm in pkts]

    def vlan(ts, ip, sm, dm):
        et = ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6
        return ts, dm + sm + struct.pack("!HHH", ETH_8021Q, 100, et) + ip

    def qinq(ts, ip, sm, dm):
        et = ETH_IPV4 if ip[0] >> 4 == 4 else ETH_IPV6
        return ts, dm + sm + struct.pack("!HHHHH", ETH_8021AD, 200, ETH_8021Q, 100, et) + ip

    files = []  # (name, dlt, description, ip list)
    all_ips = [p[1] for p in pkts]
    v4_ips = [ip for ip in all_ips if ip[0] >> 4 == 4]
    v6_ips = [ip for ip in all_ips if ip[0] >> 4 == 6]

    write_pcap(os.path.join(d, "eth.pcap"), DLT_EN10MB, eth)
    files.append(("eth.pcap", DLT_EN10MB, "Ethernet II", all_ips))
    write_pcap(os.path.join(d, "vlan.pcap"), DLT_EN10MB, [vlan(*p) for p in pkts])
    files.append(("vlan.pcap", DLT_EN10MB, "Ethernet + 802.1Q VLAN 100", all_ips))
    write_pcap(os.path.join(d, "qinq.pcap"), DLT_EN10MB, [qinq(*p) for p in pkts])
    files.append(("qinq.pcap", DLT_EN10MB, "Ethernet + 802.1ad (0x88a8) VLAN 200 + 802.1Q VLAN 100", all_ips))
    write_pcap(os.path.join(d, "sll.pcap"), DLT_LINUX_SLL,
               [(ts, sll_header(ip, sm, sm in mine) + ip) for ts, ip, sm, dm in pkts])
    files.append(("sll.pcap", DLT_LINUX_SLL, "Linux cooked capture v1 (16-byte header)", all_ips))
    write_pcap(os.path.join(d, "sll2.pcap"), DLT_LINUX_SLL2,
               [(ts, sll2_header(ip, sm, sm in mine) + ip) for ts, ip, sm, dm in pkts])
    files.append(("sll2.pcap", DLT_LINUX_SLL2, "Linux cooked capture v2 (20-byte header)", all_ips))
    write_pcap(os.path.join(d, "raw.pcap"), DLT_RAW, [(ts, ip) for ts, ip, sm, dm in pkts])
    files.append(("raw.pcap", DLT_RAW, "LINKTYPE_RAW (IPv4 and IPv6, no link header)", all_ips))
    write_pcap(os.path.join(d, "ipv4.pcap"), DLT_IPV4, [(ts, ip) for ts, ip, sm, dm in pkts if ip[0] >> 4 == 4])
    files.append(("ipv4.pcap", DLT_IPV4, "LINKTYPE_IPV4 (IPv4 packets only)", v4_ips))
    write_pcap(os.path.join(d, "ipv6.pcap"), DLT_IPV6, [(ts, ip) for ts, ip, sm, dm in pkts if ip[0] >> 4 == 6])
    files.append(("ipv6.pcap", DLT_IPV6, "LINKTYPE_IPV6 (IPv6 packets only)", v6_ips))
    write_pcap(os.path.join(d, "null.pcap"), DLT_NULL,
               [(ts, struct.pack("<I", 2 if ip[0] >> 4 == 4 else 30) + ip) for ts, ip, sm, dm in pkts])
    files.append(("null.pcap", DLT_NULL, "BSD loopback, 4-byte little-endian family (2 = IPv4, 30 = IPv6)", all_ips))
    write_pcapng(os.path.join(d, "eth.pcapng"), DLT_EN10MB, [(ts * 1000, fr) for ts, fr in eth], nsec=True,
                 if_name=b"eth0", application=SHB_OPTS[0][1])
    files.append(("eth.pcapng", DLT_EN10MB,
                  "pcapng SHB+IDB(if_tsresol=9, ns)+EPB, Ethernet; same packets/times as eth.pcap", all_ips))
    urng = random.Random(147)
    T = EPOCH_2026 + 7200
    write_pcap(os.path.join(d, "unsupported.pcap"), DLT_USER0,
               [((T + i) * 1_000_000, b"TWUSER0" + urng.randbytes(20 + 10 * i)) for i in range(3)])

    # ---- malformed.pcap
    by_kind = {}
    for p in pkts:
        ip = p[1]
        kind = "v6" if ip[0] >> 4 == 6 else {6: "tcp", 17: "udp", 1: "icmp"}[ip[9]]
        by_kind.setdefault(kind, []).append(p)
    good_a = by_kind["udp"][:2]          # DNS query + response
    good_b = by_kind["icmp"][:2]         # echo request + reply
    syn = by_kind["tcp"][0]
    cm, sm = cli.mac, by_kind["tcp"][1][2]
    T = EPOCH_2026 + 10800

    def us(k):
        return int((T + k * 0.01) * 1e6)

    def eth4(ip):
        return ethernet(sm, cm, ETH_IPV4, ip)
    recs, notes = [], []

    def add(data, note, origlen=None):
        k = len(recs)
        recs.append((us(k), data) if origlen is None else (us(k), data, origlen))
        notes.append(note)

    for p in good_a:
        add(ethernet(p[3], p[2], ETH_IPV4, p[1]),
            "good: IPv4 UDP DNS (%s)" % ("query" if len(notes) == 0 else "response"))
    add(b"\x52\x54\x00\xab\xcd\xef\x52\x54\x00\x12",
        "BAD: Ethernet frame only 10 bytes (< 14-byte Ethernet header); caplen=origlen=10")
    bad_ihl = bytearray(syn[1])
    bad_ihl[0] = 0x43
    bad_ihl[10:12] = b"\0\0"
    bad_ihl[10:12] = struct.pack("!H", inet_csum(bytes(bad_ihl[:12])))
    add(eth4(bytes(bad_ihl)),
        "BAD: IPv4 version 4 with IHL=3 (12 bytes, < minimum 5); rest of frame is an ordinary TCP SYN")
    full = eth4(syn[1])
    add(full[:14 + 12],
        "BAD: IPv4 cut inside the IP header: caplen=26 (12 bytes after Ethernet), origlen=%d" % len(full),
        origlen=len(full))
    tcp_short = syn[1][:20 + 12]
    hdr = bytearray(syn[1][:20])
    hdr[2:4] = struct.pack("!H", 32)
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", inet_csum(bytes(hdr)))
    add(eth4(bytes(hdr) + tcp_short[20:]),
        "BAD: IPv4 proto=6 (TCP) with total length 32 -> only 12 bytes of TCP (< 20-byte minimum header); "
        "valid IPv4 checksum; caplen=origlen=46")
    arp = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 1, cm, bytes([192, 168, 56, 10]), b"\0" * 6,
                      bytes([192, 168, 56, 20]))
    add(ethernet(b"\xff" * 6, cm, ETH_ARP, arp),
        "NOT IP: ARP request (ethertype 0x0806) who-has 192.168.56.20 tell 192.168.56.10")
    v6 = by_kind["v6"][0]
    v6_payload = v6[1][40:]
    bad6 = v6[1][:4] + struct.pack("!H", len(v6_payload) + 200) + v6[1][6:]
    add(ethernet(v6[3], v6[2], ETH_IPV6, bad6),
        "BAD: IPv6 UDP whose payload length field (%d) exceeds the %d bytes present; caplen=origlen=%d"
        % (len(v6_payload) + 200, len(v6_payload), 14 + len(bad6)))
    for p in good_b:
        add(ethernet(p[3], p[2], ETH_IPV4, p[1]), "good: IPv4 ICMP echo %s" % ("request" if p[2] == cm else "reply"))
    write_pcap(os.path.join(d, "malformed.pcap"), DLT_EN10MB, recs)
    with open(os.path.join(d, "malformed.expected.txt"), "w") as fh:
        fh.write("# malformed.pcap (Ethernet, DLT 1): index (0-based) / frame number (1-based) / caplen / what it is\n")
        for i, (r, note) in enumerate(zip(recs, notes)):
            fh.write(f"{i}\tframe {i + 1}\tcaplen={len(r[1])}\t{note}\n")
        fh.write("# Expected decode: 4 good IPv4 packets (frames 1,2,9,10) = 1 UDP flow + 1 ICMP flow.\n"
                 "# Frames 3-6 are malformed/truncated (3 bad IPv4 + 1 runt Ethernet), frame 7 (ARP) is not\n"
                 "# IP, frame 8 is an IPv6 packet shorter than its payload-length field. A strict decoder\n"
                 "# counts frames 3-6 and 8 as malformed and frame 7 as non-IP; none of frames 3-8 should\n"
                 "# create a flow or crash it. (Wireshark 4.0 still dissects frame 8's UDP/DNS leniently.)\n")

    # ---- new link types and capture-file formats
    lt_rows, fmt_rows, facts = linktypes_ext(d, pkts, cli)
    for name, dlt, desc, ips in files:
        fam = {"ipv4.pcap": 4, "ipv6.pcap": 6}.get(name)
        facts[name] = capture_facts([(p[0] * 1000, p[1]) for p in pkts if fam in (None, p[1][0] >> 4)], dlt)[0]
    facts["unsupported.pcap"] = capture_facts([((EPOCH_2026 + 7200 + i) * 10 ** 9, None) for i in range(3)],
                                              DLT_USER0, {"unsupported_link_type": True})[0]
    good = {0, 1, 8, 9}  # the DNS pair and the ICMP echo pair; frame 7 (index 6) is ARP, the rest malformed
    mal = [(r[0] * 1000, r[1][14:] if k in good else None) for k, r in enumerate(recs)]
    facts["malformed.pcap"] = capture_facts(mal, DLT_EN10MB, {"non_ip": 1, "malformed": len(recs) - len(good) - 1})[0]

    # ---- EXPECTED.md
    lines = ["# Link-type test captures", "",
             "Generated by `python3 pcaps/generate.py linktypes --out pcaps`. Every file except "
             "unsupported.pcap and malformed.pcap carries the same conversation (or its IPv4 / IPv6 subset; "
             "the truncated files its first 8 packets), the tables below say where non-IP frames are added:",
             "",
             "- TCP 192.168.56.10:45678 -> 192.168.56.20:80: SYN, SYN-ACK, ACK, GET (PSH|ACK), "
             "response (PSH|ACK), ACK, FIN|ACK, FIN|ACK, ACK = 9 packets",
             "- UDP DNS A 192.168.56.10:51515 -> 192.168.56.1:53, query + response = 2 packets",
             "- ICMP echo request + reply 192.168.56.10 <-> 192.168.56.20 = 2 packets",
             "- IPv6 UDP DNS AAAA [fd00:56::10]:52525 -> [fd00:56::1]:53, query + response = 2 packets",
             "",
             "Flows are bidirectional 5-tuples (ICMP: one flow per address pair).",
             "",
             "| file | DLT | encapsulation | packets | IPv4 pkts | IPv6 pkts | TCP flows | UDP flows | ICMP flows |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, dlt, desc, ips in files:
        n, n4, n6, fl = summarize(ips)
        lines.append(f"| {name} | {dlt} | {desc} | {n} | {n4} | {n6} | {fl['tcp']} | {fl['udp']} | {fl['icmp']} |")
    lines.append(f"| unsupported.pcap | {DLT_USER0} | LINKTYPE_USER0, 3 arbitrary packets (should be rejected/skipped) "
                 f"| 3 | 0 | 0 | 0 | 0 | 0 |")
    lines.append(f"| malformed.pcap | {DLT_EN10MB} | Ethernet, see malformed.expected.txt | {len(recs)} | 4 good "
                 f"+ 3 bad | 1 bad | 0 | 1 | 1 |")
    lines += ["", "malformed.pcap: 10 frames = 4 good IPv4 (the DNS pair and the ICMP echo pair), 3 bad IPv4 "
              "(IHL < 5, IP header cut by caplen, TCP header cut short), 1 runt Ethernet frame (10 bytes), "
              "1 ARP (not IP) and 1 IPv6 packet shorter than its payload length. Flow counts are for the good "
              "packets only; a lenient decoder that accepts the short IPv6 packet would see 2 UDP flows.",
              "", "## More link types", "",
              "Classic little-endian pcap, microsecond timestamps equal to eth.pcap's; non-IP frames are "
              "inserted at T+0.2 s, T+0.3 s, T+0.4 s (T = 1767229200, the first packet), between the TCP "
              "close and the ICMP echo, so first and last timestamps are eth.pcap's. Frame numbers are 1-based.",
              "",
              "| file | DLT | encapsulation | packets | IPv4 pkts | IPv6 pkts | TCP flows | UDP flows | ICMP flows "
              "| non-IP frames |",
              "|---|---|---|---|---|---|---|---|---|---|"] + lt_rows
    lines += ["", "## Capture-file formats", "",
              "Each carries the eth.pcap packets (Ethernet frames, 13 IPv4 + 2 IPv6, 1 TCP / 2 UDP / 1 ICMP "
              "flows) unless the table says otherwise. Packets = what tshark 4.0 reads; timestamps exactly as "
              "tshark prints frame.time_epoch. Link type = the DLT of each packet's interface.", "",
              "| file | format | link type per packet | packets | first frame.time_epoch | last frame.time_epoch "
              "| notes |",
              "|---|---|---|---|---|---|---|"] + fmt_rows
    lines += ["", "## EXPECTED.json", "",
              "The same facts for every capture in this directory, one object per file: packets (records a "
              "reader returns), ip_packets, non_ip (frames that are well-formed but not IPv4/IPv6), "
              "tcp_flows, udp_flows, icmp_flows, first_ts_ns / last_ts_ns (first and last record in file "
              "order, ns since the epoch) and link_types (DLT per packet). Extra keys: malformed (malformed.pcap: "
              "frames to drop as malformed; its ip_packets are the 4 good ones), unsupported_link_type "
              "(unsupported.pcap), truncated (the file ends inside a record: a reader returns the whole "
              "packets before it, then reports the truncation), no_timestamp_packets (1-based packet numbers "
              "whose block carries no timestamp: the blocks.pcapng SPB; its first/last times are unaffected).",
              "", "For comparison, libpcap 1.10.3 (pcap_open_offline + pcap_next_ex) reads every file in the first "
              "two tables and eth-be.pcap, eth-ns.pcap, blocks.pcapng (15 packets) and tsoffset.pcapng, but: "
              "multi-if.pcapng fails before the first packet with \"an interface has a type 113 different from "
              "the type of the first interface\"; two-sections.pcapng returns the 8 packets of the first section "
              "and then fails on the big-endian SHB (\"pcapng block size 1073741824 > maximum 16777216\"); "
              "eth.pcap.gz is an \"unknown file format\"; the truncated files return 8 packets and then an "
              "error (\"truncated dump file; ...\", \"truncated pcapng dump file; ...\").",
              "", "Timestamps of the files in the first two tables are whole microseconds (eth.pcapng stores "
              "them in nanoseconds, if_tsresol=9, with identical values) and those pcap files are little-endian "
              "(magic bytes d4 c3 b2 a1); the format files differ as their table says."]
    with open(os.path.join(d, "EXPECTED.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    names = sorted(facts)
    with open(os.path.join(d, "EXPECTED.json"), "w") as fh:
        fh.write("{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(facts[k])}" for k in names) + "\n}\n")
    print(f"{d}: {len(facts)} captures written")


# ============================================================== tiny

def cmd_tiny(out):
    os.makedirs(out, exist_ok=True)
    T = EPOCH_2026
    c_ip, s_ip = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    c_mac, s_mac = mac_bytes("02:00:00:00:00:01"), mac_bytes("02:00:00:00:00:02")
    cp, sp = 40000, 80
    C, S = 1000, 5000  # ISNs
    req = b"GET /tiny HTTP/1.1\r\nHost: 10.0.0.2\r\nUser-Agent: tidewatch-tiny\r\nAccept: */*\r\n"
    req = req + b"X-Pad: " + b"a" * (100 - len(req) - 11) + b"\r\n\r\n"
    assert len(req) == 100
    hdr = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    body_len = 300 - len(hdr) - 3 - 4
    resp = hdr + str(body_len).encode() + b"\r\n\r\n" + b"t" * body_len
    assert len(resp) == 300, len(resp)
    rows = [  # (dt, from_client, flags, seq, ack, win, payload)
        (0.000, True, SYN, C, 0, 64240, b""),
        (0.010, False, SYN | ACK, S, C + 1, 65160, b""),
        (0.020, True, ACK, C + 1, S + 1, 64240, b""),
        (0.030, True, PSH | ACK, C + 1, S + 1, 64240, req),
        (0.050, False, ACK, S + 1, C + 101, 65160, b""),
        (0.060, False, PSH | ACK, S + 1, C + 101, 65160, resp),
        (0.070, True, ACK, C + 101, S + 301, 64240, b""),
        (0.100, True, FIN | ACK, C + 101, S + 301, 64240, b""),
        (0.110, False, FIN | ACK, S + 301, C + 102, 65160, b""),
        (0.120, True, ACK, C + 102, S + 302, 64240, b""),
    ]
    recs, table = [], []
    ipid = {True: 0x1000, False: 0x2000}
    names = {SYN: "SYN", SYN | ACK: "SYN,ACK", ACK: "ACK", PSH | ACK: "PSH,ACK", FIN | ACK: "FIN,ACK"}
    for i, (dt, fc, flags, seq, ack, win, pl) in enumerate(rows, 1):
        src, dst = (c_ip, s_ip) if fc else (s_ip, c_ip)
        seg = tcp_segment(src, dst, cp if fc else sp, sp if fc else cp, seq, ack, flags, win, pl)
        ipid[fc] += 1
        ip = ipv4_packet(src, dst, 6, seg, ipid[fc], 64)
        frame = ethernet(s_mac if fc else c_mac, c_mac if fc else s_mac, ETH_IPV4, ip)
        ts = EPOCH_2026 * 1_000_000 + int(round(dt * 1e6))
        recs.append((ts, frame))
        table.append(f"| {i} | {ts // 1_000_000}.{ts % 1_000_000:06d} | T+{dt:.6f} | "
                     f"{'client->server' if fc else 'server->client'} | {names[flags]} | {seq} | {ack} | {win} | "
                     f"{len(ip)} | {len(frame)} | {len(pl)} |")
    write_pcap(os.path.join(out, "tiny_tcp.pcap"), DLT_EN10MB, recs)
    md = ["# tiny_tcp.pcap", "",
          "One IPv4 TCP connection, client 10.0.0.1:40000 (MAC 02:00:00:00:00:01) -> server 10.0.0.2:80 "
          "(MAC 02:00:00:00:00:02).",
          f"Base time T = {T} (2026-01-01T00:00:00Z). Classic pcap, DLT 1 (Ethernet), microsecond timestamps.",
          "IPv4 headers 20 bytes (TTL 64, DF), TCP headers 20 bytes (no options); frames are not padded to 60 bytes.",
          f"Client ISN {C}, server ISN {S} (absolute numbers below; Wireshark's relative numbers are "
          f"absolute - ISN, so the SYN is seq 0 and the first data byte is seq 1).",
          "Payloads: packet 4 is a 100-byte HTTP GET, packet 6 a 300-byte HTTP 200 response.", "",
          "| # | time (epoch s) | offset | direction | flags | seq | ack | window | IP total length | frame length "
          "| payload length |",
          "|---|---|---|---|---|---|---|---|---|---|---|"] + table + [
          "", "Totals: 10 packets, 1 TCP flow; client->server 6 packets / 100 payload bytes, "
          "server->client 4 packets / 300 payload bytes; total frame bytes "
          f"{sum(len(r[1]) for r in recs)}; duration 0.120000 s."]
    with open(os.path.join(out, "tiny_tcp.expected.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
    print(f"{os.path.join(out, 'tiny_tcp.pcap')}: 10 packets")


# ============================================================== CLI

DEMO_SCALE = 0.12


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("labeled", help="labeled ~10 minute scenario")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=1.0)
    p = sub.add_parser("linktypes", help="link-type test captures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("tiny", help="tiny_tcp.pcap")
    p.add_argument("--out", required=True)
    p = sub.add_parser("all", help="demo + linktypes + tiny")
    p.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "labeled":
        if not 0.01 <= a.scale <= 20:
            ap.error("--scale must be within [0.01, 20]")
        cmd_labeled(a.seed, a.out, a.scale)
    elif a.cmd == "linktypes":
        cmd_linktypes(a.out)
    elif a.cmd == "tiny":
        cmd_tiny(a.out)
    else:
        cmd_labeled(1, a.out, DEMO_SCALE, stem="demo")
        cmd_linktypes(a.out)
        cmd_tiny(a.out)


if __name__ == "__main__":
    main()
