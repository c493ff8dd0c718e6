//! The capture step every driver uses: account for a packet, move engine
//! time (sweeps every 100 ms of it), decode, and reassemble IP fragments.

use crate::decode::{decode_frame, decode_ip, Decoded, DropReason, PacketInfo, PayloadBuffer, PayloadBuffers};
use crate::defrag::{DefragOutcome, Defragmenter};
use crate::source::{Micros, RawPacket, MAX_TIMESTAMP};

use super::stats::{StageCounts, Stats};

/// Flows are swept for timeouts every 100 ms of capture time: the timer heap
/// makes a sweep cheap, and small sweeps keep verdict bursts (latency) short.
pub(super) const SWEEP_INTERVAL: Micros = 100_000;
/// Counters and clock of the capture stage (read + decode + dispatch).
#[derive(Default)]
pub(super) struct CaptureState {
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) decoded: u64,
    pub(super) drops: [u64; DropReason::ALL.len()],
    pub(super) fragments: u64,
    /// Datagrams reassembled from fragments and handed on as packets.
    pub(super) datagrams: u64,
    /// Payloads handed on without a copy: their flows' parsers were done.
    pub(super) payload_skipped: u64,
    pub(super) defrag: Defragmenter,
    /// The last datagram the defragmenter completed.
    pub(super) defrag_buf: Vec<u8>,
    pub(super) first_ts: Option<Micros>,
    pub(super) last_ts: Option<Micros>,
    /// Highest capture timestamp seen: engine time never runs backwards.
    pub(super) clock: Micros,
    pub(super) next_sweep: Micros,
}

/// What one packet did to the capture stage.
pub(super) struct Step {
    /// A sweep is due at this time (the clock crossed a sweep boundary):
    /// hand it to the flow table(s) before the packet.
    pub(super) sweep: Option<Micros>,
    /// The decoded packet (its `payload_in` says whether its bytes are in
    /// the frame or in a datagram just completed). `None`: dropped
    /// (counted) or a fragment still waiting.
    pub(super) packet: Option<PacketInfo>,
}

impl CaptureState {
    /// The capture step of every driver (`process` and the threaded `run`):
    /// clamps the time, accounts for the packet, moves the clock, decodes.
    pub(super) fn step(&mut self, pkt: &RawPacket<'_>) -> Step {
        // Engine time stays below the merge stage's end-of-input mark.
        let pkt = RawPacket { ts: pkt.ts.min(MAX_TIMESTAMP), ..*pkt };
        let sweep = self.arrive(&pkt);
        Step { sweep, packet: self.decode(&pkt) }
    }

    /// The buffers a packet decoded from `frame` may point into.
    pub(super) fn buffers<'a>(&'a self, frame: &'a [u8]) -> PayloadBuffers<'a> {
        PayloadBuffers { frame, datagram: &self.defrag_buf, chunk: &[] }
    }

    /// Writes this stage's counters into `s`, and those of the hand-off to
    /// the flow tables (`dispatch`), which waited `queue_full` times for a
    /// worker and dropped `queue_dropped` packets.
    pub(super) fn count_into(&self, s: &mut Stats, queue_full: u64, queue_dropped: u64) {
        s.packets = self.packets;
        s.bytes = self.bytes;
        s.decoded = self.decoded;
        s.drops = self.drops;
        s.fragments = self.fragments;
        s.defrag = self.defrag.stats();
        s.first_ts = self.first_ts;
        s.last_ts = self.last_ts;
        s.queue_full = queue_full;
        s.payload_copies_skipped = self.payload_skipped;
        s.queue_dropped = queue_dropped;
        // A datagram is handed on in place of its fragments, which the
        // defragmenter absorbed (or gave up: `defrag` says which).
        let sent = self.decoded + self.datagrams;
        let dropped: u64 = self.drops.iter().sum();
        *s.stage_mut("capture") = StageCounts {
            received: self.packets,
            sent,
            discarded: dropped + self.fragments.saturating_sub(self.datagrams),
            failed: 0,
        };
        *s.stage_mut("dispatch") = StageCounts {
            received: sent,
            sent: sent.saturating_sub(queue_dropped),
            discarded: queue_dropped,
            failed: 0,
        };
    }

    /// Accounts for a packet and advances the clock. Returns a sweep time
    /// when the clock crossed a sweep boundary.
    fn arrive(&mut self, pkt: &RawPacket<'_>) -> Option<Micros> {
        self.packets += 1;
        self.bytes += u64::from(pkt.wire_len);
        self.first_ts = Some(self.first_ts.map_or(pkt.ts, |t| t.min(pkt.ts)));
        self.last_ts = Some(self.last_ts.map_or(pkt.ts, |t| t.max(pkt.ts)));
        let first = self.packets == 1;
        self.clock = self.clock.max(pkt.ts);
        let boundary = self.clock - self.clock % SWEEP_INTERVAL;
        if first {
            self.next_sweep = boundary + SWEEP_INTERVAL;
            None
        } else if self.clock >= self.next_sweep {
            self.next_sweep = boundary + SWEEP_INTERVAL;
            self.defrag.expire(boundary);
            Some(boundary)
        } else {
            None
        }
    }

    /// Moves the clock to `now` without a packet (idle live capture).
    /// Returns a sweep time when a sweep boundary was crossed.
    pub(super) fn advance(&mut self, now: Micros) -> Option<Micros> {
        if self.packets == 0 || now <= self.clock {
            return None;
        }
        self.clock = now;
        if self.clock >= self.next_sweep {
            let boundary = self.clock - self.clock % SWEEP_INTERVAL;
            self.next_sweep = boundary + SWEEP_INTERVAL;
            self.defrag.expire(boundary);
            Some(boundary)
        } else {
            None
        }
    }

    /// Decodes a frame. A datagram the defragmenter completes is decoded
    /// from `defrag_buf`, and its packet says so (`PayloadBuffer::Datagram`).
    fn decode(&mut self, pkt: &RawPacket<'_>) -> Option<PacketInfo> {
        match decode_frame(pkt) {
            Ok(Decoded::Packet(info)) => {
                self.decoded += 1;
                Some(info)
            }
            Ok(Decoded::Fragment(f)) => {
                self.fragments += 1;
                let DefragOutcome::Complete { wire_len, tunnels } = self.defrag.push(&f, &mut self.defrag_buf) else {
                    return None;
                };
                match decode_ip(&self.defrag_buf, 0, f.ts, wire_len, 0, tunnels) {
                    Ok(Decoded::Packet(info)) => {
                        self.datagrams += 1;
                        Some(PacketInfo { payload_in: PayloadBuffer::Datagram, ..info })
                    }
                    // Fragments inside a reassembled datagram, or a datagram
                    // that does not decode: counted by the defragmenter.
                    _ => {
                        self.defrag.count_undecodable();
                        None
                    }
                }
            }
            Err(reason) => {
                self.drops[reason.index()] += 1;
                None
            }
        }
    }
}
