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

/// Every ended flow's record (reassembled bytes, gaps, app metadata), sorted,
/// and the counters.
fn flow_records(workers: usize, inputs: &[PathBuf]) -> (Vec<String>, tidewatch::Stats) {
    let sink = CollectSink::new();
    let mut engine = Engine::builder().workers(workers).flow_records(true).sink(sink.clone()).build().unwrap();
    let stats = engine.run(&mut PcapFileSource::open(inputs).unwrap()).unwrap();
    let mut records: Vec<String> = sink.take_flows().iter().map(|f| serde_json::to_string(f).unwrap()).collect();
    records.sort();
    (records, stats)
}

/// Workers are handed a flow's payloads without a copy once its parsers
/// are done (`payload_copies_skipped`); the records must not show it: not
/// after port reuse, timeouts or evictions, when a new flow with the same
/// key needs its bytes again.
fn assert_flow_records_match(inputs: &[PathBuf], what: &str) -> u64 {
    let (reference, _) = flow_records(0, inputs);
    assert!(!reference.is_empty(), "{what}: no flows");
    let mut skipped = 0;
    for w in [1, 2, 8] {
        let (records, stats) = flow_records(w, inputs);
        assert_eq!(records.len(), reference.len(), "{what}, {w} workers: flow count");
        let first_diff = records.iter().zip(reference.iter()).position(|(a, b)| a != b);
        assert!(
            first_diff.is_none(),
            "{what}, {w} workers differ: {:?}",
            first_diff.map(|i| (&records[i], &reference[i]))
        );
        skipped = skipped.max(stats.payload_copies_skipped);
    }
    skipped
}

/// The inputs above and the application-protocol captures.
fn project_captures() -> Vec<PathBuf> {
    let mut inputs = inputs();
    let apps = common::pcap("apps");
    let mut app_captures: Vec<PathBuf> = std::fs::read_dir(&apps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    app_captures.sort();
    assert!(app_captures.len() >= 10, "{}", apps.display());
    inputs.extend(app_captures);
    inputs
}

#[test]
fn flow_records_are_the_same_for_every_worker_count_though_done_payloads_are_not_copied() {
    let skipped = assert_flow_records_match(&project_captures(), "project captures");
    assert!(skipped > 100, "payload copies skipped: {skipped}");
}

#[test]
fn flow_records_of_public_protocol_captures_are_the_same_for_every_worker_count() {
    let test = "flow_records_of_public_protocol_captures_are_the_same_for_every_worker_count";
    let Some(shared) = common::shared_pcaps(test) else { return };
    let dir = shared.join("public/protocols");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_lowercase();
            ["http", "tls", "ssl", "dns", "smtp", "ssh", "quic"].iter().any(|t| name.contains(t))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 50, "{} has {} matching captures", dir.display(), files.len());
    let mut skipped = 0;
    // One capture at a time: each is its own small world of port reuse.
    for f in files.iter().take(120) {
        if PcapFileSource::open(std::slice::from_ref(f)).is_err() {
            continue;
        }
        skipped += assert_flow_records_match(std::slice::from_ref(f), &f.display().to_string());
    }
    eprintln!("{test}: {} captures, {skipped} payload copies skipped", files.len().min(120));
    assert!(skipped > 0);
}

/// Flow records of a run with 2 workers and short timeouts (flows expire
/// and their keys come back), with the payload copy skipped or not (kept
/// stream bytes need every byte, so they turn the skip off; the records do
/// not carry them). Evictions are covered by `payload_skip`'s unit test:
/// a hint is only used while fewer packets went to its worker than the
/// table had free slots, which a small table never allows for long.
fn churned_flow_records(skip: bool) -> (Vec<String>, tidewatch::Stats) {
    let mut flows = tidewatch::flow::FlowConfig::default();
    flows.tcp_idle_timeout = 20_000_000;
    flows.udp_idle_timeout = 1_000_000;
    let mut inspect = tidewatch::inspect::InspectConfig::default();
    inspect.keep_stream_bytes = if skip { 0 } else { 1 };
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .workers(2)
        .flow_config(flows)
        .inspect(inspect)
        .flow_records(true)
        .sink(sink.clone())
        .build()
        .unwrap();
    // Ten times over (shifted in time): enough packets for hints to come
    // back from the workers while their flows go on.
    let mut src = PcapFileSource::open_looped(&project_captures(), 10, 60_000_000).unwrap();
    let stats = engine.run(&mut src).unwrap();
    let mut records: Vec<String> = sink.take_flows().iter().map(|f| serde_json::to_string(f).unwrap()).collect();
    records.sort();
    (records, stats)
}

#[test]
fn skipping_done_payloads_changes_no_record_when_flows_time_out_and_keys_return() {
    let (reference, plain) = churned_flow_records(false);
    assert_eq!(plain.payload_copies_skipped, 0);
    let (records, stats) = churned_flow_records(true);
    let idle = stats.flows_ended[tidewatch::flow::EndReason::IdleTimeout as usize];
    assert!(idle > 300, "idle timeouts: {idle}");
    assert!(stats.payload_copies_skipped > 100, "skipped: {}", stats.payload_copies_skipped);
    assert_eq!(records.len(), reference.len());
    let first_diff = records.iter().zip(reference.iter()).position(|(a, b)| a != b);
    assert!(first_diff.is_none(), "{:?}", first_diff.map(|i| (&records[i], &reference[i])));
    eprintln!("{idle} idle timeouts, {} payload copies skipped", stats.payload_copies_skipped);
}
