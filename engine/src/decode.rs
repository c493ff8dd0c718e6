//! Decode: from link-layer bytes to the few fields the flow stage needs.
//!
//! Promise: decoding never panics and never allocates. A packet either
//! becomes a [`PacketInfo`] or is dropped under a named [`DropReason`], so
//! `packets read = packets decoded + sum of drops` always holds.

use etherparse::{err::packet::SliceError, err::Layer, EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::source::{LinkType, Micros, RawPacket};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Why a packet was not decoded. Every variant is a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The capture's link type is not one the engine reads.
    UnsupportedLinkType,
    /// The frame ends inside the link or IP header.
    Truncated,
    /// A link-layer frame that carries no IP (ARP, LLC, LLDP, ...).
    NotIp,
    /// The IP header (or an IPv6 extension header) is invalid.
    BadIpHeader,
    /// The packet ends inside the TCP, UDP or ICMP header.
    TruncatedTransport,
    /// The TCP header is invalid (e.g. data offset below 5).
    BadTransportHeader,
    /// An IP fragment: fragment reassembly is not implemented yet.
    IpFragment,
}

impl DropReason {
    pub const ALL: [DropReason; 7] = [
        DropReason::UnsupportedLinkType,
        DropReason::Truncated,
        DropReason::NotIp,
        DropReason::BadIpHeader,
        DropReason::TruncatedTransport,
        DropReason::BadTransportHeader,
        DropReason::IpFragment,
    ];

    /// Stable name used in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::UnsupportedLinkType => "unsupported_link_type",
            DropReason::Truncated => "truncated",
            DropReason::NotIp => "not_ip",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::TruncatedTransport => "truncated_transport",
            DropReason::BadTransportHeader => "bad_transport_header",
            DropReason::IpFragment => "ip_fragment",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// TCP header fields the flow stage uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
}

/// A decoded packet: addresses, ports and lengths, no borrowed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    pub ts: Micros,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// IPv4 addresses are stored IPv4-mapped so keys have one shape.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub is_ipv6: bool,
    /// IP protocol number (of the last header: TCP, UDP, ICMP, ...).
    pub proto: u8,
    /// TCP/UDP ports; for ICMP the type and code.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP echo identifier, which pairs requests with replies.
    pub icmp_echo_id: Option<u16>,
    /// IP packet length (headers + payload) as sent, even under a snaplen.
    pub ip_len: u32,
    /// Transport payload length as sent, even under a snaplen.
    pub payload_len: u32,
    pub tcp: Option<TcpInfo>,
}

fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&a);
    out
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Decodes one captured packet.
pub fn decode(pkt: &RawPacket<'_>) -> Result<PacketInfo, DropReason> {
    let data = pkt.data;
    let sliced = match pkt.link_type {
        LinkType::ETHERNET => LaxSlicedPacket::from_ethernet(data).map_err(|_| DropReason::Truncated)?,
        LinkType::LINUX_SLL => {
            let proto = be16(data, 14).ok_or(DropReason::Truncated)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), &data[16..])
        }
        LinkType::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(DropReason::Truncated)?;
            let rest = data.get(20..).ok_or(DropReason::Truncated)?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), rest)
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => {
            LaxSlicedPacket::from_ip(data).map_err(|e| match e {
                etherparse::err::ip::LaxHeaderSliceError::Len(_) => DropReason::Truncated,
                etherparse::err::ip::LaxHeaderSliceError::Content(_) => DropReason::BadIpHeader,
            })?
        }
        LinkType::NULL | LinkType::LOOP => {
            let fam = data.get(..4).ok_or(DropReason::Truncated)?;
            let fam = [fam[0], fam[1], fam[2], fam[3]];
            // DLT_NULL is in the capturing host's byte order: read it both ways.
            let family = if pkt.link_type == LinkType::LOOP {
                u32::from_be_bytes(fam)
            } else {
                let le = u32::from_le_bytes(fam);
                if le > 0xffff {
                    u32::from_be_bytes(fam)
                } else {
                    le
                }
            };
            let ether_type = match family {
                2 => EtherType::IPV4,
                10 | 24 | 28 | 30 => EtherType::IPV6,
                _ => return Err(DropReason::NotIp),
            };
            LaxSlicedPacket::from_ether_type(ether_type, &data[4..])
        }
        _ => return Err(DropReason::UnsupportedLinkType),
    };
    from_sliced(pkt, &sliced)
}

