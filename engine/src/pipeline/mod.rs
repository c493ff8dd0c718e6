//! The pipeline: source → decode → flow table → features → batcher →
//! classifier → sinks, driven by packet time.
//!
//! The engine reads no clock for its logic: timeouts, batch deadlines and
//! host-context decay all run on capture timestamps, so a replay gives the
//! same verdicts every time.

mod merge;
mod shard;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustc_hash::FxHasher;

use crate::decode::{decode_frame, decode_ip, Decoded, DropReason, PacketInfo, PROTO_TCP, PROTO_UDP};
use crate::defrag::{DefragConfig, DefragOutcome, DefragStats, Defragmenter};
use crate::error::{Error, Result};
use crate::features::{HostContext, HostContextConfig};
use crate::flow::{EndReason, FlowConfig, FlowKey};
use crate::incident::{IncidentConfig, IncidentStats};
use crate::infer::{Classifier, ModelInfo};
use crate::inspect::InspectConfig;
use crate::policy::{Policy, SuppressedStats};
use crate::sink::{FeatureSink, VerdictSink};
use crate::source::{Micros, PacketSource, PartialRead, RawPacket, MAX_TIMESTAMP};
use merge::{Merger, MergerConfig};
use shard::{Event, Shard, ShardStats};

/// Counters of one run. `packets == decoded + fragments + sum(drops)`
/// always; what became of the fragments is in `defrag`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub decoded: u64,
    pub drops: [u64; DropReason::ALL.len()],
    /// IP fragments handed to the defragmenter.
    pub fragments: u64,
    pub defrag: DefragStats,
    pub reassembly: ReassemblyStats,
    /// Flows whose application protocol was recognised by content.
    pub app_flows: BTreeMap<&'static str, u64>,
    pub flows_created: u64,
    pub flows_ended: [u64; EndReason::ALL.len()],
    pub flows_peak: u64,
    pub feature_rows: u64,
    pub verdicts_early: u64,
    pub verdicts_end: u64,
    /// Verdicts on a flow's first packet, asked because a host was hot.
    pub verdicts_host: u64,
    /// First-packet rows made because a host was hot (classified and/or exported).
    pub host_rows: u64,
    /// End verdicts left out because they repeated the flow's early label
    /// (`EngineBuilder::final_verdicts_only_if_changed`).
    pub verdicts_unchanged: u64,
    pub verdicts_by_label: BTreeMap<String, u64>,
    /// Incidents opened, updated and closed, and the verdicts they grouped.
    pub incidents: IncidentStats,
    /// Alert verdicts the policy suppressed, by reason.
    pub suppressed: SuppressedStats,
    /// Alerts explained by occlusion (one classifier call each).
    pub explained: u64,
    /// Rows the classifier scored with NaN or infinity: an error
    /// (`Error::Inference`) that stops the engine, counted here.
    pub non_finite_scores: u64,
    pub batches: u64,
    pub inference_micros: u64,
    pub host_context_untracked: u64,
    pub first_ts: Option<Micros>,
    pub last_ts: Option<Micros>,
    pub partial_reads: Vec<PartialRead>,
    /// Worker threads used (0: everything on the calling thread).
    pub workers: usize,
    /// Times a full worker queue made the capture stage wait (replay blocks, never drops).
    pub queue_full: u64,
    /// Decoded packets dropped because a worker queue was full (live capture only).
    pub queue_dropped: u64,
    /// Percentiles (µs) of packet arrival → verdict, and of batch inference time.
    pub latency_us: Percentiles,
    pub inference_batch_us: Percentiles,
    /// CPU seconds (user + system) per stage, where the OS reports them.
    pub cpu_seconds: BTreeMap<String, f64>,
}

/// What TCP reassembly skipped or gave up, over all workers.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ReassemblyStats {
    /// TCP payload bytes delivered in order to the parsers.
    pub bytes: u64,
    /// Connections whose reassembly stopped at a memory cap (statistics kept).
    pub abandoned: u64,
    /// Gaps skipped (bytes the capture never saw), and their bytes.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Peak of out-of-order bytes held, summed over workers.
    pub peak_buffered: u64,
}

/// p50/p99/p99.9 and max of a histogram, in microseconds.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(h: &Option<hdrhistogram::Histogram<u64>>) -> Self {
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
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub fn drop_count(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }

    pub fn flows_ended_total(&self) -> u64 {
        self.flows_ended.iter().sum()
    }

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
            "latency_us": self.latency_us,
            "inference_batch_us": self.inference_batch_us,
            "cpu_seconds": self.cpu_seconds,
        })
    }
}

/// Upper bounds (µs) of the buckets of the latency histograms published in
/// [`EngineCounters`] (Prometheus-style, cumulative when read; +Inf last).
pub const LATENCY_BUCKETS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000];

/// Non-cumulative counts per bucket (the last is +Inf), with sum and count.
#[derive(Clone, Copy, Debug, Default)]
pub struct BucketCounts {
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub count: u64,
}

