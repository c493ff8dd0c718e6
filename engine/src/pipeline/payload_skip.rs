//! Skipping the payload copy of flows whose parsers are done.
//!
//! Under `run()` with workers, the capture thread copies each TCP/UDP
//! payload into the chunk it hands a worker. Once a flow's parsers have
//! learned all they will (and no stream bytes are kept), only the payload's
//! length still matters: reassembly counts, buffers and skips by length,
//! and its bytes go nowhere. The worker says so in a [`DoneHint`] that
//! travels back to the capture thread with the recycled chunk, and the
//! capture thread then hands that flow's packets on with
//! [`PayloadBuffer::Skipped`](crate::decode::PayloadBuffer::Skipped) (the
//! bytes read as zeros of the same length) instead of a copy.
//!
//! The capture thread runs ahead of the worker, so a hint may be stale: the
//! flow it names may have ended since, and a new flow with the same key
//! needs its bytes. A hint is therefore used only while nothing that could
//! have ended its flow can have happened since the worker's packet that
//! made it, judged from what the capture thread saw itself:
//! - its clock is still before the flow's deadline (idle or active
//!   timeout) as of the hint: later packets only move that deadline later;
//! - no TCP SYN, FIN or RST was dispatched to that worker for any flow of
//!   the hint's table slot since (closing and port reuse need one);
//! - fewer packets went to that worker since than the flow table had free
//!   slots (eviction needs that many new flows).
//!
//! Packets a live capture dropped at a full queue only make these checks
//! stricter (the capture thread counts them, the worker never saw them), so
//! verdicts and flow records are the same, byte for byte, with or without
//! the skip (`engine/tests/determinism.rs`).

use crate::flow::FlowKey;
use crate::source::Micros;

/// Table slots per worker (a power of two).
const SLOTS: usize = 2048;

/// A worker's word that a flow's payload bytes are no longer needed.
#[derive(Clone, Copy, Debug)]
pub(super) struct DoneHint {
    pub key: FlowKey,
    /// The flow hash both threads compute (`threads::flow_hash`).
    pub hash: u64,
    /// The worker's packet count at the packet that made the hint.
    pub seq: u64,
    /// The flow's deadline then: it lives at least until this time.
    pub deadline: Micros,
    /// Free slots of the worker's flow table then.
    pub room: u64,
}

/// The capture thread's view of one worker's done flows.
pub(super) struct SkipTable {
    hints: Vec<Option<DoneHint>>,
    /// Per slot, the packet count at the latest SYN, FIN or RST dispatched
    /// to this worker for a flow of that slot.
    danger: Vec<u64>,
    /// Packets dispatched to this worker so far.
    seq: u64,
}

impl SkipTable {
    pub(super) fn new() -> Self {
        SkipTable { hints: vec![None; SLOTS], danger: vec![0; SLOTS], seq: 0 }
    }

    fn slot(hash: u64) -> usize {
        // The low bits chose the worker; the slot uses the high ones.
        (hash >> 40) as usize & (SLOTS - 1)
    }

    /// Takes the hints a worker sent back, oldest first.
    pub(super) fn learn(&mut self, hints: &[DoneHint]) {
        for h in hints {
            self.hints[Self::slot(h.hash)] = Some(*h);
        }
    }

    /// Accounts for one packet dispatched to this worker (every packet, so
    /// counts match the worker's) and says whether its payload copy may be
    /// skipped. `opens_or_closes`: a TCP SYN, FIN or RST.
    pub(super) fn dispatch(&mut self, key: &FlowKey, hash: u64, opens_or_closes: bool, clock: Micros) -> bool {
        self.seq += 1;
        let slot = Self::slot(hash);
        if opens_or_closes {
            self.danger[slot] = self.seq;
            return false;
        }
        let Some(h) = &self.hints[slot] else { return false };
        h.key == *key && self.danger[slot] < h.seq && clock < h.deadline && self.seq - h.seq < h.room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey { lo_addr: [1; 16], hi_addr: [2; 16], lo_port: port, hi_port: 443, proto: 6, is_ipv6: false }
    }

    fn hint(port: u16, seq: u64) -> DoneHint {
        DoneHint { key: key(port), hash: 7 << 40, seq, deadline: 1_000, room: 10 }
    }

    #[test]
    fn a_hint_is_used_only_while_its_flow_cannot_have_ended() {
        let mut t = SkipTable::new();
        let h = 7 << 40;
        assert!(!t.dispatch(&key(1), h, false, 0), "no hint yet");
        t.learn(&[hint(1, 1)]);
        assert!(t.dispatch(&key(1), h, false, 10));
        assert!(!t.dispatch(&key(2), h, false, 10), "another flow of the slot");
        assert!(!t.dispatch(&key(1), h, false, 1_000), "deadline reached");
        // Eviction: 10 free slots, and 10 packets went to the worker since.
        for _ in 0..6 {
            t.dispatch(&key(9), 1 << 40, false, 10);
        }
        assert_eq!(t.seq, 10);
        assert!(!t.dispatch(&key(1), h, false, 10), "enough new flows to evict it");
        // A FIN of any flow of the slot puts every older hint out of use.
        let mut t = SkipTable::new();
        t.learn(&[hint(1, 1)]);
        assert!(!t.dispatch(&key(3), h, true, 10));
        assert!(!t.dispatch(&key(1), h, false, 10), "a close came after the hint");
        // A hint made after it is good again.
        t.learn(&[hint(1, 3)]);
        assert!(t.dispatch(&key(1), h, false, 10));
    }
}
