//! Each stage counts what it received, sent, discarded and failed
//! (Vector's component specification), each item once: after a run, every
//! stage balances, one stage's output is the next one's input, the counts
//! agree with the engine's own totals and with what the sinks were handed,
//! and the live counters end equal to the final ones.
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
    replay_with_live(workers, sink).0
}

/// The run's outcome and final counters, and what the live counters said
/// after it.
fn replay_with_live(workers: usize, sink: Counting) -> ((tidewatch::Result<Stats>, Stats), Stats) {
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .sink(sink)
        .flow_records(true)
        .final_verdicts_only_if_changed(true)
        .workers(workers)
        .build()
        .unwrap();
    let live = engine.counters();
    let mut src = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let outcome = engine.run(&mut src);
    ((outcome, engine.stats()), live.snapshot())
}

#[test]
fn every_stage_balances_and_hands_on_what_the_next_receives() {
    for workers in [0, 2] {
        let sink = Counting::default();
        let ((outcome, s), live) = replay_with_live(workers, sink.clone());
        outcome.unwrap();
        let names: Vec<&str> = s.stages.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, tidewatch::STAGES);
        for (name, c) in &s.stages {
            assert_eq!(c.received, c.sent + c.discarded + c.failed, "{name} does not balance: {c:?}");
            assert_eq!(c.failed, 0, "{name}: {c:?}");
        }
        let (capture, dispatch, flows) = (stage(&s, "capture"), stage(&s, "dispatch"), stage(&s, "flows"));
        assert_eq!(capture.received, s.packets);
        assert_eq!(capture.sent, s.decoded + s.defrag.datagrams);
        assert_eq!(dispatch.received, capture.sent);
        assert_eq!((dispatch.sent, dispatch.discarded), (capture.sent, 0), "replay waits, never drops");
        assert_eq!(flows.received, dispatch.sent);
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
        // The live counters are the same counters, published as they go:
        // after the run they say what the final ones say (timings aside).
        let (mut a, mut b) = (s.to_json(), live.to_json());
        for j in [&mut a, &mut b] {
            for timing in
                ["cpu_seconds", "inference_us", "latency_us", "inference_batch_us", "workers", "partial_reads"]
            {
                j.as_object_mut().unwrap().remove(timing);
            }
        }
        assert_eq!(a, b, "{workers} workers");
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
