//! Flows: bidirectional conversations keyed by a direction-independent
//! 5-tuple, held in a bounded table.
//!
//! Policy when the table is full: the least recently seen 1/64 of the flows
//! are ended early (reason `evicted`, counted) and still get their verdicts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;
use std::net::IpAddr;

use crate::decode::{tcp_flags, PacketInfo, Tunnels, PROTO_ICMP, PROTO_ICMPV6, PROTO_PIM, PROTO_TCP, PROTO_UDP};
use crate::source::Micros;

/// Direction-independent flow key: the two endpoints in canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Address of the lower endpoint; IPv4 stored IPv4-mapped.
    pub lo_addr: [u8; 16],
    /// Address of the higher endpoint; IPv4 stored IPv4-mapped.
    pub hi_addr: [u8; 16],
    /// Port of the lower endpoint (for ICMP, the echo id or `type << 8 | code`).
    pub lo_port: u16,
    /// Port of the higher endpoint (for ICMP, as `lo_port`).
    pub hi_port: u16,
    /// IP protocol number (6 = TCP, 17 = UDP, ...).
    pub proto: u8,
    /// Whether the addresses are IPv6 rather than IPv4-mapped IPv4.
    pub is_ipv6: bool,
}

impl FlowKey {
    /// Key of a packet, and whether the packet's source is the `lo` endpoint.
    pub fn of(p: &PacketInfo) -> (FlowKey, bool) {
        let (sp, dp) = match (p.proto, p.icmp_echo_id) {
            // Echo request and reply share an identifier, not a type.
            (PROTO_ICMP | PROTO_ICMPV6, Some(id)) => (id, id),
            // Other ICMP messages: one flow per type/code between two hosts.
            (PROTO_ICMP | PROTO_ICMPV6, None) => {
                let tc = (p.src_port << 8) | p.dst_port;
                (tc, tc)
            }
            _ => (p.src_port, p.dst_port),
        };
        let src_is_lo = (p.src, sp) <= (p.dst, dp);
        let key = if src_is_lo {
            FlowKey { lo_addr: p.src, hi_addr: p.dst, lo_port: sp, hi_port: dp, proto: p.proto, is_ipv6: p.is_ipv6 }
        } else {
            FlowKey { lo_addr: p.dst, hi_addr: p.src, lo_port: dp, hi_port: sp, proto: p.proto, is_ipv6: p.is_ipv6 }
        };
        (key, src_is_lo)
    }

    /// The key of a conversation between two endpoints, in either order.
    /// For ICMP the "ports" are what `of` uses: the echo identifier on
    /// both sides, or `type << 8 | code`.
    pub fn between(a: (IpAddr, u16), b: (IpAddr, u16), proto: u8) -> FlowKey {
        let bytes = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let is_ipv6 = a.0.is_ipv6() || b.0.is_ipv6();
        let (a, b) = ((bytes(a.0), a.1), (bytes(b.0), b.1));
        let ((lo_addr, lo_port), (hi_addr, hi_port)) = if a <= b { (a, b) } else { (b, a) };
        FlowKey { lo_addr, hi_addr, lo_port, hi_port, proto, is_ipv6 }
    }

    /// The lower endpoint (canonical order, not the initiator).
    pub fn lo(&self) -> (IpAddr, u16) {
        (crate::decode::to_ip(&self.lo_addr, self.is_ipv6), self.lo_port)
    }

    /// The higher endpoint (canonical order, not the responder).
    pub fn hi(&self) -> (IpAddr, u16) {
        (crate::decode::to_ip(&self.hi_addr, self.is_ipv6), self.hi_port)
    }

    /// The IP protocol.
    pub fn ip_proto(&self) -> IpProto {
        IpProto::from_number(self.proto)
    }

    /// Stable 64-bit hash (FNV-1a), the same on every run and every thread
    /// count; used for flow ids.
    pub fn stable_hash(&self, salt: u64) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        self.lo_addr.iter().chain(self.hi_addr.iter()).for_each(|b| eat(*b));
        self.lo_port.to_be_bytes().iter().chain(self.hi_port.to_be_bytes().iter()).for_each(|b| eat(*b));
        eat(self.proto);
        h
    }
}

