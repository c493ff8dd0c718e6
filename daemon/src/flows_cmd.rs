//! `tidewatchd flows`: one JSON record per flow when it ends — the flow
//! table with reassembly figures, tunnels and application metadata, no model.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use tidewatch::{FeatureSink, FlowRecord, PcapFileSource, SinkControl, SinkError, Trigger};

use crate::Failure;

#[derive(clap::Args)]
pub struct FlowsArgs {
    /// Capture files, read in order.
    #[arg(required = true, value_name = "PCAP")]
    pcaps: Vec<PathBuf>,
    /// Where records go: `json:-` (stdout) or `json:PATH`.
    #[arg(long = "output", value_name = "OUTPUT", default_value = "json:-")]
    output: String,
    /// Also write each TCP flow's reassembled streams to DIR/<flow_id>.{c2s,s2c}.
    #[arg(long, value_name = "DIR")]
    streams: Option<PathBuf>,
    /// With --streams: most bytes kept per direction of a flow.
    #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
    stream_bytes: usize,
    /// Print the engine's counters at the end as one JSON object on stderr.
    #[arg(long, value_enum, value_name = "FORMAT")]
    stats: Option<crate::wiring::StatsFormat>,
    /// Worker threads (default: the machine's cores; 0 = one thread).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    #[command(flatten)]
    flows: crate::FlowArgs,
}

struct FlowsSink {
    out: BufWriter<Box<dyn Write + Send>>,
    streams: Option<PathBuf>,
    records: u64,
}

impl FeatureSink for FlowsSink {
    fn row(&mut self, r: &FlowRecord, _features: &[f32]) -> Result<SinkControl, SinkError> {
        if r.trigger != Trigger::End {
            return Ok(SinkControl::Continue);
        }
        serde_json::to_writer(&mut self.out, r).map_err(|e| SinkError::Other(e.to_string()))?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        if let (Some(dir), Some(s)) = (&self.streams, &r.detail.streams) {
            for (suffix, bytes) in [("c2s", &s[0]), ("s2c", &s[1])] {
                std::fs::write(dir.join(format!("{}.{suffix}", r.flow_id)), bytes)?;
            }
        }
        Ok(SinkControl::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

pub fn run(args: FlowsArgs) -> Result<(), Failure> {
    let out: Box<dyn Write + Send> = match args.output.strip_prefix("json:") {
        Some("-") => Box::new(std::io::stdout()),
        Some(path) if !path.is_empty() => Box::new(
            File::create(path).map_err(|e| Failure::usage(format!("cannot create {path}: {e}; check the path")))?,
        ),
        _ => return Err(Failure::usage(format!("--output {}: expected json:- or json:PATH", args.output))),
    };
    if let Some(dir) = &args.streams {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::usage(format!("cannot create --streams directory {}: {e}", dir.display())))?;
    }
    let mut source = PcapFileSource::open(&args.pcaps)?;
    let (mut inspect, defrag) = args.flows.caps();
    inspect.keep_stream_bytes = if args.streams.is_some() { args.stream_bytes } else { 0 };
    let sink = FlowsSink { out: BufWriter::new(out), streams: args.streams.clone(), records: 0 };
    let wiring =
        crate::wiring::Wiring { early_packets: 0, flows: args.flows.config()?, inspect, defrag, workers: args.workers };
    let mut engine = wiring.builder().feature_sink(sink).build()?;
    let started = Instant::now();
    let stats = engine.run(&mut source)?;
    let wall = started.elapsed().as_secs_f64();
    eprintln!(
        "tidewatchd flows: {} packets ({} decoded, {} fragments, {} dropped), {} flows in {wall:.3} s",
        stats.packets,
        stats.decoded,
        stats.fragments,
        stats.dropped(),
        stats.flows_created,
    );
    for p in &stats.partial_reads {
        eprintln!("  warning: {} ended early after {} packets: {}", p.path.display(), p.packets_read, p.reason);
    }
    if args.stats == Some(crate::wiring::StatsFormat::Json) {
        let mut j = stats.to_json();
        crate::summary::add_rates(&mut j, &stats, wall);
        eprintln!("{j}");
    }
    Ok(())
}
