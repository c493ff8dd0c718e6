//! Output addresses, parsed in one place for `replay` (and `run`), turned
//! into verdict sinks that each run behind their own bounded queue and
//! thread (see [`queue`]).
//!
//! | address                   | what                                                     |
//! |---------------------------|----------------------------------------------------------|
//! | `json:PATH`               | JSON lines to a file (created/truncated; `reopen` appends) |
//! | `json:-`                  | JSON lines to stdout                                     |
//! | `syslog:udp://HOST:PORT`  | syslog, one datagram per message                         |
//! | `syslog:tcp://HOST:PORT`  | syslog, RFC 6587 octet counting                          |
//! | `syslog:unix:PATH`        | syslog to a unix datagram socket such as `/dev/log` (a stream socket is used as one, newline-terminated) |
//!
//! IPv6 hosts go in brackets: `syslog:udp://[::1]:514`.

pub mod live;
pub mod queue;
pub mod syslog;
pub mod transport;

use std::fs::File;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

pub use self::queue::QueuedSink;
use self::queue::{Events, JsonFormat, OutputHandle, Overflow, QueueConfig};
use self::syslog::{SyslogFormatter, SyslogOptions};
use self::transport::{JsonLines, Tcp, Transport, Udp, Unix};
use crate::Failure;

/// The accepted address forms, for error messages.
pub const ACCEPTED_FORMS: &str = "json:PATH, json:- (stdout), syslog:udp://HOST:PORT, syslog:tcp://HOST:PORT, \
                                  syslog:unix:PATH (e.g. syslog:unix:/dev/log)";

/// A parsed output address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputAddr {
    JsonStdout,
    JsonFile(PathBuf),
    Syslog(SyslogAddr),
}

/// Where syslog messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogAddr {
    Udp { host: String, port: u16 },
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

fn bad(spec: &str, why: &str) -> String {
    format!("bad output `{spec}`: {why}; accepted forms: {ACCEPTED_FORMS}")
}

/// `HOST:PORT` or `[V6]:PORT`, both required, the port 1..=65535.
fn host_port(spec: &str, s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, p)) = rest.split_once(']') else {
            return Err(bad(spec, "missing `]` after the IPv6 address"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad(spec, &format!("`{h}` is not an IPv6 address")));
        }
        (h, p.strip_prefix(':').ok_or_else(|| bad(spec, "missing :PORT"))?)
    } else {
        let Some((h, p)) = s.rsplit_once(':') else {
            return Err(bad(spec, "missing :PORT"));
        };
        if h.contains(':') {
            return Err(bad(spec, "put an IPv6 address in brackets, e.g. [::1]:514"));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(bad(spec, "missing HOST"));
    }
    if host.contains(|c: char| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#')) {
        return Err(bad(spec, &format!("`{host}` is not a host name or address")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(bad(spec, &format!("`{port}` is not a port (1-65535)"))),
    }
}

/// Parses one `--output` address.
pub fn parse_output(spec: &str) -> Result<OutputAddr, String> {
    if let Some(path) = spec.strip_prefix("json:") {
        return match path {
            "-" => Ok(OutputAddr::JsonStdout),
            "" => Err(bad(spec, "`json:` needs a path, or - for stdout")),
            p => Ok(OutputAddr::JsonFile(PathBuf::from(p))),
        };
    }
    let Some(rest) = spec.strip_prefix("syslog:") else {
        return Err(format!("unknown output `{spec}`: accepted forms: {ACCEPTED_FORMS}"));
    };
    if let Some(hp) = rest.strip_prefix("udp://") {
        let (host, port) = host_port(spec, hp)?;
        Ok(OutputAddr::Syslog(SyslogAddr::Udp { host, port }))
    } else if let Some(hp) = rest.strip_prefix("tcp://") {
        let (host, port) = host_port(spec, hp)?;
        Ok(OutputAddr::Syslog(SyslogAddr::Tcp { host, port }))
    } else if let Some(path) = rest.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            Err(bad(spec, "`syslog:unix:` needs a socket path"))
        } else {
            Ok(OutputAddr::Syslog(SyslogAddr::Unix(PathBuf::from(path))))
        }
    } else {
        Err(bad(spec, "unknown syslog transport (udp, tcp or unix)"))
    }
}

