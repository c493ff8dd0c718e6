//! Decode: from link-layer bytes to the few fields the flow stage needs.
//!
//! Promise: decoding never panics and never allocates. A packet either
//! becomes a [`PacketInfo`], or an IP fragment for the [`crate::defrag`]
//! stage, or is dropped under a named [`DropReason`], so
//! `packets read = decoded + fragments + sum of drops` always holds.
//!
//! Tunnels are walked through (MPLS, PPPoE, GRE and ERSPAN, VXLAN, Geneve,
//! GTP-U, IP-in-IP/6in4/4in6, PIM Register): the innermost IP packet is the flow, and the
//! layers it came through travel with it as [`Tunnels`]. A UDP tunnel port
//! is only taken as a tunnel when what it carries decodes; otherwise the
//! outer packet is the flow, as a peer that does not know the tunnel would see it.

use etherparse::{err::packet::SliceError, err::Layer, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use crate::source::{LinkType, Micros, RawPacket};

/// IP protocol number of ICMP (IPv4).
pub const PROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// IP protocol number of PIM (Protocol Independent Multicast).
pub const PROTO_PIM: u8 = 103;

/// TCP flag bits as on the wire.
pub mod tcp_flags {
    /// FIN: the sender has no more data.
    pub const FIN: u8 = 0x01;
    /// SYN: opens a connection (synchronises sequence numbers).
    pub const SYN: u8 = 0x02;
    /// RST: aborts the connection.
    pub const RST: u8 = 0x04;
    /// PSH: the receiver should hand buffered data to the application now.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
    /// URG: the urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECE: ECN echo (congestion seen; with SYN, ECN offered).
    pub const ECE: u8 = 0x40;
    /// CWR: the sender reduced its congestion window, in answer to ECE.
    pub const CWR: u8 = 0x80;
}

/// Why a packet was not decoded. Every variant is a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
    /// An IP fragment that cannot belong to any datagram (offset past
    /// 64 KiB, unaligned length, or cut short by the snaplen).
    IpFragment,
}

impl DropReason {
    /// Every reason, in declaration order, so `ALL[r.index()] == r`.
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

    /// Position of this reason in `ALL`, for per-reason counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// TCP header fields the flow stage uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Flag bits as on the wire (see `tcp_flags`).
    pub flags: u8,
    /// Sequence number, host byte order.
    pub seq: u32,
    /// Acknowledgment number, host byte order (meaningful when ACK is set).
    pub ack: u32,
    /// Receive window as sent, before window scaling.
    pub window: u16,
}

/// An encapsulation the decoder walked through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TunnelKind {
    /// No layer: fills the slots of `Tunnels::kinds` past its depth.
    #[default]
    None,
    /// An MPLS label stack (the bottom label is the tunnel id).
    Mpls,
    /// A PPPoE session carrying IPv4 or IPv6.
    Pppoe,
    /// GRE, including PPTP's enhanced GRE (the key or call id is the tunnel id).
    Gre,
    /// ERSPAN type I, II or III mirrored frames, inside GRE.
    Erspan,
    /// VXLAN: Ethernet in UDP to port 4789 (the VNI is the tunnel id).
    Vxlan,
    /// Geneve: Ethernet or IP in UDP to port 6081 (the VNI is the tunnel id).
    Geneve,
    /// GTP-U: a mobile user's IP packet in UDP to port 2152 (the TEID is the tunnel id).
    GtpU,
    /// IP directly in IP: 4in4, 6in4, 4in6, 6in6.
    IpInIp,
    /// A multicast packet a PIM-SM first-hop router registers with the
    /// rendezvous point (RFC 7761 4.9.3): the whole packet rides inside.
    PimRegister,
}

impl TunnelKind {
    /// Stable name used in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Mpls => "mpls",
            TunnelKind::Pppoe => "pppoe",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::GtpU => "gtp-u",
            TunnelKind::IpInIp => "ip-in-ip",
            TunnelKind::PimRegister => "pim-register",
        }
    }
}

/// Deepest nesting the decoder follows; deeper layers stay the flow.
pub const MAX_TUNNEL_LAYERS: usize = 4;

/// The layers around the flow's packet, outermost first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Tunnels {
    /// Layers recorded in `kinds`, at most `MAX_TUNNEL_LAYERS`.
    pub depth: u8,
    /// Kind of each layer, outermost first; slots past `depth` are `TunnelKind::None`.
    pub kinds: [TunnelKind; MAX_TUNNEL_LAYERS],
    /// Tunnel identifier of the innermost layer that has one: VXLAN/Geneve
    /// VNI, GTP-U TEID, GRE key, MPLS label.
    pub id: Option<u32>,
    /// Endpoints of the outermost IP layer that carried a tunnel.
    pub outer: Option<OuterEndpoints>,
}

