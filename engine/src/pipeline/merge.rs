//! The merge stage: takes the event streams of the workers, applies them in
//! one global order — (engine time, ends before starts before early rows,
//! flow id) — so that host context, and hence every verdict, is the same
//! whatever the number of workers; then batches rows, runs the classifier
//! and delivers verdicts and feature rows to the sinks.
//!
//! An event is applied only once every stream has reported progress past
//! its time (a watermark), so no later-arriving event can precede it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::shard::{Event, EventBody, RowEvent};
use crate::error::Error;
use crate::features::{HostContext, NUM_FEATURES};
use crate::incident::{Incident, IncidentConfig, IncidentTracker};
use crate::infer::Classifier;
use crate::policy::{Policy, Suppressed, SuppressedStats};
use crate::sink::{FeatureSink, FlowRecord, SinkControl, Trigger, Verdict, VerdictSink};
use crate::source::Micros;

/// Latency and inference-time histograms, in microseconds (1 µs to 1 h,
/// 3 significant digits: fixed memory, never resized), and the same values
/// in the fixed buckets of [`super::LATENCY_BUCKETS_US`] for metrics.
pub(crate) struct Timings {
    pub packet_to_verdict: Option<Histogram<u64>>,
    pub batch_inference: Option<Histogram<u64>>,
    pub packet_to_verdict_buckets: super::BucketCounts,
    pub batch_inference_buckets: super::BucketCounts,
}

impl Timings {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 3_600_000_000, 3).ok();
        Self {
            packet_to_verdict: h(),
            batch_inference: h(),
            packet_to_verdict_buckets: Default::default(),
            batch_inference_buckets: Default::default(),
        }
    }
}

fn record_micros(h: &mut Option<Histogram<u64>>, buckets: &mut super::BucketCounts, micros: u64) {
    buckets.record(micros);
    if let Some(h) = h {
        // Values above the top bound are clamped rather than lost.
        let _ = h.record(micros.clamp(1, 3_600_000_000));
    }
}

/// Applies a sink's answer: a stop request stops reading; an error stops
/// at once and is kept (the first one) for `run` to return.
fn obey(answer: Result<SinkControl, crate::error::SinkError>, stop: &mut bool, error: &mut Option<Error>) {
    match answer {
        Ok(SinkControl::Stop) => *stop = true,
        Ok(SinkControl::Continue) => {}
        Err(e) => {
            if error.is_none() {
                *error = Some(e.into());
            }
            *stop = true;
        }
    }
}

