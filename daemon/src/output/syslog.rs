//! Verdicts and incidents as syslog messages (MSGID `verdict` or
//! `incident`): RFC 5424 (default) or RFC 3164, and the
//! RFC 6587 octet-counting frame for stream transports.
//!
//! Written here rather than taken from a crate because the message must
//! carry the verdict's own capture time (not "now"), one structured-data
//! element with every verdict field escaped per RFC 5424 §6.3.3, and must be
//! formatted off the engine thread into a reused buffer.
//!
//! RFC 5424 (§6):
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [tidewatch@32473 k="v" ...] MSG`
//!
//! RFC 3164 (§4.1):
//! `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: k=v k=v ...` (timestamp in UTC).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{Datelike, Timelike};
use tidewatch::incident::ActorKind;
use tidewatch::sink::rfc3339_micros;
use tidewatch::{FlowRecord, Incident, Verdict};

use super::queue::Record;

/// The structured-data ID: `tidewatch` at the documentation private
/// enterprise number 32473 (RFC 5612).
pub const SD_ID: &str = "tidewatch@32473";
/// MSGID of every verdict message.
pub const MSGID: &str = "verdict";
/// MSGID of every incident message.
pub const MSGID_INCIDENT: &str = "incident";
/// MSGID of every flow record message (`--flow-records` with `flow` in the syslog events).
pub const MSGID_FLOW: &str = "flow";
/// Longest message sent (bytes, before framing); longer ones are cut at a
/// UTF-8 character boundary and counted as truncated.
pub const MAX_MESSAGE: usize = 8192;

/// Syslog facility (RFC 5424 §6.2.1, table 1), 0..=23.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facility(u8);

const FACILITY_NAMES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

impl Facility {
    pub const LOCAL0: Facility = Facility(16);

    pub fn code(self) -> u8 {
        self.0
    }

    #[allow(dead_code)] // for `run`'s stats
    pub fn name(self) -> &'static str {
        FACILITY_NAMES.get(usize::from(self.0)).copied().unwrap_or("?")
    }

    /// A facility by name (`local0`, `daemon`, ...) or number (0..=23).
    #[allow(dead_code)] // for the CLI flags of `run`
    pub fn parse(s: &str) -> Result<Facility, String> {
        let s = s.trim().to_ascii_lowercase();
        let by_name = FACILITY_NAMES.iter().position(|n| *n == s);
        let by_alias = match s.as_str() {
            "auth-priv" => Some(10),
            "audit" => Some(13),
            "cron2" => Some(15),
            _ => None,
        };
        match by_name.or(by_alias).or_else(|| s.parse::<usize>().ok().filter(|n| *n < 24)) {
            Some(n) => Ok(Facility(n as u8)),
            None => Err(format!("unknown syslog facility `{s}`: use one of {} or 0..23", FACILITY_NAMES.join(", "))),
        }
    }
}

/// Syslog severity (RFC 5424 §6.2.1, table 2), 0 (emerg) ..= 7 (debug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Severity(u8);

const SEVERITY_NAMES: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

impl Severity {
    #[allow(dead_code)]
    pub const ALERT: Severity = Severity(1);
    pub const WARNING: Severity = Severity(4);
    pub const INFO: Severity = Severity(6);

    pub fn code(self) -> u8 {
        self.0
    }

    #[allow(dead_code)] // for `run`'s stats
    pub fn name(self) -> &'static str {
        SEVERITY_NAMES.get(usize::from(self.0)).copied().unwrap_or("?")
    }

    /// A severity by name (`alert`, `warning`, ...; `error`, `warn`, `crit`
    /// and `panic` too) or number (0..=7).
    #[allow(dead_code)] // for the CLI flags of `run`
    pub fn parse(s: &str) -> Result<Severity, String> {
        let s = s.trim().to_ascii_lowercase();
        let by_name = SEVERITY_NAMES.iter().position(|n| *n == s);
        let by_alias = match s.as_str() {
            "emergency" | "panic" => Some(0),
            "critical" => Some(2),
            "error" => Some(3),
            "warn" => Some(4),
            "informational" => Some(6),
            _ => None,
        };
        match by_name.or(by_alias).or_else(|| s.parse::<usize>().ok().filter(|n| *n < 8)) {
            Some(n) => Ok(Severity(n as u8)),
            None => Err(format!("unknown syslog severity `{s}`: use one of {} or 0..7", SEVERITY_NAMES.join(", "))),
        }
    }
}

/// Parses a per-label severity map, `dos=alert,scan=notice`.
#[allow(dead_code)] // for the CLI flags of `run`
pub fn parse_severity_map(s: &str) -> Result<BTreeMap<String, Severity>, String> {
    let mut map = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((label, sev)) = item.split_once('=') else {
            return Err(format!("bad severity override `{item}`: use LABEL=SEVERITY, e.g. dos=alert"));
        };
        map.insert(label.trim().to_string(), Severity::parse(sev)?);
    }
    Ok(map)
}

/// Which syslog message format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyslogFormat {
    /// RFC 5424 with the `tidewatch@32473` structured-data element.
    #[default]
    Rfc5424,
    /// BSD syslog, RFC 3164; the fields as `key=value` in MSG.
    #[allow(dead_code)] // chosen by a CLI flag of `run`, later
    Rfc3164,
}

impl SyslogFormat {
    pub fn name(self) -> &'static str {
        match self {
            SyslogFormat::Rfc5424 => "RFC 5424",
            SyslogFormat::Rfc3164 => "RFC 3164",
        }
    }
}

/// Everything configurable about syslog outputs (the same for every
/// syslog output of a run).
#[derive(Clone, Debug)]
pub struct SyslogOptions {
    pub format: SyslogFormat,
    pub facility: Facility,
    /// HOSTNAME field; `None`: the machine's hostname (or `-`).
    pub hostname: Option<String>,
    /// APP-NAME (RFC 5424) / TAG (RFC 3164).
    pub app_name: String,
    /// The label that means "nothing to report".
    pub benign_label: String,
    /// Send verdicts with the benign label too (default: no; they are
    /// counted as `filtered`).
    pub send_benign: bool,
    /// Severity of benign verdicts (default info).
    pub benign_severity: Severity,
    /// Severity of every other label (default warning).
    pub default_severity: Severity,
    /// Per-label severities that win over the two above, e.g. `dos` → alert.
    pub severity_by_label: BTreeMap<String, Severity>,
}

impl Default for SyslogOptions {
    fn default() -> Self {
        Self {
            format: SyslogFormat::Rfc5424,
            facility: Facility::LOCAL0,
            hostname: None,
            app_name: "tidewatchd".into(),
            benign_label: "benign".into(),
            send_benign: false,
            benign_severity: Severity::INFO,
            default_severity: Severity::WARNING,
            severity_by_label: BTreeMap::new(),
        }
    }
}

/// The machine's hostname, read without libc: the kernel's (what
/// `gethostname(2)` returns), else `/etc/hostname`, else `-`.
pub fn machine_hostname() -> String {
    for path in ["/proc/sys/kernel/hostname", "/etc/hostname"] {
        if let Ok(s) = std::fs::read_to_string(path) {
            let s = s.trim();
            if !s.is_empty() {
                return header_field(s, 255);
            }
        }
    }
    "-".into()
}

/// A header field (HOSTNAME, APP-NAME): printable US-ASCII only (others
/// become `_`), at most `max` characters, `-` (NILVALUE) when empty.
fn header_field(s: &str, max: usize) -> String {
    let out: String = s.chars().take(max).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// True if `s` is a valid SD-NAME (RFC 5424 §6.3): 1 to 32 printable
/// US-ASCII characters except `=`, space, `]` and `"`.
#[allow(dead_code)] // the names used are constants, checked by the tests
pub fn is_sd_name(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'=' | b']' | b'"'))
}

