//! The merge stage, in pipeline order: the workers' events are put in one
//! global order ([`order`]), host context is updated and added to each row
//! (here), rows wait for the classifier ([`batch`]), scored rows become
//! verdicts and incidents ([`decide`]), and everything is handed to the
//! sinks ([`deliver`]). Each part counts what it received, sent, discarded
//! and failed ([`StageCounts`]).

mod batch;
mod decide;
mod deliver;
mod order;

use hdrhistogram::Histogram;

use super::shard::{Event, EventBody, RowEvent};
use super::stats::StageCounts;
use crate::features::{HostContext, HostFeatures};
use crate::incident::{Incident, IncidentConfig};
use crate::infer::Classifier;
use crate::policy::Policy;
use crate::sink::{FeatureSink, Trigger, VerdictSink};
use crate::source::Micros;
use batch::Batcher;
use decide::Decider;
use deliver::Delivery;
use order::EventOrder;

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

    pub(crate) fn record_inference(&mut self, micros: u64) {
        record_micros(&mut self.batch_inference, &mut self.batch_inference_buckets, micros);
    }

    fn record_latency(&mut self, micros: u64) {
        record_micros(&mut self.packet_to_verdict, &mut self.packet_to_verdict_buckets, micros);
    }
}

/// Hands pending incident records to the sinks (a function of the two
/// fields, so it can run while a scored batch is lent out).
fn deliver_incidents(out: &mut Vec<Incident>, deliver: &mut Delivery) {
    for inc in out.drain(..) {
        deliver.incident(inc);
    }
}

fn record_micros(h: &mut Option<Histogram<u64>>, buckets: &mut super::BucketCounts, micros: u64) {
    buckets.record(micros);
    if let Some(h) = h {
        // Values above the top bound are clamped rather than lost.
        let _ = h.record(micros.clamp(1, 3_600_000_000));
    }
}

/// The host-context stage's share of the merge stage: events received,
/// rows sent on, and flow starts discarded (their host was not hot).
#[derive(Default)]
struct HostStage {
    counts: StageCounts,
    /// Feature rows made (early, end and host rows).
    feature_rows: u64,
    /// First-packet rows made because a host was hot.
    host_rows: u64,
}