pub(crate) struct Merger {
    pub hosts: HostContext,
    streams: Vec<VecDeque<Event>>,
    watermarks: Vec<Micros>,
    pub classifier: Option<Box<dyn Classifier>>,
    labels: Vec<Arc<str>>,
    model_id: Arc<str>,
    /// Labels, thresholds and their rule (`ModelInfo::decide`) of the current model.
    model_info: Option<crate::infer::ModelInfo>,
    /// Index of the `benign` label: its verdicts are not alerts.
    benign: Option<usize>,
    pub sinks: Vec<Box<dyn VerdictSink>>,
    /// Without sinks, what would go to them waits here for `Engine::poll_event`.
    pub queue: Option<VecDeque<crate::Event>>,
    /// Read the wall clock: batch wall deadline, latency and inference time.
    /// Only the threaded drivers (`Engine::run`) turn it on; a caller's own
    /// loop gets an engine that reads no clock.
    pub wall_clock: bool,
    pub feature_sinks: Vec<Box<dyn FeatureSink>>,
    /// Ended flows' records go to the verdict sinks too.
    pub flow_records: bool,
    batch_size: usize,
    batch_deadline: Micros,
    rows: Vec<f32>,
    /// Rows waiting for the classifier: record, arrival, engine clock when made.
    records: Vec<(FlowRecord, Option<Instant>, Micros)>,
    probabilities: Vec<f32>,
    batch_opened: Micros,
    /// Wall time the batch was opened: a batch also leaves after
    /// `batch_wall_deadline`, which bounds latency when replaying fast.
    /// Batch boundaries never change a verdict (rows are independent).
    batch_opened_wall: Option<Instant>,
    batch_wall_deadline: std::time::Duration,
    pub timings: Timings,
    pub feature_rows: u64,
    /// First-packet rows classified because a host was hot.
    pub host_rows: u64,
    pub verdicts_early: u64,
    pub verdicts_end: u64,
    pub verdicts_host: u64,
    /// End verdicts not delivered because they repeated the early label.
    pub verdicts_unchanged: u64,
    /// Deliver an end verdict only when it differs from the early one.
    final_only_if_changed: bool,
    /// Early label of each open flow that had one (only with
    /// `final_only_if_changed`; bounded by the flow tables' capacity). By
    /// name, not index: a swapped model may order its labels differently.
    early_labels: rustc_hash::FxHashMap<u64, Arc<str>>,
    pub verdicts_by_label: std::collections::BTreeMap<String, u64>,
    pub batches: u64,
    pub inference_micros: u64,
    /// First error from a sink or the classifier.
    pub error: Option<Error>,
    /// Where live counters are published, if anyone reads them.
    pub counters: Option<std::sync::Arc<super::EngineCounters>>,
    /// Replacement classifiers (a model reload), taken between batches.
    pub model_swap: Option<crossbeam_channel::Receiver<Box<dyn Classifier>>>,
    pub stop: bool,
    /// Alert verdicts grouped into incidents, fed in verdict order.
    pub incidents: IncidentTracker,
    /// Incident records delivered (open, update, closed).
    pub incident_records: u64,
    /// Incident records waiting to be delivered (reused).
    incident_out: Vec<Incident>,
    /// Time of the latest event applied (engine clock).
    clock: Micros,
    /// The operator's policy, and its replacements (SIGHUP), taken between batches.
    policy: Policy,
    pub policy_swap: Option<crossbeam_channel::Receiver<Policy>>,
    pub suppressed: SuppressedStats,
    explainer: crate::explain::Explainer,
    /// Alerts explained (one classifier call each).
    pub explained: u64,
    /// Rows the classifier scored with NaN or infinity (each stops the engine with an error).
    pub non_finite_scores: u64,
}

pub(crate) struct MergerConfig {
    /// Hand every ended flow's record to the verdict sinks ([`VerdictSink::flow`]).
    pub flow_records: bool,
    pub hosts: HostContext,
    pub classifier: Option<Box<dyn Classifier>>,
    pub sinks: Vec<Box<dyn VerdictSink>>,
    /// Keep events for `poll_event` instead of handing them to sinks.
    pub queue: bool,
    pub feature_sinks: Vec<Box<dyn FeatureSink>>,
    pub batch_size: usize,
    pub batch_deadline: Micros,
    pub batch_wall_deadline: std::time::Duration,
    pub final_only_if_changed: bool,
    pub incidents: IncidentConfig,
    pub policy: Policy,
}

