//! `tidewatchd run`: live capture on one or more interfaces (a span port),
//! verdicts to syslog and/or JSON, periodic statistics, and signals:
//! SIGHUP reloads the config and model (keeping the old ones if the new are
//! invalid) and reopens output files; SIGTERM/SIGINT stop capture, drain
//! every queue, end open flows through the classifier, flush outputs, exit 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidewatch::source::live::{InterfaceCounters, LiveSource};
use tidewatch::{Classifier, EngineCounters, ModelSwapper, OnnxClassifier};

use crate::config::{needing_restart, Config};
use crate::output::live::OutputSwitch;
use crate::output::queue::OutputHandle;
use crate::{default_model, summary, Failure};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Configuration file (TOML; see daemon/tidewatch.example.toml). Without
    /// one, defaults apply and --interface is required.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Interface to capture on (repeatable); replaces capture.interfaces.
    #[arg(long = "interface", value_name = "IFACE")]
    interfaces: Vec<String>,
    /// ONNX model; replaces engine.model.
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Output address (repeatable; see `replay --help`); replaces outputs.outputs.
    #[arg(long = "output", value_name = "OUTPUT")]
    outputs: Vec<String>,
    /// Worker threads; replaces engine.workers.
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Send benign verdicts to syslog too (with --syslog-events verdict).
    #[arg(long)]
    syslog_benign: bool,
    /// What syslog carries, comma-separated: `incident` (default), `verdict`, `flow`;
    /// replaces outputs.syslog_events.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    syslog_events: Vec<String>,
    /// Also write a record of every flow when it ends (`event_type` = `flow`)
    /// to the JSON outputs: Zeek's conn.log; sets outputs.flow_records.
    #[arg(long)]
    flow_records: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9911);
    /// replaces metrics.listen.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Seconds between periodic statistics (0: only at exit).
    #[arg(long, value_name = "SECS")]
    stats_interval: Option<f64>,
    /// After opening the capture, run as this user (like tcpdump -Z).
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

pub fn check_config(args: CheckArgs) -> Result<(), Failure> {
    let cfg = Config::load(&args.config)?;
    let problems = preflight(&cfg);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        return Err(Failure::usage(format!(
            "{}: {} problem(s) `run` would hit:\n{}",
            args.config.display(),
            problems.len(),
            list.join("\n")
        )));
    }
    println!(
        "{}: valid ({} interface(s): {}; {} output(s): {}; model {})",
        args.config.display(),
        cfg.capture.interfaces.len(),
        cfg.capture.interfaces.join(", "),
        cfg.outputs.outputs.len(),
        cfg.outputs.outputs.join(", "),
        model_path(&cfg).display()
    );
    Ok(())
}

/// What `run` would need from this machine, checked without capturing:
/// interfaces, the BPF filter, the model (loaded, schema checked), each
/// output (writable or reachable) and the user to switch to. One line per problem.
fn preflight(cfg: &Config) -> Vec<String> {
    use crate::output::{parse_output, OutputAddr, SyslogAddr};
    let mut problems = Vec::new();
    if cfg.capture.interfaces.is_empty() {
        problems.push("capture.interfaces is empty: name the interface(s) of the span port".to_string());
    }
    for i in &cfg.capture.interfaces {
        if !tidewatch::source::live::interface_exists(i) {
            problems.push(format!("interface `{i}` does not exist (see `ip link`)"));
        }
    }
    if let Err(e) = tidewatch::source::live::check_bpf_filter(&cfg.capture.bpf_filter) {
        problems.push(format!("capture.bpf_filter `{}` does not compile: {e}", cfg.capture.bpf_filter));
    }
    let runtime = (!cfg.engine.onnx_runtime.as_os_str().is_empty()).then_some(cfg.engine.onnx_runtime.as_path());
    if let Err(e) = OnnxClassifier::load(&model_path(cfg), runtime) {
        problems.push(format!("model: {e}"));
    }
    if !cfg.metrics.listen.is_empty() {
        if let Err(e) = std::net::TcpListener::bind(&cfg.metrics.listen) {
            problems.push(format!("metrics.listen `{}`: cannot listen: {e}", cfg.metrics.listen));
        }
    }
    for spec in &cfg.outputs.outputs {
        match parse_output(spec) {
            Err(e) => problems.push(e),
            Ok(OutputAddr::JsonStdout) => {}
            Ok(OutputAddr::JsonFile(path)) => {
                if let Err(e) = check_writable(&path) {
                    problems.push(format!("output `{spec}`: {e}"));
                }
            }
            Ok(OutputAddr::Syslog(SyslogAddr::Unix(path))) => {
                use std::os::unix::fs::FileTypeExt;
                match std::fs::metadata(&path) {
                    Ok(m) if m.file_type().is_socket() => {}
                    Ok(_) => problems.push(format!("output `{spec}`: {} is not a socket", path.display())),
                    Err(e) => problems.push(format!("output `{spec}`: {}: {e} (is syslog running?)", path.display())),
                }
            }
            Ok(OutputAddr::Syslog(SyslogAddr::Udp { host, port })) => {
                if let Err(e) = resolve(&host, port) {
                    problems.push(format!("output `{spec}`: {e}"));
                }
            }
            Ok(OutputAddr::Syslog(SyslogAddr::Tcp { host, port })) => {
                let reachable = resolve(&host, port).and_then(|addr| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        .map(drop)
                        .map_err(|e| format!("cannot connect to {addr}: {e}"))
                });
                if let Err(e) = reachable {
                    problems.push(format!("output `{spec}`: {e}"));
                }
            }
        }
    }
    if !cfg.privileges.user.is_empty() {
        match nix::unistd::User::from_name(&cfg.privileges.user) {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!("privileges.user `{}` does not exist", cfg.privileges.user)),
            Err(e) => problems.push(format!("privileges.user `{}`: {e}", cfg.privileges.user)),
        }
    }
    if !cfg.privileges.group.is_empty() {
        match nix::unistd::Group::from_name(&cfg.privileges.group) {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!("privileges.group `{}` does not exist", cfg.privileges.group)),
            Err(e) => problems.push(format!("privileges.group `{}`: {e}", cfg.privileges.group)),
        }
    }
    problems
}

