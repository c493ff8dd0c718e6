//! Counters: `Stats` (one run, with its JSON layout), the live
//! `EngineCounters` other threads read while the engine runs (the same
//! `Stats`, published part by part), and the per-thread CPU time the OS
//! reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::shard::ShardStats;

use crate::decode::DropReason;
use crate::defrag::DefragStats;
use crate::flow::EndReason;
use crate::incident::IncidentStats;
use crate::policy::SuppressedStats;
use crate::source::{Micros, PartialRead};

/// Counters of one run, or of a run so far ([`EngineCounters::snapshot`]).
/// Each counter is defined here once. `packets == decoded + fragments +
/// sum(drops)` always; what became of the fragments is in `defrag`.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Packets read from the source.
    pub packets: u64,
    /// Their bytes on the wire (`wire_len`, not only the captured part).
    pub bytes: u64,
    /// Packets decoded to a flow's packet, fragments aside (the datagrams
    /// reassembled from fragments are in `defrag` and in the `capture` stage).
    pub decoded: u64,
    /// Packets not decoded, by reason (indexed as `DropReason::ALL`).
    pub drops: [u64; DropReason::ALL.len()],
    /// IP fragments handed to the defragmenter.
    pub fragments: u64,
    /// What the defragmenter did with the fragments.
    pub defrag: DefragStats,
    /// What TCP reassembly delivered, skipped and gave up.
    pub reassembly: ReassemblyStats,
    /// Flows whose application protocol was recognised by content.
    pub app_flows: BTreeMap<&'static str, u64>,
    /// Flows opened.
    pub flows_created: u64,
    /// Flows ended, by reason (indexed as `EndReason::ALL`).
    pub flows_ended: [u64; EndReason::ALL.len()],
    /// Most flows open at once, summed over workers.
    pub flows_peak: u64,
    /// Feature rows made (early, end and host rows), classified or exported.
    pub feature_rows: u64,
    /// Early verdicts (after K packets of a flow).
    pub verdicts_early: u64,
    /// End verdicts delivered (see `verdicts_unchanged` for those left out).
    pub verdicts_end: u64,
    /// Verdicts on a flow's first packet, asked because a host was hot.
    pub verdicts_host: u64,
    /// First-packet rows made because a host was hot (classified and/or exported).
    pub host_rows: u64,
    /// End verdicts left out because they repeated the flow's early label
    /// (`EngineBuilder::final_verdicts_only_if_changed`).
    pub verdicts_unchanged: u64,
    /// Verdicts by label name.
    pub verdicts_by_label: BTreeMap<String, u64>,
    /// Incidents opened, updated and closed, and the verdicts they grouped.
    pub incidents: IncidentStats,
    /// Incidents opened, by label name.
    pub incidents_by_label: BTreeMap<String, u64>,
    /// Incident records (open, update, closed) handed to the sinks.
    pub incident_records: u64,
    /// Alert verdicts the policy suppressed, by reason.
    pub suppressed: SuppressedStats,
    /// Alerts explained by occlusion (one classifier call each).
    pub explained: u64,
    /// Rows the classifier scored with NaN or infinity: an error
    /// (`Error::Inference`) that stops the engine, counted here.
    pub non_finite_scores: u64,
    /// Classifier calls (batches of rows).
    pub batches: u64,
    /// Time spent in the classifier, in µs of wall time (0 without `run`).
    pub inference_micros: u64,
    /// Host-context updates skipped because a host table was full.
    pub host_context_untracked: u64,
    /// Earliest capture time seen.
    pub first_ts: Option<Micros>,
    /// Latest capture time seen.
    pub last_ts: Option<Micros>,
    /// Inputs that ended early (truncated or corrupt), with how far they got.
    pub partial_reads: Vec<PartialRead>,
    /// Worker threads used (0: everything on the calling thread).
    pub workers: usize,
    /// Times a full worker queue made the capture stage wait (replay blocks, never drops).
    pub queue_full: u64,
    /// Decoded packets dropped because a worker queue was full (live capture only).
    pub queue_dropped: u64,
    /// Payloads handed to a worker without a copy, because their flow's
    /// parsers were done and only their length still counted.
    pub payload_copies_skipped: u64,
    /// Percentiles (µs) of packet arrival → verdict, and of batch inference time.
    pub latency_us: Percentiles,
    /// Percentiles (µs) of one batch's inference time.
    pub inference_batch_us: Percentiles,
    /// CPU seconds (user + system) per stage, where the OS reports them.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// What each stage did, in pipeline order ([`STAGES`]): `capture`
    /// (packets read in, decoded packets out), `dispatch` (decoded packets
    /// to the workers), `flows` (packets into the flow tables), `order`
    /// (events), `host_context` (events in, rows out), `batch` (rows),
    /// `decide` (scored rows in, verdicts out) and `deliver` (records).
    pub stages: Vec<(&'static str, StageCounts)>,
}

/// The stages of [`Stats::stages`], in pipeline order.
pub const STAGES: [&str; 8] = ["capture", "dispatch", "flows", "order", "host_context", "batch", "decide", "deliver"];

