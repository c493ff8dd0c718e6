//! Verdicts into your own sink, with your own error type: alerts are
//! counted per label, incidents printed as they open and close, and the
//! run stops (as a sink may ask) after a given number of incidents.
//!
//! ```sh
//! cargo run --release --example custom_sink -- pcaps/demo.pcap 5
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tidewatch::{Engine, Incident, IncidentState, PcapFileSource, SinkControl, SinkError, Verdict, VerdictSink};

/// The sink's own error: the engine keeps it as the source of its error.
#[derive(Debug)]
struct TooManyAlerts(u64);

impl std::fmt::Display for TooManyAlerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} alerts: more than this sink is willing to count", self.0)
    }
}
impl std::error::Error for TooManyAlerts {}

#[derive(Clone, Default)]
struct Tally {
    by_label: Arc<Mutex<BTreeMap<String, u64>>>,
    opened: u64,
    stop_after: u64,
}

impl VerdictSink for Tally {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        let mut by_label = self.by_label.lock().map_err(|_| SinkError::Other("tally poisoned".into()))?;
        let n = by_label.entry(v.label.to_string()).or_default();
        *n += 1;
        if *n > 1_000_000 {
            return Err(SinkError::custom(TooManyAlerts(*n)));
        }
        Ok(SinkControl::Continue)
    }
    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        println!("incident {} {:?} {} flows={} peak={:.3}", i.incident_id, i.state, i.label, i.flows, i.peak_score);
        if i.state == IncidentState::Open {
            self.opened += 1;
            if self.opened >= self.stop_after {
                return Ok(SinkControl::Stop);
            }
        }
        Ok(SinkControl::Continue)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().ok_or("usage: custom_sink <PCAP> [STOP_AFTER_INCIDENTS]")?;
    let stop_after = args.next().map(|n| n.parse()).transpose()?.unwrap_or(u64::MAX);
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lab/model.onnx");
    let tally = Tally { stop_after, ..Tally::default() };
    let mut engine = Engine::builder().model(model).sink(tally.clone()).build()?;
    let stats = engine.run(&mut PcapFileSource::open(&[file])?)?;
    eprintln!("{} packets; verdicts by label: {:?}", stats.packets, tally.by_label.lock().map(|m| m.clone()));
    Ok(())
}
