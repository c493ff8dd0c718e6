//! Host context: what the hosts of a flow have been doing lately.
//!
//! Per-flow statistics cannot tell one SYN of a flood from one SYN of a scan.
//! These decayed per-source, per-destination and per-pair counters (in the
//! spirit of Kitsune's damped windows) give the model that context, in
//! bounded memory: each table has a hard capacity; when full, stale entries
//! are swept and, if none is stale, new hosts go untracked (and counted).
//!
//! Beacons show across flows, not in one: a per-pair `Rhythm` keeps the
//! last starts and sizes of the pair's flows and scores how regular they are,
//! as RITA scores beacons (median absolute deviation over the median). Only
//! regularity is a feature, never the interval itself, so a model cannot
//! learn one generator's timings.

use rustc_hash::FxHashMap;

use crate::source::Micros;

/// Time constant of the decayed counters.
const TAU_S: f64 = 10.0;
/// Length of each of the two windows of the distinct-value sketches.
const WINDOW_US: Micros = 10_000_000;
/// Entries idle for this long are dropped when a table needs room.
const STALE_US: Micros = 120_000_000;
/// Bounds past which a host is *hot*: the first packet of each of its new
/// flows may be classified at once (at most once a second per host), instead
/// of waiting for K packets or the flow's end. Scans and floods are made of
/// one-packet flows; they show here within a second. The bounds only decide
/// when to ask the model, never what it answers.
const HOT_SRC_FLOWS_PER_S: f32 = 2.0;
const HOT_SRC_DISTINCT: f32 = 10.0;
/// A pair's bound sits above everyday loops: a poller or a `curl`/`dig` loop
/// at one request a second is not hot (at 1.0 it was, and its first-packet
/// rows were all that the everyday lab capture alarmed on).
const HOT_PAIR_FLOWS_PER_S: f32 = 3.0;
const HOT_DST_FLOWS_PER_S: f32 = 1.5;
const HOT_DST_DISTINCT_SRC: f32 = 10.0;
/// A hot host's flows are classified at most this often...
const HOT_EVERY_US: Micros = 1_000_000;
/// ...unless its new-flow rate has doubled since it was last asked about,
/// then again after this long: a flood's target is first asked about at
/// its 15th flow or so, when its rate says little, and waiting a whole
/// second for the next question put floods' detection just past 1 s.
const HOT_RECHECK_US: Micros = 100_000;
/// Flow starts and sizes a pair's rhythm keeps.
const RHYTHM_LEN: usize = 16;
/// A start this close to the pair's previous one is the same beat (a page
/// load's parallel connections), not a new one.
const BURST_US: Micros = 1_000_000;
/// A rhythm outlives the slowest beacon that must register (10 min).
const RHYTHM_STALE_US: Micros = 3_600_000_000;
/// A flow whose packets all came within this span of its first is judged
/// at its end with the context of its first packet (see
/// [`HostContext::end_features`]).
const YOUNG_SPAN_US: Micros = 1_000_000;

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
    /// When this host, hot, may next have a flow classified at its first packet.
    next_hot: Micros,
    /// Its new-flow rate when it was last asked about.
    asked_rate: f32,
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
    next_hot: Micros,
    asked_rate: f32,
    in_flows: Decayed,
    src_hosts: DistinctSketch,
}

/// The last flow starts (one per beat) and ended-flow sizes of a pair.
#[derive(Clone, Copy, Debug, Default)]
struct Rhythm {
    last: Micros,
    starts: [Micros; RHYTHM_LEN],
    /// Beats recorded so far (the ring holds the last `RHYTHM_LEN`).
    beats: u32,
    sizes: [u32; RHYTHM_LEN],
    ended: u32,
}

impl Rhythm {
    fn on_start(&mut self, now: Micros) {
        let prev = self.beats.checked_sub(1).map(|i| self.starts[i as usize % RHYTHM_LEN]);
        if prev.is_none_or(|p| now >= p.saturating_add(BURST_US)) {
            self.starts[self.beats as usize % RHYTHM_LEN] = now;
            self.beats = self.beats.saturating_add(1);
        }
        self.last = self.last.max(now);
    }

