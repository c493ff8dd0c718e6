//! `tidewatchd`: replay captures (and, later, watch a span port) and emit
//! verdicts. A thin layer over the `tidewatch` crate: argument parsing,
//! outputs, the human summary and exit codes.
//!
//! Exit codes: 0 success; 2 bad arguments, missing or unreadable input,
//! bad model or missing ONNX Runtime; 1 any other failure (e.g. an output
//! that cannot be written).

mod config;
mod features_cmd;
mod feedback;
mod flows_cmd;
mod metrics;
mod output;
mod run;
mod summary;
mod wiring;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use tidewatch::PcapFileSource;

#[derive(Parser)]
#[command(name = "tidewatchd", version, about = "Tidewatch: flow verdicts from packet captures")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay pcap/pcapng files through the engine and emit verdicts.
    Replay(ReplayArgs),
    /// Capture live on interfaces (a span port) and emit verdicts until SIGTERM.
    Run(run::RunArgs),
    /// Validate a configuration file and exit.
    CheckConfig(run::CheckArgs),
    /// Export the engine's feature rows as CSV (for training).
    Features(features_cmd::FeaturesArgs),
    /// Write one JSON record per flow when it ends: counters per direction,
    /// reassembly, tunnels, application protocol and metadata (no model).
    Flows(flows_cmd::FlowsArgs),
    /// Inspect models.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Print the feature schema this engine computes, as JSON.
    Schema,
    /// Record an analyst's decision on an incident or verdict (false positive
    /// or confirmed) for training; a false positive can add a suppress rule.
    Feedback(feedback::FeedbackArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Print a model's metadata and whether this engine accepts it.
    Info {
        path: PathBuf,
        #[arg(long, value_name = "PATH")]
        onnx_runtime: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Capture files, read in order.
    #[arg(required = true, value_name = "PCAP")]
    pcaps: Vec<PathBuf>,
    /// ONNX model (default: the bundled models/lab/model.onnx).
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Where verdicts go, repeatable: `json:PATH`, `json:-` (stdout), `syslog:udp://HOST:PORT`,
    /// `syslog:tcp://HOST:PORT` (RFC 6587 octet counting), `syslog:unix:PATH` (e.g. /dev/log).
    /// JSON gets every verdict and incident (`event_type`); syslog gets RFC 5424
    /// messages for incidents (see --syslog-events).
    #[arg(long = "output", value_name = "OUTPUT", default_value = "json:-")]
    outputs: Vec<String>,
    /// What syslog outputs carry, comma-separated: `incident`, `verdict`
    /// (verdicts not labelled benign), `flow` (with --flow-records).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "incident")]
    syslog_events: Vec<String>,
    /// Also write a record of every flow when it ends (`event_type` =
    /// `flow`, the fields of `tidewatchd flows`) to the JSON outputs, beside
    /// the verdicts: Zeek's conn.log.
    #[arg(long)]
    flow_records: bool,
    /// Seconds between `update` records of an incident that goes on.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    incident_update: f64,
    /// An incident closes after this many seconds without a flow of it.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    incident_quiet: f64,
    /// Emit an early verdict after this many packets of a flow (0: never).
    #[arg(long, default_value_t = 8, value_name = "K")]
    early_packets: usize,
    /// End verdicts: `all`, or `changed` (only when the label differs from the flow's early verdict).
    #[arg(long, value_enum, default_value_t = wiring::FinalVerdicts::All, value_name = "WHICH")]
    final_verdicts: wiring::FinalVerdicts,
    /// Rows per inference call.
    #[arg(long, default_value_t = 256, value_name = "N")]
    batch_size: usize,
    /// libonnxruntime.so to load (default: $ORT_DYLIB_PATH, then .ort/).
    #[arg(long, value_name = "PATH")]
    onnx_runtime: Option<PathBuf>,
    /// Also print the counters at the end: `json` prints one JSON object on stderr.
    #[arg(long, value_enum, value_name = "FORMAT")]
    stats: Option<wiring::StatsFormat>,
    /// Worker threads, each owning a shard of the flows (default: the
    /// machine's cores; 0 = everything on one thread). Results are the same.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Replay the input N times, each pass shifted in time past the last
    /// (so flows never collide); for benchmarks on small files.
    #[arg(long = "loop", default_value_t = 1, value_name = "N")]
    loops: usize,
    #[command(flatten)]
    flows: FlowArgs,
}

/// Flow-table settings shared by `replay` and `features`.
#[derive(clap::Args)]
pub struct FlowArgs {
    /// A TCP flow silent this long ends (seconds).
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    tcp_idle_timeout: f64,
    /// A UDP flow silent this long ends (seconds).
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    udp_idle_timeout: f64,
    /// An ICMP or other-protocol flow silent this long ends (seconds).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    other_idle_timeout: f64,
    /// A TCP flow closed by FIN/FIN or RST ends after this much quiet (seconds);
    /// its end verdict waits this long.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    tcp_closed_timeout: f64,
    /// A flow longer than this ends and a new one begins (seconds).
    #[arg(long, default_value_t = 1800.0, value_name = "SECS")]
    active_timeout: f64,
    /// Most flows tracked at once; when full the least recently seen are evicted (counted).
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    max_flows: usize,
    /// Out-of-order TCP bytes held in the whole engine; a connection that
    /// would pass it stops being reassembled (counted, statistics kept).
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    max_reassembly_bytes: usize,
    /// Out-of-order TCP bytes one connection may hold.
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_reassembly_bytes_per_flow: usize,
    /// Fragment bytes held for IP defragmentation; the oldest datagrams are evicted past it (counted).
    #[arg(long, default_value_t = 32 << 20, value_name = "BYTES")]
    max_fragment_bytes: usize,
    /// Incomplete fragmented datagrams held at once.
    #[arg(long, default_value_t = 16_384, value_name = "N")]
    max_fragment_datagrams: usize,
    /// No TCP reassembly or application parsing (flow statistics only).
    #[arg(long)]
    no_payload_inspection: bool,
}

/// The payload stage's and the defragmenter's settings, from the command
/// line or the config file: `reassembly` = [whole engine, per connection]
/// bytes, `fragments` = [bytes, datagrams].
pub fn payload_caps(
    inspection: bool,
    reassembly: [usize; 2],
    fragments: [usize; 2],
) -> (tidewatch::inspect::InspectConfig, tidewatch::defrag::DefragConfig) {
    let mut inspect = tidewatch::inspect::InspectConfig::default();
    inspect.enabled = inspection;
    inspect.reassembly.max_buffered_total = reassembly[0];
    inspect.reassembly.max_buffered_per_flow = reassembly[1];
    let mut defrag = tidewatch::defrag::DefragConfig::default();
    defrag.max_bytes = fragments[0];
    defrag.max_datagrams = fragments[1].max(1);
    (inspect, defrag)
}

impl FlowArgs {
    /// The caps of the payload stage and of defragmentation.
    pub fn caps(&self) -> (tidewatch::inspect::InspectConfig, tidewatch::defrag::DefragConfig) {
        payload_caps(
            !self.no_payload_inspection,
            [self.max_reassembly_bytes, self.max_reassembly_bytes_per_flow],
            [self.max_fragment_bytes, self.max_fragment_datagrams],
        )
    }

    pub fn config(&self) -> Result<tidewatch::flow::FlowConfig, Failure> {
        let us = |name: &str, s: f64| {
            if s.is_finite() && s > 0.0 && s < 1e9 {
                Ok((s * 1e6) as u64)
            } else {
                Err(Failure::usage(format!("--{name} must be a positive number of seconds, not {s}")))
            }
        };
        let other = us("other-idle-timeout", self.other_idle_timeout)?;
        let mut c = tidewatch::flow::FlowConfig::default();
        c.tcp_idle_timeout = us("tcp-idle-timeout", self.tcp_idle_timeout)?;
        c.udp_idle_timeout = us("udp-idle-timeout", self.udp_idle_timeout)?;
        c.tcp_closed_timeout = us("tcp-closed-timeout", self.tcp_closed_timeout)?;
        c.icmp_idle_timeout = other;
        c.other_idle_timeout = other;
        c.active_timeout = us("active-timeout", self.active_timeout)?;
        c.max_flows = self.max_flows;
        Ok(c)
    }
}

/// An error with the exit code it deserves.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }
}

