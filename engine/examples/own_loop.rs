//! Your own capture loop: hand the engine packets one at a time and poll
//! what it produced after each call, as with quinn-proto's `poll_*`. No
//! sink, no thread: the engine reads no clock, all time comes with the
//! packets (here from a file, standing in for your capture).
//!
//! ```sh
//! cargo run --release --example own_loop -- pcaps/demo.pcap
//! ```

use tidewatch::{Engine, Event, PacketSource, PcapFileSource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).ok_or("usage: own_loop <PCAP>")?;
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lab/model.onnx");
    // Built without a sink: events wait for poll_event.
    let mut engine = Engine::builder().model(model).flow_records(true).build()?;
    let mut capture = PcapFileSource::open(&[file])?;
    let (mut alerts, mut flows, mut incidents) = (0u64, 0u64, 0u64);
    let mut tally = |e: Event| match e {
        Event::Verdict(v) if &*v.label != "benign" => alerts += 1,
        Event::Flow(_) => flows += 1,
        Event::Incident(i) => {
            incidents += 1;
            println!("{}", serde_json::to_string(&i).unwrap_or_default());
        }
        _ => {}
    };
    while let Some(packet) = capture.next_packet()? {
        // A live loop would also call engine.tick(now) once its clock
        // reaches engine.poll_timeout() with no packet in between.
        engine.process(&packet)?;
        while let Some(e) = engine.poll_event() {
            tally(e);
        }
    }
    let stats = engine.finish()?;
    while let Some(e) = engine.poll_event() {
        tally(e);
    }
    eprintln!("{} packets: {alerts} alerts, {flows} flow records, {incidents} incident records", stats.packets);
    Ok(())
}