    fn on_end(&mut self, now: Micros, bytes: u64) {
        self.sizes[self.ended as usize % RHYTHM_LEN] = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.ended = self.ended.saturating_add(1);
        self.last = self.last.max(now);
    }

    /// Regularity of the intervals between beats: 1 − MAD/median (clamped
    /// to 0..1), 0 below three intervals.
    fn interval_regularity(&self) -> f32 {
        let n = (self.beats as usize).min(RHYTHM_LEN);
        if n < 4 {
            return 0.0;
        }
        let mut starts = [0u64; RHYTHM_LEN];
        for (i, s) in starts.iter_mut().take(n).enumerate() {
            // Oldest first: the ring's next slot holds the oldest kept beat.
            *s = self.starts[(self.beats as usize + RHYTHM_LEN - n + i) % RHYTHM_LEN];
        }
        let mut gaps = [0f64; RHYTHM_LEN];
        for i in 1..n {
            gaps[i - 1] = starts[i].saturating_sub(starts[i - 1]) as f64;
        }
        regularity(&mut gaps[..n - 1])
    }

    /// Regularity of the ended flows' sizes; 0 below three flows.
    fn size_regularity(&self) -> f32 {
        let n = (self.ended as usize).min(RHYTHM_LEN);
        if n < 3 {
            return 0.0;
        }
        let mut sizes = [0f64; RHYTHM_LEN];
        for (o, s) in sizes.iter_mut().zip(self.sizes.iter()).take(n) {
            *o = f64::from(*s);
        }
        regularity(&mut sizes[..n])
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 1 − MAD/median, clamped to 0..1: 1 for identical values, near 0 for
/// values as spread as a Poisson process's intervals.
fn regularity(v: &mut [f64]) -> f32 {
    let m = median(v);
    if m <= 0.0 {
        return 0.0;
    }
    for x in v.iter_mut() {
        *x = (*x - m).abs();
    }
    let mad = median(v);
    (1.0 - mad / m).clamp(0.0, 1.0) as f32
}

#[derive(Clone, Copy, Debug, Default)]
struct PairStats {
    last: Micros,
    new_flows: Decayed,
    dst_ports: DistinctSketch,
}

/// Sizes of the host-context tables.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct HostContextConfig {
    /// Initiator addresses tracked at once.
    pub max_sources: usize,
    /// Responder addresses tracked at once.
    pub max_destinations: usize,
    /// Initiator-responder address pairs tracked at once.
    pub max_pairs: usize,
    /// Pairs whose flow rhythm is kept (about 200 bytes each).
    pub max_rhythms: usize,
    /// Flows whose first packet's context is kept for their end row until
    /// they reach K packets or end (57 bytes each).
    pub max_young_flows: usize,
}

impl Default for HostContextConfig {
    fn default() -> Self {
        Self {
            max_sources: 65_536,
            max_destinations: 65_536,
            max_pairs: 131_072,
            max_rhythms: 65_536,
            max_young_flows: 262_144,
        }
    }
}

/// The context values written into a feature row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostFeatures {
    /// Flows started by the initiator's address, decayed (τ = 10 s), per second.
    pub src_new_flows_rate: f32,
    /// Distinct responder ports the initiator contacted in the last 10–20 s.
    pub src_distinct_dst_ports: f32,
    /// Distinct responder addresses the initiator contacted in the last 10–20 s.
    pub src_distinct_dst_hosts: f32,
    /// Decayed share of the initiator's ended flows that were failed TCP attempts, 0..1.
    pub src_failed_share: f32,
    /// Flows from this initiator to this responder, decayed, per second.
    pub pair_new_flows_rate: f32,
    /// Distinct responder ports of this initiator → responder pair, last 10–20 s.
    pub pair_distinct_dst_ports: f32,
    /// Flows arriving at the responder's address, decayed, per second.
    pub dst_new_flows_rate: f32,
    /// Distinct initiator addresses that contacted the responder, last 10–20 s.
    pub dst_distinct_src_hosts: f32,
    /// Beats (flow starts at least a second apart) of this pair kept, up to 16.
    pub pair_flows: f32,
    /// 1 − MAD/median of the intervals between the pair's beats, 0..1 (0 below three).
    pub pair_interval_regularity: f32,
    /// 1 − MAD/median of the byte counts of the pair's ended flows, 0..1 (0 below three).
    pub pair_size_regularity: f32,
}

