//! `EngineBuilder`: every setting of an `Engine`, checked once at `build`,
//! and the handles that swap the model or the policy while it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::capture::CaptureState;
use super::merge::{Merger, MergerConfig};
use super::shard::Shard;
use super::stats::EngineCounters;
use super::Engine;
use crate::defrag::{DefragConfig, Defragmenter};
use crate::error::{Error, Result};
use crate::features::{HostContext, HostContextConfig};
use crate::flow::FlowConfig;
use crate::incident::IncidentConfig;
use crate::infer::Classifier;
use crate::inspect::InspectConfig;
use crate::policy::Policy;
use crate::sink::{FeatureSink, VerdictSink};
use crate::source::Micros;

pub(super) type BoxedClassifier = Box<dyn Classifier>;

/// Replaces the engine's classifier while it runs (e.g. on SIGHUP). The
/// swap happens between two batches; rows already queued are classified by
/// the new model.
#[derive(Clone)]
pub struct ModelSwapper(pub(super) Sender<Box<dyn Classifier>>);

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
pub struct PolicySwapper(pub(super) Sender<Policy>);

impl PolicySwapper {
    /// Checks `p` and queues it to replace the current policy.
    pub fn swap(&self, p: Policy) -> Result<()> {
        p.validate().map_err(Error::Config)?;
        self.0.try_send(p).map_err(|_| Error::Config("policy swaps are pending; try again".into()))
    }
}

/// Settings that can change while the engine runs (a daemon's SIGHUP),
/// besides the model and the policy. Start from [`LiveSettings::new`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LiveSettings {
    /// Deliver an end verdict only when it differs from the flow's early one
    /// (as `EngineBuilder::final_verdicts_only_if_changed`).
    pub final_verdicts_only_if_changed: bool,
    /// How verdicts group into incidents (as `EngineBuilder::incidents`).
    pub incidents: IncidentConfig,
}

impl LiveSettings {
    /// These settings.
    pub fn new(final_verdicts_only_if_changed: bool, incidents: IncidentConfig) -> Self {
        Self { final_verdicts_only_if_changed, incidents }
    }
}

/// Replaces the engine's [`LiveSettings`] while it runs, between two
/// batches: verdicts classified after the swap follow them.
#[derive(Clone)]
pub struct SettingsSwapper(pub(super) Sender<LiveSettings>);

impl SettingsSwapper {
    /// Queues `s` to replace the current settings.
    pub fn swap(&self, s: LiveSettings) -> Result<()> {
        self.0.try_send(s).map_err(|_| Error::Config("settings swaps are pending; try again".into()))
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
    feature_sinks: Vec<Box<dyn FeatureSink>>,
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
            feature_sinks: Vec::new(),
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

    /// Also hand every feature row (with its flow record) to this sink, e.g.
    /// for training data. Adds a feature sink, as `sink` adds a verdict sink.
    pub fn feature_sink(mut self, s: impl FeatureSink + 'static) -> Self {
        self.feature_sinks.push(Box::new(s));
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

    /// Flow timeouts and the flow table's capacity.
    pub fn flow_config(mut self, cfg: FlowConfig) -> Self {
        self.flow = cfg;
        self
    }

    /// Host-context table sizes and decay.
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

    /// Checks every setting and the classifier's `ModelInfo`, and makes the engine.
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
        if classifier.is_none() && self.feature_sinks.is_empty() && !self.flow_records {
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
            feature_sinks: self.feature_sinks,
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
        merger.decide.policy_swap = Some(policy_swap.1.clone());
        let settings_swap = crossbeam_channel::bounded(4);
        merger.decide.settings_swap = Some(settings_swap.1.clone());
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
            settings_swap: settings_swap.0,
            partial_reads: Vec::new(),
            cpu_seconds: BTreeMap::new(),
            used_workers: 0,
            finished: false,
            lossless: false,
        })
    }
}