/// The IP protocol a flow carries (the key's protocol number), named as
/// records, verdicts and syslog name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IpProto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP for IPv4 (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// IGMP (2).
    Igmp,
    /// GRE not opened as a tunnel (47).
    Gre,
    /// IPsec ESP (50).
    Esp,
    /// IPsec AH (51).
    Ah,
    /// OSPF (89).
    Ospf,
    /// PIM other than a Register the decoder opened (103).
    Pim,
    /// SCTP (132).
    Sctp,
    /// Any other protocol number, named `ip`.
    Other(u8),
}

impl IpProto {
    /// The protocol of an IP protocol number.
    pub fn from_number(n: u8) -> IpProto {
        match n {
            PROTO_TCP => IpProto::Tcp,
            PROTO_UDP => IpProto::Udp,
            PROTO_ICMP => IpProto::Icmp,
            PROTO_ICMPV6 => IpProto::Icmpv6,
            2 => IpProto::Igmp,
            47 => IpProto::Gre,
            50 => IpProto::Esp,
            51 => IpProto::Ah,
            89 => IpProto::Ospf,
            PROTO_PIM => IpProto::Pim,
            132 => IpProto::Sctp,
            n => IpProto::Other(n),
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            IpProto::Tcp => PROTO_TCP,
            IpProto::Udp => PROTO_UDP,
            IpProto::Icmp => PROTO_ICMP,
            IpProto::Icmpv6 => PROTO_ICMPV6,
            IpProto::Igmp => 2,
            IpProto::Gre => 47,
            IpProto::Esp => 50,
            IpProto::Ah => 51,
            IpProto::Ospf => 89,
            IpProto::Pim => PROTO_PIM,
            IpProto::Sctp => 132,
            IpProto::Other(n) => n,
        }
    }

    /// The name in JSON and syslog (`tcp`, `udp`, `icmp`, ..., `ip` for others).
    pub fn name(self) -> &'static str {
        match self {
            IpProto::Tcp => "tcp",
            IpProto::Udp => "udp",
            IpProto::Icmp => "icmp",
            IpProto::Icmpv6 => "icmpv6",
            IpProto::Igmp => "igmp",
            IpProto::Gre => "gre",
            IpProto::Esp => "esp",
            IpProto::Ah => "ah",
            IpProto::Ospf => "ospf",
            IpProto::Pim => "pim",
            IpProto::Sctp => "sctp",
            IpProto::Other(_) => "ip",
        }
    }
}

impl std::fmt::Display for IpProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for IpProto {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Why a flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// TCP closed by FIN in both directions or by RST, then quiet.
    Closed,
    /// No packet arrived for the protocol's idle timeout.
    IdleTimeout,
    /// The flow lasted longer than the active timeout; a new flow takes its next packets.
    ActiveTimeout,
    /// A new connection reused the 5-tuple of a closed one.
    PortReuse,
    /// The table was full.
    Evicted,
    /// The input ended (or the engine finished) while the flow was still open.
    EndOfInput,
}

impl EndReason {
    /// Every reason, in declaration order; per-reason counters are indexed by it.
    pub const ALL: [EndReason; 6] = [
        EndReason::Closed,
        EndReason::IdleTimeout,
        EndReason::ActiveTimeout,
        EndReason::PortReuse,
        EndReason::Evicted,
        EndReason::EndOfInput,
    ];

    /// The name in JSON and syslog (`closed`, `idle_timeout`, ...).
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::PortReuse => "port_reuse",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Timeouts (in microseconds of capture time) and capacity of the table.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct FlowConfig {
    /// Idle time after which an open TCP flow ends (default 300 s).
    pub tcp_idle_timeout: Micros,
    /// Idle time after which a closed (FIN/FIN or RST) TCP flow ends.
    pub tcp_closed_timeout: Micros,
    /// Idle time after which a UDP flow ends (default 120 s).
    pub udp_idle_timeout: Micros,
    /// Idle time after which an ICMP or ICMPv6 flow ends (default 60 s).
    pub icmp_idle_timeout: Micros,
    /// Idle time after which a flow of any other protocol ends (default 60 s).
    pub other_idle_timeout: Micros,
    /// A flow longer than this is ended and a new one begins.
    pub active_timeout: Micros,
    /// Most flows held at once; when full, the least recently seen 1/64 are evicted.
    pub max_flows: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            tcp_idle_timeout: 300_000_000,
            tcp_closed_timeout: 1_000_000,
            udp_idle_timeout: 120_000_000,
            icmp_idle_timeout: 60_000_000,
            other_idle_timeout: 60_000_000,
            active_timeout: 1_800_000_000,
            max_flows: 1 << 20,
        }
    }
}

