//! `--metrics ADDR`: the daemon's counters in the Prometheus text exposition
//! format (version 0.0.4) at `http://ADDR/metrics`.
//!
//! Everything is read at scrape time from the same counters the periodic
//! stats read (the engine's `EngineCounters::snapshot`, the interfaces'
//! and the outputs' atomics), so a scrape costs the engine one short lock
//! and the numbers match the stats. The HTTP side is `tiny_http`,
//! on one thread of its own; the exposition text is written here (a few
//! lines per metric family, no registry to mirror our counters into).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tidewatch::decode::DropReason;
use tidewatch::flow::EndReason;
use tidewatch::pipeline::{BucketCounts, LATENCY_BUCKETS_US};
use tidewatch::source::live::InterfaceCounters;
use tidewatch::EngineCounters;

use crate::output::live::OutputSwitch;
use crate::output::queue::CounterSnapshot;

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub engine: Arc<EngineCounters>,
    pub interfaces: Vec<Arc<InterfaceCounters>>,
    /// Every output, current or taken out by a reload (its final counts).
    pub outputs: OutputSwitch,
    /// `name@version` of the running model (changes on reload).
    pub model: Arc<Mutex<String>>,
}

/// The metrics endpoint; stops its thread when dropped.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` (e.g. `127.0.0.1:9911`; port 0 picks one) and serves
    /// `/metrics` from `sources`.
    pub fn start(addr: &str, sources: Sources) -> Result<MetricsServer, String> {
        let server = tiny_http::Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let bound = server.server_addr().to_ip().ok_or_else(|| format!("{addr} is not an IP address and port"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("metrics".into())
                .spawn(move || serve(&server, &sources, &stop))
                .map_err(|e| format!("cannot start the metrics thread: {e}"))?
        };
        Ok(MetricsServer { stop, thread: Some(thread), addr: bound })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, sources: &Sources, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let req = match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(_) => continue,
        };
        let response = if req.url() == "/metrics" || req.url().starts_with("/metrics?") {
            let content_type = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain; version=0.0.4"[..]);
            let mut r = tiny_http::Response::from_string(render(sources));
            if let Ok(h) = content_type {
                r.add_header(h);
            }
            r
        } else {
            tiny_http::Response::from_string("tidewatchd: metrics are at /metrics\n").with_status_code(404)
        };
        let _ = req.respond(response);
    }
}

/// One metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape_label(v, self.out);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// Label values escape `\`, `"` and newlines (exposition format 0.0.4).
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn histogram(out: &mut String, name: &str, help: &str, b: &BucketCounts) {
    let mut f = Family::new(out, name, "histogram", help);
    let mut cumulative = 0;
    for (i, n) in b.buckets.iter().enumerate() {
        cumulative += n;
        let le = match LATENCY_BUCKETS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_string(),
        };
        f.sample(&format!("{name}_bucket"), &[("le", &le)], cumulative);
    }
    f.sample(&format!("{name}_sum"), &[], b.sum_us as f64 / 1e6);
    f.sample(&format!("{name}_count"), &[], b.count);
}

