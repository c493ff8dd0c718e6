//! Inspect: the payload work of one flow. TCP segments go through the
//! [`reassembly`](crate::reassembly) of their direction and the in-order
//! bytes to the [`app`](crate::app) parser; UDP datagrams go to it directly.
//! A flow gets an [`Inspection`] at its first payload byte, so flows that
//! carry none (scans, floods) cost nothing here.

use crate::app::{AppMeta, AppParser};
use crate::decode::{tcp_flags, PacketInfo, PROTO_TCP, PROTO_UDP};
use crate::reassembly::{Budget, HalfStream, ReassemblyConfig, StreamEvent};

/// Settings of the payload stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectConfig {
    /// Reassemble and parse payloads at all (off: flow statistics only).
    pub enabled: bool,
    /// Limits of TCP reassembly.
    pub reassembly: ReassemblyConfig,
    /// Keep up to this many reassembled bytes per direction in each flow's
    /// record (for `tidewatchd flows --streams` and tests); 0 keeps none.
    pub keep_stream_bytes: usize,
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self { enabled: true, reassembly: ReassemblyConfig::default(), keep_stream_bytes: 0 }
    }
}

/// How a TCP connection's reassembly went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReassemblyState {
    /// The handshake was seen in both directions.
    Complete,
    /// Picked up without a SYN in at least one direction.
    Midstream,
    /// Stopped at a memory cap; statistics kept.
    Abandoned,
}

impl ReassemblyState {
    /// The state of a connection: abandoned at a cap, or complete when its
    /// SYN and SYN-ACK were seen, else picked up midstream.
    pub fn of(abandoned: bool, handshake_seen: bool) -> Self {
        match (abandoned, handshake_seen) {
            (true, _) => ReassemblyState::Abandoned,
            (false, true) => ReassemblyState::Complete,
            (false, false) => ReassemblyState::Midstream,
        }
    }

    /// Stable name used in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ReassemblyState::Complete => "complete",
            ReassemblyState::Midstream => "midstream",
            ReassemblyState::Abandoned => "abandoned",
        }
    }
}

/// Per-direction payload figures of a flow, initiator's direction first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadSummary {
    /// TCP: bytes reassembled in order; UDP: datagram payload bytes.
    pub payload_bytes: [u64; 2],
    /// TCP: gaps of bytes the capture never saw, skipped in the stream.
    pub gaps: [u32; 2],
    /// TCP: bytes skipped at those gaps.
    pub gap_bytes: [u64; 2],
    /// TCP: bytes seen again after delivery or while held (first data won).
    pub duplicate_bytes: [u64; 2],
    /// How the TCP reassembly went; `None` for other protocols.
    pub reassembly: Option<ReassemblyState>,
}

/// Payload state of one flow.
#[derive(Debug)]
pub struct Inspection {
    streams: [HalfStream; 2],
    parser: AppParser,
    abandoned: bool,
    udp_bytes: [u64; 2],
    kept: Option<Box<[Vec<u8>; 2]>>,
}

/// Hands reassembled bytes on: to the parser, and to the kept copy.
fn emit(parser: &mut AppParser, kept: &mut Option<Box<[Vec<u8>; 2]>>, keep: usize, dir: usize, e: StreamEvent<'_>) {
    match e {
        StreamEvent::Data(d) => {
            if !parser.done() {
                parser.on_stream(dir == 0, d);
            }
            if let Some(k) = kept.as_deref_mut().and_then(|k| k.get_mut(dir)) {
                let room = keep.saturating_sub(k.len()).min(d.len());
                k.extend_from_slice(&d[..room]);
            }
        }
        StreamEvent::Gap(n) => parser.on_gap(dir == 0, n),
    }
}

impl Inspection {
    /// Whether later payload bytes still matter: a parser still reads
    /// them, or stream bytes are kept. When not, only their lengths count
    /// (reassembly's offsets, buffers and gaps), so zeros would do.
    pub fn needs_bytes(&self) -> bool {
        self.kept.is_some() || !(self.abandoned || self.parser.done())
    }