/// Addresses of the IP header that carried a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OuterEndpoints {
    /// Source address; IPv4 stored IPv4-mapped.
    pub src: [u8; 16],
    /// Destination address; IPv4 stored IPv4-mapped.
    pub dst: [u8; 16],
    /// Whether that header is IPv6.
    pub is_ipv6: bool,
}

impl Tunnels {
    /// Records one more layer; `false` when the nesting is too deep.
    fn push(&mut self, kind: TunnelKind, id: Option<u32>) -> bool {
        let Some(slot) = self.kinds.get_mut(usize::from(self.depth)) else { return false };
        *slot = kind;
        self.depth += 1;
        if id.is_some() {
            self.id = id;
        }
        true
    }

    /// The layers recorded, outermost first.
    pub fn layers(&self) -> &[TunnelKind] {
        &self.kinds[..usize::from(self.depth).min(MAX_TUNNEL_LAYERS)]
    }

    fn full(&self) -> bool {
        usize::from(self.depth) >= MAX_TUNNEL_LAYERS
    }
}

/// A decoded packet: addresses, ports and lengths, no borrowed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Capture time, microseconds since the Unix epoch.
    pub ts: Micros,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// IPv4 addresses are stored IPv4-mapped so keys have one shape.
    pub src: [u8; 16],
    /// Destination address; IPv4 stored IPv4-mapped, as `src`.
    pub dst: [u8; 16],
    /// Whether the (innermost) IP header is IPv6.
    pub is_ipv6: bool,
    /// IP protocol number (of the last header: TCP, UDP, ICMP, ...).
    pub proto: u8,
    /// TCP/UDP ports; for ICMP the type and code.
    pub src_port: u16,
    /// Destination port, host byte order; for ICMP the code.
    pub dst_port: u16,
    /// ICMP echo identifier, which pairs requests with replies.
    pub icmp_echo_id: Option<u16>,
    /// IP packet length (headers + payload) as sent, even under a snaplen.
    pub ip_len: u32,
    /// Transport payload length as sent, even under a snaplen.
    pub payload_len: u32,
    /// TCP header fields, for TCP packets only.
    pub tcp: Option<TcpInfo>,
    /// Where the captured transport payload starts in the decoded buffer,
    /// and how many of its bytes were captured (TCP and UDP only).
    pub payload_off: u32,
    /// Captured payload bytes at `payload_off` (0 for ICMP).
    pub payload_cap: u32,
    /// Which buffer `payload_off` points into: the frame as decoded, a
    /// datagram the defragmenter completed, or a worker chunk's copy.
    pub payload_in: PayloadBuffer,
    /// Layers the packet came through, outermost first.
    pub tunnels: Tunnels,
}

/// The buffer a packet's payload offset points into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayloadBuffer {
    /// The frame the packet was decoded from (what `decode_frame` sets).
    #[default]
    Frame,
    /// A datagram the defragmenter completed from IP fragments.
    Datagram,
    /// The payload copy in the chunk a worker thread was handed.
    Chunk,
    /// Not copied: the flow's parsers are done and only the length counts.
    /// The payload reads as `payload_cap` zero bytes.
    Skipped,
}

/// What a skipped payload reads as.
static ZEROS: [u8; PayloadBuffer::SKIPPED_MAX] = [0; PayloadBuffer::SKIPPED_MAX];

impl PayloadBuffer {
    /// The longest payload that may be `Skipped` (an IP payload is at most
    /// 64 KiB; a longer one is copied).
    pub const SKIPPED_MAX: usize = 65_536;
}

/// The buffers a packet's payload may be in; `PacketInfo::payload_in` says which.
#[derive(Clone, Copy, Debug, Default)]
pub struct PayloadBuffers<'a> {
    /// The captured frame.
    pub frame: &'a [u8],
    /// The datagram the defragmenter completed last.
    pub datagram: &'a [u8],
    /// A worker chunk's payload copy.
    pub chunk: &'a [u8],
}

impl PacketInfo {
    /// Is this TCP flag set in the packet?
    #[inline]
    pub fn has_tcp_flag(&self, flag: u8) -> bool {
        self.tcp.is_some_and(|t| t.flags & flag != 0)
    }

    /// True for a SYN without ACK: the opening of a connection.
    #[inline]
    pub fn is_syn(&self) -> bool {
        self.has_tcp_flag(tcp_flags::SYN) && !self.has_tcp_flag(tcp_flags::ACK)
    }

