"""The one packet-capture reader and writer of the Python tools (standard library only).

Reading: `read_packets` takes a path, bytes or a binary file and yields `Packet`s from

- classic pcap: either byte order, microsecond (a1b2c3d4) or nanosecond (a1b23c4d) magic;
- pcapng: any number of sections, each little- or big-endian; Enhanced, Simple and the
  obsolete Packet blocks; per-interface link type, ``if_tsresol`` (10^-n or 2^-n s) and
  ``if_tsoffset``; every other block is skipped.

A file that ends inside a record or block yields the whole packets before it and stops
(``partial_last=True``: a classic pcap's last record is yielded with the bytes present).

Writing: `write_pcap` / `pcap_bytes` (classic pcap, either byte order, us or ns) and
`write_pcapng` (SHB + one IDB + EPBs), built from `pcapng_block` & co., which
pcaps/generate.py also uses to craft unusual pcapng files.
"""
from __future__ import annotations

import io
import os
import struct
from typing import BinaryIO, Iterable, Iterator, NamedTuple, Sequence, Tuple, Union

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
# pcapng block types
PCAPNG_SHB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB = 0x0A0D0D0A, 1, 2, 3
PCAPNG_NRB, PCAPNG_ISB, PCAPNG_EPB, PCAPNG_DSB, PCAPNG_CB = 4, 5, 6, 0x0A, 0x0BAD

_CLASSIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_MASK32 = 0xFFFFFFFF

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]


class PcapError(ValueError):
    """Not a capture file this reader knows, or a broken one."""


class Packet(NamedTuple):
    """One packet. Its time is ``ts_sec + ts_frac / ts_res`` seconds since the epoch
    (``ts_res``: units of ``ts_frac`` per second, e.g. 10**6 or 10**9). A pcapng Simple
    Packet Block has no time: its packet has time 0."""

    ts_sec: int
    ts_frac: int
    ts_res: int
    linktype: int
    data: bytes
    orig_len: int

    @property
    def ts(self) -> float:
        """Seconds since the epoch, as a float."""
        return self.ts_sec + self.ts_frac / self.ts_res

    @property
    def ts_us(self) -> int:
        """Whole microseconds since the epoch (finer resolutions truncated)."""
        return self.ts_sec * 1_000_000 + self.ts_frac * 1_000_000 // self.ts_res

    @property
    def ts_ns(self) -> int:
        """Whole nanoseconds since the epoch (finer resolutions truncated, as tshark prints them)."""
        return self.ts_sec * 1_000_000_000 + self.ts_frac * 1_000_000_000 // self.ts_res


