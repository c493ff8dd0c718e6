//! The pipeline: source → decode → flow table → features → batcher →
//! classifier → sinks, driven by packet time.
//!
//! The engine reads no clock for its logic: timeouts, batch deadlines and
//! host-context decay all run on capture timestamps, so a replay gives the
//! same verdicts every time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::decode::{decode, proto_name, to_ip, DropReason};
use crate::error::{Error, Result};
use crate::features::{self, HostContext, HostContextConfig, NUM_FEATURES};
use crate::flow::{EndReason, Flow, FlowConfig, FlowTable};
use crate::infer::{Classifier, ModelInfo, OnnxClassifier};
use crate::sink::{FeatureSink, FlowRecord, SinkControl, Trigger, Verdict, VerdictSink};
use crate::source::{Micros, PacketSource, PartialRead, RawPacket};

/// Counters of one run. `packets == decoded + sum(drops)` always.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub decoded: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub flows_created: u64,
    pub flows_ended: [u64; EndReason::ALL.len()],
    pub flows_peak: u64,
    pub feature_rows: u64,
    pub verdicts_early: u64,
    pub verdicts_end: u64,
    pub verdicts_by_label: BTreeMap<String, u64>,
    pub batches: u64,
    pub inference_micros: u64,
    pub host_context_untracked: u64,
    pub first_ts: Option<Micros>,
    pub last_ts: Option<Micros>,
    pub partial_reads: Vec<PartialRead>,
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
        self.verdicts_early + self.verdicts_end
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
        let drops: BTreeMap<&str, u64> = DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.drops[r.index()]))
            .collect();
        let ends: BTreeMap<&str, u64> = EndReason::ALL
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name(), self.flows_ended[i]))
            .collect();
        serde_json::json!({
            "packets": self.packets,
            "bytes": self.bytes,
            "decoded": self.decoded,
            "dropped": self.dropped(),
            "drops": drops,
            "flows": self.flows_created,
            "flows_ended": ends,
            "flows_peak": self.flows_peak,
            "feature_rows": self.feature_rows,
            "verdicts": self.verdicts(),
            "verdicts_early": self.verdicts_early,
            "verdicts_end": self.verdicts_end,
            "verdicts_by_label": self.verdicts_by_label,
            "batches": self.batches,
            "inference_us": self.inference_micros,
            "host_context_untracked": self.host_context_untracked,
            "partial_reads": self.partial_reads,
        })
    }
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
    flow: FlowConfig,
    host: HostContextConfig,
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
            flow: FlowConfig::default(),
            host: HostContextConfig::default(),
        }
    }
}

impl EngineBuilder {
    /// Classify with this ONNX model (see `models/README.md` for the contract).
    pub fn model(mut self, path: impl Into<PathBuf>) -> Self {
        self.model_path = Some(path.into());
        self
    }

    /// Path of `libonnxruntime.so`; default: `ORT_DYLIB_PATH`, then `.ort/`.
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