pub(crate) struct Merger {
    order: EventOrder,
    pub hosts: HostContext,
    host_stage: HostStage,
    pub batch: Batcher,
    pub decide: Decider,
    pub deliver: Delivery,
    /// Ended flows' records go to the verdict sinks too.
    pub flow_records: bool,
    pub timings: Timings,
    /// Incident records waiting to be delivered (reused).
    incident_out: Vec<Incident>,
    /// Time of the latest event applied (engine clock).
    clock: Micros,
    /// Where live counters are published, if anyone reads them.
    pub counters: Option<std::sync::Arc<super::EngineCounters>>,
    /// Replacement classifiers (a model reload), taken between batches.
    pub model_swap: Option<crossbeam_channel::Receiver<Box<dyn Classifier>>>,
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
        let info = cfg.classifier.as_ref().map(|c| c.info().clone());
        Self {
            order: EventOrder::default(),
            hosts: cfg.hosts,
            host_stage: HostStage::default(),
            decide: Decider::new(info.as_ref(), cfg.final_only_if_changed, cfg.incidents, cfg.policy),
            batch: Batcher::new(cfg.classifier, cfg.batch_size, cfg.batch_deadline, cfg.batch_wall_deadline),
            deliver: Delivery::new(cfg.sinks, cfg.feature_sinks, cfg.queue),
            flow_records: cfg.flow_records,
            timings: Timings::new(),
            incident_out: Vec::new(),
            clock: 0,
            counters: None,
            model_swap: None,
        }
    }

    /// Prepares for `n` input streams (one per worker).
    pub fn set_streams(&mut self, n: usize) {
        self.order.set_streams(n);
    }

    /// A sink asked to stop, or something failed.
    pub fn stopped(&self) -> bool {
        self.deliver.stop
    }

    /// Takes a batch of events from stream `s`, which promises that every
    /// later event of its has a time of at least `watermark`, and applies
    /// what it made ready.
    pub fn push(&mut self, s: usize, events: &mut Vec<Event>, watermark: Micros) {
        self.order.push(s, events, watermark);
        self.apply_ready();
        self.deliver.end_batch();
    }

    /// Applies, in global order, every event that no stream can precede.
    fn apply_ready(&mut self) {
        let limit = self.order.limit();
        while let Some(e) = self.order.pop_ready(limit) {
            self.apply(e);
        }
        if self.batch.due(limit) {
            self.flush();
        }
        // Updates and closings fall due with time, not only with verdicts.
        // Only with no verdict pending: then every verdict before `limit`
        // has been observed, and a record due by `limit` holds exactly what
        // it would hold had the next verdict triggered it (deterministic).
        if self.batch.is_empty() && limit != Micros::MAX && !self.deliver.stop {
            self.decide.incidents.poll(limit, &mut self.incident_out);
            self.deliver_incidents();
        }
    }

    /// Hands the pending incident records to the sinks.
    fn deliver_incidents(&mut self) {
        deliver_incidents(&mut self.incident_out, &mut self.deliver);
    }

    /// The host-context stage: updates the tables, and passes on rows
    /// (with a hot host's first-packet row).
    fn apply(&mut self, e: Event) {
        self.clock = self.clock.max(e.time);
        self.host_stage.counts.received += 1;
        match e.body {
            EventBody::Start { initiator, responder, responder_port, first } => {
                self.hosts.on_flow_start(e.time, &initiator, &responder, responder_port);
                let context = self.hosts.features(e.time.min(first.record.ts), &initiator, &responder);
                self.hosts.keep_first_packet(e.flow_id, context);
                if self.hosts.hot_given(e.time, &initiator, &responder, &context) {
                    self.host_stage.host_rows += 1;
                    self.host_stage.counts.sent += 1;
                    self.row(e.time, first, context);
                } else {
                    self.host_stage.counts.discarded += 1;
                }
            }
            EventBody::Row(row) => {
                let (src, dst) = (&row.initiator, &row.responder);
                let context = if row.record.trigger == Trigger::End {
                    self.hosts.on_flow_end(e.time, src, dst, row.record.bytes, row.failed);
                    let span = (row.record.flow_start, row.record.ts);
                    self.hosts.end_features(e.flow_id, e.time, span, src, dst)
                } else {
                    // K packets: no longer a lone packet; its end row is
                    // judged by the context of its own time.
                    self.hosts.forget_first_packet(e.flow_id);
                    self.hosts.features(e.time.min(row.record.ts), src, dst)
                };
                self.host_stage.counts.sent += 1;
                self.row(e.time, row, context);
            }
        }
    }

    /// Adds the host context to a row and hands it on.
    fn row(&mut self, time: Micros, mut ev: RowEvent, host: HostFeatures) {
        crate::features::write_host(&host, &mut ev.row);
        self.host_stage.feature_rows += 1;
        if self.flow_records && ev.record.trigger == Trigger::End {
            self.deliver.flow(&ev.record);
        }
        if !self.deliver.feature_row(&ev.record, &ev.row) {
            return;
        }
        if self.batch.classifier.is_some() {
            let RowEvent { record, arrival, row, .. } = ev;
            if self.batch.add(&row, (record, arrival, time), time) {
                self.flush();
            }
        }
    }

    /// How long the merge thread may wait for events before the waiting
    /// batch's wall deadline passes (`None`: no batch waits; wait for events).
    pub fn wall_wait(&self) -> Option<std::time::Duration> {
        self.batch.wall_remaining()
    }

    /// No event came before the waiting batch's wall deadline: classify it
    /// now, so a verdict never waits for the next packet.
    pub fn on_wall_timeout(&mut self) {
        if self.batch.wall_remaining() == Some(std::time::Duration::ZERO) {
            self.flush();
            self.deliver.end_batch();
        }
    }

    /// Classifies the pending rows and delivers their verdicts.
    pub fn flush(&mut self) {
        if let Some(new) = self.model_swap.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.decide.set_model(new.info());
            self.batch.classifier = Some(new);
        }
        self.decide.take_swaps();
        let n_labels = self.decide.n_labels();
        let (mut records, mut scored) = match self.batch.score(n_labels, &mut self.timings) {
            Ok(Some(batch)) => batch,
            Ok(None) => return,
            Err(e) => return self.deliver.fail(e),
        };
        for (i, pending) in records.drain(..).enumerate() {
            let arrival = pending.1;
            let verdict = match self.decide.decide(pending, &mut scored, i, &mut self.incident_out) {
                Ok(v) => v,
                Err(e) => {
                    self.deliver.fail(e);
                    break;
                }
            };
            deliver_incidents(&mut self.incident_out, &mut self.deliver);
            let Some(verdict) = verdict else { continue };
            self.deliver.verdict(verdict);
            if let Some(a) = arrival {
                self.timings.record_latency(a.elapsed().as_micros() as u64);
            }
        }
        self.batch.done(records);
        self.publish_counters();
    }

    /// Writes this stage's counters into `s`: the verdict and incident
    /// counts, and each part's [`StageCounts`] (set, not added). The one
    /// place these counters are named, for the live counters and for the
    /// final [`super::Stats`] alike.
    pub fn count_into(&self, s: &mut super::Stats) {
        let d = &self.decide;
        s.feature_rows = self.host_stage.feature_rows;
        s.host_rows = self.host_stage.host_rows;
        s.verdicts_early = d.verdicts_early;
        s.verdicts_end = d.verdicts_end;
        s.verdicts_host = d.verdicts_host;
        s.verdicts_unchanged = d.verdicts_unchanged;
        super::stats::set_counts(&mut s.verdicts_by_label, d.verdicts_by_label.iter().map(|(k, v)| (k.as_str(), *v)));
        s.incidents = d.incidents.stats();
        super::stats::set_counts(&mut s.incidents_by_label, d.incidents.opened_by_label());
        s.incident_records = self.deliver.incident_records;
        s.suppressed = d.suppressed;
        s.explained = d.explained;
        s.non_finite_scores = d.non_finite_scores;
        s.batches = self.batch.batches;
        s.inference_micros = self.batch.inference_micros;
        s.host_context_untracked = self.hosts.untracked;
        s.latency_us = super::Percentiles::of(&self.timings.packet_to_verdict);
        s.inference_batch_us = super::Percentiles::of(&self.timings.batch_inference);
        *s.stage_mut("order") = self.order.counts;
        *s.stage_mut("host_context") = self.host_stage.counts;
        *s.stage_mut("batch") = self.batch.counts;
        *s.stage_mut("decide") = d.counts;
        *s.stage_mut("deliver") = self.deliver.counts;
    }

    /// Publishes the live counters, for readers on other threads.
    fn publish_counters(&self) {
        if let Some(c) = &self.counters {
            c.publish(|s| self.count_into(s));
            c.packet_to_verdict.publish(&self.timings.packet_to_verdict_buckets);
            c.batch_inference.publish(&self.timings.batch_inference_buckets);
        }
    }

    /// Engine time by which something waits to be done without a packet:
    /// events held back at the current time, or a batch whose deadline
    /// falls due. `None` when nothing waits.
    pub fn next_due(&self) -> Option<Micros> {
        self.order.next_due().into_iter().chain(self.batch.next_due()).min()
    }

    /// Applies everything left (all streams finished) and flushes.
    pub fn finish(&mut self) {
        self.order.end_all();
        self.apply_ready();
        self.flush();
        if self.batch.classifier.is_some() {
            self.decide.incidents.close_all(self.clock, &mut self.incident_out);
            self.deliver_incidents();
        }
        self.deliver.end_batch();
        self.publish_counters();
    }
}