def read_packets(source: Source, *, partial_last: bool = False, max_caplen: int | None = None) -> Iterator[Packet]:
    """Yields the packets of a classic pcap or pcapng capture, in file order.

    source: a path, the file's bytes, or a binary file object (read from where it stands).
    partial_last: yield a classic pcap's last record even when the file ends inside its data.
    max_caplen: stop at a record (or EPB / PB) claiming more captured bytes than this.
    Raises PcapError (a ValueError) when the file is neither format.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield from _read(io.BytesIO(bytes(source)), "<bytes>", partial_last, max_caplen)
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield from _read(f, os.fspath(source), partial_last, max_caplen)
    else:
        yield from _read(source, getattr(source, "name", "<file>"), partial_last, max_caplen)


def _read(f: BinaryIO, name: str, partial_last: bool, max_caplen: int | None) -> Iterator[Packet]:
    magic = f.read(4)
    if magic == _PCAPNG:
        yield from _read_pcapng(f, magic, max_caplen)
        return
    if magic not in _CLASSIC:
        raise PcapError(f"{name}: not a pcap file")
    end, res = _CLASSIC[magic]
    rest = f.read(20)
    if len(rest) < 20:
        raise PcapError(f"{name}: pcap header cut short")
    # The upper 4 bits of the link-type field are the FCS length, not the link type.
    linktype = struct.unpack(end + "I", rest[16:20])[0] & 0x0FFFFFFF
    rec = struct.Struct(end + "IIII")
    while True:
        h = f.read(16)
        if len(h) < 16:
            return
        sec, frac, incl, orig = rec.unpack(h)
        if max_caplen is not None and incl > max_caplen:
            return
        data = f.read(incl)
        if len(data) < incl and not partial_last:
            return
        yield Packet(sec, frac, res, linktype, data, orig)


def _tsresol(v: int) -> int:
    return 1 << (v & 0x7F) if v & 0x80 else 10 ** v


def _idb(body: bytes, e: str) -> Tuple[int, int, int, int]:
    """(link type, snaplen, units per second, offset in seconds) of an Interface Description Block."""
    linktype = struct.unpack(e + "H", body[:2])[0]
    snaplen = struct.unpack(e + "I", body[4:8])[0] if len(body) >= 8 else 0
    res, offset, o = 1_000_000, 0, 8
    while o + 4 <= len(body):
        code, ln = struct.unpack(e + "HH", body[o:o + 4])
        value = body[o + 4:o + 4 + ln]
        if code == 0:
            break
        if code == 9 and ln >= 1:
            res = _tsresol(value[0])
        elif code == 14 and ln >= 8:
            offset = struct.unpack(e + "q", value[:8])[0]
        o += 4 + ln + (-ln % 4)
    return linktype, snaplen, res, offset


def _read_pcapng(f: BinaryIO, first: bytes, max_caplen: int | None) -> Iterator[Packet]:
    e = "<"
    ifaces: list = []  # per interface of the current section: (linktype, snaplen, res, offset)
    head = first + f.read(8)
    while len(head) == 12:
        if head[:4] == _PCAPNG:
            bom = head[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise PcapError("pcapng section header with an unknown byte-order magic")
            ifaces = []
        btype, blen = struct.unpack(e + "II", head[:8])
        if blen < 12:
            return
        rest = f.read(blen - 12)
        if len(rest) < blen - 12:
            return  # cut inside the block
        body = (head[8:] + rest)[:blen - 12]
        if btype == PCAPNG_IDB and len(body) >= 2:
            ifaces.append(_idb(body, e))
        elif btype in (PCAPNG_EPB, PCAPNG_PB) and len(body) >= 20:
            if btype == PCAPNG_EPB:
                iface, hi, lo, cap, orig = struct.unpack(e + "IIIII", body[:20])
            else:
                iface, _drops, hi, lo, cap, orig = struct.unpack(e + "HHIIII", body[:20])
            if max_caplen is not None and cap > max_caplen:
                return
            if iface < len(ifaces):
                linktype, _, res, offset = ifaces[iface]
                units = (hi << 32) | lo
                yield Packet(units // res + offset, units % res, res, linktype, body[20:20 + cap], orig)
        elif btype == PCAPNG_SPB and len(body) >= 4 and ifaces:
            linktype, snaplen, _, _ = ifaces[0]
            orig = struct.unpack(e + "I", body[:4])[0]
            n = min(orig, snaplen) if snaplen else orig
            yield Packet(0, 0, 1_000_000, linktype, body[4:4 + n], orig)
        head = f.read(12)


# ---------------------------------------------------------------------------- writing

# A record to write: (ts, data) or (ts, data, orig_len); ts in integer microseconds, or
# in nanoseconds with nsec=True; orig_len defaults to len(data).
Record = Sequence


def pcap_header(linktype: int, snaplen: int = 65535, *, nsec: bool = False, endian: str = "<") -> bytes:
    """The 24-byte classic pcap file header (version 2.4)."""
    return struct.pack(endian + "IHHiIII", PCAP_MAGIC_NS if nsec else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(ts: int, data: bytes, orig_len: int | None = None, *, nsec: bool = False,
                endian: str = "<") -> bytes:
    """One classic pcap record: 16-byte header + data."""
    per_s = 1_000_000_000 if nsec else 1_000_000
    return struct.pack(endian + "IIII", ts // per_s, ts % per_s, len(data),
                       len(data) if orig_len is None else orig_len) + data


def pcap_bytes(linktype: int, records: Iterable[Record], *, snaplen: int = 65535, nsec: bool = False,
               endian: str = "<") -> bytes:
    """A whole classic pcap file in memory."""
    out = [pcap_header(linktype, snaplen, nsec=nsec, endian=endian)]
    for r in records:
        out.append(pcap_record(r[0], r[1], r[2] if len(r) > 2 else None, nsec=nsec, endian=endian))
    return b"".join(out)


def write_pcap(path: str, linktype: int, records: Iterable[Record], *, snaplen: int = 65535,
               nsec: bool = False, endian: str = "<") -> int:
    """Writes a classic pcap file; returns the number of packets."""
    n = 0
    with open(path, "wb") as fh:
        fh.write(pcap_header(linktype, snaplen, nsec=nsec, endian=endian))
        for r in records:
            fh.write(pcap_record(r[0], r[1], r[2] if len(r) > 2 else None, nsec=nsec, endian=endian))
            n += 1
    return n


Options = Iterable[Tuple[int, bytes]]


def pcapng_option(code: int, value: bytes, endian: str = "<") -> bytes:
    """One option (code, length, value padded to 4 bytes)."""
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_options(options: Options, endian: str = "<") -> bytes:
    """Options followed by opt_endofopt; nothing at all when there is no option."""
    options = list(options)
    if not options:
        return b""
    return b"".join(pcapng_option(c, v, endian) for c, v in options) + struct.pack(endian + "HH", 0, 0)


def pcapng_block(btype: int, body: bytes, endian: str = "<") -> bytes:
    """A block: type, total length, body padded to 4 bytes, total length again."""
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def pcapng_shb(options: Options = (), endian: str = "<") -> bytes:
    """Section Header Block, version 1.0, section length unknown (-1)."""
    return pcapng_block(PCAPNG_SHB, struct.pack(endian + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1)
                        + pcapng_options(options, endian), endian)


def pcapng_idb(linktype: int, snaplen: int = 65535, options: Options = (), endian: str = "<") -> bytes:
    """Interface Description Block (if_tsresol is option 9, if_tsoffset 14)."""
    return pcapng_block(PCAPNG_IDB, struct.pack(endian + "HHI", linktype, 0, snaplen)
                        + pcapng_options(options, endian), endian)


def pcapng_epb(ts_units: int, data: bytes, *, interface: int = 0, orig_len: int | None = None,
               options: Options = (), endian: str = "<") -> bytes:
    """Enhanced Packet Block; ts_units in the interface's resolution."""
    body = struct.pack(endian + "IIIII", interface, ts_units >> 32, ts_units & _MASK32, len(data),
                       len(data) if orig_len is None else orig_len) + data + b"\0" * (-len(data) % 4)
    return pcapng_block(PCAPNG_EPB, body + pcapng_options(options, endian), endian)


def write_pcapng(path: str, linktype: int, records: Iterable[Record], *, snaplen: int = 65535,
                 nsec: bool = False, if_name: bytes | None = None, application: bytes | None = None) -> int:
    """Writes a little-endian pcapng file: SHB (shb_userappl = application), one IDB
    (if_name, if_tsresol 9 with nsec) and one EPB per record; returns the number of packets."""
    shb_opts = [(4, application)] if application is not None else []
    idb_opts = ([(2, if_name)] if if_name is not None else []) + ([(9, bytes([9]))] if nsec else [])
    n = 0
    with open(path, "wb") as fh:
        fh.write(pcapng_shb(shb_opts))
        fh.write(pcapng_idb(linktype, snaplen, idb_opts))
        for r in records:
            fh.write(pcapng_epb(r[0], r[1], orig_len=r[2] if len(r) > 2 else None))
            n += 1
    return n
