//! # Tidewatch
//!
//! A packet inspection engine: packets in, per-flow verdicts from an ONNX
//! model out, on ordinary hardware.
//!
//! ```text
//! source → decode → flow table → features (+ host context) → batcher → classifier → incidents → sinks
//! ```
//!
//! Modules follow that order: [`source`], [`decode`], [`flow`],
//! [`features`], [`infer`], [`pipeline`], [`incident`], [`sink`].
//!
//! ## Example: replay a capture through the bundled model
//!
//! ```no_run
//! use tidewatch::{Engine, PcapFileSource, JsonLinesSink};
//!
//! # fn main() -> Result<(), tidewatch::Error> {
//! let mut engine = Engine::builder()
//!     .model("models/lab/model.onnx")   // ONNX Runtime from ORT_DYLIB_PATH or .ort/
//!     .early_packets(8)                       // early verdict after 8 packets
//!     .sink(JsonLinesSink::new(std::io::stdout()))
//!     .build()?;
//! let mut source = PcapFileSource::open(&["pcaps/demo.pcap"])?;
//! let stats = engine.run(&mut source)?;
//! eprintln!("{} packets, {} flows, {} verdicts", stats.packets, stats.flows_created, stats.verdicts());
//! # Ok(()) }
//! ```
//!
//! ## Example: your own capture loop, polled events
//!
//! No sink and no thread: hand the engine packets with
//! [`Engine::process`], then drain [`Engine::poll_event`]. The engine reads
//! no clock; when no packet comes for a while, call [`Engine::tick`] once
//! your clock reaches [`Engine::poll_timeout`]. Here a file stands in for
//! the caller's capture, and the engine runs without a model, giving one
//! [`Event::Flow`] per ended flow.
//!
//! ```
//! use tidewatch::{Engine, Event, PacketSource, PcapFileSource};
//!
//! # fn main() -> Result<(), tidewatch::Error> {
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pcaps/tiny_tcp.pcap");
//! let mut engine = Engine::builder().flow_records(true).build()?;
//! let mut capture = PcapFileSource::open(&[path])?;
//! let mut flows = Vec::new();
//! while let Some(packet) = capture.next_packet()? {
//!     engine.process(&packet)?;
//!     while let Some(event) = engine.poll_event() {
//!         if let Event::Flow(f) = event { flows.push(f) }
//!     }
//! }
//! engine.finish()?;
//! while let Some(event) = engine.poll_event() {
//!     if let Event::Flow(f) = event { flows.push(f) }
//! }
//! assert_eq!(flows.len(), 1);
//! assert!(matches!(engine.tick(0), Err(tidewatch::Error::Finished))); // single-use
//! # Ok(()) }
//! ```
//!
//! ## Example: your own classifier, no ONNX at all
//!
//! ```
//! use tidewatch::{Classifier, CollectSink, Engine, ModelInfo, PcapFileSource};
//! use tidewatch::features::FEATURE_NAMES;
//!
//! /// Calls every flow with more than 4 packets "chatty".
//! struct Chatty(ModelInfo);
//! impl Classifier for Chatty {
//!     fn info(&self) -> &ModelInfo { &self.0 }
//!     fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
//!         for i in 0..n {
//!             let packets = rows[i * FEATURE_NAMES.len() + 1] + rows[i * FEATURE_NAMES.len() + 2];
//!             let chatty = if packets > 4.0 { 1.0 } else { 0.0 };
//!             out[i * 2] = 1.0 - chatty;
//!             out[i * 2 + 1] = chatty;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), tidewatch::Error> {
//! let info = ModelInfo::for_this_engine("chatty", "1", &["quiet", "chatty"]);
//! let verdicts = CollectSink::new();
//! let mut engine = Engine::builder()
//!     .classifier(Box::new(Chatty(info)))
//!     .sink(verdicts.clone())
//!     .build()?;
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../pcaps/tiny_tcp.pcap");
//! let stats = engine.run(&mut PcapFileSource::open(&[path])?)?;
//! let v = verdicts.take();
//! assert_eq!(stats.flows_created, 1);
//! assert_eq!(v.last().map(|v| &*v.label), Some("chatty"));
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod decode;
pub mod defrag;
pub mod error;
pub mod event;
pub mod explain;
pub mod features;
pub mod flow;
pub mod flow_state;
pub mod incident;
pub mod infer;
pub mod inspect;
pub mod pipeline;
pub mod policy;
pub mod reassembly;
pub mod sink;
pub mod source;
mod verdict_json;

pub use error::{Error, Result, SinkError};
pub use event::Event;
pub use incident::{Incident, IncidentConfig, IncidentState};
#[cfg(feature = "onnx")]
pub use infer::{init_onnx_runtime, OnnxClassifier};
pub use infer::{Classifier, ModelInfo};
pub use pipeline::{
    Engine, EngineBuilder, EngineCounters, LiveSettings, ModelSwapper, ParallelEngine, PolicySwapper, SettingsSwapper,
    StageCounts, Stats, STAGES,
};
pub use policy::{Policy, Suppressed};
pub use sink::{
    CollectSink, FeatureSink, FlowRecord, FnSink, JsonLinesSink, Rfc3339Micros, Scores, SinkControl, Trigger, Verdict,
    VerdictSink,
};
#[cfg(feature = "pcap")]
pub use source::PcapFileSource;
pub use source::{micros_from_duration, micros_from_system_time, LinkType, Micros, PacketSource, RawPacket};
