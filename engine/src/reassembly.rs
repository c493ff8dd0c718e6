//! Reassembly: each direction of a TCP connection as an in-order byte
//! stream, for the application parsers.
//!
//! Policy (one, documented, as Suricata's and Zeek's defaults):
//! - **first data wins**: a byte already delivered, or already held out of
//!   order, is never replaced by a later copy (retransmissions and overlaps
//!   are counted, not delivered);
//! - segments ahead of the next expected byte wait in a bounded
//!   out-of-order buffer;
//! - a **gap** (bytes the capture never saw) is skipped and recorded when
//!   the receiver acknowledges data beyond it, when too many segments wait
//!   behind it, or when the flow ends;
//! - a connection whose handshake was not seen is picked up **midstream** at
//!   its first data segment;
//! - nothing is delivered past a FIN, nor after a RST;
//! - memory: at most `max_buffered_per_flow` bytes wait per connection, and
//!   `max_buffered_total` in the whole shard; a connection that would pass
//!   either cap is **abandoned** — its buffers freed, no more bytes
//!   delivered, its flow statistics still kept (counted).
//!
//! The stream offsets are 64-bit, so sequence-number wrap-around is only a
//! matter of wrapping subtraction at the edges.

use std::collections::VecDeque;

use crate::decode::tcp_flags;

/// Limits of the reassembler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReassemblyConfig {
    /// Out-of-order bytes one connection may hold (both directions).
    pub max_buffered_per_flow: usize,
    /// Out-of-order bytes all connections of one worker may hold.
    pub max_buffered_total: usize,
    /// Segments that may wait behind one gap before it is skipped.
    pub max_segments_waiting: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self { max_buffered_per_flow: 1 << 20, max_buffered_total: 256 << 20, max_segments_waiting: 512 }
    }
}

/// Sequence distance beyond which a segment is taken as out of window.
const WINDOW: i64 = 1 << 30;

/// What a direction's stream delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The next in-order bytes.
    Data(&'a [u8]),
    /// This many bytes were never seen; the stream goes on after them.
    Gap(u64),
}

/// The limits, and the out-of-order bytes held by all connections of one worker.
#[derive(Debug, Default)]
pub struct Budget {
    /// The limits.
    pub cfg: ReassemblyConfig,
    /// Out-of-order bytes held now, over all connections of the worker.
    pub used: usize,
    /// Most out-of-order bytes held at once so far.
    pub peak: usize,
}

impl Budget {
    /// A budget with the given limits and nothing held yet.
    pub fn new(cfg: ReassemblyConfig) -> Self {
        Self { cfg, used: 0, peak: 0 }
    }
}

/// One direction of a connection.
#[derive(Clone, Debug, Default)]
pub struct HalfStream {
    /// Sequence number of the next byte to deliver; `None` before the first
    /// SYN or data segment.
    next: Option<u32>,
    /// Stream offset of `next`: bytes delivered plus bytes skipped.
    offset: u64,
    /// Stream offset of the FIN, when seen.
    fin: Option<u64>,
    reset: bool,
    /// Segments ahead of `next`, by stream offset, not overlapping.
    waiting: VecDeque<(u64, Vec<u8>)>,
    waiting_bytes: usize,
    /// Bytes delivered in order.
    pub delivered: u64,
    /// Gaps skipped, and their bytes.
    pub gaps: u32,
    /// Bytes skipped at those gaps.
    pub gap_bytes: u64,
    /// Bytes seen again after delivery or while held (first data won).
    pub duplicate_bytes: u64,
    /// Segments too far from the expected sequence number to place.
    pub out_of_window: u32,
    /// Picked up without seeing the SYN.
    pub midstream: bool,
}

impl HalfStream {
    /// Starts the stream after a SYN seen before this stream existed (the
    /// flow got its first payload later): its sequence number + 1 is the
    /// first byte, so data that arrives out of order is not taken for the start.
    pub fn start_after_syn(&mut self, syn_seq: u32) {
        if self.next.is_none() {
            self.next = Some(syn_seq.wrapping_add(1));
        }
    }

    /// Bytes held out of order.
    pub fn buffered(&self) -> usize {
        self.waiting_bytes
    }