    /// Longest a row waits for its batch, in capture time.
    pub fn batch_deadline(mut self, d: std::time::Duration) -> Self {
        self.batch_deadline = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
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

    pub fn build(self) -> Result<Engine> {
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if self.flow.max_flows == 0 {
            return Err(Error::Config(
                "the flow table needs room for at least one flow".into(),
            ));
        }
        let classifier = match (self.classifier, &self.model_path) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give either a model path or a classifier, not both".into(),
                ))
            }
            (Some(c), None) => Some(c),
            (None, Some(p)) => Some(
                Box::new(OnnxClassifier::load(p, self.runtime_path.as_deref())?)
                    as Box<dyn Classifier>,
            ),
            (None, None) => None,
        };
        if classifier.is_none() && self.feature_sink.is_none() {
            return Err(Error::Config(
                "nothing to do: give a model (or classifier) or a feature sink".into(),
            ));
        }
        if classifier.is_some() && self.sinks.is_empty() {
            return Err(Error::Config(
                "a classifier needs at least one verdict sink".into(),
            ));
        }
        let labels: Vec<Arc<str>> = classifier
            .as_ref()
            .map(|c| {
                c.info()
                    .labels
                    .iter()
                    .map(|l| Arc::from(l.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        let model_id: Arc<str> = classifier
            .as_ref()
            .map(|c| Arc::from(c.info().id().as_str()))
            .unwrap_or_else(|| Arc::from(""));
        let batch = self.batch_size;
        Ok(Engine {
            flows: FlowTable::new(self.flow),
            out: Emitter {
                hosts: HostContext::new(self.host),
                classifier,
                labels,
                model_id,
                sinks: self.sinks,
                feature_sink: self.feature_sink,
                batch_size: batch,
                batch_deadline: self.batch_deadline,
                rows: Vec::with_capacity(batch * NUM_FEATURES),
                records: Vec::with_capacity(batch),
                probabilities: Vec::new(),
                batch_opened: 0,
                stats: Stats::default(),
                error: None,
                stop: false,
            },
            early_packets: self.early_packets,
            clock: 0,
            next_sweep: 0,
            finished: false,
        })
    }
}

/// Sweep for timed-out flows once per second of capture time.
const SWEEP_INTERVAL: Micros = 1_000_000;

/// The inspection engine. See the crate documentation for an example.
pub struct Engine {
    flows: FlowTable,
    out: Emitter,
    early_packets: usize,
    clock: Micros,
    next_sweep: Micros,
    finished: bool,
}

/// Everything downstream of the flow table: host context, feature rows,
/// batching, inference and sinks.
struct Emitter {
    hosts: HostContext,
    classifier: Option<Box<dyn Classifier>>,
    labels: Vec<Arc<str>>,
    model_id: Arc<str>,
    sinks: Vec<Box<dyn VerdictSink>>,
    feature_sink: Option<Box<dyn FeatureSink>>,
    batch_size: usize,
    batch_deadline: Micros,
    rows: Vec<f32>,
    records: Vec<FlowRecord>,
    probabilities: Vec<f32>,
    batch_opened: Micros,
    stats: Stats,
    /// First error from a callback that could not return it directly.
    error: Option<Error>,
    stop: bool,
}

impl Emitter {
    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.stop = true;
    }

    fn control(&mut self, c: SinkControl) {
        if c == SinkControl::Stop {
            self.stop = true;
        }
    }

    fn flow_ended(&mut self, flow: Flow, reason: EndReason) {
        let ((init, _), _) = flow.endpoints();
        self.hosts
            .on_flow_end(flow.stats.last_ts, &init, flow.failed_handshake());
        if let Some(i) = EndReason::ALL.iter().position(|r| *r == reason) {
            self.stats.flows_ended[i] += 1;
        }
        self.emit(&flow, Trigger::End, Some(reason.name()));
    }

    /// Makes a feature row for `flow` and hands it on.
    fn emit(&mut self, flow: &Flow, trigger: Trigger, end_reason: Option<&'static str>) {
        let ts = flow.stats.last_ts;
        let ((init, _), (resp, _)) = flow.endpoints();
        let (src_port, dst_port) = flow.reported_ports();
        let host = self.hosts.features(ts, &init, &resp);
        let mut row = [0f32; NUM_FEATURES];
        features::write_row(&flow.stats, &flow.facts(), &host, &mut row);
        let record = FlowRecord {
            ts,
            flow_id: flow.id,
            flow_start: flow.stats.first_ts,
            proto: proto_name(flow.key.proto),
            src_ip: to_ip(&init, flow.key.is_ipv6),
            src_port,
            dst_ip: to_ip(&resp, flow.key.is_ipv6),
            dst_port,
            packets: flow.packets(),
            bytes: flow.wire_bytes,
            trigger,
            end_reason,
        };
        self.stats.feature_rows += 1;
        if let Some(fs) = self.feature_sink.as_mut() {
            match fs.row(&record, &row) {
                Ok(c) => self.control(c),
                Err(e) => return self.fail(e.into()),
            }
        }
        if self.classifier.is_some() {
            if self.records.is_empty() {
                self.batch_opened = ts;
            }
            self.rows.extend_from_slice(&row);
            self.records.push(record);
            if self.records.len() >= self.batch_size {
                self.flush();
            }
        }
    }

    fn flush_if_due(&mut self, now: Micros) {
        if !self.records.is_empty() && now.saturating_sub(self.batch_opened) >= self.batch_deadline
        {
            self.flush();
        }
    }

    /// Classifies the pending rows and delivers their verdicts.
    fn flush(&mut self) {
        let rows = self.records.len();
        let Some(classifier) = self.classifier.as_mut() else {
            return;
        };
        if rows == 0 {
            return;
        }
        let n_labels = self.labels.len();
        self.probabilities.resize(rows * n_labels, 0.0);
        // Wall time, for the statistics only: no decision depends on it.
        let started = std::time::Instant::now();
        let outcome = classifier.classify(&self.rows, rows, &mut self.probabilities);
        self.stats.inference_micros += started.elapsed().as_micros() as u64;
        self.stats.batches += 1;
        if let Err(e) = outcome {
            self.rows.clear();
            self.records.clear();
            return self.fail(e);
        }
        let mut records = std::mem::take(&mut self.records);
        for (i, record) in records.drain(..).enumerate() {
            let probs = &self.probabilities[i * n_labels..(i + 1) * n_labels];
            let (best, score) = probs.iter().enumerate().fold((0, f32::MIN), |acc, (j, p)| {
                if *p > acc.1 {
                    (j, *p)
                } else {
                    acc
                }
            });
            let Some(label) = self.labels.get(best).cloned() else {
                continue;
            };
            *self
                .stats
                .verdicts_by_label
                .entry(label.to_string())
                .or_insert(0) += 1;
            match record.trigger {
                Trigger::Early => self.stats.verdicts_early += 1,
                Trigger::End => self.stats.verdicts_end += 1,
            }
            let verdict = Verdict {
                flow: record,
                label,
                score,
                scores: self
                    .labels
                    .iter()
                    .cloned()
                    .zip(probs.iter().copied())
                    .collect(),
                model: self.model_id.clone(),
            };
            for s in self.sinks.iter_mut() {
                match s.verdict(&verdict) {
                    Ok(SinkControl::Stop) => self.stop = true,
                    Ok(SinkControl::Continue) => {}
                    Err(e) => {
                        if self.error.is_none() {
                            self.error = Some(e.into());
                        }
                        self.stop = true;
                    }
                }
            }
        }
        self.records = records;
        self.rows.clear();
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The loaded model's metadata, if the engine classifies.
    pub fn model_info(&self) -> Option<&ModelInfo> {
        self.out.classifier.as_ref().map(|c| c.info())
    }

    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// True once a sink asked to stop or an error occurred.
    pub fn stop_requested(&self) -> bool {
        self.out.stop
    }

    /// Feeds one packet. Never fails on packet content: a packet that cannot
    /// be decoded is counted under its drop reason. Errors come from sinks
    /// and the classifier only.
    pub fn process(&mut self, pkt: &RawPacket<'_>) -> Result<()> {
        let stats = &mut self.out.stats;
        stats.packets += 1;
        stats.bytes += u64::from(pkt.wire_len);
        stats.first_ts = Some(stats.first_ts.map_or(pkt.ts, |t| t.min(pkt.ts)));
        stats.last_ts = Some(stats.last_ts.map_or(pkt.ts, |t| t.max(pkt.ts)));
        self.clock = self.clock.max(pkt.ts);
        if self.clock >= self.next_sweep {
            let out = &mut self.out;
            self.flows
                .expire(self.clock, &mut |f, r| out.flow_ended(f, r));
            self.next_sweep = self.clock.saturating_add(SWEEP_INTERVAL);
        }
        let info = match decode(pkt) {
            Ok(info) => info,
            Err(reason) => {
                self.out.stats.drops[reason.index()] += 1;
                return self.take_error();
            }
        };
        self.out.stats.decoded += 1;
        let out = &mut self.out;
        let update = self.flows.update(&info, &mut |f, r| out.flow_ended(f, r));
        let flow = update.flow;
        if update.created {
            out.stats.flows_created += 1;
            let ((init, _), (resp, resp_port)) = flow.endpoints();
            out.hosts
                .on_flow_start(flow.stats.first_ts, &init, &resp, resp_port);
        }
        if self.early_packets > 0 && !flow.early_sent && flow.packets() >= self.early_packets as u64
        {
            flow.early_sent = true;
            out.emit(flow, Trigger::Early, None);
        }
        out.stats.flows_peak = out.stats.flows_peak.max(self.flows.len() as u64);
        self.out.flush_if_due(self.clock);
        self.take_error()
    }

    fn take_error(&mut self) -> Result<()> {
        match self.out.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends every open flow, classifies what is pending, finishes the sinks
    /// and returns the counters. Further calls return the same counters.
    pub fn finish(&mut self) -> Result<Stats> {
        if !self.finished {
            self.finished = true;
            let out = &mut self.out;
            self.flows.drain(&mut |f, r| out.flow_ended(f, r));
            out.flush();
            out.stats.host_context_untracked = out.hosts.untracked;
            let mut first_err = out.error.take();
            for s in out.sinks.iter_mut() {
                if let Err(e) = s.finish() {
                    first_err.get_or_insert(e.into());
                }
            }
            if let Some(fs) = out.feature_sink.as_mut() {
                if let Err(e) = fs.finish() {
                    first_err.get_or_insert(e.into());
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(self.out.stats.clone())
    }

    /// Reads `source` to its end (or until a sink asks to stop), then
    /// [`finish`](Self::finish)es.
    pub fn run(&mut self, source: &mut dyn PacketSource) -> Result<Stats> {
        while !self.out.stop {
            match source.next_packet()? {
                Some(pkt) => self.process(&pkt)?,
                None => break,
            }
        }
        self.out.stats.partial_reads = source.partial_reads();
        self.finish()
    }
}
