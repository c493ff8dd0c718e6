//! Replays capture files through the bundled model and prints verdicts as
//! JSON lines, with a one-line summary on stderr.
//!
//! ```sh
//! cargo run --release --example replay -- pcaps/demo.pcap
//! ```

use tidewatch::{Engine, JsonLinesSink, PcapFileSource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        return Err("usage: replay <PCAP>...".into());
    }
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lab/model.onnx");
    let mut engine =
        Engine::builder().model(model).early_packets(8).sink(JsonLinesSink::new(std::io::stdout())).build()?;
    let stats = engine.run(&mut PcapFileSource::open(&files)?)?;
    eprintln!(
        "{} packets, {} flows, {} verdicts ({:?})",
        stats.packets,
        stats.flows_created,
        stats.verdicts(),
        stats.verdicts_by_label
    );
    Ok(())
}