    /// The captured transport payload, from the buffer `payload_in` names.
    pub fn payload<'a>(&self, bufs: PayloadBuffers<'a>) -> &'a [u8] {
        let buf = match self.payload_in {
            PayloadBuffer::Frame => bufs.frame,
            PayloadBuffer::Datagram => bufs.datagram,
            PayloadBuffer::Chunk => bufs.chunk,
            PayloadBuffer::Skipped => &ZEROS[..],
        };
        let start = self.payload_off as usize;
        buf.get(start..start.saturating_add(self.payload_cap as usize)).unwrap_or(&[])
    }

    /// The payload of a packet decoded from `frame` (`payload_in` is `Frame`).
    pub fn payload_in_frame<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        self.payload(PayloadBuffers { frame, ..Default::default() })
    }
}

/// An IP fragment, for [`crate::defrag::Defragmenter`].
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    /// Capture time, microseconds since the Unix epoch.
    pub ts: Micros,
    /// Frame length on the wire.
    pub wire_len: u32,
    /// Source address; IPv4 stored IPv4-mapped.
    pub src: [u8; 16],
    /// Destination address; IPv4 stored IPv4-mapped.
    pub dst: [u8; 16],
    /// Whether the fragment is IPv6 (fragment header) rather than IPv4.
    pub is_ipv6: bool,
    /// Identification shared by a datagram's fragments (16 bits in IPv4, 32 in IPv6).
    pub id: u32,
    /// Protocol of the whole datagram's payload.
    pub proto: u8,
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u16,
    /// More-fragments flag: `false` on the datagram's last fragment.
    pub more: bool,
    /// The IPv4 header (options included) or the fixed IPv6 header.
    pub header: &'a [u8],
    /// This fragment's bytes of the datagram's payload.
    pub data: &'a [u8],
    /// Layers the fragment came through, outermost first.
    pub tunnels: Tunnels,
}

/// What a frame decoded to.
#[derive(Clone, Copy, Debug)]
pub enum Decoded<'a> {
    /// A whole packet, ready for the flow stage.
    Packet(PacketInfo),
    /// An IP fragment, to be reassembled by the defrag stage first.
    Fragment(Fragment<'a>),
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

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_QINQ_OLD: u16 = 0x9100;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;

const PORT_VXLAN: u16 = 4789;
const PORT_GENEVE: u16 = 6081;
const PORT_GTPU: u16 = 2152;

/// Where the network layer starts: an IP version or a reason to stop.
enum Net {
    Ip(usize),
}

/// Walks an Ethernet header and what may follow it (VLAN tags, MPLS,
/// PPPoE) to the IP header.
fn walk_ethernet(data: &[u8], off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    let ether_type = be16(data, off + 12).ok_or(DropReason::Truncated)?;
    walk_ether_type(data, ether_type, off + 14, t)
}

fn walk_ether_type(data: &[u8], mut ether_type: u16, mut off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    loop {
        match ether_type {
            ETH_IPV4 | ETH_IPV6 => return Ok(Net::Ip(off)),
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                ether_type = be16(data, off + 2).ok_or(DropReason::Truncated)?;
                off += 4;
            }
            ETH_MPLS | ETH_MPLS_MC => return walk_mpls(data, off, t),
            ETH_PPPOE_SESSION => {
                // 6-byte PPPoE header, then the PPP protocol.
                let ppp = be16(data, off + 6).ok_or(DropReason::Truncated)?;
                if !t.push(TunnelKind::Pppoe, None) {
                    return Err(DropReason::NotIp);
                }
                off += 8;
                ether_type = match ppp {
                    0x0021 => ETH_IPV4,
                    0x0057 => ETH_IPV6,
                    _ => return Err(DropReason::NotIp),
                };
            }
            _ => return Err(DropReason::NotIp),
        }
    }
}

/// MPLS labels down to the bottom of the stack, then IP by its version
/// nibble, or an Ethernet pseudowire (with a zero control word).
fn walk_mpls(data: &[u8], mut off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    for _ in 0..16 {
        let entry = be32(data, off).ok_or(DropReason::Truncated)?;
        off += 4;
        if entry & 0x100 != 0 {
            if !t.push(TunnelKind::Mpls, Some(entry >> 12)) {
                return Err(DropReason::NotIp);
            }
            let first = *data.get(off).ok_or(DropReason::Truncated)?;
            return match first >> 4 {
                4 | 6 => Ok(Net::Ip(off)),
                0 => walk_ethernet(data, off + 4, t),
                _ => Err(DropReason::NotIp),
            };
        }
    }
    Err(DropReason::NotIp)
}

