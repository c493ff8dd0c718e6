//! Flow records only, no model: Zeek's conn.log use. Every ended flow's
//! record (per-direction counters, reassembly, tunnels, application
//! metadata) is printed as one JSON line, the same as `tidewatchd flows`.
//!
//! ```sh
//! cargo run --release --example flows_only -- pcaps/demo.pcap
//! ```

use std::io::Write;

use tidewatch::{Engine, FlowRecord, PcapFileSource, SinkControl, SinkError, Verdict, VerdictSink};

/// Writes each flow record as a JSON line.
struct FlowLines<W: Write + Send>(W);

impl<W: Write + Send> VerdictSink for FlowLines<W> {
    fn verdict(&mut self, _v: &Verdict) -> Result<SinkControl, SinkError> {
        Ok(SinkControl::Continue) // no model, so no verdicts
    }
    fn flow(&mut self, record: &FlowRecord) -> Result<SinkControl, SinkError> {
        serde_json::to_writer(&mut self.0, record).map_err(SinkError::custom)?;
        self.0.write_all(b"\n")?;
        Ok(SinkControl::Continue)
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(self.0.flush()?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: flows_only <PCAP>...".into());
    }
    let out = std::io::BufWriter::new(std::io::stdout());
    let mut engine = Engine::builder().flow_records(true).sink(FlowLines(out)).build()?;
    let stats = engine.run(&mut PcapFileSource::open(&files)?)?;
    eprintln!("{} packets, {} flows", stats.packets, stats.flows_ended_total());
    Ok(())
}
