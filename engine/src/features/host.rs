//! Host context: what the hosts of a flow have been doing lately.
//!
//! Per-flow statistics cannot tell one SYN of a flood from one SYN of a scan.
//! These decayed per-source, per-destination and per-pair counters (in the
//! spirit of Kitsune's damped windows) give the model that context, in
//! bounded memory: each table has a hard capacity; when full, stale entries
//! are swept and, if none is stale, new hosts go untracked (and counted).

use rustc_hash::FxHashMap;

use crate::source::Micros;

/// Time constant of the decayed counters.
const TAU_S: f64 = 10.0;
/// Length of each of the two windows of the distinct-value sketches.
const WINDOW_US: Micros = 10_000_000;
/// Entries idle for this long are dropped when a table needs room.
const STALE_US: Micros = 120_000_000;

/// Exponentially decayed event count; `rate()` is events per second.
#[derive(Clone, Copy, Debug, Default)]
struct Decayed {
    value: f64,
}

fn decay_factor(from: Micros, to: Micros) -> f64 {
    let dt = to.saturating_sub(from) as f64 / 1e6;
    (-dt / TAU_S).exp()
}

/// Distinct-count sketch over the last one to two windows: linear counting
/// on 128-bit bitmaps, accurate to a few percent up to ~100 values and
/// saturating near 600.
#[derive(Clone, Copy, Debug, Default)]
struct DistinctSketch {
    current: u128,
    previous: u128,
    window_start: Micros,
}

impl DistinctSketch {
    fn rotate(&mut self, now: Micros) {
        if now >= self.window_start.saturating_add(2 * WINDOW_US) {
            self.current = 0;
            self.previous = 0;
            self.window_start = now;
        } else if now >= self.window_start.saturating_add(WINDOW_US) {
            self.previous = self.current;
            self.current = 0;
            self.window_start = self.window_start.saturating_add(WINDOW_US);
        }
    }

    fn insert(&mut self, now: Micros, value: u64) {
        self.rotate(now);
        // Linear counting assumes uniformly random bits: mix fully (splitmix64).
        let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let bit = ((z ^ (z >> 31)) >> 57) as u32;
        self.current |= 1u128 << bit;
    }