/// How long a connection attempt refused by a reset waits for a retried
/// SYN with the same initial sequence number (Zeek's `tcp_reset_delay`).
pub const RESET_RETRY_WAIT: Micros = 5_000_000;

mod state {
    pub const SYN: u8 = 1; // initiator's SYN seen
    pub const SYN_ACK: u8 = 2;
    pub const ESTABLISHED: u8 = 4; // initiator ACKed the SYN-ACK
    pub const FIN_FWD: u8 = 8;
    pub const FIN_BWD: u8 = 16;
    pub const RST_FWD: u8 = 32;
    pub const RST_BWD: u8 = 64;
}

/// What a [`FlowTable`] keeps for its user beside its own bookkeeping (key,
/// TCP handshake and teardown, wire bytes, timers), in the manner of
/// Retina's `Trackable`: the table makes it from a flow's first packet,
/// hands it every packet, and runs the flow's timeouts on the times it
/// reports. The engine's is [`crate::flow_state::FlowState`] (statistics
/// for the feature row, and payload inspection); [`FlowClock`] is the
/// least there is.
pub trait Trackable {
    /// The state of a new flow, from its first packet.
    fn new(first: &PacketInfo) -> Self;
    /// Adds a packet; `forward` is true when the initiator sent it.
    fn update(&mut self, p: &PacketInfo, forward: bool);
    /// Capture time of the flow's first packet.
    fn first_ts(&self) -> Micros;
    /// Capture time of its latest packet (never goes backwards).
    fn last_ts(&self) -> Micros;
    /// Packets seen, both directions.
    fn packets(&self) -> u64;
}

/// Times and a packet count: per-flow state for a table that needs no more.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowClock {
    /// Capture time of the first packet.
    pub first_ts: Micros,
    /// Capture time of the latest packet (never goes backwards).
    pub last_ts: Micros,
    /// Packets seen.
    pub packets: u64,
}

impl Trackable for FlowClock {
    fn new(first: &PacketInfo) -> Self {
        FlowClock { first_ts: first.ts, last_ts: first.ts, packets: 0 }
    }
    fn update(&mut self, p: &PacketInfo, _forward: bool) {
        self.last_ts = self.last_ts.max(p.ts);
        self.packets += 1;
    }
    fn first_ts(&self) -> Micros {
        self.first_ts
    }
    fn last_ts(&self) -> Micros {
        self.last_ts
    }
    fn packets(&self) -> u64 {
        self.packets
    }
}

/// One tracked flow, with its user's state `T`.
#[derive(Debug)]
pub struct Flow<T> {
    /// Flow id: stable hash of the key, salted with the first packet's time.
    pub id: u64,
    /// The flow's direction-independent key.
    pub key: FlowKey,
    /// True when the initiator is the key's `lo` endpoint.
    pub initiator_is_lo: bool,
    /// For ICMP, the first packet's type and code (reported as ports).
    pub icmp_type_code: Option<(u8, u8)>,
    /// TCP handshake and teardown steps seen so far, as bit flags (SYN, SYN-ACK, FIN, RST...).
    pub tcp_state: u8,
    /// True once the early verdict row (after K packets) was sent for this flow.
    pub early_sent: bool,
    /// Frame bytes on the wire, both directions (as tshark counts them).
    pub wire_bytes: u64,
    /// Frame bytes from the initiator, and from the responder.
    pub wire_bytes_dir: [u64; 2],
    /// Sequence numbers of the initiator's SYN and the responder's SYN-ACK
    /// (valid when `tcp_state` says they were seen), so reassembly that
    /// starts at the first payload still knows where each stream began.
    pub syn_seq: [u32; 2],
    /// The tunnel layers of the flow's first packet (boxed: most flows have none).
    pub tunnels: Option<Box<Tunnels>>,
    /// The user's per-flow state.
    pub state: T,
}

