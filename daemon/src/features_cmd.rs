//! `tidewatchd features`: the engine's own feature rows as CSV, optionally
//! joined to ground-truth labels, so training never recomputes a feature.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::IpAddr;
use std::path::PathBuf;

use tidewatch::features::FEATURE_NAMES;
use tidewatch::{FeatureSink, FlowRecord, PcapFileSource, SinkControl, SinkError};

use crate::Failure;

#[derive(clap::Args)]
pub struct FeaturesArgs {
    /// Capture files, read in order.
    #[arg(required = true, value_name = "PCAP")]
    pcaps: Vec<PathBuf>,
    /// CSV file to write (its schema goes to `<FILE>.schema.json`).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Ground truth: first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label. Repeatable.
    #[arg(long, value_name = "CSV")]
    labels: Vec<PathBuf>,
    /// Also write a row after this many packets of a flow (0: end rows only).
    #[arg(long, default_value_t = 8, value_name = "K")]
    early_packets: usize,
    #[command(flatten)]
    flows: crate::FlowArgs,
}

/// Canonical (direction-free) flow identity used to join labels.
type LabelKey = (String, (IpAddr, u16), (IpAddr, u16));

fn label_key(proto: &str, a: (IpAddr, u16), b: (IpAddr, u16)) -> LabelKey {
    if a <= b {
        (proto.to_string(), a, b)
    } else {
        (proto.to_string(), b, a)
    }
}

struct LabelSpan {
    first: u64,
    last: u64,
    label: String,
}

/// A label applies when the flow starts within its span (±2 s of slack
/// for timestamp rounding and retransmissions).
const SLACK_US: u64 = 2_000_000;

struct Labels(HashMap<LabelKey, Vec<LabelSpan>>);

fn secs_to_micros(s: &str) -> Option<u64> {
    let v: f64 = s.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * 1e6).round() as u64)
}

impl Labels {
    fn load(paths: &[PathBuf]) -> Result<Self, Failure> {
        let mut map: HashMap<LabelKey, Vec<LabelSpan>> = HashMap::new();
        for path in paths {
            let f =
                File::open(path).map_err(|e| Failure::usage(format!("cannot open labels {}: {e}", path.display())))?;
            for (n, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(|e| Failure::usage(format!("cannot read labels {}: {e}", path.display())))?;
                if n == 0 || line.trim().is_empty() {
                    continue; // header
                }
                let bad = || {
                    Failure::usage(format!(
                        "{}:{}: expected first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label",
                        path.display(),
                        n + 1
                    ))
                };
                let c: Vec<&str> = line.split(',').map(str::trim).collect();
                if c.len() != 8 {
                    return Err(bad());
                }
                let first = secs_to_micros(c[0]).ok_or_else(bad)?;
                let last = secs_to_micros(c[1]).ok_or_else(bad)?;
                let src: IpAddr = c[3].parse().map_err(|_| bad())?;
                let sp: u16 = c[4].parse().map_err(|_| bad())?;
                let dst: IpAddr = c[5].parse().map_err(|_| bad())?;
                let dp: u16 = c[6].parse().map_err(|_| bad())?;
                map.entry(label_key(c[2], (src, sp), (dst, dp))).or_default().push(LabelSpan {
                    first,
                    last,
                    label: c[7].to_string(),
                });
            }
        }
        Ok(Labels(map))
    }

    fn lookup(&self, r: &FlowRecord) -> Option<&str> {
        let spans = self.0.get(&label_key(r.proto.name(), (r.src_ip, r.src_port), (r.dst_ip, r.dst_port)))?;
        spans
            .iter()
            .filter(|s| r.flow_start + SLACK_US >= s.first && r.flow_start <= s.last + SLACK_US)
            .min_by_key(|s| s.first.abs_diff(r.flow_start))
            .map(|s| s.label.as_str())
    }
}

struct CsvSink {
    out: BufWriter<File>,
    labels: Labels,
    line: String,
}

impl FeatureSink for CsvSink {
    fn row(&mut self, r: &FlowRecord, features: &[f32]) -> Result<SinkControl, SinkError> {
        use std::fmt::Write as _;
        self.line.clear();
        let label = self.labels.lookup(r).unwrap_or("");
        let _ = write!(
            self.line,
            "{},{},{:.6},{:.6},{},{},{},{},{},{}",
            r.flow_id,
            r.trigger.name(),
            r.flow_start as f64 / 1e6,
            r.ts as f64 / 1e6,
            r.proto,
            r.src_ip,
            r.src_port,
            r.dst_ip,
            r.dst_port,
            label
        );
        for v in features {
            let _ = write!(self.line, ",{v}");
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())?;
        Ok(SinkControl::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

pub fn run(args: FeaturesArgs) -> Result<(), Failure> {
    let labels = Labels::load(&args.labels)?;
    let mut source = PcapFileSource::open(&args.pcaps)?;
    let create =
        |p: &PathBuf| File::create(p).map_err(|e| Failure::usage(format!("cannot create {}: {e}", p.display())));
    let mut out = BufWriter::new(create(&args.output)?);
    let header = format!(
        "flow_id,trigger,first_ts,last_ts,proto,src_ip,src_port,dst_ip,dst_port,label,{}\n",
        FEATURE_NAMES.join(",")
    );
    out.write_all(header.as_bytes()).map_err(|e| Failure::runtime(e.to_string()))?;
    let mut schema_path = args.output.clone().into_os_string();
    schema_path.push(".schema.json");
    let schema = crate::wiring::schema_json();
    std::fs::write(&schema_path, format!("{schema}\n")).map_err(|e| Failure::runtime(e.to_string()))?;
    let sink = CsvSink { out, labels, line: String::new() };
    let (inspect, defrag) = args.flows.caps();
    let wiring = crate::wiring::Wiring {
        early_packets: args.early_packets,
        flows: args.flows.config()?,
        inspect,
        defrag,
        workers: None,
    };
    let mut engine = wiring.builder().feature_sink(sink).build()?;
    let stats = engine.run(&mut source)?;
    eprintln!(
        "tidewatchd features: {} packets, {} flows, {} rows written to {}",
        stats.packets,
        stats.flows_created,
        stats.feature_rows,
        args.output.display()
    );
    for p in &stats.partial_reads {
        eprintln!("  warning: {} ended early after {} packets: {}", p.path.display(), p.packets_read, p.reason);
    }
    Ok(())
}
