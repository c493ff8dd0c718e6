//! Verdicts come when the evidence does: a hot host's flows are classified
//! at their first packet (`Trigger::Host`), every verdict says when it was
//! made (`detected_at`), and per-label thresholds turn weak alerts benign.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::IpAddr;

use tidewatch::features::{FEATURE_NAMES, SCHEMA_NAME, SCHEMA_VERSION};
use tidewatch::flow::{EndReason, IpProto};
use tidewatch::{Classifier, CollectSink, Engine, ModelInfo, PcapFileSource, Trigger, Verdict};

/// Gives every row the same probabilities.
struct Constant(ModelInfo, [f32; 2]);

impl Classifier for Constant {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, _rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        for i in 0..n {
            out[i * 2..i * 2 + 2].copy_from_slice(&self.1);
        }
        Ok(())
    }
}

fn info(thresholds: [f32; 2]) -> ModelInfo {
    ModelInfo {
        name: "constant".into(),
        version: "1".into(),
        schema: SCHEMA_NAME.into(),
        schema_version: SCHEMA_VERSION,
        features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        labels: vec!["benign".into(), "alert".into()],
        thresholds: thresholds.to_vec(),
        benign_medians: Vec::new(),
    }
}

fn run(scores: [f32; 2], thresholds: [f32; 2], workers: usize) -> Vec<Verdict> {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .classifier(Box::new(Constant(info(thresholds), scores)))
        .workers(workers)
        .sink(sink.clone())
        .build()
        .unwrap();
    engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    sink.take()
}

/// Fast episodes of a label in the demo's ground truth: per actor (the
/// source of a scan, the target of a flood), the first time at least 20 of
/// its flows of that label started within one second.
fn fast_episodes(label: &str, actor_is_source: bool) -> Vec<(IpAddr, u64)> {
    let text = std::fs::read_to_string(common::pcap("demo.labels.csv")).unwrap();
    let mut starts: std::collections::BTreeMap<IpAddr, Vec<u64>> = Default::default();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split(',').collect();
        if c[7] == label {
            let actor: IpAddr = if actor_is_source { c[3] } else { c[5] }.parse().unwrap();
            starts.entry(actor).or_default().push((c[0].parse::<f64>().unwrap() * 1e6).round() as u64);
        }
    }
    let mut out = Vec::new();
    for (actor, mut t) in starts {
        t.sort_unstable();
        if let Some(w) = t.windows(20).find(|w| w[19] - w[0] <= 1_000_000) {
            out.push((actor, w[0]));
        }
    }
    out
}

#[test]
fn scans_and_floods_are_asked_about_within_a_second_of_their_first_packet() {
    let verdicts = run([0.1, 0.9], [0.0, 0.0], 2);
    let host: Vec<&Verdict> = verdicts.iter().filter(|v| v.flow.trigger == Trigger::Host).collect();
    for (label, by_source) in [("scan", true), ("dos", false)] {
        let episodes = fast_episodes(label, by_source);
        assert!(!episodes.is_empty(), "the demo has a fast {label} episode");
        for (actor, start) in episodes {
            let first = host
                .iter()
                .filter(|v| (if by_source { v.flow.src_ip } else { v.flow.dst_ip }) == actor)
                .map(|v| v.detected_at)
                .find(|t| *t >= start)
                .unwrap_or_else(|| panic!("no host verdict for the {label} of {actor}"));
            let delay = first - start;
            assert!(delay <= 1_000_000, "{label} of {actor}: first host verdict {delay} µs after its first packet");
        }
    }
    for v in &host {
        // A host verdict is made at the flow's first packet, with one packet.
        assert_eq!(v.flow.packets, 1, "{:?}", v.flow);
        assert_eq!(v.detected_at, v.flow.ts, "{:?}", v.flow);
    }
}

#[test]
fn detected_at_is_when_the_timeout_fired_not_the_last_packet() {
    let verdicts = run([0.1, 0.9], [0.0, 0.0], 0);
    // Capture time moves with packets: a timeout fires at the first sweep
    // (every 100 ms) after it passed, so at most the longest quiet gap late.
    let mut src = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let (mut last, mut longest_gap) = (None::<u64>, 0u64);
    while let Some(p) = tidewatch::PacketSource::next_packet(&mut src).unwrap() {
        if let Some(l) = last {
            longest_gap = longest_gap.max(p.ts.saturating_sub(l));
        }
        last = Some(p.ts);
    }
    let mut idle = 0;
    for v in &verdicts {
        assert!(v.detected_at >= v.flow.ts, "{:?}", v.flow);
        if v.flow.end_reason == Some(EndReason::IdleTimeout) {
            idle += 1;
            let waited = v.detected_at - v.flow.ts;
            let timeout = match v.flow.proto {
                IpProto::Tcp => 300_000_000,
                IpProto::Udp => 120_000_000,
                _ => 60_000_000,
            };
            let latest = timeout + longest_gap + 100_000;
            assert!((timeout..=latest).contains(&waited), "{} waited {waited} µs (gap {longest_gap})", v.flow.proto);
        }
        if v.flow.trigger == Trigger::Early {
            assert_eq!(v.detected_at, v.flow.ts);
        }
    }
    assert!(idle > 100, "only {idle} idle-timeout verdicts");
}

#[test]
fn a_label_below_its_threshold_is_reported_benign_with_the_models_scores() {
    let quiet = run([0.1, 0.9], [0.0, 0.95], 0);
    assert!(!quiet.is_empty());
    for v in &quiet {
        assert_eq!(&*v.label, "benign");
        assert_eq!(v.score, 0.1);
        assert_eq!(v.scores.get("alert"), Some(0.9), "scores still show the model's view");
    }
    let loud = run([0.03, 0.97], [0.0, 0.95], 0);
    assert_eq!(loud.len(), quiet.len());
    assert!(loud.iter().all(|v| &*v.label == "alert" && v.score == 0.97));
}