/// Appends `s` as an RFC 5424 PARAM-VALUE: `"`, `\` and `]` are escaped
/// with a backslash (§6.3.3); control characters, which would let a value
/// forge a line in a line-oriented log file, become `?`.
pub fn escape_param_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
}

/// Appends `s` as an RFC 3164 `key=value` value: bare when it has no
/// space, quote, backslash or `=`, else in double quotes with `"` and `\`
/// escaped. Control characters become `?`.
fn kv_value(s: &str, out: &mut String) {
    let needs_quotes = s.is_empty() || s.chars().any(|c| c == ' ' || c == '"' || c == '\\' || c == '=');
    if needs_quotes {
        out.push('"');
    }
    for c in s.chars() {
        match c {
            '"' | '\\' if needs_quotes => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    if needs_quotes {
        out.push('"');
    }
}

/// Appends the RFC 6587 octet-counting frame of `msg`: `LEN SP MSG`.
pub fn octet_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// Cuts `buf` to at most `max` bytes without splitting a UTF-8 character.
/// Returns whether it cut anything.
pub fn truncate_utf8(buf: &mut Vec<u8>, max: usize) -> bool {
    if buf.len() <= max {
        return false;
    }
    let mut end = max;
    while end > 0 && buf.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    buf.truncate(end);
    true
}

fn endpoint(ip: IpAddr, port: u16, out: &mut String) {
    let _ = match ip {
        IpAddr::V4(a) => write!(out, "{a}:{port}"),
        IpAddr::V6(a) => write!(out, "[{a}]:{port}"),
    };
}

/// The flow's id and 5-tuple, first in every verdict and flow message.
fn flow_key_fields(f: &FlowRecord) -> Vec<(&'static str, String)> {
    vec![
        ("flow_id", f.flow_id.to_string()),
        ("proto", f.proto.to_string()),
        ("src_ip", f.src_ip.to_string()),
        ("src_port", f.src_port.to_string()),
        ("dst_ip", f.dst_ip.to_string()),
        ("dst_port", f.dst_port.to_string()),
    ]
}

/// The verdict fields, in message order, as text: the flow, the decision,
/// and the application metadata an analyst acts on (SNI, HTTP host, DNS query).
fn verdict_fields(v: &Verdict) -> Vec<(&'static str, String)> {
    let f = &v.flow;
    let mut out = flow_key_fields(f);
    out.extend([
        ("label", v.label.to_string()),
        ("score", v.score.to_string()),
        ("packets", f.packets.to_string()),
        ("bytes", f.bytes.to_string()),
        ("model", v.model.to_string()),
        ("trigger", f.trigger.name().to_string()),
        ("ts", rfc3339_micros(f.ts)),
        ("flow_start", rfc3339_micros(f.flow_start)),
    ]);
    if let Some(r) = f.end_reason {
        out.push(("end_reason", r.to_string()));
    }
    if let Some(r) = v.reasons.as_ref().and_then(|r| r.first()) {
        out.push(("reason", r.to_string()));
    }
    if let Some(id) = v.incident_id {
        out.push(("incident_id", id.to_string()));
    }
    app_fields(f, &mut out);
    out
}

/// The application metadata an analyst acts on: SNI, HTTP host, DNS query.
fn app_fields(f: &FlowRecord, out: &mut Vec<(&'static str, String)>) {
    if let Some(app) = f.detail.app.as_ref().filter(|a| a.proto != tidewatch::app::AppProto::Unknown) {
        out.push(("app", app.proto.name().to_string()));
        if let Some(sni) = app.tls.as_ref().and_then(|t| t.sni.as_ref()) {
            out.push(("tls_sni", sni.clone()));
        }
        if let Some(host) = app.http.as_ref().and_then(|h| h.host.as_ref()) {
            out.push(("http_host", host.clone()));
        }
        if let Some(d) = app.dns.as_ref() {
            out.push(("dns_query", d.query.clone()));
        }
    }
}

/// The fields of a flow record, in message order (names as in JSON).
fn flow_fields(f: &FlowRecord) -> Vec<(&'static str, String)> {
    let mut out = flow_key_fields(f);
    out.extend([
        ("packets", f.packets.to_string()),
        ("bytes", f.bytes.to_string()),
        ("fwd_bytes", f.detail.bytes[0].to_string()),
        ("bwd_bytes", f.detail.bytes[1].to_string()),
        ("first_ts", rfc3339_micros(f.flow_start)),
        ("last_ts", rfc3339_micros(f.ts)),
    ]);
    if let Some(r) = f.end_reason {
        out.push(("end_reason", r.to_string()));
    }
    app_fields(f, &mut out);
    out
}

/// `tidewatch: flow tcp 10.0.0.1:1234 -> 10.0.0.2:80, 12 packets, 3400 bytes (closed)`
fn readable_flow(f: &FlowRecord) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(line, "tidewatch: flow {} ", f.proto);
    endpoint(f.src_ip, f.src_port, &mut line);
    line.push_str(" -> ");
    endpoint(f.dst_ip, f.dst_port, &mut line);
    let _ = write!(line, ", {} packets, {} bytes", f.packets, f.bytes);
    if let Some(r) = f.end_reason {
        let _ = write!(line, " ({r})");
    }
    line
}

fn join<T: ToString>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// The incident fields, in message order, as text (names as in JSON).
fn incident_fields(i: &Incident) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("incident_id", i.incident_id.to_string()),
        ("state", i.state.name().to_string()),
        ("label", i.label.to_string()),
        ("actor", i.actor.name().to_string()),
    ];
    if let Some(ip) = i.src_ip {
        out.push(("src_ip", ip.to_string()));
    }
    out.push(("src_count", i.src_count.to_string()));
    out.push(("targets", i.targets.to_string()));
    out.push(("targets_first", join(&i.targets_first)));
    out.push(("ports", i.ports.to_string()));
    out.push(("ports_first", join(&i.ports_first)));
    if let Some(d) = &i.domain {
        out.push(("domain", d.to_string()));
    }
    if let Some(r) = i.reasons.as_ref().and_then(|r| r.first()) {
        out.push(("reason", r.to_string()));
    }
    out.extend([
        ("flows", i.flows.to_string()),
        ("packets", i.packets.to_string()),
        ("bytes", i.bytes.to_string()),
        ("peak_score", i.peak_score.to_string()),
        ("time_to_detect_ms", i.time_to_detect_ms.to_string()),
        ("first_seen", rfc3339_micros(i.first_seen)),
        ("last_seen", rfc3339_micros(i.last_seen)),
        ("model", i.model.to_string()),
    ]);
    out
}

