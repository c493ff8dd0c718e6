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
    let Err(Error::Runtime(msg)) = wrong else { panic!("a missing runtime was not refused: {:?}", wrong.err()) };
    assert!(msg.contains("EngineBuilder::onnx_runtime") && !msg.contains("make "), "{msg}");
    let right = common::repo().join(".ort").join(tidewatch::infer::ORT_LIBRARY_FILE);
    let engine =
        Engine::builder().model(&model).onnx_runtime(&right).sink(CollectSink::new()).build().expect("a retry loads");
    assert!(engine.model_info().is_some());
}