impl<T: Trackable> Flow<T> {
    fn new(key: FlowKey, p: &PacketInfo, src_is_lo: bool) -> Self {
        // A SYN-ACK first means the SYN was missed: its receiver initiated.
        let synack_first = p.has_tcp_flag(tcp_flags::SYN) && p.has_tcp_flag(tcp_flags::ACK);
        let initiator_is_lo = src_is_lo != synack_first;
        let icmp_type_code =
            matches!(p.proto, PROTO_ICMP | PROTO_ICMPV6).then_some((p.src_port as u8, p.dst_port as u8));
        Flow {
            id: key.stable_hash(p.ts),
            key,
            initiator_is_lo,
            icmp_type_code,
            tcp_state: 0,
            early_sent: false,
            wire_bytes: 0,
            wire_bytes_dir: [0; 2],
            syn_seq: [0; 2],
            tunnels: (p.tunnels.depth > 0).then(|| Box::new(p.tunnels)),
            state: T::new(p),
        }
    }

    /// (address, port) of the initiator and responder.
    pub fn endpoints(&self) -> (([u8; 16], u16), ([u8; 16], u16)) {
        let lo = (self.key.lo_addr, self.key.lo_port);
        let hi = (self.key.hi_addr, self.key.hi_port);
        if self.initiator_is_lo {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }

    /// Ports as reported: TCP/UDP ports, or ICMP type and code.
    pub fn reported_ports(&self) -> (u16, u16) {
        match self.icmp_type_code {
            Some((t, c)) => (u16::from(t), u16::from(c)),
            None => {
                let ((_, sp), (_, dp)) = self.endpoints();
                (sp, dp)
            }
        }
    }

    /// Packets seen in both directions.
    pub fn packets(&self) -> u64 {
        self.state.packets()
    }

    fn update(&mut self, p: &PacketInfo, src_is_lo: bool) {
        let forward = src_is_lo == self.initiator_is_lo;
        self.wire_bytes += u64::from(p.wire_len);
        self.wire_bytes_dir[usize::from(!forward)] += u64::from(p.wire_len);
        if let Some(t) = &p.tcp {
            let f = t.flags;
            let syn = f & tcp_flags::SYN != 0;
            let ack = f & tcp_flags::ACK != 0;
            if forward {
                if syn && !ack {
                    self.tcp_state |= state::SYN;
                    self.syn_seq[0] = t.seq;
                }
                if ack && !syn && self.tcp_state & state::SYN_ACK != 0 {
                    self.tcp_state |= state::ESTABLISHED;
                }
                if f & tcp_flags::FIN != 0 {
                    self.tcp_state |= state::FIN_FWD;
                }
                if f & tcp_flags::RST != 0 {
                    self.tcp_state |= state::RST_FWD;
                }
            } else {
                if syn && ack {
                    self.tcp_state |= state::SYN_ACK;
                    self.syn_seq[1] = t.seq;
                }
                if f & tcp_flags::FIN != 0 {
                    self.tcp_state |= state::FIN_BWD;
                }
                if f & tcp_flags::RST != 0 {
                    self.tcp_state |= state::RST_BWD;
                }
            }
        }
        self.state.update(p, forward);
    }

    /// FIN in both directions, or RST in either.
    pub fn is_closed(&self) -> bool {
        let s = self.tcp_state;
        s & (state::RST_FWD | state::RST_BWD) != 0
            || s & (state::FIN_FWD | state::FIN_BWD) == (state::FIN_FWD | state::FIN_BWD)
    }

    /// A FIN or RST was seen (the flow may be closing or closed).
    pub fn is_closing(&self) -> bool {
        self.tcp_state & (state::FIN_FWD | state::FIN_BWD | state::RST_FWD | state::RST_BWD) != 0
    }

    /// The packet is the initiator's SYN again, with the same initial
    /// sequence number: a retransmission in this connection, even after a
    /// reset, not a new connection (tshark's and Zeek's rule).
    fn repeats_initial_syn(&self, p: &PacketInfo, src_is_lo: bool) -> bool {
        src_is_lo == self.initiator_is_lo
            && self.tcp_state & state::SYN != 0
            && p.tcp.as_ref().is_some_and(|t| t.seq == self.syn_seq[0])
    }

    /// The initiator's SYN was reset before the handshake completed.
    fn reset_before_established(&self) -> bool {
        self.tcp_state & (state::SYN | state::ESTABLISHED) == state::SYN
            && self.tcp_state & (state::RST_FWD | state::RST_BWD) != 0
    }

    /// The initiator's SYN and the responder's SYN-ACK sequence numbers, where seen.
    pub fn handshake_seqs(&self) -> (Option<u32>, Option<u32>) {
        let seen = |bit: u8, i: usize| (self.tcp_state & bit != 0).then_some(self.syn_seq[i]);
        (seen(state::SYN, 0), seen(state::SYN_ACK, 1))
    }

    /// The SYN and the SYN-ACK were both seen.
    pub fn handshake_seen(&self) -> bool {
        self.tcp_state & (state::SYN | state::SYN_ACK) == (state::SYN | state::SYN_ACK)
    }

    /// The initiator acknowledged the responder's SYN-ACK.
    pub fn handshake_complete(&self) -> bool {
        self.tcp_state & state::ESTABLISHED != 0
    }

    /// The responder sent a reset.
    pub fn responder_reset(&self) -> bool {
        self.tcp_state & state::RST_BWD != 0
    }

    /// A connection attempt that never completed: the responder never
    /// answered the SYN, or reset it.
    pub fn failed_handshake(&self) -> bool {
        self.key.proto == PROTO_TCP
            && self.tcp_state & state::SYN != 0
            && (self.tcp_state & state::SYN_ACK == 0
                || self.tcp_state & state::RST_BWD != 0 && self.tcp_state & state::ESTABLISHED == 0)
    }

    fn idle_timeout(&self, cfg: &FlowConfig) -> Micros {
        match self.key.proto {
            // A client refused by a reset may retry with the same SYN: wait
            // as long as Zeek's `tcp_reset_delay`, so the retry stays in this flow.
            PROTO_TCP if self.is_closed() && self.reset_before_established() => {
                cfg.tcp_closed_timeout.max(RESET_RETRY_WAIT)
            }
            PROTO_TCP if self.is_closed() => cfg.tcp_closed_timeout,
            PROTO_TCP => cfg.tcp_idle_timeout,
            PROTO_UDP => cfg.udp_idle_timeout,
            PROTO_ICMP | PROTO_ICMPV6 => cfg.icmp_idle_timeout,
            _ => cfg.other_idle_timeout,
        }
    }

    /// The earliest time at which this flow may expire.
    pub fn deadline(&self, cfg: &FlowConfig) -> Micros {
        let idle_at = self.state.last_ts().saturating_add(self.idle_timeout(cfg));
        idle_at.min(self.state.first_ts().saturating_add(cfg.active_timeout))
    }

    /// Why this flow should end at time `now`, if it should.
    pub fn expiry(&self, now: Micros, cfg: &FlowConfig) -> Option<EndReason> {
        // Whichever of the idle and active deadlines came first decides.
        let idle_at = self.state.last_ts().saturating_add(self.idle_timeout(cfg));
        let active_at = self.state.first_ts().saturating_add(cfg.active_timeout);
        if now < idle_at.min(active_at) {
            None
        } else if idle_at <= active_at {
            Some(if self.is_closed() { EndReason::Closed } else { EndReason::IdleTimeout })
        } else {
            Some(EndReason::ActiveTimeout)
        }
    }
}

/// What happened to the table on a packet.
pub struct Update<'a, T> {
    /// The flow the packet was added to.
    pub flow: &'a mut Flow<T>,
    /// True when the packet started a new flow.
    pub created: bool,
    /// The packet came from the flow's initiator.
    pub forward: bool,
}

