//! The daemon's configuration file (TOML). Every key is documented in
//! `daemon/tidewatch.example.toml`; an unknown key is an error naming it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Failure;

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureConfig,
    pub engine: EngineConfig,
    pub flows: FlowsConfig,
    pub outputs: OutputsConfig,
    pub stats: StatsConfig,
    pub incidents: IncidentsConfig,
    pub metrics: MetricsConfig,
    pub policy: PolicyConfig,
    pub privileges: PrivilegesConfig,
}

/// `[policy]`: which alerts count (applied live, reloaded by SIGHUP).
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Per-label minimum score of an alert, e.g. `{ c2 = 0.99 }`.
    pub min_score: std::collections::BTreeMap<String, f32>,
    /// Alert verdicts per incident per minute that stay unsuppressed (0: no limit).
    pub max_alerts_per_incident_per_minute: u32,
    pub suppress: Vec<SuppressConfig>,
}

/// `[[policy.suppress]]`: every key given must match.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SuppressConfig {
    pub label: Option<String>,
    /// CIDR or address of the flow's initiator.
    pub src: Option<String>,
    /// CIDR or address of the flow's responder.
    pub dst: Option<String>,
    /// The responder's port.
    pub port: Option<u16>,
    /// RFC 3339 time after which the rule no longer applies.
    pub expires: Option<String>,
    pub note: String,
}

impl PolicyConfig {
    /// The engine's policy, or what is wrong with this one.
    pub fn policy(&self) -> Result<tidewatch::Policy, String> {
        use tidewatch::policy::{Cidr, SuppressRule};
        let mut suppress = Vec::new();
        for (i, r) in self.suppress.iter().enumerate() {
            let cidr = |c: &Option<String>| c.as_deref().map(Cidr::parse).transpose();
            let expires = r
                .expires
                .as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|d| d.timestamp_micros().max(0) as u64)
                        .map_err(|e| format!("`{t}` is not an RFC 3339 time ({e})"))
                })
                .transpose();
            let rule = (|| {
                let mut rule = SuppressRule::default();
                rule.label = r.label.clone();
                rule.src = cidr(&r.src)?;
                rule.dst = cidr(&r.dst)?;
                rule.port = r.port;
                rule.expires = expires?;
                rule.note = r.note.clone();
                Ok::<_, String>(rule)
            })()
            .map_err(|e| format!("policy.suppress rule {i}: {e}"))?;
            suppress.push(rule);
        }
        let mut p = tidewatch::Policy::default();
        p.min_score = self.min_score.iter().map(|(k, v)| (k.clone(), *v)).collect();
        p.suppress = suppress;
        p.max_alerts_per_incident_per_minute = self.max_alerts_per_incident_per_minute;
        p.validate()?;
        Ok(p)
    }
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at http://LISTEN/metrics, e.g. "127.0.0.1:9911". Empty: off.
    pub listen: String,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentsConfig {
    /// Seconds between `update` records of an incident that goes on.
    pub update_interval: f64,
    /// An incident closes after this many seconds without a flow of it.
    pub quiet: f64,
    /// Incidents open at once; beyond, new actors fold into one per label.
    pub max_open: usize,
    /// Distinct (target, port) probes a scanning source needs before its
    /// `scan` incident opens (1: at its first alert).
    pub scan_min_probes: u64,
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        let d = tidewatch::IncidentConfig::default();
        Self {
            update_interval: d.update_interval as f64 / 1e6,
            quiet: d.quiet as f64 / 1e6,
            max_open: d.max_incidents,
            scan_min_probes: d.scan_min_probes,
        }
    }
}

