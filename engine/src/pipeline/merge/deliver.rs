//! Delivery: verdicts, incident records, flow records and feature rows
//! handed to the sinks — or, for an engine without sinks, queued for
//! `Engine::poll_event`. A sink's stop request or error stops the engine;
//! the first error is kept for the caller.

use std::collections::VecDeque;

use super::super::stats::StageCounts;
use crate::error::{Error, SinkError};
use crate::features::NUM_FEATURES;
use crate::incident::Incident;
use crate::sink::{FeatureSink, FlowRecord, SinkControl, Verdict, VerdictSink};

pub(crate) struct Delivery {
    pub sinks: Vec<Box<dyn VerdictSink>>,
    pub feature_sinks: Vec<Box<dyn FeatureSink>>,
    /// Without sinks, what would go to them waits here for `Engine::poll_event`.
    pub queue: Option<VecDeque<crate::Event>>,
    /// A sink asked to stop, or something failed.
    pub stop: bool,
    /// First error from a sink, the classifier or the engine.
    pub error: Option<Error>,
    /// Records (verdicts, incident records, flow records, feature rows)
    /// received; delivered to every sink (sent); refused by a sink with an
    /// error (failed).
    pub counts: StageCounts,
    /// Incident records (open, update, closed) handed on.
    pub incident_records: u64,
    /// A record went to the sinks since their last end of batch.
    delivered_since_batch_end: bool,
}

impl Delivery {
    pub fn new(sinks: Vec<Box<dyn VerdictSink>>, feature_sinks: Vec<Box<dyn FeatureSink>>, queue: bool) -> Self {
        Self {
            sinks,
            feature_sinks,
            queue: queue.then(VecDeque::new),
            stop: false,
            error: None,
            counts: StageCounts::default(),
            incident_records: 0,
            delivered_since_batch_end: false,
        }
    }

    /// Keeps the first error and stops.
    pub fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.stop = true;
    }

    /// Applies one sink's answer: a stop request stops reading; an error
    /// stops at once and is kept (the first one).
    fn obey(&mut self, answer: Result<SinkControl, SinkError>) -> bool {
        match answer {
            Ok(SinkControl::Stop) => self.stop = true,
            Ok(SinkControl::Continue) => {}
            Err(e) => {
                self.fail(e.into());
                return false;
            }
        }
        true
    }

    /// Counts one record as delivered or failed.
    fn count(&mut self, ok: bool) {
        self.delivered_since_batch_end = true;
        self.counts.received += 1;
        if ok {
            self.counts.sent += 1;
        } else {
            self.counts.failed += 1;
        }
    }

    /// Hands one record to every verdict sink; false when one failed.
    fn each_sink(&mut self, mut call: impl FnMut(&mut dyn VerdictSink) -> Result<SinkControl, SinkError>) -> bool {
        let mut ok = true;
        for i in 0..self.sinks.len() {
            let answer = call(self.sinks[i].as_mut());
            ok &= self.obey(answer);
        }
        ok
    }

    /// Queues an event for `poll_event`, when the engine has no sinks.
    fn enqueue(&mut self, event: impl FnOnce() -> crate::Event) {
        if let Some(q) = self.queue.as_mut() {
            q.push_back(event());
        }
    }

    pub fn verdict(&mut self, v: Verdict) {
        let ok = self.each_sink(|s| s.verdict(&v));
        self.enqueue(|| crate::Event::Verdict(v));
        self.count(ok);
    }

    pub fn incident(&mut self, inc: Incident) {
        self.incident_records += 1;
        let ok = self.each_sink(|s| s.incident(&inc));
        self.enqueue(|| crate::Event::Incident(inc));
        self.count(ok);
    }

    pub fn flow(&mut self, record: &FlowRecord) {
        let ok = self.each_sink(|s| s.flow(record));
        self.enqueue(|| crate::Event::Flow(record.clone()));
        self.count(ok);
    }

    /// A feature row to every feature sink; false when one failed (the
    /// engine stops, and the row goes no further).
    pub fn feature_row(&mut self, record: &FlowRecord, row: &[f32; NUM_FEATURES]) -> bool {
        if self.feature_sinks.is_empty() {
            return true;
        }
        let mut ok = true;
        for i in 0..self.feature_sinks.len() {
            let answer = self.feature_sinks[i].row(record, row);
            ok &= self.obey(answer);
            if !ok {
                break;
            }
        }
        self.count(ok);
        ok
    }

    /// Tells every sink that the engine handed over all it had for now,
    /// when something was delivered since the last time.
    pub fn end_batch(&mut self) {
        if !self.delivered_since_batch_end {
            return;
        }
        self.delivered_since_batch_end = false;
        for i in 0..self.sinks.len() {
            let answer = self.sinks[i].end_of_batch().map(|()| SinkControl::Continue);
            self.obey(answer);
        }
    }

    /// Finishes every sink; the first error (the engine's own, kept
    /// earlier, or a sink's) is returned.
    pub fn finish(&mut self) -> Result<(), Error> {
        let mut first_err = self.error.take();
        for s in self.sinks.iter_mut() {
            if let Err(e) = s.finish() {
                first_err.get_or_insert(e.into());
            }
        }
        for fs in self.feature_sinks.iter_mut() {
            if let Err(e) = fs.finish() {
                first_err.get_or_insert(e.into());
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
