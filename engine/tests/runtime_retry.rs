//! A failed ONNX Runtime load is not kept: a later build given the right
//! library loads it. Its own test binary, so no other test has loaded the
//! runtime first in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::{CollectSink, Engine, Error};

#[test]
fn a_wrong_runtime_path_can_be_corrected_in_the_same_process() {
    let model = common::repo().join("models/lab/model.onnx");
    let wrong =
        Engine::builder().model(&model).onnx_runtime("/nonexistent/libonnxruntime.so").sink(CollectSink::new()).build();
    let Err(Error::Runtime { reason, source }) = wrong else {
        panic!("a missing runtime was not refused: {:?}", wrong.err())
    };
    assert!(reason.contains("EngineBuilder::onnx_runtime") && !reason.contains("make "), "{reason}");
    assert!(source.is_none(), "nothing was loaded, so nothing failed underneath");
    // A file that is not a library: ONNX Runtime's loader fails, and its
    // error is kept as the source.
    let not_a_library = common::repo().join("Cargo.toml");
    let wrong = Engine::builder().model(&model).onnx_runtime(&not_a_library).sink(CollectSink::new()).build();
    let Err(e @ Error::Runtime { .. }) = wrong else { panic!("a non-library was not refused: {:?}", wrong.err()) };
    let cause = std::error::Error::source(&e).expect("the loader's error is the source").to_string();
    assert!(e.to_string().contains("cannot load ONNX Runtime from"), "{e}");
    assert!(!cause.is_empty() && e.with_sources().ends_with(&cause), "{}", e.with_sources());
    let right = common::repo().join(".ort").join(tidewatch::infer::ORT_LIBRARY_FILE);
    let engine =
        Engine::builder().model(&model).onnx_runtime(&right).sink(CollectSink::new()).build().expect("a retry loads");
    assert!(engine.model_info().is_some());
}