/// What a syslog message needs of a record.
struct Message {
    msgid: &'static str,
    label: String,
    ts: u64,
    fields: Vec<(&'static str, String)>,
    readable: String,
}

impl Message {
    fn of(r: &Record) -> Message {
        match r {
            Record::Verdict(v) => Message {
                msgid: MSGID,
                label: v.label.to_string(),
                ts: v.flow.ts,
                fields: verdict_fields(v),
                readable: readable_verdict(v),
            },
            Record::Incident(i) => Message {
                msgid: MSGID_INCIDENT,
                label: i.label.to_string(),
                ts: i.ts,
                fields: incident_fields(i),
                readable: readable_incident(i),
            },
            // A flow record is information, at the severity of a benign verdict.
            Record::Flow(f) => Message {
                msgid: MSGID_FLOW,
                label: "benign".to_string(),
                ts: f.ts,
                fields: flow_fields(f),
                readable: readable_flow(f),
            },
        }
    }
}

/// `tidewatch: dos verdict (0.97) tcp 10.0.0.1:1234 -> 10.0.0.2:80, 12 packets, early`
fn readable_verdict(v: &Verdict) -> String {
    let f = &v.flow;
    let mut line = String::with_capacity(128);
    let _ = write!(line, "tidewatch: {} verdict ({:.2}) {} ", v.label, v.score, f.proto);
    endpoint(f.src_ip, f.src_port, &mut line);
    line.push_str(" -> ");
    endpoint(f.dst_ip, f.dst_port, &mut line);
    let _ = write!(line, ", {} packets, {}", f.packets, f.trigger.name());
    if let Some(r) = f.end_reason {
        let _ = write!(line, " ({r})");
    }
    line
}

/// `tidewatch: scan incident 3 open (0.99) from 10.0.0.1: 1 targets, 1000 ports, 1000 flows`
fn readable_incident(i: &Incident) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(line, "tidewatch: {} incident {} {} ({:.2}) ", i.label, i.incident_id, i.state.name(), i.peak_score);
    match (i.src_ip, i.actor) {
        (_, ActorKind::Target) => {
            let target = i.targets_first.first().map(ToString::to_string).unwrap_or_default();
            let _ = write!(line, "against {target} from {} sources", i.src_count);
        }
        (Some(ip), _) => {
            let _ = write!(line, "from {ip}");
        }
        (None, _) => {
            let _ = write!(line, "from {} sources", i.src_count);
        }
    }
    if let Some(d) = &i.domain {
        let _ = write!(line, " via {d}");
    }
    let _ = write!(line, ": {} targets, {} ports, {} flows", i.targets, i.ports, i.flows);
    line
}