impl IncidentsConfig {
    pub fn engine_config(&self) -> tidewatch::IncidentConfig {
        let mut c =
            tidewatch::IncidentConfig::with_timing((self.update_interval * 1e6) as u64, (self.quiet * 1e6) as u64);
        c.max_incidents = self.max_open;
        c.scan_min_probes = self.scan_min_probes;
        c
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    pub interfaces: Vec<String>,
    pub promiscuous: bool,
    pub snaplen: i32,
    pub bpf_filter: String,
    pub buffer_size_mib: i32,
    pub immediate: bool,
    pub read_timeout_ms: i32,
    pub queue_packets: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        let d = tidewatch::source::live::LiveConfig::default();
        Self {
            interfaces: Vec::new(),
            promiscuous: d.promiscuous,
            snaplen: d.snaplen,
            bpf_filter: String::new(),
            buffer_size_mib: d.buffer_size >> 20,
            immediate: d.immediate,
            read_timeout_ms: d.read_timeout_ms,
            queue_packets: d.queue_packets,
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Empty: the bundled model.
    pub model: PathBuf,
    /// Empty: $ORT_DYLIB_PATH, then .ort/.
    pub onnx_runtime: PathBuf,
    /// 0: the machine's cores.
    pub workers: usize,
    pub early_packets: usize,
    pub batch_size: usize,
    /// `all`: every flow's end verdict; `changed`: only when its label
    /// differs from the early verdict's.
    pub final_verdicts: String,
}

impl EngineConfig {
    /// `final_verdicts` as the choice it names (checked by `validate`).
    pub fn final_verdicts(&self) -> Result<crate::wiring::FinalVerdicts, crate::Failure> {
        crate::wiring::FinalVerdicts::parse(&self.final_verdicts).map_err(crate::Failure::usage)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            onnx_runtime: PathBuf::new(),
            workers: 0,
            early_packets: 8,
            batch_size: 256,
            final_verdicts: "all".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    pub tcp_idle_timeout: f64,
    pub udp_idle_timeout: f64,
    pub other_idle_timeout: f64,
    /// Quiet time after FIN/FIN or RST before a TCP flow ends.
    pub tcp_closed_timeout: f64,
    pub active_timeout: f64,
    pub max_flows: usize,
    /// Out-of-order TCP bytes held in the whole engine, and per connection.
    pub max_reassembly_bytes: usize,
    pub max_reassembly_bytes_per_flow: usize,
    /// IP defragmentation: fragment bytes and incomplete datagrams held.
    pub max_fragment_bytes: usize,
    pub max_fragment_datagrams: usize,
    /// TCP reassembly and application parsing (off: flow statistics only).
    pub payload_inspection: bool,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            tcp_idle_timeout: 300.0,
            udp_idle_timeout: 120.0,
            other_idle_timeout: 60.0,
            tcp_closed_timeout: 1.0,
            active_timeout: 1800.0,
            max_flows: 1 << 20,
            max_reassembly_bytes: 256 << 20,
            max_reassembly_bytes_per_flow: 1 << 20,
            max_fragment_bytes: 32 << 20,
            max_fragment_datagrams: 16_384,
            payload_inspection: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// Output addresses, as on the command line.
    pub outputs: Vec<String>,
    pub syslog_benign: bool,
    pub syslog_format: String,
    pub syslog_facility: String,
    /// e.g. "dos=alert,scan=notice"
    pub syslog_severities: String,
    pub syslog_app_name: String,
    /// Empty: the machine's hostname.
    pub syslog_hostname: String,
    /// What syslog carries: "incident", "verdict" and/or "flow".
    pub syslog_events: Vec<String>,
    /// Also write a record of every flow when it ends (`event_type` = `flow`).
    pub flow_records: bool,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        Self {
            outputs: vec!["syslog:unix:/dev/log".into()],
            syslog_benign: false,
            syslog_format: "rfc5424".into(),
            syslog_facility: "local0".into(),
            syslog_severities: String::new(),
            syslog_app_name: "tidewatchd".into(),
            syslog_hostname: String::new(),
            syslog_events: vec!["incident".into()],
            flow_records: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StatsConfig {
    /// Seconds between periodic statistics (0: only at exit).
    pub interval: f64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self { interval: 60.0 }
    }
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesConfig {
    /// After opening the capture, switch to this user (like tcpdump -Z). Empty: stay.
    pub user: String,
    /// Group to switch to; empty: the user's primary group.
    pub group: String,
}

/// Settings SIGHUP applies to a running daemon; every other change needs a restart.
pub const LIVE_SETTINGS: [&str; 13] = [
    "engine.model",
    "engine.final_verdicts",
    "incidents",
    "policy",
    "stats.interval",
    "outputs.outputs",
    "outputs.syslog_benign",
    "outputs.syslog_format",
    "outputs.syslog_facility",
    "outputs.syslog_severities",
    "outputs.syslog_app_name",
    "outputs.syslog_hostname",
    "outputs.syslog_events",
];

/// Of the changed settings (`section.key`), those SIGHUP cannot apply.
pub fn needing_restart(changed: &[String]) -> Vec<&String> {
    changed.iter().filter(|k| !LIVE_SETTINGS.iter().any(|l| *k == l || k.starts_with(&format!("{l}.")))).collect()
}

impl Config {
    /// The settings (`section.key`) whose values differ between two configs.
    pub fn changed_settings(&self, other: &Config) -> Vec<String> {
        let (Ok(a), Ok(b)) = (toml::Value::try_from(self), toml::Value::try_from(other)) else {
            return vec!["(config could not be compared)".into()];
        };
        let empty = toml::map::Map::new();
        let (a, b) = (a.as_table().unwrap_or(&empty), b.as_table().unwrap_or(&empty));
        let mut out = Vec::new();
        for (section, av) in a {
            let bv = b.get(section);
            match (av.as_table(), bv.and_then(|v| v.as_table())) {
                (Some(at), Some(bt)) => {
                    for (k, v) in at {
                        if bt.get(k) != Some(v) {
                            out.push(format!("{section}.{k}"));
                        }
                    }
                    out.extend(bt.keys().filter(|k| !at.contains_key(*k)).map(|k| format!("{section}.{k}")));
                }
                _ if bv != Some(av) => out.push(section.clone()),
                _ => {}
            }
        }
        out
    }

    pub fn load(path: &Path) -> Result<Config, Failure> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read config {}: {e}", path.display())))?;
        let cfg: Config = toml::from_str(&text)
            .map_err(|e| Failure::usage(format!("config {}: {}", path.display(), e.to_string().trim_end())))?;
        cfg.validate().map_err(|e| Failure::usage(format!("config {}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Checks what serde cannot: ranges, output addresses, names.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.capture;
        if !(64..=262_144).contains(&c.snaplen) {
            return Err(format!("capture.snaplen {} is outside 64..262144", c.snaplen));
        }
        if c.read_timeout_ms <= 0 || c.queue_packets == 0 || c.buffer_size_mib < 0 {
            return Err("capture.read_timeout_ms, capture.queue_packets must be positive".into());
        }
        for i in &c.interfaces {
            if i.is_empty() || i.len() > 64 || i.contains(['/', '\0', ' ']) {
                return Err(format!("capture.interfaces: `{i}` is not an interface name"));
            }
        }
        if self.engine.batch_size == 0 {
            return Err("engine.batch_size must be at least 1".into());
        }
        for (name, v) in [
            ("tcp_idle_timeout", self.flows.tcp_idle_timeout),
            ("udp_idle_timeout", self.flows.udp_idle_timeout),
            ("other_idle_timeout", self.flows.other_idle_timeout),
            ("tcp_closed_timeout", self.flows.tcp_closed_timeout),
            ("active_timeout", self.flows.active_timeout),
        ] {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(format!("flows.{name} must be a positive number of seconds"));
            }
        }
        if self.flows.max_flows == 0 {
            return Err("flows.max_flows must be at least 1".into());
        }
        crate::wiring::FinalVerdicts::parse(&self.engine.final_verdicts)?;
        if self.flows.max_fragment_datagrams == 0 {
            return Err("flows.max_fragment_datagrams must be at least 1".into());
        }
        for o in &self.outputs.outputs {
            crate::output::parse_output(o).map_err(|e| format!("outputs.outputs: {e}"))?;
        }
        if !matches!(self.outputs.syslog_format.as_str(), "rfc5424" | "rfc3164") {
            return Err(format!("outputs.syslog_format `{}`: use rfc5424 or rfc3164", self.outputs.syslog_format));
        }
        crate::output::syslog::Facility::parse(&self.outputs.syslog_facility)
            .map_err(|e| format!("outputs.syslog_facility: {e}"))?;
        crate::output::syslog::parse_severity_map(&self.outputs.syslog_severities)
            .map_err(|e| format!("outputs.syslog_severities: {e}"))?;
        crate::output::queue::Events::parse(&self.outputs.syslog_events)
            .map_err(|e| format!("outputs.syslog_events: {e}"))?;
        for (name, v) in [("update_interval", self.incidents.update_interval), ("quiet", self.incidents.quiet)] {
            if !(v.is_finite() && v > 0.0 && v < 1e9) {
                return Err(format!("incidents.{name} must be a positive number of seconds"));
            }
        }
        self.policy.policy()?;
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("metrics.listen `{}` is not an IP address and port", self.metrics.listen));
        }
        if self.incidents.max_open == 0 {
            return Err("incidents.max_open must be at least 1".into());
        }
        if self.incidents.scan_min_probes == 0 {
            return Err(
                "incidents.scan_min_probes must be at least 1 (1: a scan incident opens at its first alert)".into()
            );
        }
        if !(self.stats.interval.is_finite() && self.stats.interval >= 0.0) {
            return Err("stats.interval must be 0 or a positive number of seconds".into());
        }
        Ok(())
    }

    pub fn flow_config(&self) -> tidewatch::flow::FlowConfig {
        let us = |s: f64| (s * 1e6) as u64;
        let mut c = tidewatch::flow::FlowConfig::default();
        c.tcp_idle_timeout = us(self.flows.tcp_idle_timeout);
        c.udp_idle_timeout = us(self.flows.udp_idle_timeout);
        c.icmp_idle_timeout = us(self.flows.other_idle_timeout);
        c.other_idle_timeout = us(self.flows.other_idle_timeout);
        c.tcp_closed_timeout = us(self.flows.tcp_closed_timeout);
        c.active_timeout = us(self.flows.active_timeout);
        c.max_flows = self.flows.max_flows;
        c
    }

    /// The caps of the payload stage and of defragmentation.
    pub fn caps(&self) -> (tidewatch::inspect::InspectConfig, tidewatch::defrag::DefragConfig) {
        let f = &self.flows;
        crate::payload_caps(
            f.payload_inspection,
            [f.max_reassembly_bytes, f.max_reassembly_bytes_per_flow],
            [f.max_fragment_bytes, f.max_fragment_datagrams],
        )
    }

    pub fn live_config(&self) -> tidewatch::source::live::LiveConfig {
        let c = &self.capture;
        let mut l = tidewatch::source::live::LiveConfig::default();
        l.interfaces = c.interfaces.clone();
        l.promiscuous = c.promiscuous;
        l.snaplen = c.snaplen;
        l.bpf_filter = c.bpf_filter.clone();
        l.buffer_size = c.buffer_size_mib.saturating_mul(1 << 20);
        l.immediate = c.immediate;
        l.read_timeout_ms = c.read_timeout_ms;
        l.queue_packets = c.queue_packets;
        l
    }

    pub fn output_options(&self) -> Result<crate::output::OutputOptions, String> {
        use crate::output::syslog::{parse_severity_map, Facility, SyslogFormat};
        let mut o = crate::output::OutputOptions::live();
        let o_cfg = &self.outputs;
        o.syslog.send_benign = o_cfg.syslog_benign;
        o.syslog.format = if o_cfg.syslog_format == "rfc3164" { SyslogFormat::Rfc3164 } else { SyslogFormat::Rfc5424 };
        o.syslog.facility = Facility::parse(&o_cfg.syslog_facility)?;
        o.syslog.severity_by_label = parse_severity_map(&o_cfg.syslog_severities)?;
        o.syslog.app_name = o_cfg.syslog_app_name.clone();
        if !o_cfg.syslog_hostname.is_empty() {
            o.syslog.hostname = Some(o_cfg.syslog_hostname.clone());
        }
        o.syslog_events = crate::output::queue::Events::parse(&o_cfg.syslog_events)?;
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tidewatch.example.toml");
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(cfg.capture.interfaces, ["eth1"]);
        assert!(cfg.outputs.outputs.iter().any(|o| o.starts_with("syslog:")));
    }

    #[test]
    fn scan_min_probes_reaches_the_engine_and_zero_is_refused() {
        let cfg: Config = toml::from_str("[incidents]\nscan_min_probes = 3\n").unwrap();
        assert_eq!(cfg.incidents.engine_config().scan_min_probes, 3);
        assert_eq!(Config::default().incidents.engine_config().scan_min_probes, 2);
        let cfg: Config = toml::from_str("[incidents]\nscan_min_probes = 0\n").unwrap();
        let e = cfg.validate().unwrap_err();
        assert!(e.contains("incidents.scan_min_probes"), "{e}");
    }

    #[test]
    fn changed_settings_are_named_by_section_and_key() {
        let a = Config::default();
        let mut b = a.clone();
        b.capture.snaplen = 128;
        b.policy.max_alerts_per_incident_per_minute = 5;
        b.stats.interval = 5.0;
        assert_eq!(
            a.changed_settings(&b),
            ["capture.snaplen", "policy.max_alerts_per_incident_per_minute", "stats.interval"]
        );
        assert!(a.changed_settings(&a).is_empty());
    }

    #[test]
    fn sighup_applies_incidents_final_verdicts_and_outputs_but_not_capture_or_flow_records() {
        let a = Config::default();
        let mut b = a.clone();
        b.incidents.quiet = 5.0;
        b.engine.final_verdicts = "changed".into();
        b.policy.max_alerts_per_incident_per_minute = 5;
        b.capture.snaplen = 128;
        b.outputs.outputs = vec!["json:-".into()];
        b.outputs.syslog_severities = "dos=alert".into();
        b.outputs.flow_records = true;
        let changed = a.changed_settings(&b);
        assert_eq!(changed.len(), 7, "{changed:?}");
        assert_eq!(needing_restart(&changed), ["capture.snaplen", "outputs.flow_records"]);
    }

    #[test]
    fn policy_rules_parse_and_bad_ones_are_named() {
        let cfg: Config = toml::from_str(
            "[policy]\nmin_score = { c2 = 0.99 }\nmax_alerts_per_incident_per_minute = 10\n\
             [[policy.suppress]]\nlabel = \"scan\"\nsrc = \"10.0.0.0/8\"\nport = 53\n\
             expires = \"2027-01-01T00:00:00Z\"\nnote = \"monitoring\"\n",
        )
        .unwrap();
        let p = cfg.policy.policy().unwrap();
        assert_eq!(p.min_score, vec![("c2".to_string(), 0.99)]);
        assert_eq!(p.suppress[0].expires, Some(1_798_761_600_000_000));
        assert_eq!(p.suppress[0].src.unwrap().to_string(), "10.0.0.0/8");
        for (bad, says) in [
            ("[[policy.suppress]]\nsrc = \"10.0.0.0/40\"\n", "rule 0"),
            ("[[policy.suppress]]\nnote = \"everything\"\n", "no condition"),
            ("[[policy.suppress]]\nlabel = \"dos\"\nexpires = \"tomorrow\"\n", "RFC 3339"),
            ("[policy]\nmin_score = { dos = 2.0 }\n", "0 to 1"),
        ] {
            let cfg: Config = toml::from_str(bad).unwrap();
            let e = cfg.validate().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let err = toml::from_str::<Config>("[capture]\ninterfacez = [\"eth0\"]\n").unwrap_err().to_string();
        assert!(err.contains("interfacez"), "{err}");
        let err = toml::from_str::<Config>("[engine]\nworkers = \"two\"\n").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        let cfg: Config = toml::from_str("[outputs]\noutputs = [\"xml:foo\"]\n").unwrap_or_default();
        assert!(cfg.validate().unwrap_err().contains("xml:foo"));
    }
}