/// PPP (RFC 1661), with or without the HDLC address and control bytes
/// (`ff 03`, RFC 1662): the protocol field says what follows. Frames of
/// PPP-in-HDLC captures may be Cisco HDLC frames instead.
fn walk_ppp(data: &[u8], mut off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    match (data.get(off), data.get(off + 1)) {
        (Some(0xff), Some(0x03)) => off += 2,
        (Some(0x0f | 0x8f), Some(0x00)) => return walk_cisco_hdlc(data, off, t),
        (None, _) | (_, None) => return Err(DropReason::Truncated),
        _ => {}
    }
    // Protocol-field compression (RFC 1661 §6.5): an odd first byte is a one-byte protocol.
    let first = *data.get(off).ok_or(DropReason::Truncated)?;
    let (proto, len) =
        if first & 1 == 1 { (u16::from(first), 1) } else { (be16(data, off).ok_or(DropReason::Truncated)?, 2) };
    match proto {
        0x0021 | 0x0057 => Ok(Net::Ip(off + len)),
        0x0281 => walk_mpls(data, off + len, t),
        _ => Err(DropReason::NotIp),
    }
}

/// Cisco HDLC: address, control, then an EtherType.
fn walk_cisco_hdlc(data: &[u8], off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    let ether_type = be16(data, off + 2).ok_or(DropReason::Truncated)?;
    walk_ether_type(data, ether_type, off + 4, t)
}

/// An IEEE 802.11 frame: data frames carry LLC/SNAP and then an EtherType.
/// Management, control, null-function and protected (encrypted) frames carry no IP.
fn walk_80211(data: &[u8], off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    let fc0 = *data.get(off).ok_or(DropReason::Truncated)?;
    let fc1 = *data.get(off + 1).ok_or(DropReason::Truncated)?;
    let (kind, subtype) = ((fc0 >> 2) & 0x3, fc0 >> 4);
    const DATA: u8 = 2;
    const PROTECTED: u8 = 0x40;
    const ORDER: u8 = 0x80;
    // Subtypes with bit 2 set (null function, CF-Ack, ...) have no body.
    if fc0 & 0x3 != 0 || kind != DATA || subtype & 0x4 != 0 || fc1 & PROTECTED != 0 {
        return Err(DropReason::NotIp);
    }
    let qos = subtype & 0x8 != 0;
    let mut len = 24;
    if fc1 & 0x3 == 0x3 {
        len += 6; // a fourth address (WDS)
    }
    if qos {
        len += 2;
        if fc1 & ORDER != 0 {
            len += 4; // HT control
        }
    }
    let llc = off + len;
    match data.get(llc..llc + 6) {
        Some([0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00 | 0xf8]) => {}
        Some(_) => return Err(DropReason::NotIp),
        None => return Err(DropReason::Truncated),
    }
    let ether_type = be16(data, llc + 6).ok_or(DropReason::Truncated)?;
    walk_ether_type(data, ether_type, llc + 8, t)
}

/// Radiotap: a little-endian length at byte 2, then an 802.11 frame.
fn walk_radiotap(data: &[u8], off: usize, t: &mut Tunnels) -> Result<Net, DropReason> {
    let len = le16(data, off + 2).ok_or(DropReason::Truncated)?;
    if data.get(off).copied() != Some(0) || len < 8 {
        return Err(DropReason::NotIp);
    }
    walk_80211(data, off + usize::from(len), t)
}