/// Formats verdicts and incidents as syslog messages. Built once per output.
#[derive(Clone, Debug)]
pub struct SyslogFormatter {
    format: SyslogFormat,
    facility: Facility,
    hostname: String,
    app_name: String,
    procid: u32,
    benign_label: String,
    benign_severity: Severity,
    default_severity: Severity,
    severity_by_label: BTreeMap<String, Severity>,
}

impl SyslogFormatter {
    pub fn new(opts: &SyslogOptions) -> Self {
        let hostname = match &opts.hostname {
            Some(h) => header_field(h, 255),
            None => machine_hostname(),
        };
        let app_name = match opts.format {
            SyslogFormat::Rfc5424 => header_field(&opts.app_name, 48),
            // RFC 3164 §4.1.3: the TAG is at most 32 alphanumeric characters.
            SyslogFormat::Rfc3164 => {
                let t: String = opts
                    .app_name
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                    .take(32)
                    .collect();
                if t.is_empty() {
                    "tidewatchd".into()
                } else {
                    t
                }
            }
        };
        Self {
            format: opts.format,
            facility: opts.facility,
            hostname,
            app_name,
            procid: std::process::id(),
            benign_label: opts.benign_label.clone(),
            benign_severity: opts.benign_severity,
            default_severity: opts.default_severity,
            severity_by_label: opts.severity_by_label.clone(),
        }
    }