fn stop_reason(err: &SliceError, layer: Layer) -> DropReason {
    let transport_layer = matches!(
        layer,
        Layer::TcpHeader | Layer::UdpHeader | Layer::UdpPayload | Layer::Icmpv4 | Layer::Icmpv6 | Layer::Igmp
    ) || matches!(layer, Layer::Icmpv4Timestamp | Layer::Icmpv4TimestampReply);
    match err {
        SliceError::Len(_) if transport_layer => DropReason::TruncatedTransport,
        SliceError::Len(_) => DropReason::Truncated,
        SliceError::Tcp(_) => DropReason::BadTransportHeader,
        _ => DropReason::BadIpHeader,
    }
}

fn from_sliced(pkt: &RawPacket<'_>, s: &LaxSlicedPacket<'_>) -> Result<PacketInfo, DropReason> {
    let (src, dst, is_ipv6, ip_hdr_len, payload) = match &s.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let auth = v4.extensions().auth.map_or(0, |a| a.slice().len());
            (v4_mapped(h.source()), v4_mapped(h.destination()), false, usize::from(h.ihl()) * 4 + auth, v4.payload())
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (h.source(), h.destination(), true, 40 + v6.extensions().slice().len(), v6.payload())
        }
        Some(LaxNetSlice::Arp(_)) => return Err(DropReason::NotIp),
        None => {
            return Err(match &s.stop_err {
                Some((err, layer)) => stop_reason(err, *layer),
                None => DropReason::NotIp,
            })
        }
    };
    if payload.fragmented {
        return Err(DropReason::IpFragment);
    }
    // Under a snaplen the captured payload is short; the wire length tells how
    // much was sent, which is what flow statistics must count. Short without
    // a snaplen means the IP length field claims bytes that never existed.
    let missing = pkt.wire_len.saturating_sub(pkt.data.len() as u32);
    if payload.incomplete && missing == 0 {
        return Err(DropReason::Truncated);
    }
    let missing = if payload.incomplete { missing } else { 0 };
    let ip_payload_len = (payload.payload.len() as u32).saturating_add(missing);
    let ip_len = (ip_hdr_len as u32).saturating_add(ip_payload_len);
    let mut info = PacketInfo {
        ts: pkt.ts,
        wire_len: pkt.wire_len,
        src,
        dst,
        is_ipv6,
        proto: payload.ip_number.0,
        src_port: 0,
        dst_port: 0,
        icmp_echo_id: None,
        ip_len,
        payload_len: ip_payload_len,
        tcp: None,
    };
    match &s.transport {
        Some(TransportSlice::Tcp(t)) => {
            info.src_port = t.source_port();
            info.dst_port = t.destination_port();
            info.payload_len = ip_payload_len.saturating_sub(t.header_slice().len() as u32);
            let raw_flags = t.header_slice().get(13).copied().unwrap_or(0);
            info.tcp = Some(TcpInfo {
                flags: raw_flags,
                seq: t.sequence_number(),
                ack: t.acknowledgment_number(),
                window: t.window_size(),
            });
        }
        Some(TransportSlice::Udp(u)) => {
            info.src_port = u.source_port();
            info.dst_port = u.destination_port();
            info.payload_len = ip_payload_len.saturating_sub(8);
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let (t, c) = (i.type_u8(), i.code_u8());
            info.src_port = u16::from(t);
            info.dst_port = u16::from(c);
            if t == 0 || t == 8 {
                info.icmp_echo_id = be16(i.slice(), 4);
            }
            info.payload_len = ip_payload_len.saturating_sub(i.header_len() as u32);
        }
        Some(TransportSlice::Icmpv6(i)) => {
            let (t, c) = (i.type_u8(), i.code_u8());
            info.src_port = u16::from(t);
            info.dst_port = u16::from(c);
            if t == 128 || t == 129 {
                info.icmp_echo_id = be16(i.slice(), 4);
            }
            info.payload_len = ip_payload_len.saturating_sub(i.header_len() as u32);
        }
        Some(TransportSlice::Igmp(_)) | None => {
            if let Some((err, layer)) = &s.stop_err {
                return Err(stop_reason(err, *layer));
            }
            // Another IP protocol (GRE, ESP, OSPF, ...): a flow without ports.
        }
    }
    Ok(info)
}

/// Display helper: protocol name used in verdicts (`tcp`, `udp`, ...).
pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        2 => "igmp",
        47 => "gre",
        50 => "esp",
        51 => "ah",
        89 => "ospf",
        103 => "pim",
        132 => "sctp",
        _ => "ip",
    }
}

/// Turns a 16-byte engine address back into an `IpAddr`.
pub fn to_ip(addr: &[u8; 16], is_ipv6: bool) -> std::net::IpAddr {
    if is_ipv6 {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(*addr))
    } else {
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    }
}
