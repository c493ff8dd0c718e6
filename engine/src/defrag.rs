//! Defrag: whole IPv4 and IPv6 datagrams from their fragments, in bounded
//! memory, before the flow stage sees them (fragments other than the first
//! carry no ports, so no flow could be found for them).
//!
//! Policy, in the manner of Linux and RFC 5722:
//! - an exact duplicate of a fragment already held is ignored (counted);
//! - any other overlap discards the whole datagram (counted): overlapping
//!   fragments are how evasion attacks make two readers see two payloads;
//! - a datagram still incomplete `timeout` after its first fragment is
//!   discarded (counted), as is every datagram still pending at end of input;
//! - at most `max_datagrams` datagrams and `max_bytes` of fragment data are
//!   held; a new datagram that would pass either cap evicts the oldest ones
//!   (counted), so a flood of never-completed datagrams costs bounded memory.
//!
//! etherparse's `IpDefragBuf` lets the last fragment win on overlap and does
//! not tell duplicates from overlaps, so the few lines here keep their own
//! list of fragment ranges.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::decode::Fragment;
use crate::source::Micros;

/// Largest datagram an IP length field allows.
const MAX_DATAGRAM: usize = 65_535;
/// Fragments one datagram may have before it is discarded as hostile.
const MAX_FRAGMENTS_PER_DATAGRAM: usize = 128;

/// Limits of the defragmenter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DefragConfig {
    /// Datagrams held at once.
    pub max_datagrams: usize,
    /// Fragment payload bytes held at once, over all datagrams.
    pub max_bytes: usize,
    /// Time from a datagram's first fragment to its discard if incomplete.
    pub timeout: Micros,
}

impl Default for DefragConfig {
    fn default() -> Self {
        // Linux: 30 s (ipfrag_time), 4 MiB (ipfrag_high_thresh); Suricata:
        // 60 s and 32 MiB. Between them, with room for a busy span port.
        Self { max_datagrams: 16_384, max_bytes: 32 << 20, timeout: 30_000_000 }
    }
}

/// What the defragmenter did, fragment by fragment and datagram by datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DefragStats {
    /// Fragments received.
    pub fragments: u64,
    /// Datagrams completed and handed on as packets.
    pub datagrams: u64,
    /// Fragments ignored as exact duplicates.
    pub duplicates: u64,
    /// Datagrams discarded for overlapping fragments.
    pub overlaps: u64,
    /// Datagrams discarded as malformed (longer than 64 KiB, conflicting
    /// ends, unaligned middle fragments, too many fragments).
    pub invalid: u64,
    /// Datagrams discarded incomplete after the timeout (or at end of input).
    pub timed_out: u64,
    /// Datagrams discarded to stay within the caps.
    pub evicted: u64,
    /// Datagrams held now.
    pub pending: u64,
    /// Peak of fragment bytes held.
    pub peak_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
    proto: u8,
    is_ipv6: bool,
}

struct Datagram {
    first_seen: Micros,
    /// Fragment ranges received, as they came.
    ranges: Vec<(u16, u16)>,
    /// Data by offset; grows to the highest end seen.
    data: Vec<u8>,
    /// Set by the last fragment (more-fragments clear).
    end: Option<u16>,
    /// Header of the first fragment, rebuilt into the datagram's header.
    header: Vec<u8>,
    wire_len: u32,
    tunnels: crate::decode::Tunnels,
}

/// Result of adding one fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum DefragOutcome {
    /// Held, waiting for more fragments (or ignored as a duplicate).
    Held,
    /// The datagram is whole: the output buffer holds it (IP header + payload).
    Complete {
        /// Frame bytes on the wire, summed over every fragment received (duplicates too).
        wire_len: u32,
        /// Layers the datagram's first-received fragment came through, outermost first.
        tunnels: crate::decode::Tunnels,
    },
    /// The fragment ended its datagram without completing it (see stats).
    Discarded,
}