/// PPI (Per-Packet Information): a little-endian header length and the
/// link type of what follows it.
fn walk_ppi(data: &[u8], t: &mut Tunnels) -> Result<Net, DropReason> {
    let len = usize::from(le16(data, 2).ok_or(DropReason::Truncated)?);
    let dlt = u32::from(le16(data, 4).ok_or(DropReason::Truncated)?)
        | u32::from(le16(data, 6).ok_or(DropReason::Truncated)?) << 16;
    if len < 8 || data.len() < len {
        return Err(DropReason::Truncated);
    }
    match dlt {
        1 => walk_ethernet(data, len, t),
        105 => walk_80211(data, len, t),
        127 => walk_radiotap(data, len, t),
        _ => Err(DropReason::UnsupportedLinkType),
    }
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Decodes one captured packet to a [`PacketInfo`]. An IP fragment is
/// reported as [`DropReason::IpFragment`]; use [`decode_frame`] to get it.
pub fn decode(pkt: &RawPacket<'_>) -> Result<PacketInfo, DropReason> {
    match decode_frame(pkt)? {
        Decoded::Packet(p) => Ok(p),
        Decoded::Fragment(_) => Err(DropReason::IpFragment),
    }
}

/// Decodes one captured frame: a packet, a fragment, or a drop reason.
pub fn decode_frame<'a>(pkt: &RawPacket<'a>) -> Result<Decoded<'a>, DropReason> {
    let data = pkt.data;
    let mut tunnels = Tunnels::default();
    let Net::Ip(off) = match pkt.link_type {
        LinkType::ETHERNET => walk_ethernet(data, 0, &mut tunnels)?,
        LinkType::LINUX_SLL => walk_ether_type(data, be16(data, 14).ok_or(DropReason::Truncated)?, 16, &mut tunnels)?,
        LinkType::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(DropReason::Truncated)?;
            if data.len() < 20 {
                return Err(DropReason::Truncated);
            }
            walk_ether_type(data, proto, 20, &mut tunnels)?
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 | LinkType::IPV4 | LinkType::IPV6 => Net::Ip(0),
        LinkType::PPP | LinkType::PPP_HDLC => walk_ppp(data, 0, &mut tunnels)?,
        LinkType::CISCO_HDLC => walk_cisco_hdlc(data, 0, &mut tunnels)?,
        LinkType::IEEE802_11 => walk_80211(data, 0, &mut tunnels)?,
        LinkType::RADIOTAP => walk_radiotap(data, 0, &mut tunnels)?,
        LinkType::PPI => walk_ppi(data, &mut tunnels)?,
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
            match family {
                2 | 10 | 24 | 28 | 30 => Net::Ip(4),
                _ => return Err(DropReason::NotIp),
            }
        }
        _ => return Err(DropReason::UnsupportedLinkType),
    };
    let missing = pkt.wire_len.saturating_sub(data.len() as u32);
    decode_ip(data, off, pkt.ts, pkt.wire_len, missing, tunnels)
}

/// Decodes the IP packet at `data[off..]` (and any tunnel inside it).
/// `missing` is how many bytes of the frame the snaplen cut off.
pub fn decode_ip(
    data: &[u8],
    off: usize,
    ts: Micros,
    wire_len: u32,
    missing: u32,
    tunnels: Tunnels,
) -> Result<Decoded<'_>, DropReason> {
    let ip = data.get(off..).ok_or(DropReason::Truncated)?;
    let sliced = LaxSlicedPacket::from_ip(ip).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Len(_) => DropReason::Truncated,
        etherparse::err::ip::LaxHeaderSliceError::Content(_) => DropReason::BadIpHeader,
    })?;
    let out = from_sliced(data, ts, wire_len, missing, &sliced, tunnels)?;
    match out {
        Decoded::Packet(p) if !p.tunnels.full() => Ok(decapsulate(data, ts, wire_len, missing, &p).unwrap_or(out)),
        _ => Ok(out),
    }
}