impl Merger {
    pub fn new(cfg: MergerConfig) -> Self {
        let labels: Vec<Arc<str>> = cfg
            .classifier
            .as_ref()
            .map(|c| c.info().labels.iter().map(|l| Arc::from(l.as_str())).collect())
            .unwrap_or_default();
        let model_id: Arc<str> =
            cfg.classifier.as_ref().map(|c| Arc::from(c.info().id().as_str())).unwrap_or_else(|| Arc::from(""));
        let model_info = cfg.classifier.as_ref().map(|c| c.info().clone());
        let benign = labels.iter().position(|l| &**l == "benign");
        Self {
            benign,
            hosts: cfg.hosts,
            streams: Vec::new(),
            watermarks: Vec::new(),
            model_info,
            classifier: cfg.classifier,
            labels,
            model_id,
            queue: cfg.queue.then(VecDeque::new),
            wall_clock: false,
            sinks: cfg.sinks,
            feature_sinks: cfg.feature_sinks,
            flow_records: cfg.flow_records,
            batch_size: cfg.batch_size,
            batch_deadline: cfg.batch_deadline,
            rows: Vec::with_capacity(cfg.batch_size * NUM_FEATURES),
            records: Vec::with_capacity(cfg.batch_size),
            probabilities: Vec::new(),
            batch_opened: 0,
            batch_opened_wall: None,
            batch_wall_deadline: cfg.batch_wall_deadline,
            timings: Timings::new(),
            feature_rows: 0,
            host_rows: 0,
            verdicts_early: 0,
            verdicts_end: 0,
            verdicts_host: 0,
            verdicts_unchanged: 0,
            final_only_if_changed: cfg.final_only_if_changed,
            early_labels: Default::default(),
            verdicts_by_label: Default::default(),
            batches: 0,
            inference_micros: 0,
            error: None,
            counters: None,
            model_swap: None,
            stop: false,
            incidents: IncidentTracker::new(cfg.incidents),
            incident_records: 0,
            incident_out: Vec::new(),
            clock: 0,
            policy: cfg.policy,
            policy_swap: None,
            suppressed: SuppressedStats::default(),
            explainer: Default::default(),
            explained: 0,
            non_finite_scores: 0,
        }
    }

    /// A merger with nothing attached, held by the engine while the real
    /// one runs on the merge thread.
    pub fn placeholder() -> Self {
        Self::new(MergerConfig {
            hosts: HostContext::new(crate::features::HostContextConfig {
                max_sources: 0,
                max_destinations: 0,
                max_pairs: 0,
                max_rhythms: 0,
            }),
            flow_records: false,
            classifier: None,
            sinks: Vec::new(),
            queue: false,
            feature_sinks: Vec::new(),
            batch_size: 1,
            batch_deadline: 0,
            batch_wall_deadline: std::time::Duration::ZERO,
            final_only_if_changed: false,
            incidents: IncidentConfig::default(),
            policy: Policy::default(),
        })
    }

    /// Prepares for `n` input streams (one per worker).
    pub fn set_streams(&mut self, n: usize) {
        self.streams = (0..n).map(|_| VecDeque::new()).collect();
        self.watermarks = vec![0; n];
    }

    /// Takes a batch of events from stream `s`, which promises that every
    /// later event of its has a time of at least `watermark`.
    pub fn push(&mut self, s: usize, events: &mut Vec<Event>, watermark: Micros) {
        let Some(q) = self.streams.get_mut(s) else {
            return;
        };
        // A batch is in time order but not in key order within a time (an
        // end-of-input drain is thousands of events at one time): sort it,
        // then each insertion walks back only over earlier same-time events.
        events.sort_unstable_by_key(Event::key);
        for e in events.drain(..) {
            let key = e.key();
            let mut at = q.len();
            while at > 0 && q[at - 1].key() > key {
                at -= 1;
            }
            q.insert(at, e);
        }
        if let Some(w) = self.watermarks.get_mut(s) {
            *w = (*w).max(watermark);
        }
        self.apply_ready();
    }

    /// Applies, in global order, every event that no stream can precede.
    fn apply_ready(&mut self) {
        let limit = self.watermarks.iter().copied().min().unwrap_or(0);
        loop {
            let mut best: Option<usize> = None;
            for (i, q) in self.streams.iter().enumerate() {
                if let Some(e) = q.front() {
                    if e.time < limit && best.is_none_or(|b| self.streams[b].front().is_some_and(|f| e.key() < f.key()))
                    {
                        best = Some(i);
                    }
                }
            }
            let Some(i) = best else { break };
            let Some(e) = self.streams[i].pop_front() else {
                break;
            };
            self.apply(e);
        }
        self.flush_if_due(limit);
        // Updates and closings fall due with time, not only with verdicts.
        // Only with no verdict pending: then every verdict before `limit`
        // has been observed, and a record due by `limit` holds exactly what
        // it would hold had the next verdict triggered it (deterministic).
        if self.records.is_empty() && limit != Micros::MAX && !self.stop {
            self.incidents.poll(limit, &mut self.incident_out);
            self.deliver_incidents();
        }
    }