/// What one stage did with what it was given, as Vector's component
/// specification asks: each item it `received` is counted once more, when
/// it is `sent` on, `discarded` on purpose (by design, not by fault), or
/// `failed`. Once the engine has finished, `received = sent + discarded +
/// failed` for every stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StageCounts {
    /// Items handed to the stage.
    pub received: u64,
    /// Items it handed on.
    pub sent: u64,
    /// Items it dropped by design (a cold host's first-packet row, an end
    /// verdict that repeats its early label).
    pub discarded: u64,
    /// Items lost to an error (a failed classifier call, a sink error).
    pub failed: u64,
}

/// What TCP reassembly skipped or gave up, over all workers.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct ReassemblyStats {
    /// TCP payload bytes delivered in order to the parsers.
    pub bytes: u64,
    /// Connections whose reassembly stopped at a memory cap (statistics kept).
    pub abandoned: u64,
    /// Gaps skipped (bytes the capture never saw), and their bytes.
    pub gaps: u64,
    /// Bytes of those gaps.
    pub gap_bytes: u64,
    /// Peak of out-of-order bytes held, summed over workers.
    pub peak_buffered: u64,
}

/// p50/p99/p99.9 and max of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value.
    pub max: u64,
}

impl Percentiles {
    pub(super) fn of(h: &Option<hdrhistogram::Histogram<u64>>) -> Self {
        match h {
            Some(h) if !h.is_empty() => Percentiles {
                count: h.len(),
                p50: h.value_at_quantile(0.5),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
            },
            _ => Percentiles::default(),
        }
    }
}

impl Stats {
    /// The counts of one stage (zero for a stage that has not run).
    pub fn stage(&self, name: &str) -> StageCounts {
        self.stages.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).unwrap_or_default()
    }

    /// The counts of one stage of [`STAGES`], kept in pipeline order
    /// (allocates only the first time a stage is written).
    pub(super) fn stage_mut(&mut self, name: &'static str) -> &mut StageCounts {
        let rank = |n: &str| STAGES.iter().position(|s| *s == n).unwrap_or(STAGES.len());
        let at = match self.stages.iter().position(|(n, _)| rank(n) >= rank(name)) {
            Some(i) if self.stages[i].0 == name => i,
            Some(i) => {
                self.stages.insert(i, (name, StageCounts::default()));
                i
            }
            None => {
                self.stages.push((name, StageCounts::default()));
                self.stages.len() - 1
            }
        };
        &mut self.stages[at].1
    }

    /// Packets not decoded, all reasons together.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Packets dropped for one reason.
    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    /// Flows ended, all reasons together.
    pub fn flows_ended_total(&self) -> u64 {
        self.flows_ended.iter().sum()
    }

    /// Verdicts of every trigger (early, end, host).
    pub fn verdicts(&self) -> u64 {
        self.verdicts_early + self.verdicts_end + self.verdicts_host
    }

    /// Span of capture time covered, in seconds.
    pub fn capture_seconds(&self) -> f64 {
        match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e6,
            _ => 0.0,
        }
    }

    /// The counters as one JSON object (names are a public interface).
    pub fn to_json(&self) -> serde_json::Value {
        let drops: BTreeMap<&str, u64> = DropReason::ALL.iter().map(|r| (r.name(), self.drops[r.index()])).collect();
        let ends: BTreeMap<&str, u64> =
            EndReason::ALL.iter().enumerate().map(|(i, r)| (r.name(), self.flows_ended[i])).collect();
        serde_json::json!({
            "packets": self.packets,
            "bytes": self.bytes,
            "decoded": self.decoded,
            "dropped": self.dropped(),
            "drops": drops,
            "fragments": self.fragments,
            "defrag": self.defrag,
            "reassembly": self.reassembly,
            "app_flows": self.app_flows,
            "flows": self.flows_created,
            "flows_ended": ends,
            "flows_peak": self.flows_peak,
            "feature_rows": self.feature_rows,
            "verdicts": self.verdicts(),
            "verdicts_early": self.verdicts_early,
            "verdicts_end": self.verdicts_end,
            "verdicts_host": self.verdicts_host,
            "host_rows": self.host_rows,
            "verdicts_unchanged": self.verdicts_unchanged,
            "verdicts_by_label": self.verdicts_by_label,
            "incidents": self.incidents,
            "incidents_by_label": self.incidents_by_label,
            "incident_records": self.incident_records,
            "verdicts_suppressed": self.suppressed,
            "alerts_explained": self.explained,
            "non_finite_scores": self.non_finite_scores,
            "batches": self.batches,
            "inference_us": self.inference_micros,
            "host_context_untracked": self.host_context_untracked,
            "partial_reads": self.partial_reads,
            "workers": self.workers,
            "queue_full": self.queue_full,
            "queue_dropped": self.queue_dropped,
            "payload_copies_skipped": self.payload_copies_skipped,
            "latency_us": self.latency_us,
            "inference_batch_us": self.inference_batch_us,
            "cpu_seconds": self.cpu_seconds,
            "stages": self.stages.iter().map(|(k, v)| (*k, *v)).collect::<BTreeMap<_, _>>(),
        })
    }
}