/// Reassembles fragmented datagrams. Time comes only from the fragments'
/// timestamps and [`Defragmenter::expire`], never from a clock.
pub struct Defragmenter {
    cfg: DefragConfig,
    table: FxHashMap<Key, Datagram>,
    /// Datagrams in order of first fragment, for timeouts and eviction.
    order: VecDeque<(Micros, Key)>,
    bytes: usize,
    stats: DefragStats,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Self::new(DefragConfig::default())
    }
}

impl Defragmenter {
    /// An empty defragmenter with the given limits.
    pub fn new(cfg: DefragConfig) -> Self {
        Self { cfg, table: FxHashMap::default(), order: VecDeque::new(), bytes: 0, stats: DefragStats::default() }
    }

    /// A completed datagram did not decode (counted as invalid).
    pub fn count_undecodable(&mut self) {
        self.stats.invalid += 1;
    }

    /// Counters so far, with `pending` the datagrams held now.
    pub fn stats(&self) -> DefragStats {
        DefragStats { pending: self.table.len() as u64, ..self.stats }
    }

    fn remove(&mut self, key: &Key) -> Option<Datagram> {
        let d = self.table.remove(key)?;
        self.bytes = self.bytes.saturating_sub(d.data.len());
        Some(d)
    }

    /// Adds a fragment. On `Complete`, `out` holds the whole datagram
    /// (a rebuilt IP header, then the payload), ready for
    /// [`crate::decode::decode_ip`].
    pub fn push(&mut self, f: &Fragment<'_>, out: &mut Vec<u8>) -> DefragOutcome {
        self.stats.fragments += 1;
        self.expire(f.ts);
        let key = Key { src: f.src, dst: f.dst, id: f.id, proto: f.proto, is_ipv6: f.is_ipv6 };
        let start = usize::from(f.offset);
        let end = start + f.data.len();
        let malformed = end > MAX_DATAGRAM || (f.more && f.data.len() % 8 != 0) || (f.more && f.data.is_empty());
        if !self.table.contains_key(&key) {
            if malformed {
                self.stats.invalid += 1;
                return DefragOutcome::Discarded;
            }
            self.make_room_for_datagram();
            self.order.push_back((f.ts, key));
            let d = Datagram {
                first_seen: f.ts,
                ranges: Vec::new(),
                data: Vec::new(),
                end: None,
                header: Vec::new(),
                wire_len: 0,
                tunnels: f.tunnels,
            };
            self.table.insert(key, d);
        }
        let Some(d) = self.table.get_mut(&key) else { return DefragOutcome::Held };
        if d.ranges.contains(&(start as u16, end as u16)) {
            self.stats.duplicates += 1;
            d.wire_len = d.wire_len.saturating_add(f.wire_len);
            return DefragOutcome::Held;
        }
        let overlaps = d.ranges.iter().any(|&(s, e)| start < usize::from(e) && usize::from(s) < end);
        let end_conflict = match d.end {
            Some(e) => end > usize::from(e) || (!f.more && end != usize::from(e)),
            None => !f.more && d.ranges.iter().any(|&(_, e)| usize::from(e) > end),
        };
        if overlaps || malformed || end_conflict || d.ranges.len() >= MAX_FRAGMENTS_PER_DATAGRAM {
            if overlaps {
                self.stats.overlaps += 1;
            } else {
                self.stats.invalid += 1;
            }
            self.remove(&key);
            return DefragOutcome::Discarded;
        }
        let growth = end.saturating_sub(d.data.len());
        if growth > 0 && !self.reserve(&key, growth) {
            // This datagram alone would pass the byte cap.
            self.remove(&key);
            self.stats.evicted += 1;
            return DefragOutcome::Discarded;
        }
        let Some(d) = self.table.get_mut(&key) else { return DefragOutcome::Held };
        if d.data.len() < end {
            self.bytes += end - d.data.len();
            d.data.resize(end, 0);
        }
        d.data[start..end].copy_from_slice(f.data);
        d.ranges.push((start as u16, end as u16));
        d.wire_len = d.wire_len.saturating_add(f.wire_len);
        if start == 0 {
            d.header.clear();
            d.header.extend_from_slice(f.header);
        }
        if !f.more {
            d.end = Some(end as u16);
        }
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes as u64);
        let Some(total) = d.end else { return DefragOutcome::Held };
        let covered: usize = d.ranges.iter().map(|&(s, e)| usize::from(e - s)).sum();
        if covered != usize::from(total) || d.header.is_empty() {
            return DefragOutcome::Held;
        }
        let Some(d) = self.remove(&key) else { return DefragOutcome::Held };
        if !rebuild(&d, f.proto, out) {
            self.stats.invalid += 1;
            return DefragOutcome::Discarded;
        }
        self.stats.datagrams += 1;
        DefragOutcome::Complete { wire_len: d.wire_len, tunnels: d.tunnels }
    }

    /// Is this entry of `order` the live datagram it names?
    fn live(&self, first: Micros, key: &Key) -> bool {
        self.table.get(key).is_some_and(|d| d.first_seen == first)
    }

    /// Evicts the oldest datagrams until one more fits under `max_datagrams`.
    fn make_room_for_datagram(&mut self) {
        while self.table.len() >= self.cfg.max_datagrams {
            let Some((first, key)) = self.order.pop_front() else { break };
            if self.live(first, &key) && self.remove(&key).is_some() {
                self.stats.evicted += 1;
            }
        }
    }

    /// Makes room for `growth` more bytes of datagram `keep` by evicting the
    /// oldest other datagrams; `false` if even that is not enough.
    fn reserve(&mut self, keep: &Key, growth: usize) -> bool {
        if growth > self.cfg.max_bytes {
            return false;
        }
        while self.bytes + growth > self.cfg.max_bytes {
            // Entries of completed or replaced datagrams are skipped for good.
            while let Some((first, key)) = self.order.front().copied() {
                if self.live(first, &key) {
                    break;
                }
                self.order.pop_front();
            }
            let Some(pos) = self.order.iter().position(|(first, key)| key != keep && self.live(*first, key)) else {
                return false;
            };
            let Some((_, key)) = self.order.remove(pos) else { return false };
            if self.remove(&key).is_some() {
                self.stats.evicted += 1;
            }
        }
        true
    }

    /// Discards datagrams whose first fragment is older than the timeout.
    pub fn expire(&mut self, now: Micros) {
        while let Some(&(first, key)) = self.order.front() {
            if now.saturating_sub(first) < self.cfg.timeout {
                break;
            }
            self.order.pop_front();
            // The key may have completed (or been replaced by a newer
            // datagram with the same id); only its own entry times out.
            if self.table.get(&key).is_some_and(|d| d.first_seen == first) && self.remove(&key).is_some() {
                self.stats.timed_out += 1;
            }
        }
    }

    /// End of input: every pending datagram is discarded as timed out.
    pub fn drain(&mut self) {
        self.stats.timed_out += self.table.len() as u64;
        self.table.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

/// Writes the datagram's IP header (from the first fragment, with the
/// length fixed and fragmentation cleared) and payload into `out`.
fn rebuild(d: &Datagram, proto: u8, out: &mut Vec<u8>) -> bool {
    out.clear();
    let payload_len = d.data.len();
    if d.header.first().map(|b| b >> 4) == Some(6) {
        if d.header.len() < 40 || payload_len > usize::from(u16::MAX) {
            return false;
        }
        out.extend_from_slice(&d.header[..40]);
        out[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
        out[6] = proto;
    } else {
        let total = d.header.len() + payload_len;
        if d.header.len() < 20 || total > usize::from(u16::MAX) {
            return false;
        }
        out.extend_from_slice(&d.header);
        out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        out[6] = 0;
        out[7] = 0;
        out[10] = 0;
        out[11] = 0;
    }
    out.extend_from_slice(&d.data);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_ip, Decoded, Tunnels};

    fn frag(ts: Micros, id: u32, offset: u16, more: bool, data: &[u8]) -> Fragment<'_> {
        const HEADER: [u8; 20] = [0x45, 0, 0, 0, 0, 1, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        Fragment {
            ts,
            wire_len: 34 + data.len() as u32,
            src: [1; 16],
            dst: [2; 16],
            is_ipv6: false,
            id,
            proto: 17,
            offset,
            more,
            header: &HEADER,
            data,
            tunnels: Tunnels::default(),
        }
    }

    /// A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:53 with `n` payload bytes.
    fn udp(n: usize) -> Vec<u8> {
        let mut v = vec![0x03, 0xe8, 0x00, 0x35];
        v.extend_from_slice(&((8 + n) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend((0..n).map(|i| i as u8));
        v
    }

    #[test]
    fn out_of_order_fragments_make_the_datagram() {
        let mut d = Defragmenter::new(DefragConfig::default());
        let dg = udp(40); // 48 bytes: 3 fragments of 16
        let mut out = Vec::new();
        assert_eq!(d.push(&frag(1, 7, 32, false, &dg[32..]), &mut out), DefragOutcome::Held);
        assert_eq!(d.push(&frag(2, 7, 0, true, &dg[..16]), &mut out), DefragOutcome::Held);
        assert_eq!(d.push(&frag(3, 7, 0, true, &dg[..16]), &mut out), DefragOutcome::Held);
        let done = d.push(&frag(4, 7, 16, true, &dg[16..32]), &mut out);
        assert!(matches!(done, DefragOutcome::Complete { .. }), "{done:?}");
        assert_eq!(&out[20..], &dg[..]);
        let Ok(Decoded::Packet(p)) = decode_ip(&out, 0, 4, 100, 0, Tunnels::default()) else {
            panic!("the rebuilt datagram does not decode")
        };
        assert_eq!((p.src_port, p.dst_port, p.payload_len), (1000, 53, 40));
        assert_eq!(p.payload_in_frame(&out), &dg[8..]);
        let s = d.stats();
        assert_eq!((s.fragments, s.datagrams, s.duplicates, s.pending), (4, 1, 1, 0));
    }

    #[test]
    fn overlap_discards_the_datagram() {
        let mut d = Defragmenter::new(DefragConfig::default());
        let dg = udp(40);
        let mut out = Vec::new();
        d.push(&frag(1, 9, 0, true, &dg[..24]), &mut out);
        assert_eq!(d.push(&frag(2, 9, 16, false, &dg[16..]), &mut out), DefragOutcome::Discarded);
        assert_eq!((d.stats().overlaps, d.stats().pending), (1, 0));
    }

    #[test]
    fn malformed_fragments_are_counted() {
        let mut d = Defragmenter::new(DefragConfig::default());
        let mut out = Vec::new();
        // Unaligned middle fragment, and one reaching past 64 KiB.
        assert_eq!(d.push(&frag(1, 1, 0, true, &[0; 5]), &mut out), DefragOutcome::Discarded);
        assert_eq!(d.push(&frag(1, 2, 65_528, false, &[0; 16]), &mut out), DefragOutcome::Discarded);
        // A last fragment that ends before data already held.
        d.push(&frag(1, 3, 64, true, &[0; 16]), &mut out);
        assert_eq!(d.push(&frag(1, 3, 0, false, &[0; 8]), &mut out), DefragOutcome::Discarded);
        assert_eq!(d.stats().invalid, 3);
    }

    #[test]
    fn caps_and_timeouts_bound_what_is_held() {
        let cfg = DefragConfig { max_datagrams: 4, max_bytes: 1 << 20, timeout: 1_000 };
        let mut d = Defragmenter::new(cfg);
        let mut out = Vec::new();
        for id in 0..10 {
            d.push(&frag(id.into(), id, 0, true, &[0; 16]), &mut out);
        }
        assert_eq!((d.stats().pending, d.stats().evicted), (4, 6));
        d.expire(5_000);
        assert_eq!((d.stats().pending, d.stats().timed_out), (0, 4));
        let cfg = DefragConfig { max_datagrams: 100, max_bytes: 64, timeout: 1_000 };
        let mut d = Defragmenter::new(cfg);
        for id in 0..10 {
            d.push(&frag(1, id, 0, true, &[0; 32]), &mut out);
        }
        assert_eq!((d.stats().pending, d.stats().evicted), (2, 8));
        assert!(d.stats().peak_bytes <= 64);
        d.drain();
        assert_eq!((d.stats().pending, d.stats().timed_out), (0, 2));
    }
}