type Addr = [u8; 16];

/// Decayed per-host counters, bounded in memory.
pub struct HostContext {
    sources: Table<Addr, SourceStats>,
    destinations: Table<Addr, DestStats>,
    pairs: Table<(Addr, Addr), PairStats>,
    rhythms: Table<(Addr, Addr), Rhythm>,
    /// The context at the first packet of each flow that has not yet
    /// reached K packets nor ended, by flow id. A lone SYN or datagram ends
    /// by timeout long after its burst, when the counters have decayed or
    /// moved on; its end row is judged with this context instead.
    young: FxHashMap<u64, HostFeatures>,
    max_young: usize,
    /// Updates skipped because a table was full of live entries (a young
    /// flow not kept counts here too).
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
    /// Entries idle this long are dropped when the table needs room.
    stale: Micros,
}

impl<K: std::hash::Hash + Eq + Copy, V: Default> Table<K, V> {
    fn new(cap: usize, stale: Micros) -> Self {
        Self { map: FxHashMap::default(), cap, next_sweep: 0, stale }
    }

    /// Gets or inserts an entry, making room by dropping stale entries when
    /// the table is full. `None` if the table is full of live entries.
    fn entry(&mut self, key: K, now: Micros, last: impl Fn(&V) -> Micros) -> Option<&mut V> {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            if now < self.next_sweep {
                return None;
            }
            self.next_sweep = now.saturating_add(1_000_000);
            let stale = self.stale;
            self.map.retain(|_, v| now.saturating_sub(last(v)) < stale);
            if self.map.len() >= self.cap {
                return None;
            }
        }
        Some(self.map.entry(key).or_default())
    }
}

impl HostContext {
    /// Empty tables, sized by `cfg`.
    pub fn new(cfg: HostContextConfig) -> Self {
        Self {
            sources: Table::new(cfg.max_sources, STALE_US),
            destinations: Table::new(cfg.max_destinations, STALE_US),
            pairs: Table::new(cfg.max_pairs, STALE_US),
            rhythms: Table::new(cfg.max_rhythms, RHYTHM_STALE_US),
            young: FxHashMap::default(),
            max_young: cfg.max_young_flows,
            untracked: 0,
        }
    }

    /// Keeps `context`, the context at flow `flow_id`'s first packet, for
    /// its end row (dropped, and counted in `untracked`, when
    /// `max_young_flows` are kept already).
    pub fn keep_first_packet(&mut self, flow_id: u64, context: HostFeatures) {
        if self.young.len() < self.max_young || self.young.contains_key(&flow_id) {
            self.young.insert(flow_id, context);
        } else {
            self.untracked += 1;
        }
    }

    /// Forgets flow `flow_id`'s first-packet context: it reached K packets,
    /// so its end row is judged by the context of its own time.
    pub fn forget_first_packet(&mut self, flow_id: u64) {
        self.young.remove(&flow_id);
    }

    /// The context of an ended flow's end row: as of its last packet. For a
    /// flow whose packets all came within a second of its first (a lone SYN,
    /// a probe, a flood packet, a query), that is the context kept at its
    /// first packet; the counters read now have decayed, or been decayed by
    /// the end of the rest of its burst, by the time its timeout fires.
    /// Otherwise the counters as they are now (read no later than
    /// `last_packet`).
    pub fn end_features(
        &mut self,
        flow_id: u64,
        now: Micros,
        (first_packet, last_packet): (Micros, Micros),
        src: &Addr,
        dst: &Addr,
    ) -> HostFeatures {
        let kept = self.young.remove(&flow_id);
        match kept {
            Some(context) if last_packet.saturating_sub(first_packet) <= YOUNG_SPAN_US => context,
            _ => self.features(now.min(last_packet), src, dst),
        }
    }

