//! The daemon's configuration file (TOML). Every key is documented in
//! `daemon/tidewatch.example.toml`; an unknown key is an error naming it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Failure;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureConfig,
    pub engine: EngineConfig,
    pub flows: FlowsConfig,
    pub outputs: OutputsConfig,
    pub stats: StatsConfig,
    pub privileges: PrivilegesConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Deserialize, PartialEq)]
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
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
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

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegesConfig {
    /// After opening the capture, switch to this user (like tcpdump -Z). Empty: stay.
    pub user: String,
    /// Group to switch to; empty: the user's primary group.
    pub group: String,
}

impl Config {
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
        if !matches!(self.engine.final_verdicts.as_str(), "all" | "changed") {
            return Err(format!("engine.final_verdicts `{}`: use all or changed", self.engine.final_verdicts));
        }
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
        if !(self.stats.interval.is_finite() && self.stats.interval >= 0.0) {
            return Err("stats.interval must be 0 or a positive number of seconds".into());
        }
        Ok(())
    }

    pub fn flow_config(&self) -> tidewatch::flow::FlowConfig {
        let us = |s: f64| (s * 1e6) as u64;
        tidewatch::flow::FlowConfig {
            tcp_idle_timeout: us(self.flows.tcp_idle_timeout),
            udp_idle_timeout: us(self.flows.udp_idle_timeout),
            icmp_idle_timeout: us(self.flows.other_idle_timeout),
            other_idle_timeout: us(self.flows.other_idle_timeout),
            tcp_closed_timeout: us(self.flows.tcp_closed_timeout),
            active_timeout: us(self.flows.active_timeout),
            max_flows: self.flows.max_flows,
        }
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
        tidewatch::source::live::LiveConfig {
            interfaces: c.interfaces.clone(),
            promiscuous: c.promiscuous,
            snaplen: c.snaplen,
            bpf_filter: c.bpf_filter.clone(),
            buffer_size: c.buffer_size_mib.saturating_mul(1 << 20),
            immediate: c.immediate,
            read_timeout_ms: c.read_timeout_ms,
            queue_packets: c.queue_packets,
        }
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
    fn unknown_keys_and_wrong_types_are_named() {
        let err = toml::from_str::<Config>("[capture]\ninterfacez = [\"eth0\"]\n").unwrap_err().to_string();
        assert!(err.contains("interfacez"), "{err}");
        let err = toml::from_str::<Config>("[engine]\nworkers = \"two\"\n").unwrap_err().to_string();
        assert!(err.contains("workers"), "{err}");
        let cfg: Config = toml::from_str("[outputs]\noutputs = [\"xml:foo\"]\n").unwrap_or_default();
        assert!(cfg.validate().unwrap_err().contains("xml:foo"));
    }
}