    #[cfg(test)]
    pub fn with_procid(mut self, procid: u32) -> Self {
        self.procid = procid;
        self
    }

    pub fn format_kind(&self) -> SyslogFormat {
        self.format
    }

    pub fn severity(&self, label: &str) -> Severity {
        match self.severity_by_label.get(label) {
            Some(s) => *s,
            None if label == self.benign_label => self.benign_severity,
            None => self.default_severity,
        }
    }

    /// PRI = facility × 8 + severity (RFC 5424 §6.2.1).
    pub fn pri(&self, label: &str) -> u8 {
        self.facility.code() * 8 + self.severity(label).code()
    }

    /// Appends the message for `r` (no framing, no trailing newline) to
    /// `out`, cut to [`MAX_MESSAGE`] bytes. Returns whether it was cut.
    pub fn format(&self, r: &Record, out: &mut Vec<u8>) -> bool {
        let m = Message::of(r);
        let start = out.len();
        let text = match self.format {
            SyslogFormat::Rfc5424 => self.rfc5424(&m),
            SyslogFormat::Rfc3164 => self.rfc3164(&m),
        };
        out.extend_from_slice(text.as_bytes());
        let mut msg = out.split_off(start);
        let cut = truncate_utf8(&mut msg, MAX_MESSAGE);
        out.append(&mut msg);
        cut
    }

    fn rfc5424(&self, m: &Message) -> String {
        let mut s = String::with_capacity(640);
        let _ = write!(
            s,
            "<{}>1 {} {} {} {} {} [{}",
            self.pri(&m.label),
            rfc3339_micros(m.ts),
            self.hostname,
            self.app_name,
            self.procid,
            m.msgid,
            SD_ID
        );
        for (name, value) in &m.fields {
            s.push(' ');
            s.push_str(name);
            s.push_str("=\"");
            escape_param_value(value, &mut s);
            s.push('"');
        }
        s.push_str("] ");
        s.extend(m.readable.chars().map(|c| if c.is_control() { '?' } else { c }));
        s
    }