    /// Signed distance from `next` to `seq`.
    fn distance(&self, next: u32, seq: u32) -> i64 {
        i64::from(seq.wrapping_sub(next) as i32)
    }

    /// Takes one segment of this direction. Delivers, in order and exactly
    /// once, every byte not delivered before; returns `false` when the
    /// caps were reached (the caller abandons the connection).
    pub fn segment(
        &mut self,
        seq: u32,
        flags: u8,
        payload: &[u8],
        others_buffered: usize,
        budget: &mut Budget,
        out: &mut impl FnMut(StreamEvent<'_>),
    ) -> bool {
        let cfg = budget.cfg;
        if self.reset {
            return true;
        }
        let syn = flags & tcp_flags::SYN != 0;
        let next = match self.next {
            Some(n) => n,
            None if syn => {
                self.next = Some(seq.wrapping_add(1));
                seq.wrapping_add(1)
            }
            None if payload.is_empty() && flags & (tcp_flags::FIN | tcp_flags::RST) == 0 => return true,
            None => {
                self.midstream = true;
                self.next = Some(seq);
                seq
            }
        };
        if flags & tcp_flags::RST != 0 {
            self.reset = true;
            self.release(budget);
            return true;
        }
        // SYN payload (TCP Fast Open) starts after the SYN's own number.
        let seq = if syn { seq.wrapping_add(1) } else { seq };
        let dist = self.distance(next, seq);
        if !(-WINDOW..WINDOW).contains(&dist) {
            self.out_of_window += 1;
            return true;
        }
        let start = self.offset as i64 + dist;
        if start < 0 {
            self.out_of_window += 1;
            return true;
        }
        let start = start as u64;
        if flags & tcp_flags::FIN != 0 && self.fin.is_none() {
            self.fin = Some(start + payload.len() as u64);
        }
        let limit = self.fin.unwrap_or(u64::MAX);
        let end = (start + payload.len() as u64).min(limit.max(start));
        let payload = &payload[..(end - start) as usize];
        if payload.is_empty() {
            return true;
        }
        if start <= self.offset {
            let skip = (self.offset - start) as usize;
            self.duplicate_bytes += skip.min(payload.len()) as u64;
            if skip < payload.len() {
                // Bytes that are already held came first: deliver only up to
                // the first held segment, and hold the rest around it.
                let rest = &payload[skip..];
                let at = self.offset;
                let cut = match self.waiting.front() {
                    Some(&(first, _)) if first < at + rest.len() as u64 => (first - at) as usize,
                    _ => rest.len(),
                };
                if cut > 0 {
                    self.deliver(&rest[..cut], out);
                }
                if cut < rest.len() && !self.hold(at + cut as u64, &rest[cut..], others_buffered, budget) {
                    return false;
                }
                self.drain(budget, out);
            }
            return true;
        }
        // Ahead of the stream: hold it, keeping only bytes not held already.
        if !self.hold(start, payload, others_buffered, budget) {
            return false;
        }
        if self.waiting.len() > cfg.max_segments_waiting {
            self.skip_gap(budget, out);
        }
        true
    }

    /// The other direction acknowledged up to `ack`: a receiver that
    /// acknowledged bytes beyond a gap had them, so the capture missed them.
    pub fn acked(&mut self, ack: u32, budget: &mut Budget, out: &mut impl FnMut(StreamEvent<'_>)) {
        let (Some(next), Some(&(first, _))) = (self.next, self.waiting.front()) else { return };
        let dist = self.distance(next, ack);
        if dist > 0 && dist < WINDOW && self.offset + dist as u64 > first {
            self.skip_gap(budget, out);
        }
    }

    /// End of the connection: what waits is delivered after its gaps.
    pub fn flush(&mut self, budget: &mut Budget, out: &mut impl FnMut(StreamEvent<'_>)) {
        while !self.waiting.is_empty() {
            self.skip_gap(budget, out);
        }
    }

    /// Frees the buffers (the connection was abandoned or reset).
    pub fn release(&mut self, budget: &mut Budget) {
        budget.used = budget.used.saturating_sub(self.waiting_bytes);
        self.waiting = VecDeque::new();
        self.waiting_bytes = 0;
    }

    fn deliver(&mut self, data: &[u8], out: &mut impl FnMut(StreamEvent<'_>)) {
        out(StreamEvent::Data(data));
        self.advance(data.len() as u64);
        self.delivered += data.len() as u64;
    }

    fn advance(&mut self, n: u64) {
        self.offset += n;
        self.next = self.next.map(|s| s.wrapping_add(n as u32));
    }

    /// Delivers the waiting segments that the stream has reached.
    fn drain(&mut self, budget: &mut Budget, out: &mut impl FnMut(StreamEvent<'_>)) {
        while self.waiting.front().is_some_and(|(start, _)| *start <= self.offset) {
            let Some((start, data)) = self.waiting.pop_front() else { break };
            self.waiting_bytes -= data.len();
            budget.used = budget.used.saturating_sub(data.len());
            let skip = self.offset.saturating_sub(start) as usize;
            if skip < data.len() {
                self.deliver(&data[skip..], out);
            }
        }
    }

    /// Skips to the first waiting segment, recording the gap.
    fn skip_gap(&mut self, budget: &mut Budget, out: &mut impl FnMut(StreamEvent<'_>)) {
        let Some(&(first, _)) = self.waiting.front() else { return };
        if first > self.offset {
            let gap = first - self.offset;
            self.gaps += 1;
            self.gap_bytes += gap;
            out(StreamEvent::Gap(gap));
            self.advance(gap);
        }
        self.drain(budget, out);
    }

    /// Stores the parts of `[start, start + len)` that no waiting segment
    /// covers (first data wins).
    fn hold(&mut self, start: u64, payload: &[u8], others_buffered: usize, budget: &mut Budget) -> bool {
        let cfg = budget.cfg;
        let end = start + payload.len() as u64;
        let mut pos = self.waiting.partition_point(|(s, d)| s + d.len() as u64 <= start);
        let mut cursor = start;
        while cursor < end {
            let (next_start, next_end) = match self.waiting.get(pos) {
                Some((s, d)) => (*s, s + d.len() as u64),
                None => (u64::MAX, u64::MAX),
            };
            if cursor < next_start {
                let piece_end = end.min(next_start);
                let len = (piece_end - cursor) as usize;
                if self.waiting_bytes + others_buffered + len > cfg.max_buffered_per_flow
                    || budget.used + len > cfg.max_buffered_total
                {
                    return false;
                }
                let from = (cursor - start) as usize;
                self.waiting.insert(pos, (cursor, payload[from..from + len].to_vec()));
                self.waiting_bytes += len;
                budget.used += len;
                budget.peak = budget.peak.max(budget.used);
                pos += 1;
                cursor = piece_end;
            } else {
                let covered_end = end.min(next_end);
                self.duplicate_bytes += covered_end - cursor;
                cursor = covered_end;
                pos += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN};

    /// Collects a direction's stream, with gaps as `_` bytes.
    #[derive(Default)]
    struct Sink(Vec<u8>);

    fn feed(h: &mut HalfStream, b: &mut Budget, s: &mut Sink, seq: u32, flags: u8, data: &[u8]) -> bool {
        b.cfg = ReassemblyConfig { max_buffered_per_flow: 64, max_buffered_total: 1000, max_segments_waiting: 4 };
        h.segment(seq, flags, data, 0, b, &mut |e| match e {
            StreamEvent::Data(d) => s.0.extend_from_slice(d),
            StreamEvent::Gap(n) => s.0.extend(std::iter::repeat_n(b'_', n as usize)),
        })
    }

    fn flush(h: &mut HalfStream, b: &mut Budget, s: &mut Sink) {
        h.flush(b, &mut |e| match e {
            StreamEvent::Data(d) => s.0.extend_from_slice(d),
            StreamEvent::Gap(n) => s.0.extend(std::iter::repeat_n(b'_', n as usize)),
        });
    }

    #[test]
    fn in_order_out_of_order_and_retransmitted() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 100, SYN, b"");
        feed(&mut h, &mut b, &mut s, 101, ACK | PSH, b"hello ");
        feed(&mut h, &mut b, &mut s, 112, ACK, b"!!");
        feed(&mut h, &mut b, &mut s, 107, ACK, b"world");
        feed(&mut h, &mut b, &mut s, 101, ACK, b"HELLO WORLD"); // retransmission: first data wins
        assert_eq!(s.0, b"hello world!!");
        assert_eq!((h.delivered, h.duplicate_bytes, h.gaps, b.used), (13, 11, 0, 0));
    }

    #[test]
    fn overlapping_held_segments_keep_the_first_bytes() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        feed(&mut h, &mut b, &mut s, 5, ACK, b"fghij");
        feed(&mut h, &mut b, &mut s, 3, ACK, b"DEFGHIJKL"); // overlaps the held segment on both sides
        feed(&mut h, &mut b, &mut s, 1, ACK, b"abc");
        assert_eq!(s.0, b"abDEfghijKL");
        assert_eq!(h.duplicate_bytes, 6);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, u32::MAX - 3, SYN, b"");
        feed(&mut h, &mut b, &mut s, 1, ACK, b"efgh"); // after the wrap, ahead
        feed(&mut h, &mut b, &mut s, u32::MAX - 2, ACK, b"abc");
        feed(&mut h, &mut b, &mut s, 0, ACK, b"d");
        assert_eq!(s.0, b"abcdefgh");
    }

    #[test]
    fn gaps_are_skipped_on_ack_and_at_the_end() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        feed(&mut h, &mut b, &mut s, 1, ACK, b"ab");
        feed(&mut h, &mut b, &mut s, 6, ACK, b"fg"); // 3..6 never captured
        h.acked(4, &mut b, &mut |e| panic!("an ack inside the gap proves nothing, yet it delivered {e:?}"));
        let mut events = Vec::new();
        h.acked(9, &mut b, &mut |e| {
            events.push(match e {
                StreamEvent::Gap(n) => n,
                StreamEvent::Data(d) => d.len() as u64 + 100,
            })
        });
        assert_eq!(events, [3, 102]);
        feed(&mut h, &mut b, &mut s, 20, ACK, b"zz");
        flush(&mut h, &mut b, &mut s);
        assert_eq!((h.gaps, h.gap_bytes, h.delivered), (2, 15, 6));
    }

    #[test]
    fn midstream_pickup_fin_and_rst() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 5000, ACK, b"");
        feed(&mut h, &mut b, &mut s, 7000, ACK | PSH, b"mid");
        feed(&mut h, &mut b, &mut s, 7003, ACK | FIN, b"end");
        feed(&mut h, &mut b, &mut s, 7006, ACK, b"after fin");
        assert!(h.midstream);
        assert_eq!(s.0, b"midend");
        let (mut h, mut s) = (HalfStream::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        feed(&mut h, &mut b, &mut s, 5, ACK, b"held");
        feed(&mut h, &mut b, &mut s, 9, RST, b"");
        feed(&mut h, &mut b, &mut s, 1, ACK, b"abcd");
        assert_eq!((s.0.len(), h.buffered(), b.used), (0, 0, 0));
    }

    #[test]
    fn caps_abandon_and_too_many_waiting_segments_skip() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        assert!(feed(&mut h, &mut b, &mut s, 100, ACK, &[1; 60]));
        assert!(!feed(&mut h, &mut b, &mut s, 200, ACK, &[1; 10]), "64-byte cap per flow");
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        for i in 0..5u32 {
            feed(&mut h, &mut b, &mut s, 10 + i * 2, ACK, b"x");
        }
        // The fifth waiting segment is one too many: the gap before the first is skipped.
        assert_eq!((h.gaps, h.gap_bytes, h.delivered), (1, 9, 1));
        h.release(&mut b);
        assert_eq!(b.used, 0);
    }

    #[test]
    fn out_of_window_segments_are_counted() {
        let (mut h, mut b, mut s) = (HalfStream::default(), Budget::default(), Sink::default());
        feed(&mut h, &mut b, &mut s, 0, SYN, b"");
        feed(&mut h, &mut b, &mut s, 1 << 31, ACK, b"far");
        assert_eq!((h.out_of_window, s.0.len()), (1, 0));
    }
}
