//! The one place where the daemon's commands turn their settings into an
//! `EngineBuilder` (`replay`, `run`, `features`, `flows`), and the choices
//! its command line and config offer, as enums.

use std::path::Path;

use tidewatch::defrag::DefragConfig;
use tidewatch::flow::FlowConfig;
use tidewatch::inspect::InspectConfig;
use tidewatch::{Engine, EngineBuilder, IncidentConfig};

/// Which end verdicts are delivered (`--final-verdicts`, `engine.final_verdicts`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FinalVerdicts {
    /// Every flow's end verdict.
    #[default]
    All,
    /// Only when its label differs from the flow's early verdict.
    Changed,
}

impl FinalVerdicts {
    /// The config file's spelling (`all`, `changed`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(FinalVerdicts::All),
            "changed" => Ok(FinalVerdicts::Changed),
            _ => Err(format!("engine.final_verdicts `{s}`: use all or changed")),
        }
    }
}

/// The format of `--stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// The run's counters as one JSON object on stdout.
    Json,
}

/// Settings every command gives the engine.
pub struct Wiring {
    /// Early verdict (or row) after this many packets of a flow; 0: none.
    pub early_packets: usize,
    /// Flow timeouts and table size.
    pub flows: FlowConfig,
    /// Parser and reassembly caps.
    pub inspect: InspectConfig,
    /// Defragmenter caps.
    pub defrag: DefragConfig,
    /// Worker threads (`Some(0)`: all on the calling thread); `None`: the machine's cores.
    pub workers: Option<usize>,
}

/// What a classifying command (`replay`, `run`) adds.
pub struct Classify<'a> {
    /// The ONNX model.
    pub model: &'a Path,
    /// libonnxruntime.so; `None`: $ORT_DYLIB_PATH, then .ort/.
    pub onnx_runtime: Option<&'a Path>,
    /// Emit a flow record for every ended flow.
    pub flow_records: bool,
    /// Which end verdicts are delivered.
    pub final_verdicts: FinalVerdicts,
    /// Rows per inference batch.
    pub batch_size: usize,
    /// Incident timing.
    pub incidents: IncidentConfig,
    /// The outputs, each behind its own queue.
    pub sinks: Vec<Box<dyn tidewatch::VerdictSink>>,
}

impl Wiring {
    /// A builder with the shared settings.
    pub fn builder(&self) -> EngineBuilder {
        let mut b = Engine::builder()
            .early_packets(self.early_packets)
            .flow_config(self.flows)
            .inspect(self.inspect)
            .defrag(self.defrag);
        if let Some(w) = self.workers {
            b = b.workers(w);
        }
        b
    }

    /// A builder that classifies with a model and delivers to sinks.
    pub fn classifying(&self, c: Classify<'_>) -> EngineBuilder {
        let mut b = self
            .builder()
            .model(c.model)
            .flow_records(c.flow_records)
            .final_verdicts_only_if_changed(c.final_verdicts == FinalVerdicts::Changed)
            .batch_size(c.batch_size)
            .incidents(c.incidents);
        if let Some(rt) = c.onnx_runtime {
            b = b.onnx_runtime(rt);
        }
        for sink in c.sinks {
            b = b.sink(sink);
        }
        b
    }
}

/// The feature schema as JSON (`tidewatchd schema`, and beside exported CSVs).
pub fn schema_json() -> serde_json::Value {
    serde_json::json!({
        "name": tidewatch::features::SCHEMA_NAME,
        "version": tidewatch::features::SCHEMA_VERSION,
        "features": tidewatch::features::FEATURE_NAMES,
    })
}