/// The bounded flow table.
///
/// Flows live in a slab (a vector of slots, reused through a free list) and
/// a hash table of slot numbers finds them by key: the key is stored once,
/// and the per-flow overhead of the index is a few bytes, which keeps a
/// million flows within a few hundred bytes each.
pub struct FlowTable<T> {
    cfg: FlowConfig,
    index: HashTable<u32>,
    slots: Vec<Option<Flow<T>>>,
    free: Vec<u32>,
    len: usize,
    hasher: FxBuildHasher,
    /// When each flow may next expire: (deadline, flow id, slot), earliest
    /// first. Entries go stale as flows see packets or end; a popped entry
    /// is checked against the flow and re-queued at its real deadline, so a
    /// sweep costs O(expired · log n), not a scan of the table.
    timers: BinaryHeap<Reverse<(Micros, u64, u32)>>,
    /// Reused scratch space for eviction, so it does not allocate.
    scratch: Vec<(Micros, u64, u32)>,
}

impl<T: Trackable> FlowTable<T> {
    /// An empty table with the given timeouts and capacity.
    pub fn new(cfg: FlowConfig) -> Self {
        let initial = cfg.max_flows.min(1 << 16);
        Self {
            cfg,
            index: HashTable::with_capacity(initial),
            slots: Vec::with_capacity(initial),
            free: Vec::new(),
            len: 0,
            hasher: FxBuildHasher,
            timers: BinaryHeap::with_capacity(initial),
            scratch: Vec::new(),
        }
    }

