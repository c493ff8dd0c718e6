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
mod payload_skip;
mod stats;
mod threads;

use std::collections::BTreeMap;
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
    AtomicHistogram, BucketCounts, EngineCounters, Percentiles, ReassemblyStats, StageCounts, Stats,
    LATENCY_BUCKETS_US, STAGES,
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

    /// Publishes the calling thread's counters (capture, and the inline
    /// shard's flows) for readers on other threads.
    fn publish_inline(&self) {
        self.counters.publish(|s| self.capture.count_into(s, self.queue_full, self.queue_dropped));
        self.counters.publish_shard(0, &self.inline.stats);
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
            self.publish_inline();
        }
        self.take_error()
    }

    /// Moves engine time to `now` with no packet (an idle live capture):
    /// flows whose timeouts passed end, and pending rows are classified.
    pub fn tick(&mut self, now: Micros) -> Result<()> {
        if self.finished {
            return Err(Error::Finished);
        }
        self.publish_inline();
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
                self.shard_stats = vec![self.inline.stats];
            }
            self.merger.finish();
            // The live counters end equal to the final ones.
            self.counters.publish(|s| self.capture.count_into(s, self.queue_full, self.queue_dropped));
            for (w, sh) in self.shard_stats.iter().enumerate() {
                self.counters.publish_shard(w, sh);
            }
            self.merger.deliver.finish()?;
        }
        Ok(self.stats())
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        self.capture.count_into(&mut s, self.queue_full, self.queue_dropped);
        let shards: &[ShardStats] =
            if self.shard_stats.is_empty() { std::slice::from_ref(&self.inline.stats) } else { &self.shard_stats };
        for sh in shards {
            sh.add_to(&mut s);
        }
        self.merger.count_into(&mut s);
        s.partial_reads = self.partial_reads.clone();
        s.workers = self.used_workers;
        s.cpu_seconds = self.cpu_seconds.clone();
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