    fn estimate(&self, now: Micros) -> f32 {
        let mut s = *self;
        s.rotate(now);
        let zeros = (s.current | s.previous).count_zeros();
        if zeros == 0 {
            return 128.0 * (128f32).ln();
        }
        -128.0 * (zeros as f32 / 128.0).ln()
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct SourceStats {
    last: Micros,
    new_flows: Decayed,
    ended: Decayed,
    failed: Decayed,
    dst_ports: DistinctSketch,
    dst_hosts: DistinctSketch,
}

impl SourceStats {
    fn decay_to(&mut self, now: Micros) {
        let f = decay_factor(self.last, now);
        self.new_flows.value *= f;
        self.ended.value *= f;
        self.failed.value *= f;
        self.last = self.last.max(now);
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct DestStats {
    last: Micros,
    in_flows: Decayed,
    src_hosts: DistinctSketch,
}

#[derive(Clone, Copy, Debug, Default)]
struct PairStats {
    last: Micros,
    new_flows: Decayed,
    dst_ports: DistinctSketch,
}

/// Sizes of the host-context tables.
#[derive(Clone, Copy, Debug)]
pub struct HostContextConfig {
    pub max_sources: usize,
    pub max_destinations: usize,
    pub max_pairs: usize,
}

impl Default for HostContextConfig {
    fn default() -> Self {
        Self { max_sources: 65_536, max_destinations: 65_536, max_pairs: 131_072 }
    }
}

/// The context values written into a feature row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostFeatures {
    pub src_new_flows_rate: f32,
    pub src_distinct_dst_ports: f32,
    pub src_distinct_dst_hosts: f32,
    pub src_failed_share: f32,
    pub pair_new_flows_rate: f32,
    pub pair_distinct_dst_ports: f32,
    pub dst_new_flows_rate: f32,
    pub dst_distinct_src_hosts: f32,
}

type Addr = [u8; 16];

/// Decayed per-host counters, bounded in memory.
pub struct HostContext {
    sources: Table<Addr, SourceStats>,
    destinations: Table<Addr, DestStats>,
    pairs: Table<(Addr, Addr), PairStats>,
    /// Updates skipped because a table was full of live entries.
    pub untracked: u64,
}

fn hash_addr(a: &Addr) -> u64 {
    let lo = u64::from_le_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    let hi = u64::from_le_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    lo ^ hi.rotate_left(29)
}

/// A bounded table of decayed counters.
struct Table<K, V> {
    map: FxHashMap<K, V>,
    cap: usize,
    /// A full table is swept at most once per second of packet time, so a
    /// flood of new hosts costs one sweep a second, not one per packet.
    next_sweep: Micros,
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> Table<K, V> {
    fn new(cap: usize) -> Self {
        Self { map: FxHashMap::default(), cap, next_sweep: 0 }
    }

    /// Gets or inserts an entry, making room by dropping stale entries when
    /// the table is full. `None` if the table is full of live entries.
    fn entry(&mut self, key: K, now: Micros, last: impl Fn(&V) -> Micros) -> Option<&mut V> {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            if now < self.next_sweep {
                return None;
            }
            self.next_sweep = now.saturating_add(1_000_000);
            self.map.retain(|_, v| now.saturating_sub(last(v)) < STALE_US);
            if self.map.len() >= self.cap {
                return None;
            }
        }
        Some(self.map.entry(key).or_default())
    }
}

impl HostContext {
    pub fn new(cfg: HostContextConfig) -> Self {
        Self {
            sources: Table::new(cfg.max_sources),
            destinations: Table::new(cfg.max_destinations),
            pairs: Table::new(cfg.max_pairs),
            untracked: 0,
        }
    }

    /// Records a new flow from `src` to `dst:dst_port`.
    pub fn on_flow_start(&mut self, now: Micros, src: &Addr, dst: &Addr, dst_port: u16) {
        match self.sources.entry(*src, now, |v| v.last) {
            Some(s) => {
                s.decay_to(now);
                s.new_flows.value += 1.0;
                s.dst_ports.insert(now, u64::from(dst_port));
                s.dst_hosts.insert(now, hash_addr(dst));
            }
            None => self.untracked += 1,
        }
        match self.destinations.entry(*dst, now, |v| v.last) {
            Some(d) => {
                d.in_flows.value = d.in_flows.value * decay_factor(d.last, now) + 1.0;
                d.last = d.last.max(now);
                d.src_hosts.insert(now, hash_addr(src));
            }
            None => self.untracked += 1,
        }
        match self.pairs.entry((*src, *dst), now, |v| v.last) {
            Some(p) => {
                p.new_flows.value = p.new_flows.value * decay_factor(p.last, now) + 1.0;
                p.last = p.last.max(now);
                p.dst_ports.insert(now, u64::from(dst_port));
            }
            None => self.untracked += 1,
        }
    }

    /// Records the end of a flow started by `src`; `failed` is a connection
    /// attempt that never completed (no handshake, or reset by the responder).
    pub fn on_flow_end(&mut self, now: Micros, src: &Addr, failed: bool) {
        if let Some(s) = self.sources.map.get_mut(src) {
            s.decay_to(now);
            s.ended.value += 1.0;
            if failed {
                s.failed.value += 1.0;
            }
        }
    }

    /// Context of a flow from `src` to `dst` at time `now`.
    pub fn features(&self, now: Micros, src: &Addr, dst: &Addr) -> HostFeatures {
        let mut out = HostFeatures::default();
        if let Some(s) = self.sources.map.get(src) {
            let f = decay_factor(s.last, now);
            out.src_new_flows_rate = (s.new_flows.value * f / TAU_S) as f32;
            out.src_distinct_dst_ports = s.dst_ports.estimate(now);
            out.src_distinct_dst_hosts = s.dst_hosts.estimate(now);
            let ended = s.ended.value * f;
            if ended > 0.05 {
                out.src_failed_share = (s.failed.value * f / ended).clamp(0.0, 1.0) as f32;
            }
        }
        if let Some(p) = self.pairs.map.get(&(*src, *dst)) {
            out.pair_new_flows_rate = (p.new_flows.value * decay_factor(p.last, now) / TAU_S) as f32;
            out.pair_distinct_dst_ports = p.dst_ports.estimate(now);
        }
        if let Some(d) = self.destinations.map.get(dst) {
            out.dst_new_flows_rate = (d.in_flows.value * decay_factor(d.last, now) / TAU_S) as f32;
            out.dst_distinct_src_hosts = d.src_hosts.estimate(now);
        }
        out
    }

    /// Entries held, for memory accounting.
    pub fn len(&self) -> usize {
        self.sources.map.len() + self.destinations.map.len() + self.pairs.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Addr {
        let mut a = [0u8; 16];
        a[15] = n;
        a
    }

    #[test]
    fn distinct_ports_estimate_is_close() {
        let mut s = DistinctSketch::default();
        for p in 0..50u64 {
            s.insert(1_000_000, p);
        }
        let e = s.estimate(1_000_000);
        assert!((40.0..=60.0).contains(&e), "estimate {e}");
        // Two windows later everything is forgotten.
        assert_eq!(s.estimate(1_000_000 + 2 * WINDOW_US + 1), 0.0);
    }

    #[test]
    fn scan_raises_failed_share_and_port_count() {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let (a, b) = (addr(1), addr(2));
        for i in 0..100u16 {
            let t = 1_000_000 + u64::from(i) * 1000;
            ctx.on_flow_start(t, &a, &b, 1000 + i);
            ctx.on_flow_end(t + 500, &a, true);
        }
        let f = ctx.features(1_100_000, &a, &b);
        assert!(f.src_failed_share > 0.99);
        assert!(f.pair_distinct_dst_ports > 60.0, "{f:?}");
        assert!(f.src_new_flows_rate > 9.0, "{f:?}");
        assert!(f.dst_distinct_src_hosts < 2.0, "{f:?}");
    }

    #[test]
    fn full_table_counts_untracked_then_reclaims_stale() {
        let cfg = HostContextConfig { max_sources: 2, max_destinations: 2, max_pairs: 2 };
        let mut ctx = HostContext::new(cfg);
        ctx.on_flow_start(0, &addr(1), &addr(9), 80);
        ctx.on_flow_start(0, &addr(2), &addr(9), 80);
        ctx.on_flow_start(1, &addr(3), &addr(9), 80);
        assert_eq!(ctx.untracked, 2); // source and pair tables full
        ctx.on_flow_start(STALE_US + 10, &addr(3), &addr(9), 80);
        assert_eq!(ctx.untracked, 2);
        assert!(ctx.features(STALE_US + 10, &addr(3), &addr(9)).src_new_flows_rate > 0.0);
    }
}