    /// Young flows whose first-packet context is kept.
    pub fn young_flows(&self) -> usize {
        self.young.len()
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
        match self.rhythms.entry((*src, *dst), now, |v| v.last) {
            Some(r) => r.on_start(now),
            None => self.untracked += 1,
        }
    }

    /// Records the end of a flow from `src` to `dst` of `bytes` (both
    /// directions); `failed` is a connection attempt that never completed
    /// (no handshake, or reset by the responder).
    pub fn on_flow_end(&mut self, now: Micros, src: &Addr, dst: &Addr, bytes: u64, failed: bool) {
        if let Some(r) = self.rhythms.map.get_mut(&(*src, *dst)) {
            r.on_end(now, bytes);
        }
        if let Some(s) = self.sources.map.get_mut(src) {
            s.decay_to(now);
            s.ended.value += 1.0;
            if failed {
                s.failed.value += 1.0;
            }
        }
    }

    /// Whether a new flow from `src` to `dst` should be classified now, at its
    /// first packet: its source or destination is past a hot bound and was
    /// not asked about in the last second.
    pub fn hot(&mut self, now: Micros, src: &Addr, dst: &Addr) -> bool {
        let f = self.features(now, src, dst);
        self.hot_given(now, src, dst, &f)
    }

    /// [`Self::hot`] with the context `f` of `src` → `dst` at `now` already read.
    pub fn hot_given(&mut self, now: Micros, src: &Addr, dst: &Addr, f: &HostFeatures) -> bool {
        let src_hot = f.src_new_flows_rate >= HOT_SRC_FLOWS_PER_S
            || f.src_distinct_dst_ports >= HOT_SRC_DISTINCT
            || f.src_distinct_dst_hosts >= HOT_SRC_DISTINCT
            || f.pair_new_flows_rate >= HOT_PAIR_FLOWS_PER_S;
        let dst_hot = f.dst_new_flows_rate >= HOT_DST_FLOWS_PER_S || f.dst_distinct_src_hosts >= HOT_DST_DISTINCT_SRC;
        // Due a second after the last question, or sooner once the rate doubled.
        let due = |next_hot: Micros, asked: f32, rate: f32| {
            now >= next_hot || (rate >= 2.0 * asked && now >= next_hot.saturating_sub(HOT_EVERY_US - HOT_RECHECK_US))
        };
        let src_due =
            src_hot && self.sources.map.get(src).is_some_and(|s| due(s.next_hot, s.asked_rate, f.src_new_flows_rate));
        let dst_due = dst_hot
            && self.destinations.map.get(dst).is_some_and(|d| due(d.next_hot, d.asked_rate, f.dst_new_flows_rate));
        if !(src_due || dst_due) {
            return false;
        }
        // One question covers both hosts: a scan of one target is hot at
        // both ends, and is asked about once a second, not twice.
        let next = now.saturating_add(HOT_EVERY_US);
        if let Some(s) = self.sources.map.get_mut(src).filter(|_| src_hot) {
            s.next_hot = next;
            s.asked_rate = f.src_new_flows_rate;
        }
        if let Some(d) = self.destinations.map.get_mut(dst).filter(|_| dst_hot) {
            d.next_hot = next;
            d.asked_rate = f.dst_new_flows_rate;
        }
        true
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
        if let Some(r) = self.rhythms.map.get(&(*src, *dst)) {
            out.pair_flows = (r.beats as usize).min(RHYTHM_LEN) as f32;
            out.pair_interval_regularity = r.interval_regularity();
            out.pair_size_regularity = r.size_regularity();
        }
        out
    }

    /// Entries held, for memory accounting.
    pub fn len(&self) -> usize {
        self.sources.map.len()
            + self.destinations.map.len()
            + self.pairs.map.len()
            + self.rhythms.map.len()
            + self.young.len()
    }