impl BucketCounts {
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
    fn publish(&self, b: &BucketCounts) {
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
/// statistics of a long-running capture). Updated every few hundred packets.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub decoded: AtomicU64,
    /// Packets not decoded, all reasons together, and by reason
    /// (indexed as [`DropReason::ALL`]).
    pub dropped: AtomicU64,
    pub dropped_by_reason: [AtomicU64; DropReason::ALL.len()],
    pub queue_dropped: AtomicU64,
    pub flows: AtomicU64,
    pub verdicts: AtomicU64,
    pub verdicts_early: AtomicU64,
    pub verdicts_end: AtomicU64,
    /// Incident records (open, update, closed) delivered to the sinks.
    pub incident_records: AtomicU64,
    /// Alert verdicts suppressed by the policy, by reason.
    pub suppressed_min_score: AtomicU64,
    pub suppressed_rule: AtomicU64,
    pub suppressed_rate_limit: AtomicU64,
    /// Flows ended, by reason (indexed as [`EndReason::ALL`]).
    pub flows_ended: [AtomicU64; EndReason::ALL.len()],
    /// Verdicts by label, and incidents opened by label (label order).
    pub verdicts_by_label: std::sync::Mutex<Vec<(String, u64)>>,
    pub incidents_by_label: std::sync::Mutex<Vec<(String, u64)>>,
    /// Packet arrival → verdict (live capture), and one batch's inference.
    pub packet_to_verdict: AtomicHistogram,
    pub batch_inference: AtomicHistogram,
    /// Latest packet-to-verdict percentiles, in µs.
    pub latency_p50_us: AtomicU64,
    pub latency_p99_us: AtomicU64,
}

impl EngineCounters {
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "packets": g(&self.packets), "bytes": g(&self.bytes), "decoded": g(&self.decoded),
            "dropped": g(&self.dropped), "queue_dropped": g(&self.queue_dropped), "flows": g(&self.flows),
            "drops": DropReason::ALL.iter().map(|r| (r.name(), g(&self.dropped_by_reason[r.index()])))
                .collect::<BTreeMap<_, _>>(),
            "verdicts": g(&self.verdicts), "verdicts_early": g(&self.verdicts_early), "verdicts_end": g(&self.verdicts_end),
            "incident_records": g(&self.incident_records),
            "latency_us": {"p50": g(&self.latency_p50_us), "p99": g(&self.latency_p99_us)},
        })
    }
}

type BoxedClassifier = Box<dyn Classifier>;

/// Replaces the engine's classifier while it runs (e.g. on SIGHUP). The
/// swap happens between two batches; rows already queued are classified by
/// the new model.
#[derive(Clone)]
pub struct ModelSwapper(Sender<Box<dyn Classifier>>);

impl ModelSwapper {
    /// Checks `c` (as `build` checks a classifier) and queues it to replace
    /// the current one.
    pub fn swap(&self, c: Box<dyn Classifier>) -> Result<()> {
        c.info().validate()?;
        self.0.try_send(c).map_err(|_| Error::Config("a model swap is already pending; try again".into()))
    }
}

/// Replaces the engine's policy while it runs (e.g. on SIGHUP), between two
/// batches: verdicts classified after the swap follow the new policy.
#[derive(Clone)]
pub struct PolicySwapper(Sender<Policy>);

impl PolicySwapper {
    /// Checks `p` and queues it to replace the current policy.
    pub fn swap(&self, p: Policy) -> Result<()> {
        p.validate().map_err(Error::Config)?;
        self.0.try_send(p).map_err(|_| Error::Config("policy swaps are pending; try again".into()))
    }
}

#[cfg(feature = "onnx")]
fn load_onnx(model: &std::path::Path, runtime: Option<&std::path::Path>) -> Result<Box<dyn Classifier>> {
    Ok(Box::new(crate::infer::OnnxClassifier::load(model, runtime)?))
}

/// Without the `onnx` feature no model path can be given (`model` does not
/// exist), so this is never reached.
#[cfg(not(feature = "onnx"))]
fn load_onnx(model: &std::path::Path, _runtime: Option<&std::path::Path>) -> Result<Box<dyn Classifier>> {
    Err(Error::Config(format!("{}: this build has no ONNX support (feature `onnx`)", model.display())))
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    model_path: Option<PathBuf>,
    runtime_path: Option<PathBuf>,
    classifier: Option<Box<dyn Classifier>>,
    sinks: Vec<Box<dyn VerdictSink>>,
    feature_sink: Option<Box<dyn FeatureSink>>,
    early_packets: usize,
    batch_size: usize,
    batch_deadline: Micros,
    batch_wall_deadline: std::time::Duration,
    flow: FlowConfig,
    host: HostContextConfig,
    inspect: InspectConfig,
    defrag: DefragConfig,
    workers: usize,
    live: bool,
    final_only_if_changed: bool,
    incidents: IncidentConfig,
    policy: Policy,
    flow_records: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            model_path: None,
            runtime_path: None,
            classifier: None,
            sinks: Vec::new(),
            feature_sink: None,
            early_packets: 8,
            batch_size: 256,
            batch_deadline: 50_000,
            batch_wall_deadline: std::time::Duration::from_micros(300),
            flow: FlowConfig::default(),
            host: HostContextConfig::default(),
            inspect: InspectConfig::default(),
            defrag: DefragConfig::default(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            live: false,
            final_only_if_changed: false,
            incidents: IncidentConfig::default(),
            policy: Policy::default(),
            flow_records: false,
        }
    }
}