/// Settings shared by every output of a run.
#[derive(Clone, Debug)]
pub struct OutputOptions {
    pub syslog: SyslogOptions,
    /// Verdicts each output may hold before it drops (or, for
    /// `json_overflow: Block`, makes the engine wait).
    pub queue_capacity: usize,
    /// How long `finish` waits for an output to drain.
    pub flush_timeout: Duration,
    /// Full-queue policy of JSON outputs. Syslog outputs never block.
    /// `Block` suits `replay` (a capture file can wait; a verdict file
    /// with holes would break the replay's determinism), `WaitThenDrop`
    /// suits live capture (`run`): a healthy output is waited for, a stuck
    /// one must not stall capture.
    pub json_overflow: Overflow,
    /// What syslog outputs carry (default: incidents only). JSON outputs
    /// carry both verdicts and incidents.
    pub syslog_events: Events,
    /// JSON files are appended to (`run`: a restart or a reload never
    /// wipes the verdicts of before), not truncated (`replay`: one file per run).
    pub append_files: bool,
}

impl Default for OutputOptions {
    /// The settings of `replay`.
    fn default() -> Self {
        Self {
            syslog: SyslogOptions::default(),
            queue_capacity: 8192,
            flush_timeout: Duration::from_secs(5),
            json_overflow: Overflow::Block,
            syslog_events: Events { verdicts: false, incidents: true, flows: false },
            append_files: false,
        }
    }
}

impl OutputOptions {
    /// The settings of live capture: no output may ever make the engine wait.
    #[allow(dead_code)] // for `run`
    pub fn live() -> Self {
        Self { json_overflow: Overflow::WaitThenDrop(queue::STALL_LIMIT), append_files: true, ..Self::default() }
    }
}

/// The outputs' descriptions for the summary. Derefs to one string per
/// output: before the engine finished them, `target (kind)`; once every
/// output is finished, with its counts (`target (kind: sent N, dropped M)`),
/// so that the summary printed after the run lists them.
pub struct OutputList {
    handles: Vec<OutputHandle>,
    plain: Vec<String>,
    finished: OnceLock<Vec<String>>,
}

impl OutputList {
    #[allow(dead_code)] // for `run`'s periodic stats
    pub fn handles(&self) -> &[OutputHandle] {
        &self.handles
    }

    /// One line per output with its counts, now.
    pub fn summary_lines(&self) -> Vec<String> {
        self.handles.iter().map(OutputHandle::summary).collect()
    }
}

impl Deref for OutputList {
    type Target = [String];

    fn deref(&self) -> &[String] {
        if self.handles.iter().all(OutputHandle::finished) {
            self.finished.get_or_init(|| self.summary_lines())
        } else {
            &self.plain
        }
    }
}

pub struct Outputs {
    /// One sink per output, in the order given; each feeds its own queue and thread.
    pub sinks: Vec<QueuedSink>,
    /// Where each output goes (and, after the run, its counts), for the summary.
    pub descriptions: OutputList,
}

/// Opens every output. Addresses are checked first, then files created;
/// sockets are connected by each output's thread, so an unreachable syslog
/// server never delays or fails the start (it is retried, its verdicts counted as dropped).
pub fn open_all_with(specs: &[String], opts: &OutputOptions) -> Result<Outputs, Failure> {
    let addrs = specs.iter().map(|s| parse_output(s).map_err(Failure::usage)).collect::<Result<Vec<_>, _>>()?;
    let mut sinks = Vec::new();
    let mut handles = Vec::new();
    let syslog_fmt =
        addrs.iter().any(|a| matches!(a, OutputAddr::Syslog(_))).then(|| SyslogFormatter::new(&opts.syslog));
    for (spec, addr) in specs.iter().zip(addrs) {
        let (sink, handle) = open_one(spec, addr, opts, syslog_fmt.as_ref())?;
        sinks.push(sink);
        handles.push(handle);
    }
    let plain = handles.iter().map(OutputHandle::description).collect();
    Ok(Outputs { sinks, descriptions: OutputList { handles, plain, finished: OnceLock::new() } })
}

