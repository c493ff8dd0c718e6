//! The pipeline: source → decode → flow table → features → batcher →
//! classifier → sinks, driven by packet time.
//!
//! The engine reads no clock for its logic: timeouts, batch deadlines and
//! host-context decay all run on capture timestamps, so a replay gives the
//! same verdicts every time.

mod merge;
mod shard;

mod builder;
mod capture;
mod parallel;
mod stats;
mod threads;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::flow::FlowConfig;
use crate::infer::ModelInfo;
use crate::inspect::InspectConfig;
use crate::policy::Policy;
use crate::source::{Micros, PacketSource, PartialRead, RawPacket};
use merge::Merger;
use shard::{Shard, ShardStats};

use builder::BoxedClassifier;
pub use builder::{EngineBuilder, LiveSettings, ModelSwapper, PolicySwapper, SettingsSwapper};
use capture::CaptureState;
pub use parallel::ParallelEngine;
use stats::thread_cpu_seconds;
pub use stats::{
    AtomicHistogram, BucketCounts, EngineCounters, Percentiles, ReassemblyStats, StageCounts, Stats, LATENCY_BUCKETS_US,
};

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
    settings_swap: Sender<LiveSettings>,
    partial_reads: Vec<PartialRead>,
    cpu_seconds: BTreeMap<String, f64>,
    used_workers: usize,
    finished: bool,
    /// Never drop on a full worker queue, even for a live source (the
    /// caller of a `ParallelEngine` is waited for instead).
    lossless: bool,
}

impl Engine {
    /// Starts building an engine (every setting has a default).
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The loaded model's metadata, if the engine classifies.
    pub fn model_info(&self) -> Option<&ModelInfo> {
        self.merger.batch.classifier.as_ref().map(|c| c.info())
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

    /// A handle to replace the [`LiveSettings`] (final
    /// verdicts, incidents) while the engine runs.
    pub fn settings_swapper(&self) -> SettingsSwapper {
        SettingsSwapper(self.settings_swap.clone())
    }

    fn publish_capture(&self) {
        publish_capture(&self.capture, &self.counters);
    }

    /// The next event, oldest first, of what earlier [`process`](Self::process),
    /// [`tick`](Self::tick) and [`finish`](Self::finish) calls produced.
    ///
    /// Only an engine built without sinks keeps events for this call; one
    /// with sinks hands them to the sinks and this returns `None`. Drain it
    /// after each call and the queue stays small (see [`crate::event`]).
    pub fn poll_event(&mut self) -> Option<crate::Event> {
        self.merger.deliver.queue.as_mut()?.pop_front()
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
        self.merger.stopped()
    }

    fn take_error(&mut self) -> Result<()> {
        match self.merger.deliver.error.take() {
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
        let step = self.capture.step(pkt);
        if let Some(t) = step.sweep {
            self.inline.sweep(t, None);
        }
        if let Some(info) = step.packet {
            let payload = info.payload(self.capture.buffers(pkt.data));
            self.inline.packet(&info, payload, self.capture.clock, None);
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
            self.merger.deliver.finish()?;
        }
        Ok(self.stats())
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.capture;
        let m = &self.merger;
        let d = &m.decide;
        let (feature_rows, host_rows) = m.feature_rows();
        let mut s = Stats {
            packets: c.packets,
            bytes: c.bytes,
            decoded: c.decoded,
            drops: c.drops,
            fragments: c.fragments,
            defrag: c.defrag.stats(),
            feature_rows,
            verdicts_early: d.verdicts_early,
            verdicts_end: d.verdicts_end,
            verdicts_host: d.verdicts_host,
            host_rows,
            verdicts_unchanged: d.verdicts_unchanged,
            verdicts_by_label: d.verdicts_by_label.clone(),
            incidents: d.incidents.stats(),
            suppressed: d.suppressed,
            explained: d.explained,
            non_finite_scores: d.non_finite_scores,
            batches: m.batch.batches,
            inference_micros: m.batch.inference_micros,
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
            stages: {
                let st = m.stages();
                vec![
                    ("order", st.order),
                    ("host_context", st.host_context),
                    ("batch", st.batch),
                    ("decide", st.decide),
                    ("deliver", st.deliver),
                ]
            },
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
        if self.merger.deliver.queue.is_some() && (self.merger.batch.classifier.is_some() || self.merger.flow_records) {
            return Err(Error::Config(
                "run() hands verdicts and flow records to sinks, and this engine has none: add one with \
                 EngineBuilder::sink, or drive the engine with process/tick/finish and poll_event"
                    .into(),
            ));
        }
        // A driver on real threads: the wall clock measures latency and
        // bounds how long a batch waits.
        self.merger.batch.wall_clock = true;
        self.inline.stamp_rows = true;
        let cpu_at_start = thread_cpu_seconds();
        if self.workers == 0 || self.capture.packets > 0 {
            while !self.merger.stopped() {
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
}

/// Publishes the capture stage's counters for readers on other threads.
fn publish_capture(c: &CaptureState, k: &EngineCounters) {
    k.packets.store(c.packets, Ordering::Relaxed);
    k.bytes.store(c.bytes, Ordering::Relaxed);
    k.decoded.store(c.decoded, Ordering::Relaxed);
    k.dropped.store(c.drops.iter().sum(), Ordering::Relaxed);
    for (a, v) in k.dropped_by_reason.iter().zip(c.drops.iter()) {
        a.store(*v, Ordering::Relaxed);
    }
}
