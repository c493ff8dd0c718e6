"""tidewatch_tools.flowkey: the engine's FlowKey::of / FlowKey::between in Python."""
import ipaddress
import socket

import pytest

from tidewatch_tools.flowkey import FlowKey, between, flow_key, of

V4_MAPPED = b"\0" * 10 + b"\xff\xff"
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58


def v4(a):
    return V4_MAPPED + socket.inet_aton(a)


@pytest.mark.parametrize("proto,a,ap,b,bp", [
    (TCP, "10.0.0.1", 40000, "10.0.0.2", 80),
    (TCP, "10.0.0.2", 80, "10.0.0.1", 40000),
    (UDP, "192.168.1.9", 53, "192.168.1.10", 53),
    (UDP, "fd00::1", 5353, "fd00::2", 5353),
    (TCP, "2001:db8::10", 443, "2001:db8::9", 51000),
    (TCP, "10.0.0.1", 80, "10.0.0.1", 1234),   # same host: ports decide
    (2, "10.0.0.1", 0, "224.0.0.22", 0),        # IGMP: no ports
])
def test_both_directions_give_one_key(proto, a, ap, b, bp):
    k1, lo1 = of(proto, a, ap, b, bp)
    k2, lo2 = of(proto, b, bp, a, ap)
    assert k1 == k2 == flow_key(proto, a, ap, b, bp) == between((b, bp), (a, ap), proto)
    assert lo1 != lo2 or (a, ap) == (b, bp)
    assert isinstance(k1, FlowKey) and k1.proto == proto


def test_canonical_order_is_the_engines():
    """Lower (16-byte address, port) first; IPv4 stored IPv4-mapped; is_ipv6 from the addresses."""
    k, src_is_lo = of(TCP, "10.0.0.2", 80, "10.0.0.1", 40000)
    assert k == FlowKey(v4("10.0.0.1"), 40000, v4("10.0.0.2"), 80, TCP, False)
    assert src_is_lo is False
    k, src_is_lo = of(TCP, "10.0.0.1", 1234, "10.0.0.1", 80)
    assert (k.lo_port, k.hi_port, src_is_lo) == (80, 1234, False)
    k = flow_key(UDP, "fd00::2", 1, "fd00::1", 2)
    assert k.lo_addr == ipaddress.IPv6Address("fd00::1").packed and k.is_ipv6
    # 10.0.0.1 vs ::ffff:10.0.0.1 in an IPv6 packet: the same bytes, told apart by is_ipv6
    assert flow_key(TCP, "10.0.0.1", 1, "10.0.0.2", 2) != flow_key(TCP, "::ffff:10.0.0.1", 1, "::ffff:10.0.0.2", 2)


def test_addresses_as_text_bytes_or_objects():
    want = flow_key(TCP, "192.0.2.1", 1000, "2001:db8::1", 22)
    assert flow_key(TCP, socket.inet_aton("192.0.2.1"), 1000, ipaddress.ip_address("2001:db8::1").packed, 22) == want
    assert flow_key(TCP, ipaddress.ip_address("192.0.2.1"), 1000, ipaddress.ip_address("2001:db8::1"), 22) == want
    with pytest.raises(ValueError):
        flow_key(TCP, b"\x01\x02\x03", 1, "10.0.0.1", 2)


@pytest.mark.parametrize("proto,req,rep", [(ICMP, 8, 0), (ICMPV6, 128, 129)])
def test_icmp_echo_is_keyed_by_identifier(proto, req, rep):
    a, b = ("10.0.0.1", "10.0.0.2") if proto == ICMP else ("fd00::1", "fd00::2")
    k_req = flow_key(proto, a, req, b, 0, echo_id=0x0BAD)
    k_rep = flow_key(proto, b, rep, a, 0, echo_id=0x0BAD)
    assert k_req == k_rep
    assert (k_req.lo_port, k_req.hi_port) == (0x0BAD, 0x0BAD)
    assert flow_key(proto, a, req, b, 0, echo_id=0x0BAE) != k_req


def test_other_icmp_is_keyed_by_type_and_code():
    unreach = flow_key(ICMP, "10.0.0.2", 3, "10.0.0.1", 3)   # port unreachable
    assert (unreach.lo_port, unreach.hi_port) == ((3 << 8) | 3, (3 << 8) | 3)
    assert unreach == flow_key(ICMP, "10.0.0.1", 3, "10.0.0.2", 3)
    assert unreach != flow_key(ICMP, "10.0.0.2", 3, "10.0.0.1", 1)   # host unreachable
    assert unreach != flow_key(ICMP, "10.0.0.2", 11, "10.0.0.1", 0)  # time exceeded


def test_ports_are_not_swapped_between_endpoints():
    # 10.0.0.1:80 <-> 10.0.0.2:1234 is another conversation than 10.0.0.1:1234 <-> 10.0.0.2:80
    assert flow_key(TCP, "10.0.0.1", 80, "10.0.0.2", 1234) != flow_key(TCP, "10.0.0.1", 1234, "10.0.0.2", 80)
    assert flow_key(TCP, "10.0.0.1", 80, "10.0.0.2", 1234) != flow_key(UDP, "10.0.0.1", 80, "10.0.0.2", 1234)
