"""The engine's flow key in Python: one key for both directions of a conversation.

The same rules as `FlowKey::of` / `FlowKey::between` in engine/src/flow.rs:

- the two endpoints (address, port) are put in canonical order: the lower one first,
  addresses compared as 16 bytes (IPv4 as IPv4-mapped IPv6), then ports;
- ICMP and ICMPv6 (protocols 1 and 58) have no ports: an echo request or reply uses
  its identifier as both "ports", any other message ``type << 8 | code`` as both;
- the protocol number and whether the packet is IPv6 are part of the key.
"""
from __future__ import annotations

import functools
import ipaddress
import socket
from typing import NamedTuple, Tuple, Union

PROTO_ICMP, PROTO_ICMPV6 = 1, 58

Address = Union[str, bytes, bytearray, ipaddress.IPv4Address, ipaddress.IPv6Address]


class FlowKey(NamedTuple):
    """A direction-free flow key; ``lo`` is the lower endpoint, not the initiator."""

    lo_addr: bytes  # 16 bytes (IPv4 mapped into IPv6)
    lo_port: int
    hi_addr: bytes
    hi_port: int
    proto: int
    is_ipv6: bool


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


@functools.lru_cache(maxsize=65536)
def _addr_str(addr: str) -> Tuple[bytes, bool]:
    try:
        return _V4_MAPPED + socket.inet_pton(socket.AF_INET, addr), False
    except OSError:
        return socket.inet_pton(socket.AF_INET6, addr), True


def addr_bytes(addr: Address) -> Tuple[bytes, bool]:
    """(16 bytes, is IPv6) of an address given as text, 4 or 16 raw bytes or an ipaddress object."""
    if isinstance(addr, str):
        return _addr_str(addr)
    if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        addr = addr.packed
    addr = bytes(addr)
    if len(addr) == 4:
        return _V4_MAPPED + addr, False
    if len(addr) == 16:
        return addr, True
    raise ValueError(f"not an IPv4 or IPv6 address: {addr!r}")


def ports_of(proto: int, sport: int, dport: int, echo_id: int | None = None) -> Tuple[int, int]:
    """The two "ports" of the key: for ICMP/ICMPv6 ``sport``/``dport`` are the type and code."""
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        if echo_id is not None:
            return echo_id, echo_id
        tc = (sport << 8) | dport
        return tc, tc
    return sport, dport


def of(proto: int, src: Address, sport: int, dst: Address, dport: int,
       echo_id: int | None = None) -> Tuple[FlowKey, bool]:
    """(key, source is the lower endpoint) of one packet, as `FlowKey::of`.

    For ICMP/ICMPv6 pass the type as ``sport``, the code as ``dport`` and the echo
    identifier (echo request/reply only) as ``echo_id``.
    """
    s, s6 = addr_bytes(src)
    d, d6 = addr_bytes(dst)
    sp, dp = ports_of(proto, sport, dport, echo_id)
    is_ipv6 = s6 or d6
    if (s, sp) <= (d, dp):
        return FlowKey(s, sp, d, dp, proto, is_ipv6), True
    return FlowKey(d, dp, s, sp, proto, is_ipv6), False


def flow_key(proto: int, src: Address, sport: int, dst: Address, dport: int,
             echo_id: int | None = None) -> FlowKey:
    """The key of one packet (either direction gives the same key); see `of`."""
    return of(proto, src, sport, dst, dport, echo_id)[0]


def between(a: Tuple[Address, int], b: Tuple[Address, int], proto: int) -> FlowKey:
    """The key of a conversation between two (address, port) endpoints, in either order,
    as `FlowKey::between`; for ICMP the ports are what `of` would use."""
    (a_addr, a6), (b_addr, b6) = addr_bytes(a[0]), addr_bytes(b[0])
    lo, hi = sorted([(a_addr, a[1]), (b_addr, b[1])])
    return FlowKey(lo[0], lo[1], hi[0], hi[1], proto, a6 or b6)