/// A JSON output file can be appended to: it exists and opens for
/// appending, or its folder exists and takes a new file (made and removed).
fn check_writable(path: &std::path::Path) -> Result<(), String> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot append to {}: {e}", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(format!("folder {} does not exist (create it, owned by the daemon's user)", dir.display()));
    }
    let probe = dir.join(format!(".tidewatch-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("cannot create files in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn resolve(host: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

fn effective_config(args: &RunArgs) -> Result<Config, Failure> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => {
            let mut c = Config::default();
            // Without a config file, verdicts go to stdout unless told otherwise.
            c.outputs.outputs = vec!["json:-".into()];
            c
        }
    };
    if !args.interfaces.is_empty() {
        cfg.capture.interfaces = args.interfaces.clone();
    }
    if let Some(m) = &args.model {
        cfg.engine.model = m.clone();
    }
    if !args.outputs.is_empty() {
        cfg.outputs.outputs = args.outputs.clone();
    }
    if let Some(w) = args.workers {
        cfg.engine.workers = w;
    }
    if args.syslog_benign {
        cfg.outputs.syslog_benign = true;
    }
    if !args.syslog_events.is_empty() {
        cfg.outputs.syslog_events = args.syslog_events.clone();
    }
    if args.flow_records {
        cfg.outputs.flow_records = true;
    }
    if let Some(s) = args.stats_interval {
        cfg.stats.interval = s;
    }
    if let Some(m) = &args.metrics {
        cfg.metrics.listen = m.clone();
    }
    if let Some(u) = &args.user {
        cfg.privileges.user = u.clone();
    }
    cfg.validate().map_err(Failure::usage)?;
    if cfg.capture.interfaces.is_empty() {
        return Err(Failure::usage("no interface to capture on: give --interface IFACE or capture.interfaces"));
    }
    Ok(cfg)
}

fn model_path(cfg: &Config) -> PathBuf {
    if cfg.engine.model.as_os_str().is_empty() {
        default_model()
    } else {
        cfg.engine.model.clone()
    }
}

/// Switches to an unprivileged user once the capture is open.
fn drop_privileges(user: &str, group: &str) -> Result<(), Failure> {
    use nix::unistd::{setgid, setgroups, setuid, Group, User};
    let fail = |what: String| Failure::usage(format!("cannot drop privileges to {user}: {what}"));
    let u = User::from_name(user).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail("no such user".into()))?;
    let gid = if group.is_empty() {
        u.gid
    } else {
        Group::from_name(group).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail(format!("no group {group}")))?.gid
    };
    setgroups(&[gid]).map_err(|e| fail(format!("setgroups: {e}")))?;
    setgid(gid).map_err(|e| fail(format!("setgid: {e}")))?;
    setuid(u.uid).map_err(|e| fail(format!("setuid: {e}")))?;
    if nix::unistd::geteuid().is_root() {
        return Err(fail("still root after setuid".into()));
    }
    eprintln!("tidewatchd: running as {user} (uid {}, gid {})", u.uid, gid);
    Ok(())
}

