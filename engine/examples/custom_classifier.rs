//! Your own classifier instead of an ONNX model: any type that implements
//! `Classifier` and describes itself with a `ModelInfo` (checked when the
//! engine is built). This one calls a flow "chatty" past 20 packets.
//!
//! ```sh
//! cargo run --release --example custom_classifier -- pcaps/demo.pcap
//! ```

use tidewatch::features::{FEATURE_NAMES, NUM_FEATURES};
use tidewatch::{Classifier, Engine, FnSink, ModelInfo, PcapFileSource};

struct Chatty(ModelInfo);

impl Classifier for Chatty {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        let fwd = FEATURE_NAMES.iter().position(|f| *f == "fwd_packets").unwrap_or(1);
        let bwd = FEATURE_NAMES.iter().position(|f| *f == "bwd_packets").unwrap_or(2);
        for (row, p) in rows.chunks_exact(NUM_FEATURES).take(n).zip(out.chunks_exact_mut(2)) {
            let chatty = if row[fwd] + row[bwd] > 20.0 { 1.0 } else { 0.0 };
            p[0] = 1.0 - chatty;
            p[1] = chatty;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).ok_or("usage: custom_classifier <PCAP>")?;
    let info = ModelInfo::for_this_engine("chatty", "1", &["benign", "chatty"]);
    let sink = FnSink(|v: &tidewatch::Verdict| {
        if &*v.label == "chatty" {
            println!(
                "{} {}:{} -> {}:{} chatty",
                v.flow.flow_id, v.flow.src_ip, v.flow.src_port, v.flow.dst_ip, v.flow.dst_port
            );
        }
    });
    let mut engine = Engine::builder().classifier(Box::new(Chatty(info))).sink(sink).build()?;
    let stats = engine.run(&mut PcapFileSource::open(&[file])?)?;
    eprintln!("{} packets, {} verdicts", stats.packets, stats.verdicts());
    Ok(())
}
