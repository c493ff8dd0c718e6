//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tidewatch::{Engine, FeatureSink, FlowRecord, PcapFileSource, SinkControl, SinkError, Stats};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn pcap(rel: &str) -> PathBuf {
    repo().join("pcaps").join(rel)
}

/// The public capture corpus (`../shared/pcaps`), or `None` with a loud
/// message when it is absent.
pub fn shared_pcaps(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TIDEWATCH_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("..").join("shared").join("pcaps"));
    if dir.join("public").is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED {test}: public capture corpus not found at {} (set TIDEWATCH_SHARED_PCAPS)", dir.display());
        None
    }
}

pub type Row = (FlowRecord, Vec<f32>);

#[derive(Clone, Default)]
pub struct Rows(pub Arc<Mutex<Vec<Row>>>);

impl FeatureSink for Rows {
    fn row(&mut self, flow: &FlowRecord, features: &[f32]) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push((flow.clone(), features.to_vec()));
        Ok(SinkControl::Continue)
    }
}

/// Runs the engine without a model, collecting feature rows.
pub fn features_of(paths: &[PathBuf], early: usize) -> (Stats, Vec<Row>) {
    let rows = Rows::default();
    let mut engine = Engine::builder().early_packets(early).feature_sink(rows.clone()).build().unwrap();
    let stats = engine.run(&mut PcapFileSource::open(paths).unwrap()).unwrap();
    let out = rows.0.lock().unwrap().clone();
    (stats, out)
}

pub fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd).arg("--version").output().is_ok()
}
