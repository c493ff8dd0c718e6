//! Memory per tracked flow: feeds N distinct concurrent TCP flows (one SYN
//! each, no model, rows discarded) through the engine on one thread and
//! reports peak RSS before and after, and the bytes per flow.
//!
//! cargo run --release -p tidewatch-benches --bin flow_memory -- [FLOWS]   (default 1000000)

use tidewatch::flow::FlowConfig;
use tidewatch::{Engine, FeatureSink, FlowRecord, LinkType, RawPacket, SinkControl, SinkError};

struct Discard;
impl FeatureSink for Discard {
    fn row(&mut self, _: &FlowRecord, _: &[f32]) -> Result<SinkControl, SinkError> {
        Ok(SinkControl::Continue)
    }
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// A raw IPv4 TCP SYN from 10.x.y.z:port to 192.0.2.1:80.
fn syn(buf: &mut [u8; 40], i: u32) {
    buf.fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&40u16.to_be_bytes());
    buf[8] = 64;
    buf[9] = 6;
    buf[12] = 10;
    buf[13..16].copy_from_slice(&i.to_be_bytes()[1..]);
    buf[16..20].copy_from_slice(&[192, 0, 2, 1]);
    buf[20..22].copy_from_slice(&(1024 + (i % 60000) as u16).to_be_bytes());
    buf[22..24].copy_from_slice(&80u16.to_be_bytes());
    buf[32] = 0x50;
    buf[33] = 0x02;
    buf[34..36].copy_from_slice(&64240u16.to_be_bytes());
}

fn main() -> Result<(), String> {
    let flows: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut cfg = FlowConfig::default();
    cfg.max_flows = flows as usize + 1;
    let mut engine = Engine::builder()
        .workers(0)
        .early_packets(0)
        .flow_config(cfg)
        .feature_sink(Discard)
        .build()
        .map_err(|e| e.to_string())?;
    let before = rss_kib("VmRSS:");
    let mut buf = [0u8; 40];
    for i in 0..flows {
        syn(&mut buf, i);
        // 1 µs apart: all flows stay open (no timeout) while they pile up.
        let p =
            RawPacket { ts: 1_700_000_000_000_000 + u64::from(i), wire_len: 40, link_type: LinkType::RAW, data: &buf };
        engine.process(&p).map_err(|e| e.to_string())?;
    }
    let peak = rss_kib("VmHWM:");
    let stats = engine.stats();
    println!("flows open: {} (created {})", stats.flows_peak, stats.flows_created);
    println!("RSS before: {:.1} MiB, peak with flows: {:.1} MiB", before as f64 / 1024.0, peak as f64 / 1024.0);
    println!(
        "memory per tracked flow (flow table + timers + host context, no reassembly): {:.0} bytes",
        (peak.saturating_sub(before) * 1024) as f64 / f64::from(flows)
    );
    println!(
        "size_of::<tidewatch::flow_state::EngineFlow>() = {} bytes",
        std::mem::size_of::<tidewatch::flow_state::EngineFlow>()
    );
    Ok(())
}
