//! JSON formatting speed: the verdicts of a capture (the demo by default),
//! classified by a constant model (6 labels) so that every one has the
//! fields of a real verdict (app metadata, scores, three timestamps),
//! written again and again into one reused buffer on one thread, as an
//! output thread writes them. Prints verdicts per second per core.
//!
//! cargo run --release -p tidewatch-benches --bin verdict_json -- [PCAP] [--seconds S]

use std::time::{Duration, Instant};

use tidewatch::{Classifier, CollectSink, Engine, ModelInfo, PcapFileSource};

/// Every row: the same six probabilities.
struct Constant(ModelInfo);

impl Classifier for Constant {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, _rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        for i in 0..n {
            out[i * 6..i * 6 + 6].copy_from_slice(&[0.05, 0.7, 0.1, 0.05, 0.05, 0.05]);
        }
        Ok(())
    }
}

/// CPU time of this thread, so other load on the machine does not count.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // After the command name: state, then fields 4..; utime and stime are fields 14 and 15.
    let after = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag_value = args.iter().position(|a| a == "--seconds").map(|i| i + 1);
    let pcap = (0..args.len())
        .find(|&i| !args[i].starts_with("--") && Some(i) != flag_value)
        .map_or_else(|| "pcaps/demo.pcap".to_string(), |i| args[i].clone());
    let seconds: f64 = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args.get(i + 1).ok_or("--seconds needs a value")?.parse()?,
        None => 3.0,
    };
    let labels = ["benign", "scan", "dos", "bruteforce", "exfil", "c2"];
    let model = Constant(ModelInfo::for_this_engine("constant", "1", &labels));
    let sink = CollectSink::new();
    let mut engine = Engine::builder().classifier(Box::new(model)).workers(0).sink(sink.clone()).build()?;
    engine.run(&mut PcapFileSource::open(&[std::path::PathBuf::from(&pcap)])?)?;
    let verdicts = sink.take();
    if verdicts.is_empty() {
        return Err(format!("{pcap}: no verdicts").into());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let (mut written, mut bytes) = (0u64, 0u64);
    let (wall, cpu) = (Instant::now(), thread_cpu());
    while wall.elapsed().as_secs_f64() < seconds {
        for v in &verdicts {
            buf.clear();
            v.write_json(&mut buf)?;
            buf.push(b'\n');
            bytes += buf.len() as u64;
        }
        written += verdicts.len() as u64;
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), (thread_cpu() - cpu).as_secs_f64());
    let per_cpu = if cpu > 0.0 { written as f64 / cpu } else { f64::NAN };
    println!(
        "verdict JSON: {written} verdicts ({} distinct from {pcap}), {:.0} bytes each; \
         {:.0} verdicts/s per core (CPU {cpu:.2} s, wall {wall:.2} s; target >= 2,000,000)",
        verdicts.len(),
        bytes as f64 / written as f64,
        per_cpu
    );
    Ok(())
}