fn stats_json(
    counters: &EngineCounters,
    interfaces: &[Arc<InterfaceCounters>],
    outputs: &[OutputHandle],
) -> serde_json::Value {
    let mut j = counters.to_json();
    j["event_type"] = "stats".into();
    j["timestamp"] =
        tidewatch::sink::rfc3339_micros(tidewatch::micros_from_system_time(std::time::SystemTime::now())).into();
    j["interfaces"] = interfaces.iter().map(|c| c.to_json()).collect::<Vec<_>>().into();
    j["outputs"] = outputs.iter().map(|h| h.to_json()).collect::<Vec<_>>().into();
    j
}

/// Reloads config and model after SIGHUP; on any error keeps what runs.
/// The handles that change a running engine.
struct Swappers {
    model: ModelSwapper,
    policy: tidewatch::PolicySwapper,
    settings: tidewatch::SettingsSwapper,
}

fn reload(
    args: &RunArgs,
    running: &mut Config,
    running_model: &mut PathBuf,
    model_id: &Mutex<String>,
    swap: &Swappers,
    outputs: &OutputSwitch,
) {
    let cfg = match effective_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tidewatchd: reload failed, keeping the running config and model: {}", e.message);
            return;
        }
    };
    let changed = running.changed_settings(&cfg);
    match cfg.policy.policy().and_then(|p| {
        let rules = p.suppress.len();
        swap.policy.swap(p).map(|()| rules).map_err(|e| e.to_string())
    }) {
        Ok(rules) => {
            eprintln!("tidewatchd: policy applied ({rules} suppress rules)");
            running.policy = cfg.policy.clone();
        }
        Err(e) => eprintln!("tidewatchd: reload failed, keeping the running policy: {e}"),
    }
    if running.engine.final_verdicts != cfg.engine.final_verdicts || running.incidents != cfg.incidents {
        let applied = cfg.engine.final_verdicts().map_err(|e| e.message).and_then(|fv| {
            let live = tidewatch::LiveSettings::new(
                fv == crate::wiring::FinalVerdicts::Changed,
                cfg.incidents.engine_config(),
            );
            swap.settings.swap(live).map_err(|e| e.to_string())
        });
        match applied {
            Ok(()) => {
                eprintln!("tidewatchd: engine.final_verdicts = {} and [incidents] applied", cfg.engine.final_verdicts);
                running.engine.final_verdicts = cfg.engine.final_verdicts.clone();
                running.incidents = cfg.incidents.clone();
            }
            Err(e) => eprintln!("tidewatchd: reload failed, keeping final_verdicts and [incidents]: {e}"),
        }
    }
    if running.stats.interval != cfg.stats.interval {
        eprintln!("tidewatchd: stats.interval is now {} s", cfg.stats.interval);
        running.stats.interval = cfg.stats.interval;
    }
    let path = model_path(&cfg);
    match OnnxClassifier::load(&path, None) {
        Ok(c) => {
            let id = c.info().id();
            match swap.model.swap(Box::new(c)) {
                Ok(()) => {
                    eprintln!("tidewatchd: reloaded model {id} from {}", path.display());
                    *running_model = path;
                    running.engine.model = cfg.engine.model.clone();
                    if let Ok(mut m) = model_id.lock() {
                        *m = id;
                    }
                }
                Err(e) => eprintln!("tidewatchd: reload failed, keeping the running model: {e}"),
            }
        }
        Err(e) => eprintln!("tidewatchd: reload failed, keeping the running model {}: {e}", running_model.display()),
    }
    let outputs_changed = changed.iter().any(|k| k.starts_with("outputs.") && k != "outputs.flow_records");
    if outputs_changed {
        match cfg.output_options().and_then(|opts| outputs.change(&cfg.outputs.outputs, &opts)) {
            Ok(c) => {
                eprintln!(
                    "tidewatchd: outputs changed: {} kept, opened [{}], taken out [{}]",
                    c.kept,
                    c.opened.join(", "),
                    c.removed.join(", ")
                );
                let flow_records = running.outputs.flow_records;
                running.outputs = cfg.outputs.clone();
                running.outputs.flow_records = flow_records;
            }
            Err(e) => eprintln!("tidewatchd: reload failed, keeping the running outputs: {e}"),
        }
    }
    outputs.reopen();
    // What still differs from the file after applying what could be.
    let still_changed = running.changed_settings(&cfg);
    let pending = needing_restart(&still_changed);
    for k in &pending {
        eprintln!("tidewatchd: setting {k} changed; it applies after a restart");
    }
    eprintln!(
        "tidewatchd: outputs reopened; applied live: engine.model, engine.final_verdicts, [incidents], [policy], \
         stats.interval, [outputs] but flow_records; {} changed setting(s) wait for a restart",
        pending.len()
    );
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let cfg = effective_config(&args)?;
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(|e| Failure::runtime(format!("signal handler: {e}")))?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| Failure::runtime(format!("signal handler: {e}")))?;
    // Open everything that may need privileges first: capture and outputs.
    let mut live = LiveSource::open(&cfg.live_config())?;
    let opts = cfg.output_options().map_err(Failure::usage)?;
    let (live_outputs, switch) = crate::output::live::open(&cfg.outputs.outputs, &opts)?;
    if !cfg.privileges.user.is_empty() {
        drop_privileges(&cfg.privileges.user, &cfg.privileges.group)?;
    }
    let mut running_model = model_path(&cfg);
    let (inspect, defrag) = cfg.caps();
    let wiring = crate::wiring::Wiring {
        early_packets: cfg.engine.early_packets,
        flows: cfg.flow_config(),
        inspect,
        defrag,
        workers: (cfg.engine.workers > 0).then_some(cfg.engine.workers),
    };
    let onnx_runtime = &cfg.engine.onnx_runtime;
    let builder = wiring
        .classifying(crate::wiring::Classify {
            model: &running_model,
            onnx_runtime: (!onnx_runtime.as_os_str().is_empty()).then_some(onnx_runtime.as_path()),
            flow_records: cfg.outputs.flow_records,
            final_verdicts: cfg.engine.final_verdicts()?,
            batch_size: cfg.engine.batch_size,
            incidents: cfg.incidents.engine_config(),
            sinks: vec![Box::new(live_outputs)],
        })
        .policy(cfg.policy.policy().map_err(Failure::usage)?)
        .live(true);
    let mut engine = builder.build()?;
    let model_id = engine.model_info().map(|m| m.id()).unwrap_or_default();
    eprintln!(
        "tidewatchd: capturing on {} with model {model_id}; outputs: {}",
        cfg.capture.interfaces.join(", "),
        cfg.outputs.outputs.join(", ")
    );
    let counters = engine.counters();
    let swappers = Swappers {
        model: engine.model_swapper(),
        policy: engine.policy_swapper(),
        settings: engine.settings_swapper(),
    };
    let interfaces = live.counters();
    let stop_capture = live.stop_flag();
    let shared_model = Arc::new(Mutex::new(model_id.clone()));
    let _metrics = if cfg.metrics.listen.is_empty() {
        None
    } else {
        let sources = crate::metrics::Sources {
            engine: counters.clone(),
            interfaces: interfaces.clone(),
            outputs: switch.clone(),
            model: shared_model.clone(),
        };
        let m = crate::metrics::MetricsServer::start(&cfg.metrics.listen, sources).map_err(Failure::usage)?;
        eprintln!("tidewatchd: metrics at http://{}/metrics", m.addr);
        Some(m)
    };
    let finished = Arc::new(AtomicBool::new(false));
    let mut running_cfg = cfg.clone();
    let control = {
        let (finished, counters, interfaces, switch) =
            (finished.clone(), counters.clone(), interfaces.clone(), switch.clone());
        std::thread::spawn(move || {
            let mut last_stats = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if term.load(Ordering::Relaxed) {
                    stop_capture.store(true, Ordering::Relaxed);
                }
                if hup.swap(false, Ordering::Relaxed) {
                    reload(&args, &mut running_cfg, &mut running_model, &shared_model, &swappers, &switch);
                }
                let interval = Duration::from_secs_f64(running_cfg.stats.interval);
                if !interval.is_zero() && last_stats.elapsed() >= interval {
                    last_stats = Instant::now();
                    let j = stats_json(&counters, &interfaces, &switch.handles());
                    eprintln!("{j}");
                    // JSON outputs get it too, between verdicts (as in Suricata's EVE).
                    for h in &switch.current() {
                        h.write_json_object(&j);
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let outcome = engine.run(&mut live);
    finished.store(true, Ordering::Relaxed);
    let _ = control.join();
    let stats = outcome?;
    eprint!("{}", summary::render(&stats, started.elapsed().as_secs_f64(), &model_id, &switch.summary_lines()));
    // The readers have stopped (the source finished), so these are final.
    for c in &interfaces {
        eprintln!("  {}", c.to_json());
    }
    let mut last = stats_json(&counters, &interfaces, &switch.handles());
    last["final"] = true.into();
    eprintln!("{last}");
    if let Some(reason) = live.failures().first() {
        return Err(Failure::runtime(format!("{reason}; open flows were flushed, restart when the interface is back")));
    }
    Ok(())
}