    /// Payload state of a flow of IP protocol `proto`, given its initiator and responder ports.
    pub fn new(proto: u8, initiator_port: u16, responder_port: u16, keep_stream_bytes: usize) -> Self {
        Self {
            streams: Default::default(),
            parser: AppParser::new(proto, initiator_port, responder_port),
            abandoned: false,
            udp_bytes: [0; 2],
            kept: (keep_stream_bytes > 0).then(|| Box::new([Vec::new(), Vec::new()])),
        }
    }

    /// The flow saw the initiator's SYN (`syn`) and the responder's SYN-ACK
    /// (`syn_ack`) before its first payload: both streams start there.
    pub fn seed_handshake(&mut self, syn: Option<u32>, syn_ack: Option<u32>) {
        if let Some(s) = syn {
            self.streams[0].start_after_syn(s);
        }
        if let Some(s) = syn_ack {
            self.streams[1].start_after_syn(s);
        }
    }

    /// One packet of the flow; `payload` is its captured transport payload.
    /// Returns `true` when this packet made the connection pass a memory
    /// cap (it is abandoned from now on).
    pub fn packet(
        &mut self,
        forward: bool,
        info: &PacketInfo,
        payload: &[u8],
        budget: &mut Budget,
        keep: usize,
    ) -> bool {
        let dir = usize::from(!forward);
        match (info.proto, info.tcp) {
            (PROTO_TCP, Some(t)) => {
                if self.abandoned {
                    return false;
                }
                let (parser, kept) = (&mut self.parser, &mut self.kept);
                let [a, b] = &mut self.streams;
                let (this, other) = if dir == 0 { (a, b) } else { (b, a) };
                if t.flags & tcp_flags::ACK != 0 {
                    other.acked(t.ack, budget, &mut |e| emit(parser, kept, keep, 1 - dir, e));
                }
                let others = other.buffered();
                let ok =
                    this.segment(t.seq, t.flags, payload, others, budget, &mut |e| emit(parser, kept, keep, dir, e));
                if !ok {
                    self.abandoned = true;
                    self.streams.iter_mut().for_each(|s| s.release(budget));
                    return true;
                }
            }
            (PROTO_UDP, _) => {
                self.udp_bytes[dir] += u64::from(info.payload_len);
                if !self.parser.done() && !payload.is_empty() {
                    self.parser.on_datagram(forward, payload);
                }
            }
            _ => {}
        }
        false
    }

    /// End of the flow: what waits behind gaps is delivered, buffers freed.
    pub fn finish(&mut self, budget: &mut Budget, keep: usize) {
        let (parser, kept) = (&mut self.parser, &mut self.kept);
        for (dir, s) in self.streams.iter_mut().enumerate() {
            if !self.abandoned {
                s.flush(budget, &mut |e| emit(parser, kept, keep, dir, e));
            }
            s.release(budget);
        }
    }

    /// What the application parser has learned so far.
    pub fn meta(&self) -> &AppMeta {
        self.parser.meta()
    }

    /// Reassembled bytes kept for export, initiator's direction first.
    pub fn kept_streams(&self) -> Option<&[Vec<u8>; 2]> {
        self.kept.as_deref()
    }

    /// `handshake_seen`: the flow saw its SYN and SYN-ACK.
    pub fn summary(&self, proto: u8, handshake_seen: bool) -> PayloadSummary {
        let mut s = PayloadSummary::default();
        for (i, h) in self.streams.iter().enumerate() {
            s.payload_bytes[i] = if proto == PROTO_TCP { h.delivered } else { self.udp_bytes[i] };
            s.gaps[i] = h.gaps;
            s.gap_bytes[i] = h.gap_bytes;
            s.duplicate_bytes[i] = h.duplicate_bytes;
        }
        if proto == PROTO_TCP {
            s.reassembly = Some(ReassemblyState::of(self.abandoned, handshake_seen));
        }
        s
    }
}
