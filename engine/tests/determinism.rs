//! Results do not depend on the number of workers: the same captures give
//! the same verdicts, the same incident records in the same order, and the
//! same feature rows (host context included) on the calling thread alone
//! and with 1, 2 or 8 worker threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use tidewatch::{CollectSink, Engine, PcapFileSource};

fn inputs() -> Vec<PathBuf> {
    vec![common::pcap("demo.pcap"), common::pcap("linktypes/eth.pcap"), common::pcap("tiny_tcp.pcap")]
}

fn verdict_lines(workers: usize) -> (Vec<String>, u64, Vec<String>) {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .workers(workers)
        .batch_size(7) // odd batches: batching must not change anything either
        .sink(sink.clone())
        .build()
        .unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&inputs()).unwrap()).unwrap();
    assert_eq!(stats.workers, workers);
    let mut lines: Vec<String> = sink.take().iter().map(|v| serde_json::to_string(v).unwrap()).collect();
    lines.sort();
    // Incidents in delivery order: their order is part of the contract.
    let incidents = sink.take_incidents().iter().map(|i| serde_json::to_string(i).unwrap()).collect();
    (lines, stats.flows_created, incidents)
}

fn feature_rows(workers: usize) -> Vec<String> {
    let rows = common::Rows::default();
    let mut engine = Engine::builder().workers(workers).feature_sink(rows.clone()).build().unwrap();
    engine.run(&mut PcapFileSource::open(&inputs()).unwrap()).unwrap();
    // Rows arrive in the merge order, which is itself independent of workers.
    let out = rows.0.lock().unwrap().iter().map(|(r, f)| format!("{r:?} {f:?}")).collect();
    out
}

#[test]
fn verdicts_are_the_same_for_every_worker_count() {
    let (reference, flows, incidents) = verdict_lines(0);
    assert!(flows > 500 && reference.len() as u64 > flows);
    assert!(incidents.len() >= 4, "the demo's attacks open incidents: {incidents:?}");
    for w in [1, 2, 8] {
        let (lines, f, inc) = verdict_lines(w);
        assert_eq!(inc, incidents, "{w} workers: incident records");
        assert_eq!(f, flows, "{w} workers: flow count");
        assert_eq!(lines.len(), reference.len(), "{w} workers: verdict count");
        let first_diff = lines.iter().zip(reference.iter()).position(|(a, b)| a != b);
        assert!(first_diff.is_none(), "{w} workers differ: {:?}", first_diff.map(|i| (&lines[i], &reference[i])));
    }
}

#[test]
fn feature_rows_are_identical_and_identically_ordered() {
    let reference = feature_rows(0);
    for w in [1, 2, 8] {
        assert_eq!(feature_rows(w), reference, "{w} workers");
    }
}