/// The whole exposition text.
pub fn render(s: &Sources) -> String {
    let e = s.engine.snapshot();
    let mut out = String::with_capacity(8192);
    let o = &mut out;
    Family::new(o, "tidewatch_packets_total", "counter", "Packets read from the capture.").sample(
        "tidewatch_packets_total",
        &[],
        e.packets,
    );
    Family::new(o, "tidewatch_bytes_total", "counter", "Frame bytes read from the capture.").sample(
        "tidewatch_bytes_total",
        &[],
        e.bytes,
    );
    Family::new(o, "tidewatch_decoded_packets_total", "counter", "Packets decoded to a flow.").sample(
        "tidewatch_decoded_packets_total",
        &[],
        e.decoded,
    );
    let mut f = Family::new(o, "tidewatch_dropped_packets_total", "counter", "Packets not decoded, by reason.");
    for r in DropReason::ALL {
        f.sample("tidewatch_dropped_packets_total", &[("reason", r.name())], e.drop_count(r));
    }
    Family::new(
        o,
        "tidewatch_queue_dropped_packets_total",
        "counter",
        "Decoded packets dropped because a worker queue was full.",
    )
    .sample("tidewatch_queue_dropped_packets_total", &[], e.queue_dropped);
    let mut f = Family::new(o, "tidewatch_interface_packets_total", "counter", "Packets per interface, by fate.");
    for c in &s.interfaces {
        for (fate, v) in [
            ("received", &c.received),
            ("queue_dropped", &c.queue_dropped),
            ("kernel_dropped", &c.kernel_dropped),
            ("interface_dropped", &c.interface_dropped),
        ] {
            f.sample("tidewatch_interface_packets_total", &[("interface", &c.name), ("fate", fate)], get(v));
        }
    }
    Family::new(o, "tidewatch_flows_total", "counter", "Flows created.").sample(
        "tidewatch_flows_total",
        &[],
        e.flows_created,
    );
    let mut f = Family::new(o, "tidewatch_flows_ended_total", "counter", "Flows ended, by reason.");
    for (i, r) in EndReason::ALL.iter().enumerate() {
        f.sample("tidewatch_flows_ended_total", &[("reason", r.name())], e.flows_ended[i]);
    }
    let mut f = Family::new(o, "tidewatch_verdicts_total", "counter", "Verdicts, by label.");
    for (label, n) in &e.verdicts_by_label {
        f.sample("tidewatch_verdicts_total", &[("label", label)], n);
    }
    let mut f = Family::new(o, "tidewatch_incidents_total", "counter", "Incidents opened, by label.");
    for (label, n) in &e.incidents_by_label {
        f.sample("tidewatch_incidents_total", &[("label", label)], n);
    }
    let mut f =
        Family::new(o, "tidewatch_verdicts_suppressed_total", "counter", "Alert verdicts the policy suppressed.");
    let suppressed = &e.suppressed;
    for (reason, v) in
        [("min_score", suppressed.min_score), ("rule", suppressed.rule), ("rate_limit", suppressed.rate_limit)]
    {
        f.sample("tidewatch_verdicts_suppressed_total", &[("reason", reason)], v);
    }
    Family::new(o, "tidewatch_incident_records_total", "counter", "Incident records (open, update, closed) emitted.")
        .sample("tidewatch_incident_records_total", &[], e.incident_records);
    // One series per address: an output reopened by a reload (new syslog
    // settings) continues its address's counts, so counters never go back.
    let mut outputs: Vec<(String, CounterSnapshot)> = Vec::new();
    for h in s.outputs.handles() {
        match outputs.iter_mut().find(|(spec, _)| *spec == h.spec) {
            Some((_, c)) => *c += h.counters(),
            None => outputs.push((h.spec.clone(), h.counters())),
        }
    }
    let name = "tidewatch_output_records_total";
    let mut f = Family::new(o, name, "counter", "Records per output, by fate (sent, dropped, failed, filtered).");
    for (spec, c) in &outputs {
        for (fate, v) in [("sent", c.sent), ("dropped", c.dropped()), ("failed", c.failed), ("filtered", c.filtered)] {
            f.sample(name, &[("output", spec), ("fate", fate)], v);
        }
    }
    let name = "tidewatch_output_stalls_total";
    let mut f = Family::new(o, name, "counter", "Times an output was declared stuck.");
    for (spec, c) in &outputs {
        f.sample(name, &[("output", spec)], c.stalls);
    }
    let name = "tidewatch_output_reopen_failures_total";
    let mut f = Family::new(o, name, "counter", "Reopens (SIGHUP) that failed.");
    for (spec, c) in &outputs {
        f.sample(name, &[("output", spec)], c.reopen_failures);
    }
    histogram(
        o,
        "tidewatch_packet_to_verdict_seconds",
        "Time from a packet's arrival to its flow's verdict (live capture).",
        &s.engine.packet_to_verdict.read(),
    );
    histogram(
        o,
        "tidewatch_inference_batch_seconds",
        "Time of one batch's inference.",
        &s.engine.batch_inference.read(),
    );
    let model = s.model.lock().map(|m| m.clone()).unwrap_or_default();
    let (name, version) = model.split_once('@').unwrap_or((&model, ""));
    Family::new(o, "tidewatch_model_info", "gauge", "The model in use (value 1).").sample(
        "tidewatch_model_info",
        &[("name", name), ("version", version)],
        1,
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};

    use super::*;

    fn sources() -> Sources {
        let mut stats = tidewatch::Stats::default();
        stats.packets = 1234;
        stats.flows_ended[0] = 7;
        stats.verdicts_by_label.insert("scan".into(), 5);
        let engine = Arc::new(EngineCounters::from_stats(stats));
        Sources {
            engine,
            interfaces: Vec::new(),
            outputs: OutputSwitch::default(),
            model: Arc::new(Mutex::new("lab@2.1.0".into())),
        }
    }

    /// Every sample line is `name{labels} value` with a declared family.
    #[test]
    fn the_exposition_is_well_formed_and_carries_the_counters() {
        let text = render(&sources());
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(declared.contains(name) || declared.contains(family), "undeclared {line}");
        }
        assert!(text.contains("\ntidewatch_packets_total 1234\n"), "{text}");
        assert!(text.contains("\ntidewatch_verdicts_total{label=\"scan\"} 5\n"), "{text}");
        assert!(text.contains("tidewatch_flows_ended_total{reason=\"closed\"} 7\n"), "{text}");
        assert!(text.contains("tidewatch_model_info{name=\"lab\",version=\"2.1.0\"} 1\n"), "{text}");
        assert!(text.contains("tidewatch_packet_to_verdict_seconds_bucket{le=\"+Inf\"} 0\n"), "{text}");
    }

    #[test]
    fn it_serves_metrics_over_http_and_404_elsewhere() {
        let server = MetricsServer::start("127.0.0.1:0", sources()).unwrap();
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(server.addr).unwrap();
            write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).unwrap();
            body
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4") && ok.contains("tidewatch_packets_total 1234"), "{ok}");
        assert!(get("/").contains(" 404 "));
    }
}