    /// Hands the pending incident records to every sink.
    fn deliver_incidents(&mut self) {
        if self.incident_out.is_empty() {
            return;
        }
        for inc in self.incident_out.drain(..) {
            self.incident_records += 1;
            if let Some(q) = self.queue.as_mut() {
                q.push_back(crate::Event::Incident(inc));
                continue;
            }
            for s in self.sinks.iter_mut() {
                obey(s.incident(&inc), &mut self.stop, &mut self.error);
            }
        }
    }

    fn apply(&mut self, e: Event) {
        self.clock = self.clock.max(e.time);
        match e.body {
            EventBody::Start { initiator, responder, responder_port, first } => {
                self.hosts.on_flow_start(e.time, &initiator, &responder, responder_port);
                if self.hosts.hot(e.time, &initiator, &responder) {
                    self.host_rows += 1;
                    self.row(e.time, first);
                }
            }
            EventBody::Row(row) => {
                if row.record.trigger == Trigger::End {
                    self.hosts.on_flow_end(e.time, &row.initiator, &row.responder, row.record.bytes, row.failed);
                }
                self.row(e.time, row);
            }
        }
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.stop = true;
    }

    fn row(&mut self, time: Micros, mut ev: Box<RowEvent>) {
        // Host context as of the row's last packet, not of the moment the
        // flow was found idle: a lone SYN of a scan that times out a minute
        // later must still be seen beside the rest of its burst.
        let host = self.hosts.features(time.min(ev.record.ts), &ev.initiator, &ev.responder);
        crate::features::write_host(&host, &mut ev.row);
        self.feature_rows += 1;
        if self.flow_records && ev.record.trigger == Trigger::End {
            if let Some(q) = self.queue.as_mut() {
                q.push_back(crate::Event::Flow(ev.record.clone()));
            }
            for s in self.sinks.iter_mut() {
                obey(s.flow(&ev.record), &mut self.stop, &mut self.error);
            }
        }
        for fs in self.feature_sinks.iter_mut() {
            match fs.row(&ev.record, &ev.row) {
                Ok(SinkControl::Stop) => self.stop = true,
                Ok(SinkControl::Continue) => {}
                Err(e) => return self.fail(e.into()),
            }
        }
        if self.classifier.is_some() {
            if self.records.is_empty() {
                self.batch_opened = time;
                self.batch_opened_wall = self.wall_clock.then(Instant::now);
            }
            self.rows.extend_from_slice(&ev.row);
            let RowEvent { record, arrival, .. } = *ev;
            self.records.push((record, arrival, time));
            if self.records.len() >= self.batch_size {
                self.flush();
            }
        }
    }

    fn flush_if_due(&mut self, now: Micros) {
        if self.records.is_empty() {
            return;
        }
        let wall_due = self.batch_opened_wall.is_some_and(|t| t.elapsed() >= self.batch_wall_deadline);
        if wall_due || now.saturating_sub(self.batch_opened) >= self.batch_deadline {
            self.flush();
        }
    }