impl From<tidewatch::Error> for Failure {
    fn from(e: tidewatch::Error) -> Self {
        use tidewatch::Error as E;
        let code = match e {
            E::CaptureOpen { .. }
            | E::Interface { .. }
            | E::Runtime { .. }
            | E::Model { .. }
            | E::SchemaMismatch { .. }
            | E::Classifier { .. }
            | E::Config(_) => 2,
            // Inference, sink and internal failures, and anything newer.
            _ => 1,
        };
        // The library speaks in an embedder's terms; the daemon adds the
        // project's own commands.
        let hint = match e {
            E::Runtime { .. } => "; from the source tree, `make setup` installs it into .ort/",
            E::SchemaMismatch { .. } => "; `make model` retrains the bundled model",
            _ => "",
        };
        Failure { code, message: format!("{}{hint}", e.with_sources()) }
    }
}

/// The bundled model: in the source tree next to the executable's `target/`,
/// in an installed `PREFIX/share/tidewatch/models/` beside `PREFIX/bin/`, or
/// in the current directory.
pub fn default_model() -> PathBuf {
    let rel = Path::new("models").join("lab").join("model.onnx");
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            for p in [up.join(&rel), up.join("share").join("tidewatch").join(&rel)] {
                if p.is_file() {
                    return p;
                }
            }
        }
    }
    rel
}

fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let flow_cfg = args.flows.config()?;
    if args.loops == 0 {
        return Err(Failure::usage("--loop must be at least 1"));
    }
    let gap = flow_cfg.tcp_idle_timeout.max(flow_cfg.udp_idle_timeout).max(flow_cfg.other_idle_timeout) + 1_000_000;
    let mut source = PcapFileSource::open_looped(&args.pcaps, args.loops, gap)?;
    let opts = output::OutputOptions {
        syslog_events: output::queue::Events::parse(&args.syslog_events).map_err(Failure::usage)?,
        ..Default::default()
    };
    let outputs = output::open_all_with(&args.outputs, &opts)?;
    let incidents = config::IncidentsConfig {
        update_interval: args.incident_update,
        quiet: args.incident_quiet,
        ..Default::default()
    };
    for (name, v) in [("incident-update", incidents.update_interval), ("incident-quiet", incidents.quiet)] {
        if !(v.is_finite() && v > 0.0 && v < 1e9) {
            return Err(Failure::usage(format!("--{name} must be a positive number of seconds, not {v}")));
        }
    }
    let model = args.model.clone().unwrap_or_else(default_model);
    let (inspect, defrag) = args.flows.caps();
    let wiring =
        wiring::Wiring { early_packets: args.early_packets, flows: flow_cfg, inspect, defrag, workers: args.workers };
    let builder = wiring.classifying(wiring::Classify {
        model: &model,
        onnx_runtime: args.onnx_runtime.as_deref(),
        flow_records: args.flow_records,
        final_verdicts: args.final_verdicts,
        batch_size: args.batch_size,
        incidents: incidents.engine_config(),
        sinks: outputs.sinks.into_iter().map(|s| Box::new(s) as Box<dyn tidewatch::VerdictSink>).collect(),
    });
    let mut engine = builder.build()?;
    let model_id = engine.model_info().map(|m| m.id()).unwrap_or_default();
    let started = Instant::now();
    let stats = engine.run(&mut source)?;
    let wall = started.elapsed().as_secs_f64();
    eprint!("{}", summary::render(&stats, wall, &model_id, &outputs.descriptions));
    if args.stats == Some(wiring::StatsFormat::Json) {
        let mut j = stats.to_json();
        summary::add_rates(&mut j, &stats, wall);
        eprintln!("{j}");
    }
    Ok(())
}

fn model_info(path: &Path, runtime: Option<&Path>) -> Result<(), Failure> {
    let (info, verdict) = tidewatch::infer::inspect_model(path, runtime)?;
    println!("model:          {} version {}", info.name, info.version);
    println!("feature schema: {} v{} ({} features)", info.schema, info.schema_version, info.features.len());
    println!("labels:         {}", info.labels.join(", "));
    let thresholds: Vec<String> =
        info.labels.iter().zip(&info.thresholds).filter(|(_, t)| **t > 0.0).map(|(l, t)| format!("{l} {t}")).collect();
    if thresholds.is_empty() {
        println!("thresholds:     none (the most probable label wins)");
    } else {
        println!("thresholds:     {} (below its threshold a label is reported benign)", thresholds.join(", "));
    }
    println!("engine schema:  {}", tidewatch::features::schema_id());
    match verdict {
        Ok(()) => {
            println!("accepted:       yes");
            Ok(())
        }
        Err(e) => {
            println!("accepted:       no");
            Err(e.into())
        }
    }
}

fn schema() {
    let j = wiring::schema_json();
    // A closed pipe (`tidewatchd schema | head`) is not an error worth a panic.
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{j}");
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and errors with usage (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Replay(a) => replay(a),
        Command::Run(a) => run::run(a),
        Command::CheckConfig(a) => run::check_config(a),
        Command::Features(a) => features_cmd::run(a),
        Command::Flows(a) => flows_cmd::run(a),
        Command::Feedback(a) => feedback::feedback(a),
        Command::Model { command: ModelCommand::Info { path, onnx_runtime } } => {
            model_info(&path, onnx_runtime.as_deref())
        }
        Command::Schema => {
            schema();
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tidewatchd: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
