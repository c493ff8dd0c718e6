//! A classifier is checked when the engine is built and when it is swapped
//! in: its schema must be the engine's, its labels named once each, its
//! thresholds and medians in line with them. Label identity is by name, so
//! it survives a swap to a model that orders its labels differently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::features::{FEATURE_NAMES, SCHEMA_VERSION};
use tidewatch::{Classifier, Engine, Error, Event, ModelInfo, PacketSource, PcapFileSource, Trigger};

/// Calls a flow with more than 4 packets "chatty", whatever the label order.
struct Chatty(ModelInfo);

impl Classifier for Chatty {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        let chatty_at = self.0.labels.iter().position(|l| l == "chatty").unwrap();
        for i in 0..n {
            let packets = rows[i * FEATURE_NAMES.len() + 1] + rows[i * FEATURE_NAMES.len() + 2];
            let chatty = if packets > 4.0 { 1.0 } else { 0.0 };
            out[i * 2 + chatty_at] = chatty;
            out[i * 2 + (1 - chatty_at)] = 1.0 - chatty;
        }
        Ok(())
    }
}

fn info(labels: &[&str]) -> ModelInfo {
    ModelInfo::for_this_engine("chatty", &labels.join("-"), labels)
}

fn refused(i: ModelInfo) -> String {
    let built = Engine::builder().classifier(Box::new(Chatty(i))).build();
    match built {
        Err(Error::Classifier { model, reason }) => format!("{model}: {reason}"),
        Err(e) => panic!("refused, but not as a classifier: {e}"),
        Ok(_) => panic!("a bad classifier was accepted"),
    }
}

#[test]
fn a_classifier_that_does_not_fit_the_engine_is_refused_at_build_and_at_swap() {
    let good = info(&["quiet", "chatty"]);
    let mut e = good.clone();
    e.labels.clear();
    e.thresholds.clear();
    assert!(refused(e).contains("names no label"));
    let mut e = good.clone();
    e.schema_version = SCHEMA_VERSION + 1;
    let msg = refused(e);
    assert!(msg.contains(&format!("v{}", SCHEMA_VERSION + 1)) && msg.contains(&format!("v{SCHEMA_VERSION}")), "{msg}");
    let mut e = good.clone();
    e.features.swap(0, 1);
    assert!(refused(e).contains("other feature names"));
    let mut e = good.clone();
    e.thresholds.pop();
    assert!(refused(e).contains("1 thresholds for 2 labels"));
    let mut e = good.clone();
    e.thresholds[1] = f32::NAN;
    assert!(refused(e).contains("not between 0 and 1"));
    let mut e = good.clone();
    e.labels[1] = "quiet".into();
    assert!(refused(e).contains("`quiet` is named twice"));
    let mut e = good.clone();
    e.benign_medians = vec![0.0; 3];
    assert!(refused(e).contains("3 benign medians"));

    let engine = Engine::builder().classifier(Box::new(Chatty(good))).build().unwrap();
    let mut bad = info(&["quiet", "chatty"]);
    bad.labels.clear();
    let swapped = engine.model_swapper().swap(Box::new(Chatty(bad)));
    assert!(matches!(swapped, Err(Error::Classifier { .. })), "{swapped:?}");
}

#[test]
fn an_early_label_is_remembered_by_name_across_a_swap_that_reorders_labels() {
    let mut engine = Engine::builder()
        .classifier(Box::new(Chatty(info(&["quiet", "chatty"]))))
        .final_verdicts_only_if_changed(true)
        .batch_size(1)
        .build()
        .unwrap();
    let mut source = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let mut early = std::collections::HashMap::new();
    while let Some(pkt) = source.next_packet().unwrap() {
        engine.process(&pkt).unwrap();
        while let Some(ev) = engine.poll_event() {
            if let Event::Verdict(v) = ev {
                if v.flow.trigger == Trigger::Early {
                    early.insert(v.flow.flow_id, v.label.to_string());
                }
            }
        }
    }
    assert!(early.values().filter(|l| *l == "chatty").count() > 50, "{}", early.len());
    // The same decisions, labels in the other order.
    engine.model_swapper().swap(Box::new(Chatty(info(&["chatty", "quiet"])))).unwrap();
    let stats = engine.finish().unwrap();
    let mut ends = 0;
    while let Some(ev) = engine.poll_event() {
        if let Event::Verdict(v) = ev {
            assert_eq!(&*v.model, "chatty@chatty-quiet", "the swapped model classifies what is left");
            if v.flow.trigger == Trigger::End {
                ends += 1;
                assert_ne!(early.get(&v.flow.flow_id), Some(&v.label.to_string()), "an unchanged end verdict");
            }
        }
    }
    assert!(ends > 0 && stats.verdicts_unchanged > 50, "{ends} end verdicts, {} unchanged", stats.verdicts_unchanged);
}

/// Scores every row NaN: a broken model, not a verdict.
struct NotANumber(ModelInfo);

impl Classifier for NotANumber {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, _rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        out[..n * 2].fill(f32::NAN);
        Ok(())
    }
}

#[test]
fn non_finite_scores_are_an_error_and_counted_never_a_verdict() {
    let mut engine = Engine::builder().classifier(Box::new(NotANumber(info(&["benign", "odd"])))).build().unwrap();
    let mut capture = PcapFileSource::open(&[common::pcap("tiny_tcp.pcap")]).unwrap();
    let mut failed = None;
    while let Some(p) = capture.next_packet().unwrap() {
        if let Err(e) = engine.process(&p) {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.or_else(|| engine.finish().err()).expect("NaN scores gave no error");
    assert!(matches!(failed, Error::Inference { ref reason, .. } if reason.contains("non-finite")), "{failed}");
    let mut verdicts = 0;
    while let Some(e) = engine.poll_event() {
        verdicts += matches!(e, Event::Verdict(_)) as u32;
    }
    assert_eq!(verdicts, 0);
    assert_eq!(engine.stats().non_finite_scores, 1);
}