/// The packet inside a tunnel, when `outer` carries one that decodes.
fn decapsulate<'a>(data: &'a [u8], ts: Micros, wire_len: u32, missing: u32, outer: &PacketInfo) -> Option<Decoded<'a>> {
    let start = outer.payload_off as usize;
    let mut t = outer.tunnels;
    if t.outer.is_none() {
        t.outer = Some(OuterEndpoints { src: outer.src, dst: outer.dst, is_ipv6: outer.is_ipv6 });
    }
    // Tunnelled bytes the snaplen cut off are still missing inside.
    // Only what the snaplen cut off is missing inside; an outer length
    // field that claims more than was sent does not make inner bytes.
    let missing = outer.payload_len.saturating_sub(outer.payload_cap).min(missing);
    let inner = |net: Net, t: Tunnels| -> Option<Decoded<'a>> {
        let Net::Ip(off) = net;
        decode_ip(data, off, ts, wire_len, missing, t).ok()
    };
    match outer.proto {
        4 | 41 => {
            // IP-in-IP: the IP payload is an IP packet; decode_ip only
            // fills payload_off for TCP/UDP, so find the inner header here.
            let off = start;
            t.push(TunnelKind::IpInIp, None).then_some(())?;
            inner(Net::Ip(off), t)
        }
        PROTO_PIM => {
            // Version 2, type 1 (Register), then 4 bytes of Border and
            // Null-Register bits; the registered IP packet follows. A
            // Null-Register carries only a dummy header: no flow inside.
            if *data.get(start)? != 0x21 || be32(data, start + 4)? & 0x4000_0000 != 0 {
                return None;
            }
            t.push(TunnelKind::PimRegister, None).then_some(())?;
            inner(Net::Ip(start + 8), t)
        }
        47 => {
            let off = start;
            let flags = be16(data, off)?;
            let proto = be16(data, off + 2)?;
            if flags & 0x0007 == 1 {
                return pptp(data, off, flags, proto, t).and_then(|(net, t)| inner(net, t));
            }
            if flags & 0x0007 != 0 {
                return None;
            }
            let mut at = off + 4;
            if flags & 0x8000 != 0 {
                at += 4; // checksum + reserved
            }
            let key = if flags & 0x2000 != 0 {
                at += 4;
                be32(data, at - 4)
            } else {
                None
            };
            if flags & 0x1000 != 0 {
                at += 4; // sequence number
            }
            match proto {
                ETH_ERSPAN2 | ETH_ERSPAN3 => {
                    t.push(TunnelKind::Gre, key).then_some(())?;
                    t.push(TunnelKind::Erspan, None).then_some(())?;
                    let erspan_len = if proto == ETH_ERSPAN2 {
                        // Type II has a sequence number and an 8-byte header; type I neither.
                        if flags & 0x1000 != 0 {
                            8
                        } else {
                            0
                        }
                    } else {
                        // Type III: 12 bytes, plus an 8-byte subheader when O is set.
                        12 + if data.get(at + 11)? & 0x01 != 0 { 8 } else { 0 }
                    };
                    inner(walk_ethernet(data, at + erspan_len, &mut t).ok()?, t)
                }
                ETH_TEB => {
                    t.push(TunnelKind::Gre, key).then_some(())?;
                    inner(walk_ethernet(data, at, &mut t).ok()?, t)
                }
                _ => {
                    t.push(TunnelKind::Gre, key).then_some(())?;
                    inner(walk_ether_type(data, proto, at, &mut t).ok()?, t)
                }
            }
        }
        PROTO_UDP => {
            let payload = data.get(start..start + outer.payload_cap as usize)?;
            match outer.dst_port {
                PORT_VXLAN => {
                    // Flags with I set, 24-bit VNI; then an Ethernet frame.
                    if payload.len() < 8 || payload[0] & 0x08 == 0 {
                        return None;
                    }
                    let vni = be32(payload, 4)? >> 8;
                    t.push(TunnelKind::Vxlan, Some(vni)).then_some(())?;
                    inner(walk_ethernet(data, start + 8, &mut t).ok()?, t)
                }
                PORT_GENEVE => {
                    if payload.first()? >> 6 != 0 {
                        return None;
                    }
                    let opt_len = usize::from(payload[0] & 0x3f) * 4;
                    let proto = be16(payload, 2)?;
                    let vni = be32(payload, 4)? >> 8;
                    t.push(TunnelKind::Geneve, Some(vni)).then_some(())?;
                    let at = start + 8 + opt_len;
                    let net = if proto == ETH_TEB {
                        walk_ethernet(data, at, &mut t).ok()?
                    } else {
                        walk_ether_type(data, proto, at, &mut t).ok()?
                    };
                    inner(net, t)
                }
                PORT_GTPU => {
                    // Version 1, protocol type GTP, message G-PDU (255).
                    let flags = *payload.first()?;
                    if flags >> 5 != 1 || flags & 0x10 == 0 || *payload.get(1)? != 0xff {
                        return None;
                    }
                    let teid = be32(payload, 4)?;
                    let mut at = 8;
                    if flags & 0x07 != 0 {
                        // Sequence, N-PDU and next-extension-type, then extensions.
                        let mut next = *payload.get(11)?;
                        at = 12;
                        while next != 0 {
                            let units = usize::from(*payload.get(at)?);
                            if units == 0 {
                                return None;
                            }
                            at += units * 4;
                            next = *payload.get(at - 1)?;
                        }
                    }
                    let version = payload.get(at)? >> 4;
                    if version != 4 && version != 6 {
                        return None;
                    }
                    t.push(TunnelKind::GtpU, Some(teid)).then_some(())?;
                    inner(Net::Ip(start + at), t)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Enhanced GRE (version 1, PPTP): a call id as key, optional sequence
/// and acknowledgment numbers, then a PPP frame.
fn pptp(data: &[u8], off: usize, flags: u16, proto: u16, mut t: Tunnels) -> Option<(Net, Tunnels)> {
    const PPP: u16 = 0x880b;
    if proto != PPP || flags & 0x2000 == 0 {
        return None;
    }
    let call_id = be16(data, off + 6)?;
    let mut at = off + 8;
    if flags & 0x1000 != 0 {
        at += 4;
    }
    if flags & 0x0080 != 0 {
        at += 4;
    }
    // PPP: address and control (ff 03) may be omitted; the protocol field
    // may be compressed to one byte.
    if data.get(at..at + 2)? == [0xff, 0x03] {
        at += 2;
    }
    let (ppp_proto, len) = if data.get(at)? & 1 == 1 { (u16::from(data[at]), 1) } else { (be16(data, at)?, 2) };
    match ppp_proto {
        0x21 | 0x57 => {
            t.push(TunnelKind::Gre, Some(u32::from(call_id))).then_some(())?;
            Some((Net::Ip(at + len), t))
        }
        _ => None,
    }
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

/// `part` (a view into `buf`) with `buf`'s lifetime.
fn reborrow<'a>(buf: &'a [u8], part: &[u8]) -> &'a [u8] {
    let start = offset_in(buf, part) as usize;
    buf.get(start..start + part.len()).unwrap_or(&[])
}

/// Offset of `part` inside `whole` (both from the same buffer).
fn offset_in(whole: &[u8], part: &[u8]) -> u32 {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize) as u32
}

fn from_sliced<'a>(
    data: &'a [u8],
    ts: Micros,
    wire_len: u32,
    missing: u32,
    s: &LaxSlicedPacket<'a>,
    tunnels: Tunnels,
) -> Result<Decoded<'a>, DropReason> {
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
        return fragment(data, ts, wire_len, missing, s, payload.ip_number.0, payload.payload, tunnels);
    }
    // Under a snaplen the captured payload is short; the wire length tells how
    // much was sent, which is what flow statistics must count. Short without
    // a snaplen means the IP length field claims bytes that never existed.
    if payload.incomplete && missing == 0 {
        return Err(DropReason::Truncated);
    }
    let missing = if payload.incomplete { missing } else { 0 };
    let ip_payload_len = (payload.payload.len() as u32).saturating_add(missing);
    let ip_len = (ip_hdr_len as u32).saturating_add(ip_payload_len);
    let mut info = PacketInfo {
        ts,
        wire_len,
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
        payload_off: offset_in(data, payload.payload),
        payload_cap: 0,
        payload_in: PayloadBuffer::Frame,
        tunnels,
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
            info.payload_off = offset_in(data, t.payload());
            info.payload_cap = (t.payload().len() as u32).min(info.payload_len);
        }
        Some(TransportSlice::Udp(u)) => {
            info.src_port = u.source_port();
            info.dst_port = u.destination_port();
            info.payload_len = ip_payload_len.saturating_sub(8);
            info.payload_off = offset_in(data, u.payload());
            info.payload_cap = (u.payload().len() as u32).min(info.payload_len);
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
            // Another IP protocol (GRE, ESP, OSPF, IP-in-IP, ...): a flow
            // without ports, whose IP payload a tunnel decoder may open.
            info.payload_cap = payload.payload.len() as u32;
        }
    }
    Ok(Decoded::Packet(info))
}