/// What decides whether a running output can stay as it is when the
/// config changes: its address and, for syslog, every syslog setting.
pub fn output_key(spec: &str, opts: &OutputOptions) -> String {
    if spec.starts_with("syslog:") {
        format!("{spec} {:?} {:?}", opts.syslog, opts.syslog_events)
    } else {
        spec.to_string()
    }
}

/// Opens one output: its file (if any), its queue and its thread.
pub fn open_one(
    spec: &str,
    addr: OutputAddr,
    opts: &OutputOptions,
    syslog_fmt: Option<&SyslogFormatter>,
) -> Result<(QueuedSink, OutputHandle), Failure> {
    let json_queue = QueueConfig {
        capacity: opts.queue_capacity,
        overflow: opts.json_overflow,
        flush_timeout: opts.flush_timeout,
        skip_label: None,
        events: Events::ALL,
    };
    let (target, kind, transport, format, queue): (String, String, Box<dyn Transport>, Box<dyn queue::Format>, _) =
        match addr {
            OutputAddr::JsonStdout => {
                ("stdout".into(), "JSON lines".into(), Box::new(JsonLines::stdout()), Box::new(JsonFormat), json_queue)
            }
            OutputAddr::JsonFile(path) => {
                let f = if opts.append_files {
                    std::fs::OpenOptions::new().create(true).append(true).open(&path)
                } else {
                    File::create(&path)
                };
                let f = f.map_err(|e| Failure::usage(format!("cannot create output file {}: {e}", path.display())))?;
                let target = path.display().to_string();
                let mut t = JsonLines::file(path, f);
                if opts.json_overflow != Overflow::Block {
                    t = t.retrying();
                }
                (target, "JSON lines".into(), Box::new(t), Box::new(JsonFormat), json_queue)
            }
            OutputAddr::Syslog(s) => {
                let transport: Box<dyn Transport> = match s {
                    SyslogAddr::Udp { host, port } => Box::new(Udp::new(&host, port)),
                    SyslogAddr::Tcp { host, port } => Box::new(Tcp::new(&host, port)),
                    SyslogAddr::Unix(path) => Box::new(Unix::new(path)),
                };
                let queue = QueueConfig {
                    capacity: opts.queue_capacity,
                    overflow: Overflow::WaitThenDrop(queue::STALL_LIMIT),
                    flush_timeout: opts.flush_timeout,
                    skip_label: (!opts.syslog.send_benign).then(|| opts.syslog.benign_label.clone()),
                    events: opts.syslog_events,
                };
                let fmt = syslog_fmt.cloned().unwrap_or_else(|| SyslogFormatter::new(&opts.syslog));
                let kind = format!("syslog {}", fmt.format_kind().name());
                (spec.to_string(), kind, transport, Box::new(fmt), queue)
            }
        };
    queue::spawn(spec, target, kind, format, transport, queue)
        .map_err(|e| Failure::runtime(format!("cannot start output thread for {spec}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::net::UdpSocket;

    use tidewatch::VerdictSink;

    use super::syslog::tests::verdict;
    use super::syslog::Severity;
    use super::*;

    #[test]
    fn parses_every_address_form() {
        let udp = |h: &str, p| OutputAddr::Syslog(SyslogAddr::Udp { host: h.into(), port: p });
        let tcp = |h: &str, p| OutputAddr::Syslog(SyslogAddr::Tcp { host: h.into(), port: p });
        assert_eq!(parse_output("json:-").unwrap(), OutputAddr::JsonStdout);
        assert_eq!(parse_output("json:out/v.jsonl").unwrap(), OutputAddr::JsonFile("out/v.jsonl".into()));
        assert_eq!(parse_output("syslog:udp://127.0.0.1:514").unwrap(), udp("127.0.0.1", 514));
        assert_eq!(parse_output("syslog:udp://logs.example.org:5514").unwrap(), udp("logs.example.org", 5514));
        assert_eq!(parse_output("syslog:tcp://[::1]:601").unwrap(), tcp("::1", 601));
        assert_eq!(parse_output("syslog:tcp://localhost:65535").unwrap(), tcp("localhost", 65535));
        let unix = OutputAddr::Syslog(SyslogAddr::Unix("/dev/log".into()));
        assert_eq!(parse_output("syslog:unix:/dev/log").unwrap(), unix);
        assert_eq!(parse_output("syslog:unix:///dev/log").unwrap(), unix);
        for bad in
            ["syslog:udp://[::1]", "syslog:udp://[nope]:1", "syslog:tcp://a b:1", "syslog:tcp://h:-1", "tcp://h:1"]
        {
            let e = parse_output(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains(ACCEPTED_FORMS), "{e}");
        }
    }

    fn recv_all(sock: &UdpSocket) -> Vec<String> {
        sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 65536];
        let mut out = Vec::new();
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn syslog_carries_incidents_and_not_verdicts_by_default() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let spec = vec![format!("syslog:udp://{}", sock.local_addr().unwrap())];
        let Ok(mut out) = open_all_with(&spec, &OutputOptions::default()) else { panic!("cannot open {spec:?}") };
        let sink = &mut out.sinks[0];
        sink.verdict(&verdict("dos")).unwrap();
        sink.incident(&super::syslog::tests::incident("dos")).unwrap();
        sink.finish().unwrap();
        let got = recv_all(&sock);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].contains(" incident [tidewatch@32473 incident_id=\"1\" state=\"open\" label=\"dos\""),
            "{got:?}"
        );
        let c = out.descriptions.handles()[0].counters();
        assert_eq!((c.sent, c.filtered), (1, 1));
    }

    #[test]
    fn benign_verdicts_reach_syslog_only_when_asked_and_severities_follow_the_map() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let spec = vec![format!("syslog:udp://{}", sock.local_addr().unwrap())];
        for send_benign in [false, true] {
            let mut opts = OutputOptions { syslog_events: Events::ALL, ..Default::default() };
            opts.syslog.send_benign = send_benign;
            opts.syslog.hostname = Some("probe".into());
            opts.syslog.severity_by_label.insert("dos".into(), Severity::ALERT);
            let Ok(mut out) = open_all_with(&spec, &opts) else { panic!("cannot open {spec:?}") };
            assert_eq!(&out.descriptions[..], [format!("{} (syslog RFC 5424)", spec[0])]);
            let sink = &mut out.sinks[0];
            for label in ["benign", "dos", "scan", "benign"] {
                sink.verdict(&verdict(label)).unwrap();
            }
            sink.finish().unwrap();
            let got = recv_all(&sock);
            let pris: Vec<&str> = got.iter().map(|m| &m[..m.find('>').unwrap() + 1]).collect();
            if send_benign {
                assert_eq!(pris, ["<134>", "<129>", "<132>", "<134>"]); // info, alert, warning, info
            } else {
                assert_eq!(pris, ["<129>", "<132>"]);
            }
            let c = out.descriptions.handles()[0].counters();
            assert_eq!((c.sent, c.filtered), (got.len() as u64, if send_benign { 0 } else { 2 }));
            // Finished: the descriptions now carry the counts.
            let line = &out.descriptions[0];
            assert!(line.contains(&format!("sent {}, dropped 0", got.len())), "{line}");
        }
    }
}