    /// Whether no entry is held.
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
            ctx.on_flow_end(t + 500, &a, &b, 60, true);
        }
        let f = ctx.features(1_100_000, &a, &b);
        assert!(f.src_failed_share > 0.99);
        assert!(f.pair_distinct_dst_ports > 60.0, "{f:?}");
        assert!(f.src_new_flows_rate > 9.0, "{f:?}");
        assert!(f.dst_distinct_src_hosts < 2.0, "{f:?}");
    }

    #[test]
    fn full_table_counts_untracked_then_reclaims_stale() {
        let cfg =
            HostContextConfig { max_sources: 2, max_destinations: 2, max_pairs: 2, max_rhythms: 2, max_young_flows: 2 };
        let mut ctx = HostContext::new(cfg);
        ctx.on_flow_start(0, &addr(1), &addr(9), 80);
        ctx.on_flow_start(0, &addr(2), &addr(9), 80);
        ctx.on_flow_start(1, &addr(3), &addr(9), 80);
        assert_eq!(ctx.untracked, 3); // source, pair and rhythm tables full
        ctx.on_flow_start(STALE_US + 10, &addr(3), &addr(9), 80);
        // The rhythm table keeps its entries for an hour: still full.
        assert_eq!(ctx.untracked, 4);
        assert!(ctx.features(STALE_US + 10, &addr(3), &addr(9)).src_new_flows_rate > 0.0);
    }

    /// A burst of lone SYNs, each ending by timeout a minute later.
    fn lone_syn_burst(ctx: &mut HostContext, probes: u16) -> Vec<HostFeatures> {
        let (a, b) = (addr(1), addr(2));
        for i in 0..probes {
            let t = 1_000_000 + u64::from(i) * 5_000;
            ctx.on_flow_start(t, &a, &b, 1000 + i);
            let context = ctx.features(t, &a, &b);
            ctx.keep_first_packet(u64::from(i), context);
        }
        (0..probes)
            .map(|i| {
                let first = 1_000_000 + u64::from(i) * 5_000;
                let fired = first + 60_000_000;
                ctx.on_flow_end(fired, &a, &b, 60, true);
                ctx.end_features(u64::from(i), fired, (first, first), &a, &b)
            })
            .collect()
    }

    #[test]
    fn a_lone_packet_ending_by_timeout_is_judged_with_its_bursts_context() {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let rows = lone_syn_burst(&mut ctx, 200);
        // The last probes saw the whole burst: ~200 flows in a second.
        let last = rows[199];
        assert!(last.src_new_flows_rate > 15.0, "{last:?}");
        assert!(last.src_distinct_dst_ports > 150.0, "{last:?}");
        // Read now, a minute later, the burst has decayed away.
        let now = ctx.features(62_000_000, &addr(1), &addr(2));
        assert!(now.src_new_flows_rate < 0.1 && now.src_distinct_dst_ports == 0.0, "{now:?}");
        assert_eq!(ctx.young_flows(), 0, "every ended flow's context is released");
    }

    #[test]
    fn a_flow_that_lasted_is_judged_by_the_context_of_its_last_packet() {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let (a, b) = (addr(1), addr(2));
        ctx.on_flow_start(0, &a, &b, 80);
        ctx.keep_first_packet(7, ctx.features(0, &a, &b));
        // Five seconds of packets, then a minute of silence: not young.
        let f = ctx.end_features(7, 65_000_000, (0, 5_000_000), &a, &b);
        assert_eq!(f, ctx.features(5_000_000, &a, &b));
        // A flow that reached K packets has its kept context forgotten.
        ctx.keep_first_packet(8, ctx.features(0, &a, &b));
        ctx.forget_first_packet(8);
        assert_eq!(ctx.young_flows(), 0);
    }

    #[test]
    fn young_flows_past_the_cap_are_counted_not_kept() {
        let cfg = HostContextConfig { max_young_flows: 10, ..HostContextConfig::default() };
        let mut ctx = HostContext::new(cfg);
        for id in 0..15 {
            ctx.keep_first_packet(id, HostFeatures::default());
        }
        assert_eq!((ctx.young_flows(), ctx.untracked), (10, 5));
        // A flow not kept falls back to the counters of its last packet.
        let f = ctx.end_features(14, 60_000_000, (0, 0), &addr(1), &addr(2));
        assert_eq!(f, HostFeatures::default());
    }

    #[test]
    fn a_scan_is_hot_within_a_dozen_probes_and_asked_as_its_rate_doubles_then_once_a_second() {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let (a, b) = (addr(1), addr(2));
        let mut hot_at = Vec::new();
        // 3000 probes in 3 s, one port each.
        for i in 0..3000u64 {
            let t = 1_000_000 + i * 1000;
            ctx.on_flow_start(t, &a, &b, (i % 1000) as u16 + 1);
            if ctx.hot(t, &a, &b) {
                hot_at.push(i);
            }
        }
        // Hot as a source at the 11th probe (10 distinct ports), hot as a
        // destination too at the 16th (1.5 flows/s); then whenever the rate
        // has doubled (at least 100 ms apart), and once it levels off, once
        // a second.
        assert_eq!(hot_at, vec![10, 15, 115, 233, 473, 971, 1971, 2971], "{hot_at:?}");
        // A quiet client (a flow every 5 s to one server) never is.
        let (c, d) = (addr(3), addr(4));
        assert!((0..100u64).all(|i| {
            let t = 10_000_000 + i * 5_000_000;
            ctx.on_flow_start(t, &c, &d, 443);
            !ctx.hot(t, &c, &d)
        }));
    }

    /// A deterministic generator (xorshift) for jittered beacons.
    fn jitter(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Beacons every `period` seconds with up to `jit` relative jitter.
    fn beacon_regularity(period: f64, jit: f64, beats: usize, seed: u64) -> HostFeatures {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let (a, b) = (addr(1), addr(2));
        let mut t = 1_000_000.0;
        let mut rng = seed;
        for _ in 0..beats {
            let at = t as Micros;
            ctx.on_flow_start(at, &a, &b, 443);
            // A small check-in, its size varying a little.
            ctx.on_flow_end(at + 300_000, &a, &b, 900 + (jitter(&mut rng) * 60.0) as u64, false);
            t += period * 1e6 * (1.0 + jit * (2.0 * jitter(&mut rng) - 1.0));
        }
        ctx.features(t as Micros, &a, &b)
    }

    #[test]
    fn jittered_beacons_from_5_s_to_10_min_register_by_the_5th() {
        for period in [5.0, 30.0, 120.0, 600.0] {
            for seed in 1..=20u64 {
                let f = beacon_regularity(period, 0.5, 5, seed * 7919);
                assert_eq!(f.pair_flows, 5.0);
                // Uniform ±50 % jitter: MAD/median near 0.25 over many beats; a
                // Poisson process's intervals give about 0.7 (see below).
                assert!(f.pair_interval_regularity >= 0.4, "period {period} seed {seed}: {f:?}");
                assert!(f.pair_size_regularity > 0.9, "{f:?}");
            }
            let f = beacon_regularity(period, 0.0, 16, 1);
            assert_eq!((f.pair_flows, f.pair_interval_regularity), (16.0, 1.0));
        }
    }

    #[test]
    fn poisson_starts_and_bursts_are_not_regular() {
        let mut ctx = HostContext::new(HostContextConfig::default());
        let (a, b) = (addr(1), addr(2));
        let mut rng = 99u64;
        let mut t = 1_000_000u64;
        let mut sum = 0.0;
        for i in 0..16 {
            // A page load: six parallel connections are one beat.
            for k in 0..6 {
                ctx.on_flow_start(t + k * 20_000, &a, &b, 443);
            }
            // Exponential gaps with a 20 s mean.
            t += (-(1.0 - jitter(&mut rng)).ln() * 20e6) as u64 + 1_000_000;
            if i >= 4 {
                sum += f64::from(ctx.features(t, &a, &b).pair_interval_regularity);
            }
        }
        let f = ctx.features(t, &a, &b);
        assert_eq!(f.pair_flows, 16.0);
        assert!(sum / 12.0 < 0.45, "mean regularity {}", sum / 12.0);
    }
}