    fn rfc3164(&self, m: &Message) -> String {
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let secs = i64::try_from(m.ts / 1_000_000).unwrap_or(i64::MAX);
        let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let month = MONTHS.get(t.month0() as usize).copied().unwrap_or("Jan");
        let mut s = String::with_capacity(512);
        let _ = write!(
            s,
            "<{}>{} {:>2} {:02}:{:02}:{:02} {} {}[{}]:",
            self.pri(&m.label),
            month,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            self.hostname,
            self.app_name,
            self.procid
        );
        if m.msgid == MSGID_INCIDENT {
            s.push_str(" event_type=incident");
        }
        for (name, value) in &m.fields {
            s.push(' ');
            s.push_str(name);
            s.push('=');
            kv_value(value, &mut s);
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::sync::Arc;

    use tidewatch::{FlowRecord, Trigger};

    use super::*;

    /// 2026-03-04T10:00:01.234567Z, a flow that started 3.234562 s before.
    pub fn verdict(label: &str) -> Verdict {
        Verdict {
            flow: FlowRecord {
                ts: 1_772_618_401_234_567,
                flow_id: 1_234_567_890_123,
                flow_start: 1_772_618_398_000_005,
                proto: tidewatch::flow::IpProto::Tcp,
                src_ip: "10.0.0.1".parse().unwrap(),
                src_port: 1234,
                dst_ip: "10.0.0.2".parse().unwrap(),
                dst_port: 80,
                packets: 12,
                bytes: 3400,
                trigger: Trigger::Early,
                end_reason: None,
                key: tidewatch::flow::FlowKey::between(
                    ("10.0.0.1".parse().unwrap(), 1234),
                    ("10.0.0.2".parse().unwrap(), 80),
                    6,
                ),
                detail: Default::default(),
            },
            label: label.into(),
            score: 0.97,
            scores: tidewatch::Scores::new(Arc::from([Arc::from("benign"), Arc::from(label)]), &[0.03, 0.97]),
            model: "baseline@1.0.0".into(),
            detected_at: 1_772_618_401_234_600,
            incident_id: None,
            suppressed: None,
            reasons: None,
            reasons_inherited: false,
        }
    }

    fn opts(format: SyslogFormat) -> SyslogOptions {
        SyslogOptions { format, hostname: Some("sensor1".into()), ..Default::default() }
    }

    fn text(f: &SyslogFormatter, v: &Verdict) -> String {
        let mut out = Vec::new();
        assert!(!f.format(&Record::Verdict(v.clone()), &mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_exact_bytes() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc5424)).with_procid(4242);
        let got = text(&f, &verdict("dos"));
        let want = "<132>1 2026-03-04T10:00:01.234567Z sensor1 tidewatchd 4242 verdict \
            [tidewatch@32473 flow_id=\"1234567890123\" proto=\"tcp\" src_ip=\"10.0.0.1\" src_port=\"1234\" \
            dst_ip=\"10.0.0.2\" dst_port=\"80\" label=\"dos\" score=\"0.97\" packets=\"12\" bytes=\"3400\" \
            model=\"baseline@1.0.0\" trigger=\"early\" ts=\"2026-03-04T10:00:01.234567Z\" \
            flow_start=\"2026-03-04T09:59:58.000005Z\"] \
            tidewatch: dos verdict (0.97) tcp 10.0.0.1:1234 -> 10.0.0.2:80, 12 packets, early";
        assert_eq!(got, want);
        check_rfc5424_grammar(&got);
    }

    /// The opening record of an incident made of `verdict(label)`.
    pub fn incident(label: &str) -> Incident {
        let mut cfg = tidewatch::IncidentConfig::default();
        cfg.scan_min_probes = 1;
        let mut t = tidewatch::incident::IncidentTracker::new(cfg);
        let mut out = Vec::new();
        t.observe(&verdict(label), &mut out);
        out.remove(0)
    }

    #[test]
    fn flow_records_are_informational_messages_with_their_own_msgid() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc5424)).with_procid(4242);
        let mut flow = verdict("benign").flow;
        flow.trigger = Trigger::End;
        flow.end_reason = Some(tidewatch::flow::EndReason::Closed);
        let mut out = Vec::new();
        assert!(!f.format(&Record::Flow(flow), &mut out));
        let got = String::from_utf8(out).unwrap();
        let want = "<134>1 2026-03-04T10:00:01.234567Z sensor1 tidewatchd 4242 flow \
            [tidewatch@32473 flow_id=\"1234567890123\" proto=\"tcp\" src_ip=\"10.0.0.1\" src_port=\"1234\" \
            dst_ip=\"10.0.0.2\" dst_port=\"80\" packets=\"12\" bytes=\"3400\" fwd_bytes=\"0\" bwd_bytes=\"0\" \
            first_ts=\"2026-03-04T09:59:58.000005Z\" last_ts=\"2026-03-04T10:00:01.234567Z\" end_reason=\"closed\"] \
            tidewatch: flow tcp 10.0.0.1:1234 -> 10.0.0.2:80, 12 packets, 3400 bytes (closed)";
        assert_eq!(got, want);
        check_rfc5424_grammar(&got);
    }

    #[test]
    fn incidents_are_messages_with_their_own_msgid_and_every_field() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc5424)).with_procid(4242);
        let mut out = Vec::new();
        assert!(!f.format(&Record::Incident(incident("scan")), &mut out));
        let got = String::from_utf8(out).unwrap();
        let want = "<132>1 2026-03-04T10:00:01.234600Z sensor1 tidewatchd 4242 incident \
            [tidewatch@32473 incident_id=\"1\" state=\"open\" label=\"scan\" actor=\"source\" src_ip=\"10.0.0.1\" \
            src_count=\"1\" targets=\"1\" targets_first=\"10.0.0.2\" ports=\"1\" ports_first=\"80\" flows=\"1\" \
            packets=\"12\" bytes=\"3400\" peak_score=\"0.97\" time_to_detect_ms=\"3234\" \
            first_seen=\"2026-03-04T09:59:58.000005Z\" last_seen=\"2026-03-04T10:00:01.234567Z\" \
            model=\"baseline@1.0.0\"] tidewatch: scan incident 1 open (0.97) from 10.0.0.1: 1 targets, 1 ports, 1 flows";
        assert_eq!(got, want);
        check_rfc5424_grammar(&got);
        // A flood's incident names its target.
        let mut out = Vec::new();
        SyslogFormatter::new(&opts(SyslogFormat::Rfc3164)).format(&Record::Incident(incident("dos")), &mut out);
        let got = String::from_utf8(out).unwrap();
        assert!(got.contains(" event_type=incident incident_id=1 state=open label=dos actor=target "), "{got}");
    }

    #[test]
    fn verdicts_carry_the_application_metadata_an_analyst_acts_on() {
        let mut v = verdict("exfil");
        let dns = tidewatch::app::dns::DnsMeta::new("aGk.t.example.com", 16);
        let app =
            tidewatch::app::AppMeta { proto: tidewatch::app::AppProto::Dns, dns: Some(dns), ..Default::default() };
        v.flow.detail = Arc::new(tidewatch::sink::FlowDetail { app: Some(app), ..Default::default() });
        let got = text(&SyslogFormatter::new(&opts(SyslogFormat::Rfc5424)), &v);
        assert!(got.contains(" app=\"dns\" dns_query=\"aGk.t.example.com\"]"), "{got}");
    }

    #[test]
    fn rfc5424_pri_is_facility_times_8_plus_severity() {
        let mut o = opts(SyslogFormat::Rfc5424);
        o.facility = Facility::parse("daemon").unwrap(); // 3
        o.severity_by_label.insert("dos".into(), Severity::ALERT);
        let f = SyslogFormatter::new(&o).with_procid(1);
        assert!(text(&f, &verdict("dos")).starts_with("<25>1 ")); // 3*8+1
        assert!(text(&f, &verdict("scan")).starts_with("<28>1 ")); // 3*8+4 (warning)
        assert!(text(&f, &verdict("benign")).starts_with("<30>1 ")); // 3*8+6 (info)
        let local7 = SyslogOptions { facility: Facility::parse("local7").unwrap(), ..opts(SyslogFormat::Rfc5424) };
        let f = SyslogFormatter::new(&local7);
        assert_eq!(f.pri("c2"), 23 * 8 + 4);
        assert_eq!(f.pri("benign"), 23 * 8 + 6);
    }

    #[test]
    fn rfc5424_escapes_quote_backslash_and_bracket_in_values() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc5424)).with_procid(7);
        let mut v = verdict("we\"ird\\la]bel");
        v.model = Arc::from("m]\"\\@1\nx");
        let got = text(&f, &v);
        assert!(got.contains(r#" label="we\"ird\\la\]bel" "#), "{got}");
        assert!(got.contains(r#" model="m\]\"\\@1?x" "#), "{got}");
        assert!(!got.contains('\n'));
        check_rfc5424_grammar(&got);
        let sd = parse_sd(&got);
        assert_eq!(sd["label"], "we\"ird\\la]bel");
        assert_eq!(sd["model"], "m]\"\\@1?x");
    }

    #[test]
    fn rfc5424_end_verdict_ipv6_and_nil_hostname() {
        let mut o = opts(SyslogFormat::Rfc5424);
        o.hostname = Some(String::new());
        let f = SyslogFormatter::new(&o).with_procid(9);
        let mut v = verdict("scan");
        v.flow.src_ip = "2001:db8::1".parse().unwrap();
        v.flow.dst_ip = "2001:db8::2".parse().unwrap();
        v.flow.trigger = Trigger::End;
        v.flow.end_reason = Some(tidewatch::flow::EndReason::IdleTimeout);
        let got = text(&f, &v);
        assert!(got.starts_with("<132>1 2026-03-04T10:00:01.234567Z - tidewatchd 9 verdict [tidewatch@32473 "));
        assert!(got.contains(" trigger=\"end\" ") && got.contains(" end_reason=\"idle_timeout\"]"), "{got}");
        assert!(got.ends_with("[2001:db8::1]:1234 -> [2001:db8::2]:80, 12 packets, end (idle_timeout)"), "{got}");
        check_rfc5424_grammar(&got);
    }

    #[test]
    fn rfc3164_exact_bytes() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc3164)).with_procid(4242);
        let got = text(&f, &verdict("dos"));
        let want = "<132>Mar  4 10:00:01 sensor1 tidewatchd[4242]: flow_id=1234567890123 proto=tcp \
            src_ip=10.0.0.1 src_port=1234 dst_ip=10.0.0.2 dst_port=80 label=dos score=0.97 packets=12 \
            bytes=3400 model=baseline@1.0.0 trigger=early ts=2026-03-04T10:00:01.234567Z \
            flow_start=2026-03-04T09:59:58.000005Z";
        assert_eq!(got, want);
        // benign → info; a two-digit day is not padded; odd values are quoted.
        let mut v = verdict("benign");
        v.flow.ts += 10 * 86_400_000_000;
        v.model = Arc::from("my model=\"x\"");
        let got = text(&f, &v);
        assert!(got.starts_with("<134>Mar 14 10:00:01 sensor1 tidewatchd[4242]: flow_id="), "{got}");
        assert!(got.contains(r#" model="my model=\"x\"" "#), "{got}");
    }

    #[test]
    fn octet_counting_frame() {
        let mut out = b"prefix".to_vec();
        octet_frame(b"<134>1 - - - - - - hi", &mut out);
        assert_eq!(out, b"prefix21 <134>1 - - - - - - hi");
        let mut out = Vec::new();
        octet_frame("é".as_bytes(), &mut out); // the length counts octets, not characters
        assert_eq!(out, b"2 \xc3\xa9");
        let mut out = Vec::new();
        octet_frame(b"", &mut out);
        assert_eq!(out, b"0 ");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let f = SyslogFormatter::new(&opts(SyslogFormat::Rfc5424));
        let mut v = verdict("dos");
        v.model = Arc::from("é".repeat(MAX_MESSAGE).as_str());
        let mut out = Vec::new();
        assert!(f.format(&Record::Verdict(v), &mut out));
        assert!(out.len() <= MAX_MESSAGE && out.len() >= MAX_MESSAGE - 1);
        assert!(String::from_utf8(out).is_ok());
    }

    #[test]
    fn names_are_valid_sd_names_and_facilities_parse() {
        assert!(is_sd_name(SD_ID));
        for (name, _) in verdict_fields(&verdict("x")) {
            assert!(is_sd_name(name), "{name}");
        }
        for bad in ["", "a b", "a=b", "a]", "a\"", &"x".repeat(33), "é"] {
            assert!(!is_sd_name(bad), "{bad}");
        }
        assert_eq!(Facility::parse("LOCAL0").unwrap(), Facility::LOCAL0);
        assert_eq!(Facility::parse("3").unwrap().name(), "daemon");
        assert!(Facility::parse("local8").unwrap_err().contains("local7"));
        assert_eq!(Severity::parse("warn").unwrap(), Severity::WARNING);
        assert!(Severity::parse("loud").is_err());
        let m = parse_severity_map("dos=alert, scan=notice").unwrap();
        assert_eq!(m["dos"], Severity::ALERT);
        assert_eq!(m["scan"].code(), 5);
        assert!(parse_severity_map("dos").is_err());
        let h = machine_hostname();
        assert!(!h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()));
    }

    /// Checks `msg` against the RFC 5424 §6 ABNF for what we emit: header,
    /// one SD-ELEMENT with properly escaped values, then SP MSG.
    pub fn check_rfc5424_grammar(msg: &str) {
        let rest = msg.strip_prefix('<').unwrap();
        let (pri, rest) = rest.split_once('>').unwrap();
        assert!((1..=3).contains(&pri.len()) && pri.bytes().all(|b| b.is_ascii_digit()));
        assert!(pri.parse::<u8>().unwrap() <= 191);
        let rest = rest.strip_prefix("1 ").unwrap();
        let mut parts = rest.splitn(6, ' ');
        let ts = parts.next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        let frac = ts.split_once('.').unwrap().1.trim_end_matches('Z');
        assert!((1..=6).contains(&frac.len()));
        for (field, max) in [(parts.next().unwrap(), 255), (parts.next().unwrap(), 48), (parts.next().unwrap(), 128)] {
            assert!(!field.is_empty() && field.len() <= max && field.bytes().all(|b| b.is_ascii_graphic()), "{field}");
        }
        let msgid = parts.next().unwrap();
        assert!(msgid.len() <= 32 && msgid.bytes().all(|b| b.is_ascii_graphic()));
        let sd = parts.next().unwrap();
        let b = sd.as_bytes();
        assert_eq!(b[0], b'[');
        let mut i = 1;
        let name_end = sd[i..].find(' ').unwrap() + i;
        assert!(is_sd_name(&sd[i..name_end]));
        i = name_end;
        while b[i] == b' ' {
            i += 1;
            let eq = sd[i..].find('=').unwrap() + i;
            assert!(is_sd_name(&sd[i..eq]), "{}", &sd[i..eq]);
            assert_eq!(b[eq + 1], b'"');
            i = eq + 2;
            loop {
                match b[i] {
                    b'\\' => {
                        assert!(matches!(b[i + 1], b'"' | b'\\' | b']'), "stray backslash");
                        i += 2;
                    }
                    b'"' => break,
                    b']' => panic!("unescaped ] in a value: {sd}"),
                    _ => i += 1,
                }
            }
            i += 1;
        }
        assert_eq!(b[i], b']');
        assert_eq!(b[i + 1], b' ', "SP before MSG");
        assert!(i + 2 < b.len(), "MSG present");
    }

    /// The params of the SD element, unescaped.
    pub fn parse_sd(msg: &str) -> BTreeMap<String, String> {
        let start = msg.find('[').unwrap();
        let mut out = BTreeMap::new();
        let mut chars = msg[start..].chars().skip_while(|c| *c != ' ').peekable();
        loop {
            match chars.next() {
                Some(' ') => {}
                Some(']') | None => break,
                Some(c) => panic!("unexpected {c}"),
            }
            let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert_eq!(chars.next(), Some('"'));
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.push(chars.next().unwrap()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            out.insert(name, value);
        }
        out
    }
}