/// Upper bounds (µs) of the buckets of the latency histograms published in
/// [`EngineCounters`] (Prometheus-style, cumulative when read; +Inf last).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

/// Non-cumulative counts per bucket (the last is +Inf), with sum and count.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct BucketCounts {
    /// Count per bucket, bounds as `LATENCY_BUCKETS_US`, +Inf last.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of the recorded values, in µs.
    pub sum_us: u64,
    /// Values recorded.
    pub count: u64,
}

impl BucketCounts {
    /// Adds one value, in µs.
    pub fn record(&mut self, micros: u64) {
        let i = LATENCY_BUCKETS_US.iter().position(|b| micros <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i] += 1;
        self.sum_us += micros;
        self.count += 1;
    }
}

/// A [`BucketCounts`] readable from other threads.
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    pub(super) fn publish(&self, b: &BucketCounts) {
        for (a, v) in self.buckets.iter().zip(b.buckets.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
        self.sum_us.store(b.sum_us, Ordering::Relaxed);
        self.count.store(b.count, Ordering::Relaxed);
    }

    /// A copy, for a reader (each value read once; a copy taken during a
    /// publish may mix two publishes, never lose a count for good).
    pub fn read(&self) -> BucketCounts {
        let mut b = BucketCounts::default();
        for (v, a) in b.buckets.iter_mut().zip(self.buckets.iter()) {
            *v = a.load(Ordering::Relaxed);
        }
        b.sum_us = self.sum_us.load(Ordering::Relaxed);
        b.count = self.count.load(Ordering::Relaxed);
        b
    }
}

/// Counters readable from any thread while the engine runs (for periodic
/// statistics and metrics of a long-running capture).
///
/// Each counter is defined once, in [`Stats`]: every part of the engine
/// publishes its own fields of a `Stats` here (the capture stage every 256
/// packets, each worker every chunk, the merge stage after each batch) with
/// the same code that fills the `Stats` a finished run returns, and
/// [`snapshot`](Self::snapshot) puts them together as that code does. The
/// periodic statistics, the metrics endpoint and the final statistics
/// therefore name and count everything alike.
#[derive(Debug, Default)]
pub struct EngineCounters {
    parts: std::sync::Mutex<LiveParts>,
    /// Packet arrival → verdict (live capture).
    pub packet_to_verdict: AtomicHistogram,
    /// One batch's inference time.
    pub batch_inference: AtomicHistogram,
}

/// What the parts published last: the capture and merge stages' fields of
/// a `Stats`, and each worker's flow-table counters (added up when read).
#[derive(Debug, Default)]
struct LiveParts {
    stats: Stats,
    shards: Vec<ShardStats>,
}

impl EngineCounters {
    /// Counters that stand at `stats` (a finished run's, or made up by a
    /// test of something that reads counters).
    pub fn from_stats(stats: Stats) -> Self {
        EngineCounters { parts: std::sync::Mutex::new(LiveParts { stats, shards: Vec::new() }), ..Self::default() }
    }

    /// The counters as they stand: a [`Stats`] of the run so far.
    pub fn snapshot(&self) -> Stats {
        let parts = self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut s = parts.stats.clone();
        for sh in &parts.shards {
            sh.add_to(&mut s);
        }
        s
    }

    /// These counters as JSON: [`Stats::to_json`] of the
    /// [`snapshot`](Self::snapshot) (the layout of `tidewatchd`'s stats).
    pub fn to_json(&self) -> serde_json::Value {
        self.snapshot().to_json()
    }

    /// Lets one part write its fields (set, not add: a part publishes its
    /// whole count each time).
    pub(super) fn publish(&self, write: impl FnOnce(&mut Stats)) {
        let mut parts = self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        write(&mut parts.stats);
    }

    /// Publishes worker `w`'s flow-table counters.
    pub(super) fn publish_shard(&self, w: usize, stats: &ShardStats) {
        let mut parts = self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if parts.shards.len() <= w {
            parts.shards.resize(w + 1, ShardStats::default());
        }
        parts.shards[w] = *stats;
    }
}

/// Sets `dst` to the counts of `src` without allocating when the keys are
/// the same as last time (the usual case: the labels of one model).
pub(super) fn set_counts<'a, K>(dst: &mut BTreeMap<K, u64>, src: impl Iterator<Item = (&'a str, u64)>)
where
    K: Ord + std::borrow::Borrow<str> + From<&'a str>,
{
    for (k, v) in src {
        match dst.get_mut(k) {
            Some(n) => *n = v,
            None => {
                dst.insert(K::from(k), v);
            }
        }
    }
}

/// CPU time (user + system) of the calling thread, in seconds, from
/// /proc/thread-self/stat; `None` where that is not available.
pub(super) fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}