#[allow(clippy::too_many_arguments)]
fn fragment<'a>(
    buf: &'a [u8],
    ts: Micros,
    wire_len: u32,
    missing: u32,
    s: &LaxSlicedPacket<'a>,
    proto: u8,
    data: &'a [u8],
    tunnels: Tunnels,
) -> Result<Decoded<'a>, DropReason> {
    // A fragment cut by the snaplen can never complete a datagram.
    if missing > 0 {
        return Err(DropReason::IpFragment);
    }
    let frag = match &s.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            Fragment {
                ts,
                wire_len,
                src: v4_mapped(h.source()),
                dst: v4_mapped(h.destination()),
                is_ipv6: false,
                id: u32::from(h.identification()),
                proto,
                offset: h.fragments_offset().byte_offset(),
                more: h.more_fragments(),
                header: reborrow(buf, h.slice()),
                data,
                tunnels,
            }
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let fh = v6.extensions().clone().into_iter().find_map(|e| match e {
                etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f),
                _ => None,
            });
            let fh = fh.ok_or(DropReason::IpFragment)?;
            Fragment {
                ts,
                wire_len,
                src: h.source(),
                dst: h.destination(),
                is_ipv6: true,
                id: fh.identification(),
                proto,
                offset: fh.fragment_offset().byte_offset(),
                more: fh.more_fragments(),
                header: reborrow(buf, h.slice()),
                data,
                tunnels,
            }
        }
        _ => return Err(DropReason::IpFragment),
    };
    Ok(Decoded::Fragment(frag))
}