    /// The timeouts and capacity the table was built with.
    pub fn config(&self) -> &FlowConfig {
        &self.cfg
    }

    /// Number of flows tracked now.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots.get(i as usize).and_then(Option::as_ref).is_some_and(|f| f.key == *key))
            .copied()
    }

    fn flow(&self, slot: u32) -> Option<&Flow<T>> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn insert(&mut self, flow: Flow<T>, hash: u64) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(flow);
        }
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index.insert_unique(hash, slot, |&i| {
            slots.get(i as usize).and_then(Option::as_ref).map_or(0, |f| hasher.hash_one(f.key))
        });
        self.len += 1;
        slot
    }

    fn remove(&mut self, slot: u32) -> Option<Flow<T>> {
        let flow = self.slots.get_mut(slot as usize)?.take()?;
        if let Ok(entry) = self.index.find_entry(self.hasher.hash_one(flow.key), |&i| i == slot) {
            entry.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        Some(flow)
    }

    /// Adds a packet to its flow. Flows that must end first (port reuse,
    /// active timeout, eviction to make room) are handed to `ended`.
    pub fn update(&mut self, p: &PacketInfo, ended: &mut impl FnMut(Flow<T>, EndReason)) -> Update<'_, T> {
        let (key, src_is_lo) = FlowKey::of(p);
        let hash = self.hasher.hash_one(key);
        let mut slot = self.find(&key, hash);
        if let Some(s) = slot {
            let end_existing = self.flow(s).and_then(|f| {
                if f.key.proto == PROTO_TCP && p.is_syn() && f.is_closing() && !f.repeats_initial_syn(p, src_is_lo) {
                    Some(EndReason::PortReuse)
                } else {
                    // Expired since the last sweep: end it before it takes this packet.
                    f.expiry(p.ts, &self.cfg)
                }
            });
            if let Some(reason) = end_existing {
                if let Some(old) = self.remove(s) {
                    ended(old, reason);
                }
                slot = None;
            }
        }
        let created = slot.is_none();
        let slot = match slot {
            Some(s) => s,
            None => {
                if self.len >= self.cfg.max_flows {
                    self.evict_oldest(ended);
                }
                self.insert(Flow::new(key, p, src_is_lo), hash)
            }
        };
        let cfg = self.cfg;
        let timers = &mut self.timers;
        // The slot was just found or filled, so it holds the flow.
        let flow = self.slots[slot as usize].get_or_insert_with(|| Flow::new(key, p, src_is_lo));
        let was_closed = flow.is_closed();
        flow.update(p, src_is_lo);
        // A new flow, or one that just closed (its deadline moved earlier),
        // gets a timer; otherwise its existing timer is re-queued when due.
        if created || (!was_closed && flow.is_closed()) {
            timers.push(Reverse((flow.deadline(&cfg), flow.id, slot)));
        }
        let forward = src_is_lo == flow.initiator_is_lo;
        Update { flow, created, forward }
    }

    /// Ends the least recently seen 1/64 of the flows (at least one).
    fn evict_oldest(&mut self, ended: &mut impl FnMut(Flow<T>, EndReason)) {
        self.scratch.clear();
        self.scratch.extend(
            self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|f| (f.state.last_ts(), f.id, i as u32))),
        );
        let n = (self.scratch.len() / 64).max(1).min(self.scratch.len());
        if n == 0 {
            return;
        }
        if n < self.scratch.len() {
            self.scratch.select_nth_unstable(n - 1);
        }
        self.scratch.truncate(n);
        self.scratch.sort_unstable();
        for i in 0..self.scratch.len() {
            let slot = self.scratch[i].2;
            if let Some(f) = self.remove(slot) {
                ended(f, EndReason::Evicted);
            }
        }
    }

    /// Ends every flow whose timeout has passed at `now`, earliest deadline first.
    pub fn expire(&mut self, now: Micros, ended: &mut impl FnMut(Flow<T>, EndReason)) {
        let cfg = self.cfg;
        while let Some(Reverse((deadline, id, slot))) = self.timers.peek().copied() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(f) = self.flow(slot).filter(|f| f.id == id) else { continue };
            match f.expiry(now, &cfg) {
                Some(reason) => {
                    if let Some(f) = self.remove(slot) {
                        ended(f, reason);
                    }
                }
                None => {
                    let next = f.deadline(&cfg);
                    self.timers.push(Reverse((next, id, slot)));
                }
            }
        }
        // Stale entries of ended flows would otherwise pile up under churn.
        if self.timers.len() > 4 * self.len + 1024 {
            let slots = &self.slots;
            self.timers.retain(|Reverse((_, id, slot))| {
                slots.get(*slot as usize).and_then(Option::as_ref).is_some_and(|f| f.id == *id)
            });
        }
    }

    /// Ends every flow (end of input), oldest first.
    pub fn drain(&mut self, ended: &mut impl FnMut(Flow<T>, EndReason)) {
        let mut all: Vec<Flow<T>> = self.slots.iter_mut().filter_map(Option::take).collect();
        self.index.clear();
        self.free.clear();
        self.slots.clear();
        self.timers.clear();
        self.len = 0;
        all.sort_unstable_by_key(|f| (f.state.first_ts(), f.id));
        for f in all {
            ended(f, EndReason::EndOfInput);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{tcp_flags as f, TcpInfo};

    #[test]
    fn every_protocol_number_round_trips_and_is_named_as_the_decoder_names_it() {
        for n in 0..=255u8 {
            let p = IpProto::from_number(n);
            assert_eq!(p.number(), n);
            // The names verdicts have always used; every other number is `ip`.
            let named = [
                (6, "tcp"),
                (17, "udp"),
                (1, "icmp"),
                (58, "icmpv6"),
                (2, "igmp"),
                (47, "gre"),
                (50, "esp"),
                (51, "ah"),
                (89, "ospf"),
                (103, "pim"),
                (132, "sctp"),
            ];
            let expected = named.iter().find(|(m, _)| *m == n).map_or("ip", |(_, name)| *name);
            assert_eq!(p.name(), expected, "{n}");
        }
        assert_eq!(serde_json::to_value(IpProto::Icmpv6).unwrap(), "icmpv6");
        assert_eq!(serde_json::to_value(EndReason::PortReuse).unwrap(), "port_reuse");
    }

    fn addr(n: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[10] = 0xff;
        a[11] = 0xff;
        a[15] = n;
        a
    }

    fn tcp(ts: Micros, from_client: bool, flags: u8) -> PacketInfo {
        let (src, dst, sp, dp) =
            if from_client { (addr(1), addr(2), 40000, 80) } else { (addr(2), addr(1), 80, 40000) };
        PacketInfo {
            ts,
            wire_len: 54,
            src,
            dst,
            is_ipv6: false,
            proto: PROTO_TCP,
            src_port: sp,
            dst_port: dp,
            icmp_echo_id: None,
            ip_len: 40,
            payload_len: 0,
            tcp: Some(TcpInfo { flags, seq: 0, ack: 0, window: 1000 }),
            payload_off: 0,
            payload_cap: 0,
            payload_in: crate::decode::PayloadBuffer::Frame,
            tunnels: Default::default(),
        }
    }

    fn run(table: &mut FlowTable<FlowClock>, pkts: &[PacketInfo]) -> Vec<(Flow<FlowClock>, EndReason)> {
        let mut ended = Vec::new();
        for p in pkts {
            table.update(p, &mut |fl, r| ended.push((fl, r)));
        }
        ended
    }

    #[test]
    fn port_reuse_after_close_starts_a_new_flow() {
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        let conn = |t0: Micros| {
            vec![
                tcp(t0, true, f::SYN),
                tcp(t0 + 1, false, f::SYN | f::ACK),
                tcp(t0 + 2, true, f::ACK),
                tcp(t0 + 3, true, f::FIN | f::ACK),
                tcp(t0 + 4, false, f::FIN | f::ACK),
                tcp(t0 + 5, true, f::ACK),
            ]
        };
        let mut pkts = conn(1_000_000);
        let mut second = conn(2_000_000);
        // The second connection has a new initial sequence number.
        second.iter_mut().for_each(|p| p.tcp.iter_mut().for_each(|t| t.seq = t.seq.wrapping_add(7_000)));
        pkts.extend(second);
        let ended = run(&mut t, &pkts);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, EndReason::PortReuse);
        assert_eq!(ended[0].0.packets(), 6);
        assert!(ended[0].0.handshake_complete());
        assert_eq!(t.len(), 1);
        // A closed flow ends after the short closed timeout, as `closed`.
        let mut rest = Vec::new();
        t.expire(2_000_005 + FlowConfig::default().tcp_closed_timeout, &mut |fl, r| rest.push((fl, r)));
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1, EndReason::Closed);
    }

    #[test]
    fn a_syn_repeating_the_initial_sequence_number_stays_in_its_flow() {
        let syn = |ts: Micros, seq: u32| {
            let mut p = tcp(ts, true, f::SYN);
            p.tcp.iter_mut().for_each(|t| t.seq = seq);
            p
        };
        let reset = |ts: Micros| tcp(ts, false, f::RST | f::ACK);
        // Reset, retried with the same ISN twice: one connection attempt.
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        let ended = run(&mut t, &[syn(10, 77), reset(11), syn(500_000, 77), reset(500_001), syn(900_000, 77)]);
        assert!(ended.is_empty(), "{:?}", ended.iter().map(|e| e.1).collect::<Vec<_>>());
        assert_eq!(t.len(), 1);
        let mut all = Vec::new();
        t.drain(&mut |fl, r| all.push((fl, r)));
        assert_eq!(all[0].0.packets(), 5);
        // Reset, then a SYN with a new ISN: a new connection.
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        let ended = run(&mut t, &[syn(10, 77), reset(11), syn(500_000, 78)]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, EndReason::PortReuse);
        assert_eq!(ended[0].0.packets(), 2);
        // A SYN from the responder's side with the initiator's ISN is no retransmission.
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        let mut back = tcp(500_000, false, f::SYN);
        back.tcp.iter_mut().for_each(|t| t.seq = 77);
        let ended = run(&mut t, &[syn(10, 77), reset(11), back]);
        assert_eq!(ended.len(), 1);
    }

    #[test]
    fn syn_ack_first_makes_its_receiver_the_initiator() {
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        let up = t.update(&tcp(10, false, f::SYN | f::ACK), &mut |_, _| {});
        let ((init, port), _) = up.flow.endpoints();
        assert_eq!((init, port), (addr(1), 40000));
    }

    #[test]
    fn scan_probe_answered_by_reset_is_a_failed_handshake() {
        let mut t = FlowTable::<FlowClock>::new(FlowConfig::default());
        run(&mut t, &[tcp(10, true, f::SYN), tcp(11, false, f::RST | f::ACK)]);
        let mut ended = Vec::new();
        t.drain(&mut |fl, r| ended.push((fl, r)));
        assert!(ended[0].0.failed_handshake());
        assert!(ended[0].0.responder_reset());
        assert_eq!(ended[0].1, EndReason::EndOfInput);
    }

    #[test]
    fn full_table_evicts_the_least_recently_seen() {
        let cfg = FlowConfig { max_flows: 4, ..FlowConfig::default() };
        let mut t = FlowTable::<FlowClock>::new(cfg);
        let mut ended = Vec::new();
        for i in 0..6u16 {
            let mut p = tcp(u64::from(i) * 10, true, f::SYN);
            p.src_port = 1000 + i;
            t.update(&p, &mut |fl, r| ended.push((fl, r)));
        }
        assert_eq!(t.len(), 4);
        assert_eq!(ended.len(), 2);
        assert!(ended.iter().all(|(_, r)| *r == EndReason::Evicted));
        let ports: Vec<u16> = ended.iter().map(|(fl, _)| fl.endpoints().0 .1).collect();
        assert_eq!(ports, [1000, 1001]);
    }

    #[test]
    fn idle_and_active_timeouts() {
        let cfg = FlowConfig { tcp_idle_timeout: 100, active_timeout: 1000, ..FlowConfig::default() };
        let mut t = FlowTable::<FlowClock>::new(cfg);
        // Packets 50 µs apart never go idle, but the flow is cut at the active timeout.
        let pkts: Vec<_> = (0..30).map(|i| tcp(i * 50, i % 2 == 0, f::ACK)).collect();
        let ended = run(&mut t, &pkts);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, EndReason::ActiveTimeout);
        // A gap longer than the idle timeout ends the flow before the next packet.
        let ended = run(&mut t, &[tcp(10_000, true, f::ACK)]);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1, EndReason::IdleTimeout);
    }
}