impl EngineBuilder {
    /// Classify with this ONNX model (see `models/README.md` for the contract).
    #[cfg(feature = "onnx")]
    pub fn model(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_path = Some(path.into());
        self
    }

    /// Path of `libonnxruntime.so`; default: `ORT_DYLIB_PATH`, then `.ort/`.
    #[cfg(feature = "onnx")]
    pub fn onnx_runtime(mut self, path: impl Into<PathBuf>) -> Self {
        self.runtime_path = Some(path.into());
        self
    }

    /// Classify with your own classifier instead of an ONNX model.
    pub fn classifier(mut self, c: Box<dyn Classifier>) -> Self {
        self.classifier = Some(c);
        self
    }

    /// Adds a verdict sink; every verdict goes to every sink, in order.
    pub fn sink(mut self, s: impl VerdictSink + 'static) -> Self {
        self.sinks.push(Box::new(s));
        self
    }

    /// Receives every feature row (early and end), e.g. to export training data.
    /// Every ended flow's record also goes to the verdict sinks
    /// ([`VerdictSink::flow`]; JSON `event_type` = `flow`), with or without a
    /// model: Zeek's `conn.log` beside the verdicts. Off by default.
    pub fn flow_records(mut self, on: bool) -> Self {
        self.flow_records = on;
        self
    }

    pub fn feature_sink(mut self, s: impl FeatureSink + 'static) -> Self {
        self.feature_sink = Some(Box::new(s));
        self
    }

    /// Emit an early verdict after this many packets of a flow (0: never).
    pub fn early_packets(mut self, k: usize) -> Self {
        self.early_packets = k;
        self
    }

    /// Rows per inference call (flushed earlier at the deadline).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// Longest a row waits for its batch, in capture time (default 50 ms).
    pub fn batch_deadline(mut self, d: std::time::Duration) -> Self {
        self.batch_deadline = crate::source::micros_from_duration(d);
        self
    }

    /// Longest a row waits for its batch in wall time while the engine is
    /// busy (default 300 µs): bounds verdict latency during fast replays.
    pub fn batch_wall_deadline(mut self, d: std::time::Duration) -> Self {
        self.batch_wall_deadline = d;
        self
    }

    pub fn flow_config(mut self, cfg: FlowConfig) -> Self {
        self.flow = cfg;
        self
    }

    pub fn host_context(mut self, cfg: HostContextConfig) -> Self {
        self.host = cfg;
        self
    }

    /// Payload stage: TCP reassembly and application parsing, and their caps.
    pub fn inspect(mut self, cfg: InspectConfig) -> Self {
        self.inspect = cfg;
        self
    }

    /// Deliver a flow's end verdict only when its label differs from the
    /// early verdict's (or there was none): one alert per decision, not two.
    /// Left-out verdicts are counted (`verdicts_unchanged`). Default: every
    /// end verdict is delivered.
    pub fn final_verdicts_only_if_changed(mut self, yes: bool) -> Self {
        self.final_only_if_changed = yes;
        self
    }

    /// How alert verdicts are grouped into incidents (cadence of updates,
    /// quiet period, memory bound); see [`crate::incident`].
    pub fn incidents(mut self, cfg: IncidentConfig) -> Self {
        self.incidents = cfg;
        self
    }

    /// The operator's policy: per-label minimum scores, suppress rules, a
    /// rate limit per incident ([`crate::policy`]). Replace it while the
    /// engine runs with [`Engine::policy_swapper`].
    pub fn policy(mut self, p: Policy) -> Self {
        self.policy = p;
        self
    }

    /// IP defragmentation caps and timeout.
    pub fn defrag(mut self, cfg: DefragConfig) -> Self {
        self.defrag = cfg;
        self
    }

