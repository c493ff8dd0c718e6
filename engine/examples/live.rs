//! Live capture from one or more interfaces through the bundled model,
//! verdicts as JSON lines on stdout, until the given number of seconds has
//! passed. Needs permission to capture (root or CAP_NET_RAW).
//!
//! ```sh
//! sudo target/release/examples/live lo 10
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidewatch::source::live::{LiveConfig, LiveSource};
use tidewatch::{Engine, JsonLinesSink, PacketSource, RawPacket};

/// A live source that ends after a deadline: `run` returns when its
/// source is finished.
struct For<S> {
    inner: S,
    until: Instant,
    done: Arc<AtomicBool>,
}

impl<S: PacketSource> PacketSource for For<S> {
    fn next_packet(&mut self) -> tidewatch::Result<Option<RawPacket<'_>>> {
        if Instant::now() >= self.until {
            self.done.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        self.inner.next_packet()
    }
    fn is_live(&self) -> bool {
        true
    }
    fn finished(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
    fn now(&self) -> Option<tidewatch::Micros> {
        self.inner.now()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let interface = args.next().ok_or("usage: live <INTERFACE> [SECONDS]")?;
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let source = LiveSource::open(&LiveConfig::on([interface]))?;
    let mut source = For { inner: source, until: Instant::now() + Duration::from_secs(seconds), done: Arc::default() };
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/lab/model.onnx");
    let mut engine = Engine::builder().model(model).live(true).sink(JsonLinesSink::new(std::io::stdout())).build()?;
    let stats = engine.run(&mut source)?;
    eprintln!("{} packets, {} flows, {} verdicts", stats.packets, stats.flows_created, stats.verdicts());
    Ok(())
}
