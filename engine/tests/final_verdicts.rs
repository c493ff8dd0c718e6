//! `final_verdicts_only_if_changed`: a flow's end verdict is delivered only
//! when its label differs from the flow's early verdict; the others are
//! counted, and nothing else changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use tidewatch::{CollectSink, Engine, PcapFileSource, Stats, Trigger, Verdict};

fn run(changed_only: bool) -> (Vec<Verdict>, Stats) {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .workers(2)
        .final_verdicts_only_if_changed(changed_only)
        .sink(sink.clone())
        .build()
        .unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    (sink.take(), stats)
}

#[test]
fn end_verdicts_that_repeat_the_early_label_are_left_out_and_counted() {
    let (all, all_stats) = run(false);
    let (changed, stats) = run(true);
    let early: HashMap<u64, &str> =
        all.iter().filter(|v| v.flow.trigger == Trigger::Early).map(|v| (v.flow.flow_id, &*v.label)).collect();
    let repeats = |v: &&Verdict| v.flow.trigger == Trigger::End && early.get(&v.flow.flow_id) == Some(&&*v.label);
    let mut expected: Vec<String> =
        all.iter().filter(|v| !repeats(v)).map(|v| serde_json::to_string(v).unwrap()).collect();
    let mut got: Vec<String> = changed.iter().map(|v| serde_json::to_string(v).unwrap()).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    let left_out = all.iter().filter(repeats).count() as u64;
    assert!(left_out > 0, "the demo has flows whose early and end labels agree");
    assert_eq!((all_stats.verdicts_unchanged, stats.verdicts_unchanged), (0, left_out));
    assert_eq!(stats.verdicts_end + stats.verdicts_unchanged, all_stats.verdicts_end);
}