    /// Worker threads for [`Engine::run`] (default: the machine's cores).
    /// Each owns a shard of the flow table; `0` runs everything on the
    /// calling thread. Results are the same for every value.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Live capture: when a worker's queue is full, drop the packets and
    /// count them (`queue_dropped`) rather than wait, so capture never stalls.
    /// Replay (the default) waits and loses nothing.
    pub fn live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }

    pub fn build(self) -> Result<Engine> {
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        self.policy.validate().map_err(Error::Config)?;
        if self.flow.max_flows == 0 {
            return Err(Error::Config("the flow table needs room for at least one flow".into()));
        }
        if self.workers > 256 {
            return Err(Error::Config(format!("{} workers is more than the 256 supported", self.workers)));
        }
        let classifier = match (self.classifier, &self.model_path) {
            (Some(_), Some(_)) => {
                return Err(Error::Config("give either a model path or a classifier, not both".into()))
            }
            (Some(c), None) => Some(c),
            (None, Some(p)) => Some(load_onnx(p, self.runtime_path.as_deref())?),
            (None, None) => None,
        };
        if let Some(c) = &classifier {
            c.info().validate()?;
        }
        if classifier.is_none() && self.feature_sink.is_none() && !self.flow_records {
            return Err(Error::Config(
                "nothing to do: give a model (or classifier), a feature sink, or flow_records(true)".into(),
            ));
        }
        let queue = self.sinks.is_empty();
        let mut merger = Merger::new(MergerConfig {
            queue,
            flow_records: self.flow_records,
            hosts: HostContext::new(self.host),
            classifier,
            sinks: self.sinks,
            feature_sink: self.feature_sink,
            batch_size: self.batch_size,
            batch_deadline: self.batch_deadline,
            batch_wall_deadline: self.batch_wall_deadline,
            final_only_if_changed: self.final_only_if_changed,
            incidents: self.incidents,
            policy: self.policy,
        });
        merger.set_streams(1);
        let counters = Arc::new(EngineCounters::default());
        let model_swap = crossbeam_channel::bounded(2);
        merger.counters = Some(counters.clone());
        merger.model_swap = Some(model_swap.1.clone());
        let policy_swap = crossbeam_channel::bounded(4);
        merger.policy_swap = Some(policy_swap.1.clone());
        let mut inspect = self.inspect;
        // Whole-engine caps are shared out among the shards that will use them.
        let shards = self.workers.max(1);
        inspect.reassembly.max_buffered_total = (inspect.reassembly.max_buffered_total / shards).max(1);
        let mut flow_cfg = self.flow;
        flow_cfg.max_flows = (flow_cfg.max_flows / shards).max(1);
        Ok(Engine {
            flow_cfg,
            inspect_cfg: inspect,
            early_packets: self.early_packets,
            workers: self.workers,
            inline: Shard::new(self.flow, self.early_packets, self.inspect),
            merger,
            capture: CaptureState { defrag: Defragmenter::new(self.defrag), ..CaptureState::default() },
            shard_stats: Vec::new(),
            queue_full: 0,
            queue_dropped: 0,
            live: self.live,
            counters,
            model_swap,
            policy_swap: policy_swap.0,
            partial_reads: Vec::new(),
            cpu_seconds: BTreeMap::new(),
            used_workers: 0,
            finished: false,
        })
    }
}

/// Flows are swept for timeouts every 100 ms of capture time: the timer heap
/// makes a sweep cheap, and small sweeps keep verdict bursts (latency) short.
const SWEEP_INTERVAL: Micros = 100_000;
/// Packets per chunk handed to a worker: amortises the queue operations.
const CHUNK: usize = 256;
/// Chunks that may wait in each worker's queue.
const QUEUE_CHUNKS: usize = 16;
/// Every this many packets all workers get their pending chunk, so the merge
/// stage's watermarks advance even for workers that see little traffic.
const BROADCAST_EVERY: u64 = 256;

/// Counters and clock of the capture stage (read + decode + dispatch).
#[derive(Default)]
struct CaptureState {
    packets: u64,
    bytes: u64,
    decoded: u64,
    drops: [u64; DropReason::ALL.len()],
    fragments: u64,
    defrag: Defragmenter,
    /// The last datagram the defragmenter completed.
    defrag_buf: Vec<u8>,
    first_ts: Option<Micros>,
    last_ts: Option<Micros>,
    /// Highest capture timestamp seen: engine time never runs backwards.
    clock: Micros,
    next_sweep: Micros,
}

