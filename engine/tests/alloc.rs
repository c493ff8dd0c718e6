//! The per-packet path allocates nothing: once a flow exists, feeding it
//! packets (decode, flow lookup, feature update, merge bookkeeping) makes
//! no heap allocation at all. Counted with an instrumented global allocator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tidewatch::{Engine, FeatureSink, FlowRecord, LinkType, RawPacket, SinkControl, SinkError};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

struct Discard;
impl FeatureSink for Discard {
    fn row(&mut self, _: &FlowRecord, _: &[f32]) -> Result<SinkControl, SinkError> {
        Ok(SinkControl::Continue)
    }
}

/// Raw IPv4 TCP ACK with 100 bytes of payload, client → server or back.
fn packet(buf: &mut [u8; 140], client_port: u16, from_client: bool) {
    buf.fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&140u16.to_be_bytes());
    buf[8] = 64;
    buf[9] = 6;
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (src, dst, sp, dp) = if from_client { (a, b, client_port, 443) } else { (b, a, 443, client_port) };
    buf[12..16].copy_from_slice(&src);
    buf[16..20].copy_from_slice(&dst);
    buf[20..22].copy_from_slice(&sp.to_be_bytes());
    buf[22..24].copy_from_slice(&dp.to_be_bytes());
    buf[32] = 0x50;
    buf[33] = 0x10;
}

#[test]
fn steady_state_packets_allocate_nothing() {
    let mut engine = Engine::builder().workers(0).early_packets(8).feature_sink(Discard).build().unwrap();
    let mut buf = [0u8; 140];
    let base = 1_700_000_000_000_000u64;
    // Warm up: 50 flows past their early row, so every buffer has grown.
    // (Creating flows and rows does allocate: this proves the counter works.)
    let warm_up = Region::new(GLOBAL);
    for round in 0..20u64 {
        for port in 0..50u16 {
            packet(&mut buf, 40000 + port, round % 2 == 0);
            let p = RawPacket {
                ts: base + round * 1000 + u64::from(port),
                wire_len: 140,
                link_type: LinkType::RAW,
                data: &buf,
            };
            engine.process(&p).unwrap();
        }
    }
    assert!(warm_up.change().allocations > 0);
    // Measure 10 000 more packets of the same flows, within the same second
    // of capture time (a timeout sweep is per second, not per packet).
    let region = Region::new(GLOBAL);
    for i in 0..10_000u64 {
        let port = (i % 50) as u16;
        packet(&mut buf, 40000 + port, i % 3 != 0);
        let p = RawPacket { ts: base + 100_000 + i * 10, wire_len: 140, link_type: LinkType::RAW, data: &buf };
        engine.process(&p).unwrap();
    }
    let change = region.change();
    assert_eq!(change.allocations, 0, "allocations on the per-packet path: {change:?}");
    assert_eq!(change.reallocations, 0, "reallocations on the per-packet path: {change:?}");
    let stats = engine.finish().unwrap();
    assert_eq!(stats.flows_created, 50);
    assert_eq!(stats.packets, 11_000);
}
