//! The model contract: the bundled model loads and classifies; a model built
//! for another schema, or a file that is not a model, is refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::{CollectSink, Engine, Error, OnnxClassifier, PcapFileSource};

fn bundled() -> std::path::PathBuf {
    common::repo().join("models/lab/model.onnx")
}

#[test]
fn bundled_model_classifies_the_demo_capture() {
    let sink = CollectSink::new();
    let mut engine = Engine::builder().model(bundled()).sink(sink.clone()).build().unwrap();
    let info = engine.model_info().unwrap().clone();
    assert_eq!(info.labels, ["benign", "scan", "dos", "bruteforce", "exfil", "c2"]);
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    let verdicts = sink.take();
    assert_eq!(verdicts.len() as u64, stats.verdicts());
    assert_eq!(stats.verdicts_end, stats.flows_created, "every flow gets an end verdict");
    for v in &verdicts {
        let sum: f32 = v.scores.iter().map(|(_, p)| p).sum();
        assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
        assert_eq!(v.scores.get(&v.label).unwrap(), v.score);
    }
    // The demo has attacks in it: a model that calls everything benign fails.
    assert!(stats.verdicts_by_label.keys().any(|l| l != "benign"), "{:?}", stats.verdicts_by_label);
}

/// Rewrites the one-byte schema version in the model's metadata.
fn with_schema_version(model: &[u8], version: u8) -> Vec<u8> {
    let key = b"tidewatch.schema_version";
    let at = model.windows(key.len()).position(|w| w == key).expect("metadata key present");
    let value_at = at + key.len();
    // protobuf: field 2 (value), wire type 2, length 1, then the digit.
    assert_eq!(&model[value_at..value_at + 2], &[0x12, 0x01]);
    let mut out = model.to_vec();
    out[value_at + 2] = version;
    out
}

#[test]
fn model_for_another_schema_is_refused_with_both_versions() {
    let bytes = std::fs::read(bundled()).unwrap();
    let dir = std::env::temp_dir().join(format!("tidewatch-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other-schema.onnx");
    std::fs::write(&path, with_schema_version(&bytes, b'9')).unwrap();
    let err = OnnxClassifier::load(&path, None).err().expect("must be refused");
    assert!(matches!(err, Error::SchemaMismatch { .. }), "{err}");
    let msg = err.to_string();
    let engine_schema = format!("tidewatch-flow v{}", tidewatch::features::SCHEMA_VERSION);
    assert!(msg.contains("tidewatch-flow v9") && msg.contains(&engine_schema), "{msg}");
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let dir = std::env::temp_dir().join(format!("tidewatch-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("garbage.onnx");
    std::fs::write(&path, b"this is not an onnx model at all").unwrap();
    let err = OnnxClassifier::load(&path, None).err().expect("must be refused");
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("not a loadable ONNX model"), "{err}");
    // ONNX Runtime's own reason is kept whole, as the source.
    let cause = std::error::Error::source(&err).expect("ONNX Runtime's error is the source").to_string();
    assert!(!cause.is_empty() && err.with_sources().ends_with(&cause), "{}", err.with_sources());
    let missing = OnnxClassifier::load(&dir.join("absent.onnx"), None).err().unwrap();
    assert!(missing.to_string().contains("no such file"), "{missing}");
}