impl CaptureState {
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
    fn advance(&mut self, now: Micros) -> Option<Micros> {
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

    /// Decodes a frame. Returns the packet and whether its bytes are in
    /// `defrag_buf` (a datagram just completed) rather than in the frame.
    fn decode(&mut self, pkt: &RawPacket<'_>) -> Option<(PacketInfo, bool)> {
        match decode_frame(pkt) {
            Ok(Decoded::Packet(info)) => {
                self.decoded += 1;
                Some((info, false))
            }
            Ok(Decoded::Fragment(f)) => {
                self.fragments += 1;
                let DefragOutcome::Complete { wire_len, tunnels } = self.defrag.push(&f, &mut self.defrag_buf) else {
                    return None;
                };
                match decode_ip(&self.defrag_buf, 0, f.ts, wire_len, 0, tunnels) {
                    Ok(Decoded::Packet(info)) => Some((info, true)),
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

/// One unit of work for a worker.
#[derive(Clone, Copy)]
enum Item {
    Packet(PacketInfo, Micros),
    Sweep(Micros),
}

/// A batch of items for one worker; recycled, never reallocated.
struct Chunk {
    items: Vec<Item>,
    /// Payload bytes of the chunk's packets (each packet's `payload_off`
    /// points here), so workers can reassemble without the frames.
    payload: Vec<u8>,
    /// Engine clock after the last item.
    clock: Micros,
    /// When the chunk's first item entered the engine.
    arrival: Option<Instant>,
    /// The last chunk: drain every flow after it.
    eof: bool,
}

impl Chunk {
    fn new() -> Self {
        Chunk { items: Vec::with_capacity(CHUNK), payload: Vec::new(), clock: 0, arrival: None, eof: false }
    }
}

/// Events a worker produced from one chunk, and its progress.
struct EventBatch {
    worker: usize,
    events: Vec<Event>,
    watermark: Micros,
}

/// The inspection engine. See the crate documentation for an example.
pub struct Engine {
    flow_cfg: FlowConfig,
    inspect_cfg: InspectConfig,
    early_packets: usize,
    workers: usize,
    /// The shard used on the calling thread (`process`, or 0 workers).
    inline: Shard,
    merger: Merger,
    capture: CaptureState,
    shard_stats: Vec<ShardStats>,
    queue_full: u64,
    queue_dropped: u64,
    live: bool,
    counters: Arc<EngineCounters>,
    model_swap: (Sender<BoxedClassifier>, Receiver<BoxedClassifier>),
    policy_swap: Sender<Policy>,
    partial_reads: Vec<PartialRead>,
    cpu_seconds: BTreeMap<String, f64>,
    used_workers: usize,
    finished: bool,
}

/// CPU time (user + system) of the calling thread, in seconds, from
/// /proc/thread-self/stat; `None` where that is not available.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

fn worker_of(info: &PacketInfo, workers: usize) -> usize {
    use std::hash::{Hash, Hasher};
    // The key is direction-independent, so both directions land together.
    let (key, _) = FlowKey::of(info);
    let mut h = FxHasher::default();
    key.hash(&mut h);
    (h.finish() % workers as u64) as usize
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The loaded model's metadata, if the engine classifies.
    pub fn model_info(&self) -> Option<&ModelInfo> {
        self.merger.classifier.as_ref().map(|c| c.info())
    }

    /// Live counters, readable from other threads while [`Engine::run`] runs.
    pub fn counters(&self) -> Arc<EngineCounters> {
        self.counters.clone()
    }

    /// A handle to replace the classifier while the engine runs.
    pub fn model_swapper(&self) -> ModelSwapper {
        ModelSwapper(self.model_swap.0.clone())
    }

    /// A handle to replace the policy while the engine runs.
    pub fn policy_swapper(&self) -> PolicySwapper {
        PolicySwapper(self.policy_swap.clone())
    }

    fn publish_capture(&self) {
        let (c, k) = (&self.capture, &self.counters);
        k.packets.store(c.packets, Ordering::Relaxed);
        k.bytes.store(c.bytes, Ordering::Relaxed);
        k.decoded.store(c.decoded, Ordering::Relaxed);
        k.dropped.store(c.drops.iter().sum(), Ordering::Relaxed);
        for (a, v) in k.dropped_by_reason.iter().zip(c.drops.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }

    /// The next event, oldest first, of what earlier [`process`](Self::process),
    /// [`tick`](Self::tick) and [`finish`](Self::finish) calls produced.
    ///
    /// Only an engine built without sinks keeps events for this call; one
    /// with sinks hands them to the sinks and this returns `None`. Drain it
    /// after each call and the queue stays small (see [`crate::event`]).
    pub fn poll_event(&mut self) -> Option<crate::Event> {
        self.merger.queue.as_mut()?.pop_front()
    }

    /// Engine time (capture time) at which [`tick`](Self::tick) is next due
    /// if no packet comes first: a flow-timeout sweep, a batch deadline, or
    /// events held back until time moves past them. `None` before the first
    /// packet and after [`finish`](Self::finish).
    ///
    /// A live loop waits for a packet at most until the wall clock, in the
    /// packets' time base, reaches this, then calls `tick(now)`.
    pub fn poll_timeout(&self) -> Option<Micros> {
        if self.finished || self.capture.packets == 0 || self.used_workers > 0 {
            return None;
        }
        let sweep = self.capture.next_sweep;
        Some(self.merger.next_due().map_or(sweep, |t| t.min(sweep)))
    }

    /// True once a sink asked to stop or an error occurred.
    pub fn stop_requested(&self) -> bool {
        self.merger.stop
    }

    fn take_error(&mut self) -> Result<()> {
        match self.merger.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Feeds one packet, on the calling thread. Never fails on packet
    /// content: a packet that cannot be decoded is counted under its drop
    /// reason. Errors come from sinks and the classifier only.
    pub fn process(&mut self, pkt: &RawPacket<'_>) -> Result<()> {
        if self.finished {
            return Err(Error::Finished);
        }
        // Engine time stays below the merge stage's end-of-input mark.
        let clamped;
        let pkt = if pkt.ts > MAX_TIMESTAMP {
            clamped = RawPacket { ts: MAX_TIMESTAMP, ..*pkt };
            &clamped
        } else {
            pkt
        };
        if let Some(t) = self.capture.arrive(pkt) {
            self.inline.sweep(t, None);
        }
        if let Some((info, in_defrag)) = self.capture.decode(pkt) {
            let bytes = if in_defrag { &self.capture.defrag_buf[..] } else { pkt.data };
            self.inline.packet(&info, info.payload(bytes), self.capture.clock, None);
        }
        // Events at the current clock may still be joined by others at the
        // same time: the watermark is the clock, exclusive.
        self.merger.push(0, &mut self.inline.events, self.capture.clock);
        if self.capture.packets % 256 == 0 {
            self.publish_capture();
            self.publish_inline_flows();
        }
        self.take_error()
    }

    /// Flow counters of the calling thread's shard (no workers).
    fn publish_inline_flows(&self) {
        let st = &self.inline.stats;
        self.counters.flows.store(st.flows_created, Ordering::Relaxed);
        for (a, v) in self.counters.flows_ended.iter().zip(st.flows_ended.iter()) {
            a.store(*v, Ordering::Relaxed);
        }
    }

    /// Moves engine time to `now` with no packet (an idle live capture):
    /// flows whose timeouts passed end, and pending rows are classified.
    pub fn tick(&mut self, now: Micros) -> Result<()> {
        if self.finished {
            return Err(Error::Finished);
        }
        self.publish_capture();
        self.publish_inline_flows();
        if let Some(t) = self.capture.advance(now) {
            self.inline.sweep(t, None);
        }
        self.merger.push(0, &mut self.inline.events, self.capture.clock);
        self.take_error()
    }

    /// Ends every open flow, classifies what is pending, finishes the sinks
    /// and returns the counters. Further calls return the same counters.
    pub fn finish(&mut self) -> Result<Stats> {
        if !self.finished {
            self.finished = true;
            self.capture.defrag.drain();
            if self.used_workers == 0 {
                self.inline.drain(self.capture.clock);
                self.merger.push(0, &mut self.inline.events, Micros::MAX);
                self.shard_stats = vec![self.inline.stats.clone()];
            }
            self.merger.finish();
            let mut first_err = self.merger.error.take();
            for s in self.merger.sinks.iter_mut() {
                if let Err(e) = s.finish() {
                    first_err.get_or_insert(e.into());
                }
            }
            if let Some(fs) = self.merger.feature_sink.as_mut() {
                if let Err(e) = fs.finish() {
                    first_err.get_or_insert(e.into());
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(self.stats())
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.capture;
        let m = &self.merger;
        let mut s = Stats {
            packets: c.packets,
            bytes: c.bytes,
            decoded: c.decoded,
            drops: c.drops,
            fragments: c.fragments,
            defrag: c.defrag.stats(),
            feature_rows: m.feature_rows,
            verdicts_early: m.verdicts_early,
            verdicts_end: m.verdicts_end,
            verdicts_host: m.verdicts_host,
            host_rows: m.host_rows,
            verdicts_unchanged: m.verdicts_unchanged,
            verdicts_by_label: m.verdicts_by_label.clone(),
            incidents: m.incidents.stats(),
            suppressed: m.suppressed,
            explained: m.explained,
            non_finite_scores: m.non_finite_scores,
            batches: m.batches,
            inference_micros: m.inference_micros,
            host_context_untracked: m.hosts.untracked,
            first_ts: c.first_ts,
            last_ts: c.last_ts,
            partial_reads: self.partial_reads.clone(),
            workers: self.used_workers,
            queue_full: self.queue_full,
            queue_dropped: self.queue_dropped,
            latency_us: Percentiles::of(&m.timings.packet_to_verdict),
            inference_batch_us: Percentiles::of(&m.timings.batch_inference),
            cpu_seconds: self.cpu_seconds.clone(),
            ..Stats::default()
        };
        let shards: &[ShardStats] =
            if self.shard_stats.is_empty() { std::slice::from_ref(&self.inline.stats) } else { &self.shard_stats };
        for sh in shards {
            s.flows_created += sh.flows_created;
            s.flows_peak += sh.flows_peak;
            s.reassembly.abandoned += sh.reassembly_abandoned;
            s.reassembly.bytes += sh.reassembled_bytes;
            s.reassembly.gaps += sh.reassembly_gaps;
            s.reassembly.gap_bytes += sh.reassembly_gap_bytes;
            s.reassembly.peak_buffered += sh.reassembly_peak_buffered;
            for (p, n) in crate::app::AppProto::ALL.iter().zip(sh.app_flows.iter()) {
                if *n > 0 {
                    *s.app_flows.entry(p.name()).or_default() += n;
                }
            }
            for (a, b) in s.flows_ended.iter_mut().zip(sh.flows_ended.iter()) {
                *a += b;
            }
        }
        s
    }

    /// Reads `source` to its end (or until a sink asks to stop), then
    /// [`finish`](Self::finish)es. Uses the configured worker threads.
    pub fn run(&mut self, source: &mut dyn PacketSource) -> Result<Stats> {
        if self.finished {
            return Err(Error::Finished);
        }
        if self.merger.queue.is_some() && (self.merger.classifier.is_some() || self.merger.flow_records) {
            return Err(Error::Config(
                "run() hands verdicts and flow records to sinks, and this engine has none: add one with \
                 EngineBuilder::sink, or drive the engine with process/tick/finish and poll_event"
                    .into(),
            ));
        }
        // A driver on real threads: the wall clock measures latency and
        // bounds how long a batch waits.
        self.merger.wall_clock = true;
        self.inline.stamp_rows = true;
        let cpu_at_start = thread_cpu_seconds();
        if self.workers == 0 || self.capture.packets > 0 {
            while !self.merger.stop {
                if let Some(pkt) = source.next_packet()? {
                    self.process(&pkt)?;
                    continue;
                }
                if !source.is_live() || source.finished() {
                    break;
                }
                if let Some(now) = source.now() {
                    self.tick(now)?;
                }
            }
        } else {
            self.run_workers(source)?;
        }
        self.partial_reads = source.partial_reads();
        let outcome = self.finish();
        // This thread's share: capture (+ merge with workers; everything without).
        if let (Some(a), Some(b)) = (cpu_at_start, thread_cpu_seconds()) {
            let stage = if self.used_workers == 0 { "engine" } else { "capture" };
            self.cpu_seconds.insert(stage.into(), b - a);
        }
        outcome.map(|_| self.stats())
    }

    /// The multi-core path: this thread reads, decodes and dispatches by
    /// flow hash to worker threads over bounded queues; a merge thread takes
    /// their events (host context, batching, inference, sinks).
    fn run_workers(&mut self, source: &mut dyn PacketSource) -> Result<()> {
        let n = self.workers;
        self.used_workers = n;
        let (event_tx, event_rx) = bounded::<EventBatch>(n * QUEUE_CHUNKS);
        let (free_tx, free_rx) = bounded::<Chunk>(n * (QUEUE_CHUNKS + 2));
        let (spare_events_tx, spare_events_rx) = bounded::<Vec<Event>>(n * QUEUE_CHUNKS);
        let stop = AtomicBool::new(false);
        let mut merger = std::mem::replace(&mut self.merger, Merger::placeholder());
        merger.set_streams(n);
        let mut outcome: Result<()> = Ok(());
        std::thread::scope(|scope| {
            let mut workers = Vec::with_capacity(n);
            let mut txs: Vec<Sender<Chunk>> = Vec::with_capacity(n);
            for w in 0..n {
                let (tx, rx) = bounded::<Chunk>(QUEUE_CHUNKS);
                txs.push(tx);
                let (event_tx, free_tx, spare_events_rx) = (event_tx.clone(), free_tx.clone(), spare_events_rx.clone());
                let (cfg, early, counters) = (self.flow_cfg, self.early_packets, self.counters.clone());
                let inspect = self.inspect_cfg;
                workers.push(scope.spawn(move || {
                    worker(w, Shard::new(cfg, early, inspect), rx, event_tx, free_tx, spare_events_rx, &counters)
                }));
            }
            drop(event_tx);
            let stop_ref = &stop;
            let merge_thread = scope.spawn(move || {
                let cpu_at_start = thread_cpu_seconds();
                while let Ok(mut b) = event_rx.recv() {
                    merger.push(b.worker, &mut b.events, b.watermark);
                    let _ = spare_events_tx.try_send(b.events);
                    if merger.stop {
                        stop_ref.store(true, Ordering::Relaxed);
                    }
                }
                let cpu = thread_cpu_seconds().zip(cpu_at_start).map(|(b, a)| b - a);
                (merger, cpu)
            });
            let mut pending: Vec<Chunk> = (0..n).map(|_| Chunk::new()).collect();
            let inspect = self.inspect_cfg.enabled;
            let mut since_broadcast = 0u64;
            let mut dispatch =
                Dispatch { txs, free_rx: &free_rx, drop_when_full: self.live || source.is_live(), dropped: 0 };
            let result = (|| -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let Some(pkt) = source.next_packet()? else {
                        if !source.is_live() || source.finished() {
                            break;
                        }
                        // Idle live capture: time still passes; flows time
                        // out and every worker's watermark moves on.
                        let Some(now) = source.now() else { continue };
                        self.publish_capture();
                        self.counters.queue_dropped.store(dispatch.dropped, Ordering::Relaxed);
                        let sweep = self.capture.advance(now);
                        let clock = self.capture.clock;
                        for (w, c) in pending.iter_mut().enumerate() {
                            if let Some(t) = sweep {
                                c.items.push(Item::Sweep(t));
                            }
                            c.clock = clock;
                            dispatch.send(w, c, &mut self.queue_full);
                        }
                        since_broadcast = 0;
                        continue;
                    };
                    let pkt = RawPacket { ts: pkt.ts.min(MAX_TIMESTAMP), ..pkt };
                    let sweep = self.capture.arrive(&pkt);
                    let clock = self.capture.clock;
                    if let Some(t) = sweep {
                        for (w, c) in pending.iter_mut().enumerate() {
                            c.items.push(Item::Sweep(t));
                            c.clock = t;
                            dispatch.send(w, c, &mut self.queue_full);
                        }
                        since_broadcast = 0;
                    }
                    if let Some((mut info, in_defrag)) = self.capture.decode(&pkt) {
                        let w = worker_of(&info, n);
                        let c = &mut pending[w];
                        if c.items.is_empty() {
                            c.arrival = Some(Instant::now());
                        }
                        if inspect && matches!(info.proto, PROTO_TCP | PROTO_UDP) && info.payload_cap > 0 {
                            let bytes = if in_defrag { &self.capture.defrag_buf[..] } else { pkt.data };
                            let payload = info.payload(bytes);
                            info.payload_off = c.payload.len() as u32;
                            info.payload_cap = payload.len() as u32;
                            c.payload.extend_from_slice(payload);
                        } else {
                            info.payload_cap = 0;
                        }
                        c.items.push(Item::Packet(info, clock));
                        c.clock = clock;
                        if c.items.len() >= CHUNK {
                            dispatch.send(w, c, &mut self.queue_full);
                        }
                    }
                    since_broadcast += 1;
                    if since_broadcast >= BROADCAST_EVERY {
                        since_broadcast = 0;
                        for (w, c) in pending.iter_mut().enumerate() {
                            c.clock = clock;
                            dispatch.send(w, c, &mut self.queue_full);
                        }
                        self.publish_capture();
                        self.counters.queue_dropped.store(dispatch.dropped, Ordering::Relaxed);
                    }
                }
                Ok(())
            })();
            // End of input (or a stop): every worker drains its flows.
            for (w, c) in pending.iter_mut().enumerate() {
                c.eof = true;
                c.clock = self.capture.clock;
                dispatch.send(w, c, &mut self.queue_full);
            }
            dispatch.txs.clear(); // closing the queues lets the workers finish
            self.queue_dropped += dispatch.dropped;
            self.shard_stats = Vec::with_capacity(n);
            for (w, h) in workers.into_iter().enumerate() {
                match h.join() {
                    Ok((stats, cpu)) => {
                        self.shard_stats.push(stats);
                        if let Some(c) = cpu {
                            self.cpu_seconds.insert(format!("worker{w}"), c);
                        }
                    }
                    Err(_) => outcome = Err(Error::Internal(format!("worker {w} stopped unexpectedly"))),
                }
            }
            match merge_thread.join() {
                Ok((m, cpu)) => {
                    self.merger = m;
                    if let Some(c) = cpu {
                        self.cpu_seconds.insert("merge".into(), c);
                    }
                }
                Err(_) => outcome = Err(Error::Internal("the merge stage stopped unexpectedly".into())),
            }
            if outcome.is_ok() {
                outcome = result;
            }
        });
        outcome?;
        self.take_error()
    }
}

/// The capture thread's ends of the worker queues.
struct Dispatch<'a> {
    txs: Vec<Sender<Chunk>>,
    free_rx: &'a Receiver<Chunk>,
    /// Live capture: drop (and count) rather than wait on a full queue.
    drop_when_full: bool,
    dropped: u64,
}

impl Dispatch<'_> {
    /// Hands `chunk` to worker `w` and gives the caller an empty one. When
    /// the worker's queue is full this waits: replay never drops.
    fn send(&mut self, w: usize, chunk: &mut Chunk, queue_full: &mut u64) {
        let fresh = self.free_rx.try_recv().unwrap_or_else(|_| Chunk::new());
        let mut out = std::mem::replace(chunk, fresh);
        chunk.items.clear();
        chunk.payload.clear();
        chunk.eof = false;
        chunk.arrival = None;
        chunk.clock = out.clock;
        let Some(tx) = self.txs.get(w) else { return };
        loop {
            match tx.try_send(out) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    *queue_full += 1;
                    out = back;
                    if self.drop_when_full && !out.eof {
                        self.dropped += out.items.iter().filter(|i| matches!(i, Item::Packet(..))).count() as u64;
                        out.items.clear();
                        return;
                    }
                    match tx.send_timeout(out, std::time::Duration::from_millis(50)) {
                        Ok(()) => return,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => out = back,
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                    }
                }
                // The worker is gone (it can only stop by panicking): nothing to do.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// A worker thread: owns its shard; processes chunks in order.
fn worker(
    id: usize,
    mut shard: Shard,
    rx: Receiver<Chunk>,
    events: Sender<EventBatch>,
    free: Sender<Chunk>,
    spare: Receiver<Vec<Event>>,
    counters: &EngineCounters,
) -> (ShardStats, Option<f64>) {
    let mut flows_published = 0;
    let mut ended_published = [0u64; EndReason::ALL.len()];
    while let Ok(mut chunk) = rx.recv() {
        for item in chunk.items.iter() {
            match item {
                Item::Packet(info, clock) => shard.packet(info, info.payload(&chunk.payload), *clock, chunk.arrival),
                Item::Sweep(t) => shard.sweep(*t, chunk.arrival),
            }
        }
        let watermark = if chunk.eof {
            shard.drain(chunk.clock);
            Micros::MAX
        } else {
            chunk.clock
        };
        counters.flows.fetch_add(shard.stats.flows_created - flows_published, Ordering::Relaxed);
        flows_published = shard.stats.flows_created;
        for ((a, now), before) in
            counters.flows_ended.iter().zip(shard.stats.flows_ended.iter()).zip(ended_published.iter_mut())
        {
            a.fetch_add(now - *before, Ordering::Relaxed);
            *before = *now;
        }
        let replacement = spare.try_recv().unwrap_or_default();
        let batch = EventBatch { worker: id, events: std::mem::replace(&mut shard.events, replacement), watermark };
        if events.send(batch).is_err() {
            break;
        }
        chunk.items.clear();
        chunk.payload.clear();
        let _ = free.try_send(chunk);
    }
    (shard.stats.clone(), thread_cpu_seconds())
}