/// Turns a 16-byte engine address back into an `IpAddr`.
pub fn to_ip(addr: &[u8; 16], is_ipv6: bool) -> std::net::IpAddr {
    if is_ipv6 {
        std::net::IpAddr::V6(std::net::Ipv6Addr::from(*addr))
    } else {
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(addr[12], addr[13], addr[14], addr[15]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/UDP packet 10.0.0.1:1000 → 10.0.0.2:53 with a 4-byte payload.
    fn ipv4_udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, dport);
        b.write(&mut v, payload).expect("writing to a Vec cannot fail");
        v
    }

    fn ethernet(ether_type: u16, rest: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&ether_type.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    fn decode_eth(frame: &[u8]) -> Result<PacketInfo, DropReason> {
        decode(&RawPacket { ts: 1, wire_len: frame.len() as u32, data: frame, link_type: LinkType::ETHERNET })
    }

    #[test]
    fn mpls_and_pppoe_lead_to_the_ip_packet() {
        let inner = ipv4_udp(53, b"abcd");
        // Two labels, the second with bottom-of-stack set.
        let mut mpls = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        mpls.extend_from_slice(&inner);
        let p = decode_eth(&ethernet(ETH_MPLS, &mpls)).expect("the test frame decodes");
        assert_eq!(
            (p.src_port, p.dst_port, p.tunnels.layers(), p.tunnels.id),
            (1000, 53, &[TunnelKind::Mpls][..], Some(32))
        );
        let mut pppoe = vec![0x11, 0x00, 0x12, 0x34, 0x00, 0x00, 0x00, 0x21];
        pppoe.extend_from_slice(&inner);
        let p = decode_eth(&ethernet(ETH_PPPOE_SESSION, &pppoe)).expect("the test frame decodes");
        assert_eq!((p.dst_port, p.tunnels.layers()), (53, &[TunnelKind::Pppoe][..]));
        assert_eq!(p.payload_in_frame(&ethernet(ETH_PPPOE_SESSION, &pppoe)), b"abcd");
    }

    #[test]
    fn a_tunnel_port_without_a_tunnel_is_the_outer_flow() {
        // UDP to 4789 whose payload is no VXLAN (I flag clear): a plain UDP flow.
        let frame = ethernet(ETH_IPV4, &ipv4_udp(PORT_VXLAN, &[0u8; 24]));
        let p = decode_eth(&frame).expect("the test frame decodes");
        assert_eq!((p.dst_port, p.tunnels.depth, p.payload_cap), (PORT_VXLAN, 0, 24));
        // VXLAN (VNI 7) around an Ethernet frame around the inner packet.
        let mut vxlan = vec![0x08, 0, 0, 0, 0, 0, 7, 0];
        vxlan.extend_from_slice(&ethernet(ETH_IPV4, &ipv4_udp(53, b"abcd")));
        let frame = ethernet(ETH_IPV4, &ipv4_udp(PORT_VXLAN, &vxlan));
        let p = decode_eth(&frame).expect("the test frame decodes");
        assert_eq!((p.dst_port, p.tunnels.layers(), p.tunnels.id), (53, &[TunnelKind::Vxlan][..], Some(7)));
        assert_eq!(p.payload_in_frame(&frame), b"abcd");
    }

    #[test]
    fn a_pim_register_opens_to_the_registered_packet_but_a_null_register_does_not() {
        let pim = |flags: u32| {
            let mut body = vec![0x21, 0, 0, 0];
            body.extend_from_slice(&flags.to_be_bytes());
            body.extend_from_slice(&ipv4_udp(2468, b"abcd"));
            let mut v = Vec::new();
            let b = etherparse::PacketBuilder::ipv4([10, 9, 9, 1], [10, 9, 9, 2], 64);
            b.write(&mut v, etherparse::IpNumber(PROTO_PIM), &body).expect("writing to a Vec cannot fail");
            ethernet(ETH_IPV4, &v)
        };
        let frame = pim(0);
        let p = decode_eth(&frame).expect("the test frame decodes");
        assert_eq!((p.proto, p.dst_port, p.tunnels.layers()), (PROTO_UDP, 2468, &[TunnelKind::PimRegister][..]));
        assert_eq!(p.payload_in_frame(&frame), b"abcd");
        // Null-Register bit set: the PIM packet itself is the flow.
        let p = decode_eth(&pim(0x4000_0000)).expect("the test frame decodes");
        assert_eq!((p.proto, p.tunnels.depth), (PROTO_PIM, 0));
    }

    #[test]
    fn nesting_stops_at_the_layer_limit() {
        // Five IP-in-IP layers: the innermost four are followed, the fifth stays a packet.
        let mut pkt = ipv4_udp(53, b"abcd");
        for _ in 0..5 {
            let mut v = Vec::new();
            let b = etherparse::PacketBuilder::ipv4([10, 9, 9, 1], [10, 9, 9, 2], 64);
            b.write(&mut v, etherparse::IpNumber(4), &pkt).expect("writing to a Vec cannot fail");
            pkt = v;
        }
        let p = decode_eth(&ethernet(ETH_IPV4, &pkt)).expect("the test frame decodes");
        assert_eq!((p.tunnels.depth as usize, p.proto), (MAX_TUNNEL_LAYERS, 4));
    }
}
