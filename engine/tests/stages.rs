//! Each part of the merge stage counts what it received, sent, discarded
//! and failed (Vector's component specification), each item once: after a
//! run, every stage balances, one stage's output is the next one's input,
//! and the counts agree with the engine's own totals and with what the
//! sinks were handed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use tidewatch::{
    Engine, FlowRecord, Incident, PcapFileSource, SinkControl, SinkError, StageCounts, Stats, Verdict, VerdictSink,
};

/// Counts what it is handed; optionally fails on the n-th verdict.
#[derive(Clone, Default)]
struct Counting {
    seen: Arc<Mutex<[u64; 3]>>,
    fail_at: Option<u64>,
}

impl VerdictSink for Counting {
    fn verdict(&mut self, _: &Verdict) -> Result<SinkControl, SinkError> {
        let mut s = self.seen.lock().unwrap();
        s[0] += 1;
        if self.fail_at == Some(s[0]) {
            return Err(SinkError::custom(std::io::Error::other("this sink fails on purpose")));
        }
        Ok(SinkControl::Continue)
    }
    fn incident(&mut self, _: &Incident) -> Result<SinkControl, SinkError> {
        self.seen.lock().unwrap()[1] += 1;
        Ok(SinkControl::Continue)
    }
    fn flow(&mut self, _: &FlowRecord) -> Result<SinkControl, SinkError> {
        self.seen.lock().unwrap()[2] += 1;
        Ok(SinkControl::Continue)
    }
}

fn stage(s: &Stats, name: &str) -> StageCounts {
    s.stages.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no stage {name}")).1
}

fn replay(workers: usize, sink: Counting) -> (tidewatch::Result<Stats>, Stats) {
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .sink(sink)
        .flow_records(true)
        .final_verdicts_only_if_changed(true)
        .workers(workers)
        .build()
        .unwrap();
    let mut src = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let outcome = engine.run(&mut src);
    (outcome, engine.stats())
}

#[test]
fn every_merge_stage_balances_and_hands_on_what_the_next_receives() {
    for workers in [0, 2] {
        let sink = Counting::default();
        let (outcome, s) = replay(workers, sink.clone());
        outcome.unwrap();
        let names: Vec<&str> = s.stages.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["order", "host_context", "batch", "decide", "deliver"]);
        for (name, c) in &s.stages {
            assert_eq!(c.received, c.sent + c.discarded + c.failed, "{name} does not balance: {c:?}");
            assert_eq!(c.failed, 0, "{name}: {c:?}");
        }
        let (order, host, batch, decide, deliver) = (
            stage(&s, "order"),
            stage(&s, "host_context"),
            stage(&s, "batch"),
            stage(&s, "decide"),
            stage(&s, "deliver"),
        );
        // Every flow start is an event; a cold host's start is discarded.
        assert!(s.flows_created > 500, "{}", s.flows_created);
        assert_eq!(order.sent, host.received);
        assert_eq!(host.sent, s.feature_rows);
        assert_eq!(host.discarded + s.host_rows, s.flows_created);
        assert_eq!(batch.received, host.sent);
        assert_eq!(decide.received, batch.sent);
        assert_eq!(decide.sent, s.verdicts());
        assert!(s.verdicts_unchanged > 0);
        assert_eq!(decide.discarded, s.verdicts_unchanged);
        let seen = *sink.seen.lock().unwrap();
        assert_eq!(seen[0], s.verdicts());
        assert_eq!(seen[1], s.incidents.opened + s.incidents.updates + s.incidents.closed);
        assert_eq!(seen[2], s.flows_ended_total());
        assert_eq!(deliver.sent, seen.iter().sum::<u64>());
        // The JSON layout names the same numbers.
        assert_eq!(s.to_json()["stages"]["decide"]["discarded"], s.verdicts_unchanged);
    }
}

#[test]
fn a_failing_sink_is_counted_once_as_a_failed_delivery() {
    let sink = Counting { fail_at: Some(5), ..Counting::default() };
    let (outcome, s) = replay(0, sink);
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains("fails on purpose"), "{err}");
    let deliver = stage(&s, "deliver");
    assert_eq!(deliver.failed, 1, "{deliver:?}");
    assert_eq!(deliver.received, deliver.sent + deliver.failed);
}
