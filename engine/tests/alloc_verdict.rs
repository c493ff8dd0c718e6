//! What a flow's verdict costs in allocations, counted with an
//! instrumented global allocator (alone in its test binary: the counters
//! are process-wide).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tidewatch::{Engine, LinkType, RawPacket, SinkControl, SinkError};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Raw IPv4 TCP ACK with 100 bytes of payload from 10.0.0.1:`client_port` to 10.0.0.2:443.
fn packet(buf: &mut [u8; 140], client_port: u16) {
    buf.fill(0);
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&140u16.to_be_bytes());
    buf[8] = 64;
    buf[9] = 6;
    buf[12..16].copy_from_slice(&[10, 0, 0, 1]);
    buf[16..20].copy_from_slice(&[10, 0, 0, 2]);
    buf[20..22].copy_from_slice(&client_port.to_be_bytes());
    buf[22..24].copy_from_slice(&443u16.to_be_bytes());
    buf[32] = 0x50;
    buf[33] = 0x10;
}

/// Gives every row the same two probabilities, without allocating.
struct Constant(tidewatch::ModelInfo);

impl tidewatch::Classifier for Constant {
    fn info(&self) -> &tidewatch::ModelInfo {
        &self.0
    }
    fn classify(&mut self, _rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        for i in 0..n {
            out[i * 2..i * 2 + 2].copy_from_slice(&[0.9, 0.1]);
        }
        Ok(())
    }
}

/// Keeps a copy of each verdict, as an output's queue does, and drops it.
struct CloneAndDrop(u64);

impl tidewatch::VerdictSink for CloneAndDrop {
    fn verdict(&mut self, v: &tidewatch::Verdict) -> Result<SinkControl, SinkError> {
        drop(std::hint::black_box(v.clone()));
        self.0 += 1;
        Ok(SinkControl::Continue)
    }
}

/// A new flow's life, from its first packet to its delivered end verdict,
/// costs a fixed, small number of allocations, all of them per flow: the
/// payload inspection of a flow that carries payload, and the flow detail
/// of its first-packet and end rows. The events the worker hands to the
/// merge stage carry their rows inline (boxed, they were two more), and
/// the verdict itself (scores, label, model) and a copy of it for an
/// output allocate nothing (before `Scores`: two more per verdict).
#[test]
fn a_flows_verdict_allocates_only_per_flow_state() {
    let info = tidewatch::ModelInfo::for_this_engine("constant", "1", &["benign", "alert"]);
    let mut engine = Engine::builder()
        .workers(0)
        .early_packets(0)
        .classifier(Box::new(Constant(info)))
        .sink(CloneAndDrop(0))
        .build()
        .unwrap();
    let mut buf = [0u8; 140];
    let base = 1_700_000_000_000_000u64;
    let mut flows = |engine: &mut Engine, first_port: u16, at: u64| {
        for port in first_port..first_port + 2000 {
            packet(&mut buf, port);
            let p = RawPacket { ts: at + u64::from(port), wire_len: 140, link_type: LinkType::RAW, data: &buf };
            engine.process(&p).unwrap();
        }
        // Past the TCP idle timeout: every flow ends and is classified.
        engine.tick(at + 400_000_000).unwrap();
    };
    // Warm up: tables, batches and queues grow to size.
    flows(&mut engine, 10_000, base);
    let region = Region::new(GLOBAL);
    flows(&mut engine, 20_000, base + 500_000_000);
    let change = region.change();
    let stats = engine.finish().unwrap();
    // One end verdict per flow, and a few at first packets: the one
    // source of 2,000 flows a round is hot (asked about once a second).
    assert_eq!(stats.flows_created, 4000);
    assert!((4000..=4010).contains(&stats.verdicts()), "{}", stats.verdicts());
    let per_flow = change.allocations as f64 / 2000.0;
    eprintln!("allocations per flow from first packet to delivered verdict: {per_flow:.2} ({change:?})");
    assert!(per_flow <= 4.0, "{per_flow:.2} allocations per flow: {change:?}");
}