    /// Classifies the pending rows and delivers their verdicts.
    pub fn flush(&mut self) {
        if let Some(new) = self.model_swap.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.labels = new.info().labels.iter().map(|l| Arc::from(l.as_str())).collect();
            self.benign = self.labels.iter().position(|l| &**l == "benign");
            self.model_id = Arc::from(new.info().id().as_str());
            self.model_info = Some(new.info().clone());
            self.classifier = Some(new);
        }
        if let Some(p) = self.policy_swap.as_ref().and_then(|rx| rx.try_iter().last()) {
            self.policy = p;
        }
        let rows = self.records.len();
        let Some(classifier) = self.classifier.as_mut() else {
            return;
        };
        if rows == 0 {
            return;
        }
        let n_labels = self.labels.len();
        // Zero rows pad the batch to a multiple of 16: ONNX Runtime's
        // vectorised element-wise kernels treat the last few values of a
        // tensor in a scalar tail with other rounding, and which row lands
        // there must not depend on how rows happened to be batched.
        let padded = rows.div_ceil(16) * 16;
        self.rows.resize(padded * NUM_FEATURES, 0.0);
        self.probabilities.resize(padded * n_labels, 0.0);
        // Wall time for the statistics only: no decision depends on it.
        let started = self.wall_clock.then(Instant::now);
        let outcome = classifier.classify(&self.rows, padded, &mut self.probabilities);
        if let Some(started) = started {
            let took = started.elapsed().as_micros() as u64;
            self.inference_micros += took;
            record_micros(&mut self.timings.batch_inference, &mut self.timings.batch_inference_buckets, took);
        }
        self.batches += 1;
        if let Err(e) = outcome {
            self.rows.clear();
            self.records.clear();
            return self.fail(e);
        }
        let mut records = std::mem::take(&mut self.records);
        for (i, (record, arrival, detected_at)) in records.drain(..).enumerate() {
            let probs = &self.probabilities[i * n_labels..(i + 1) * n_labels];
            let Some((best, score)) = self.model_info.as_ref().and_then(|m| m.decide(probs)) else {
                self.non_finite_scores += 1;
                self.fail(Error::inference(format!(
                    "the model gave non-finite scores {probs:?} for flow {}; check the model",
                    record.flow_id
                )));
                break;
            };
            let Some(label) = self.labels.get(best).cloned() else {
                continue;
            };
            // An end verdict that repeats the flow's early label is not
            // delivered (counted), but still counts in its incident.
            let mut deliver = true;
            if self.final_only_if_changed {
                match record.trigger {
                    Trigger::Early => {
                        self.early_labels.insert(record.flow_id, label.clone());
                    }
                    Trigger::End => deliver = self.early_labels.remove(&record.flow_id).as_deref() != Some(&*label),
                    Trigger::Host => {}
                }
            }
            let mut verdict = Verdict {
                flow: record,
                label,
                score,
                scores: self.labels.iter().cloned().zip(probs.iter().copied()).collect(),
                model: self.model_id.clone(),
                detected_at,
                incident_id: None,
                suppressed: None,
                reasons: None,
                reasons_inherited: false,
            };
            // Closings and updates due before this verdict go first, then
            // policy; an alert it lets through joins (or opens) its incident
            // before it is delivered, and learns its id.
            self.incidents.poll(detected_at, &mut self.incident_out);
            if Some(best) != self.benign {
                verdict.suppressed = self.policy.judge(&verdict);
                if verdict.suppressed.is_none() {
                    let medians = self.model_info.as_ref().map_or(&[][..], |m| &m.benign_medians[..]);
                    if !medians.is_empty() && self.incidents.wants_reasons(&verdict) {
                        if let Some(c) = self.classifier.as_mut() {
                            let row = &self.rows[i * NUM_FEATURES..(i + 1) * NUM_FEATURES];
                            match self.explainer.explain(c.as_mut(), medians, row, best, n_labels, score) {
                                Ok(r) => {
                                    self.explained += 1;
                                    verdict.reasons = Some(r);
                                }
                                Err(e) => {
                                    self.fail(e);
                                    break;
                                }
                            }
                        }
                    }
                    if let Some(m) = self.incidents.observe(&verdict, &mut self.incident_out) {
                        verdict.incident_id = Some(m.incident_id);
                        if verdict.reasons.is_none() && m.reasons.is_some() {
                            verdict.reasons = m.reasons;
                            verdict.reasons_inherited = true;
                        }
                        let limit = self.policy.max_alerts_per_incident_per_minute;
                        if limit > 0 && m.alerts_this_minute > limit {
                            verdict.suppressed = Some(Suppressed::RateLimit);
                        }
                    }
                }
            }
            self.deliver_incidents();
            if !deliver {
                self.verdicts_unchanged += 1;
                continue;
            }
            if let Some(s) = verdict.suppressed {
                self.suppressed.count(s);
            }
            match self.verdicts_by_label.get_mut(&*verdict.label) {
                Some(n) => *n += 1,
                None => {
                    self.verdicts_by_label.insert(verdict.label.to_string(), 1);
                }
            }
            match verdict.flow.trigger {
                Trigger::Early => self.verdicts_early += 1,
                Trigger::End => self.verdicts_end += 1,
                Trigger::Host => self.verdicts_host += 1,
            }
            for s in self.sinks.iter_mut() {
                obey(s.verdict(&verdict), &mut self.stop, &mut self.error);
            }
            if let Some(q) = self.queue.as_mut() {
                q.push_back(crate::Event::Verdict(verdict));
            }
            if let Some(a) = arrival {
                let t = &mut self.timings;
                record_micros(
                    &mut t.packet_to_verdict,
                    &mut t.packet_to_verdict_buckets,
                    a.elapsed().as_micros() as u64,
                );
            }
        }
        // The rows stay until here: an alert is explained from its own row.
        self.rows.clear();
        self.records = records;
        self.publish_counters();
    }

    /// Publishes the live counters, for readers on other threads.
    fn publish_counters(&self) {
        if let Some(c) = &self.counters {
            use std::sync::atomic::Ordering::Relaxed;
            c.verdicts.store(self.verdicts_early + self.verdicts_end + self.verdicts_host, Relaxed);
            c.verdicts_early.store(self.verdicts_early, Relaxed);
            c.verdicts_end.store(self.verdicts_end, Relaxed);
            c.incident_records.store(self.incident_records, Relaxed);
            c.suppressed_min_score.store(self.suppressed.min_score, Relaxed);
            c.suppressed_rule.store(self.suppressed.rule, Relaxed);
            c.suppressed_rate_limit.store(self.suppressed.rate_limit, Relaxed);
            c.packet_to_verdict.publish(&self.timings.packet_to_verdict_buckets);
            c.batch_inference.publish(&self.timings.batch_inference_buckets);
            if let Ok(mut by_label) = c.verdicts_by_label.lock() {
                if by_label.len() != self.verdicts_by_label.len() {
                    *by_label = self.verdicts_by_label.iter().map(|(k, v)| (k.clone(), *v)).collect();
                } else {
                    for ((_, n), (_, v)) in by_label.iter_mut().zip(self.verdicts_by_label.iter()) {
                        *n = *v;
                    }
                }
            }
            if let Ok(mut by_label) = c.incidents_by_label.lock() {
                self.incidents.opened_by_label(&mut by_label);
            }
            if let Some(h) = &self.timings.packet_to_verdict {
                c.latency_p50_us.store(h.value_at_quantile(0.5), Relaxed);
                c.latency_p99_us.store(h.value_at_quantile(0.99), Relaxed);
            }
        }
    }

    /// Engine time by which something waits to be done without a packet:
    /// events held back at the current time, or a batch whose deadline
    /// falls due. `None` when nothing waits.
    pub fn next_due(&self) -> Option<Micros> {
        let held = self.streams.iter().filter_map(|q| q.front()).map(|e| e.time.saturating_add(1)).min();
        let batch = (!self.records.is_empty()).then(|| self.batch_opened.saturating_add(self.batch_deadline));
        held.into_iter().chain(batch).min()
    }

    /// Applies everything left (all streams finished) and flushes.
    pub fn finish(&mut self) {
        for w in self.watermarks.iter_mut() {
            *w = Micros::MAX;
        }
        self.apply_ready();
        self.flush();
        if self.classifier.is_some() {
            self.incidents.close_all(self.clock, &mut self.incident_out);
            self.deliver_incidents();
        }
        self.publish_counters();
    }
}
