//! The short human summary printed after a run.

use std::fmt::Write;

use tidewatch::decode::DropReason;
use tidewatch::flow::EndReason;
use tidewatch::Stats;

fn si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0} ")
    }
}

pub fn add_rates(j: &mut serde_json::Value, s: &Stats, wall: f64) {
    let rate = |x: u64| if wall > 0.0 { x as f64 / wall } else { 0.0 };
    if let Some(o) = j.as_object_mut() {
        o.insert("wall_seconds".into(), wall.into());
        o.insert("packets_per_s".into(), rate(s.packets).into());
        o.insert("bytes_per_s".into(), rate(s.bytes).into());
        o.insert("flows_per_s".into(), rate(s.flows_created).into());
        o.insert("verdicts_per_s".into(), rate(s.verdicts()).into());
    }
}

pub fn render(s: &Stats, wall: f64, model: &str, outputs: &[String]) -> String {
    let mut o = String::new();
    let pps = if wall > 0.0 { s.packets as f64 / wall } else { 0.0 };
    let bps = if wall > 0.0 { s.bytes as f64 * 8.0 / wall } else { 0.0 };
    let _ = writeln!(
        o,
        "tidewatch: {} packets ({}B) in {:.3} s: {} packets/s, {}bit/s",
        s.packets,
        si(s.bytes as f64),
        wall,
        si(pps).trim_end(),
        si(bps)
    );
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| s.drop_count(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.drop_count(*r)))
        .collect();
    let _ = write!(o, "  decoded {}, dropped {}", s.decoded, s.dropped());
    if !drops.is_empty() {
        let _ = write!(o, " ({})", drops.join(", "));
    }
    let _ = writeln!(o);
    if s.fragments > 0 {
        let d = &s.defrag;
        let _ = writeln!(
            o,
            "  fragments {} → {} datagrams (discarded: overlap {}, invalid {}, timed out {}, evicted {})",
            s.fragments, d.datagrams, d.overlaps, d.invalid, d.timed_out, d.evicted
        );
    }
    let r = &s.reassembly;
    if r.bytes > 0 || r.abandoned > 0 {
        let _ = writeln!(
            o,
            "  reassembled {}B of TCP payload ({} gaps, {}B never captured; {} connections abandoned at a cap)",
            si(r.bytes as f64),
            r.gaps,
            si(r.gap_bytes as f64),
            r.abandoned
        );
    }
    if !s.app_flows.is_empty() {
        let apps: Vec<String> = s.app_flows.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "  application protocols (by content): {}", apps.join(", "));
    }
    let ends: Vec<String> = EndReason::ALL
        .iter()
        .enumerate()
        .filter(|(i, _)| s.flows_ended[*i] > 0)
        .map(|(i, r)| format!("{} {}", r.name(), s.flows_ended[i]))
        .collect();
    let _ = writeln!(o, "  flows {} (peak {} open; ended: {})", s.flows_created, s.flows_peak, ends.join(", "));
    let labels: Vec<String> = s.verdicts_by_label.iter().map(|(l, n)| format!("{l} {n}")).collect();
    let _ = writeln!(
        o,
        "  verdicts {} (early {}, end {}, host {}): {}",
        s.verdicts(),
        s.verdicts_early,
        s.verdicts_end,
        s.verdicts_host,
        if labels.is_empty() { "none".to_string() } else { labels.join(", ") }
    );
    let lat = &s.latency_us;
    if lat.count > 0 {
        let _ =
            writeln!(o, "  packet-to-verdict latency: p50 {} µs, p99 {} µs, p99.9 {} µs", lat.p50, lat.p99, lat.p999);
    }
    let _ = writeln!(
        o,
        "  {} (queue-full waits {}, packets dropped at a full queue {})",
        if s.workers == 0 { "1 thread".to_string() } else { format!("{} workers", s.workers) },
        s.queue_full,
        s.queue_dropped
    );
    if !model.is_empty() {
        let _ =
            writeln!(o, "  model {model}: {} batches, {:.1} ms inference", s.batches, s.inference_micros as f64 / 1e3);
    }
    for p in &s.partial_reads {
        let _ =
            writeln!(o, "  warning: {} ended early after {} packets: {}", p.path.display(), p.packets_read, p.reason);
    }
    if !outputs.is_empty() {
        let _ = writeln!(o, "  verdicts written to: {}", outputs.join(", "));
    }
    o
}
