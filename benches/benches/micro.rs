//! Micro-benchmarks of the per-packet and per-row stages:
//! decode, flow lookup/insert, feature update, and inference per batch size.
//!
//! cargo bench -p tidewatch-benches --bench micro

// A benchmark harness, not the engine: a broken fixture may stop it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidewatch::decode::{decode, PacketInfo};
use tidewatch::features::{FlowStats, NUM_FEATURES};
use tidewatch::flow::{FlowConfig, FlowTable};
use tidewatch::flow_state::FlowState;
use tidewatch::{Classifier, LinkType, OnnxClassifier, RawPacket};

/// An Ethernet + IPv4 + TCP frame with `payload` bytes of data.
fn frame(src_port: u16, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let tcp = &mut ip[20..];
    tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = 0x18;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    f
}

fn packet_info(src_port: u16, ts: u64) -> PacketInfo {
    let f = frame(src_port, 100);
    let p = RawPacket { ts, wire_len: f.len() as u32, link_type: LinkType::ETHERNET, data: &f };
    decode(&p).expect("the synthetic frame decodes")
}

fn bench_decode(c: &mut Criterion) {
    let f = frame(40000, 512);
    let p = RawPacket { ts: 1, wire_len: f.len() as u32, link_type: LinkType::ETHERNET, data: &f };
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ethernet_ipv4_tcp", |b| b.iter(|| black_box(decode(black_box(&p)))));
    g.finish();
}

fn bench_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_table");
    g.throughput(Throughput::Elements(1));
    // Lookup of an existing flow among 100k.
    let mut table = FlowTable::<FlowState>::new(FlowConfig::default());
    let infos: Vec<PacketInfo> =
        (0..100_000u32).map(|i| packet_info(1024 + (i % 60000) as u16, u64::from(i))).collect();
    let mut infos = infos;
    for (i, info) in infos.iter_mut().enumerate() {
        info.dst[15] = (i / 60000) as u8; // more than 60k distinct flows
        table.update(info, &mut |_, _| {});
    }
    let mut i = 0usize;
    g.bench_function("lookup_existing_of_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % infos.len();
            let u = table.update(&infos[i], &mut |_, _| {});
            black_box(u.created);
        })
    });
    // Insert of new flows (table cleared every 100k inserts).
    let mut fresh = FlowTable::<FlowState>::new(FlowConfig::default());
    let mut n = 0u32;
    let mut info = packet_info(1, 1);
    g.bench_function("insert_new", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            if n % 100_000 == 0 {
                fresh = FlowTable::<FlowState>::new(FlowConfig::default());
            }
            info.src[12..16].copy_from_slice(&n.to_be_bytes());
            let u = fresh.update(&info, &mut |_, _| {});
            black_box(u.created);
        })
    });
    g.finish();
}

fn bench_features(c: &mut Criterion) {
    let mut g = c.benchmark_group("features");
    g.throughput(Throughput::Elements(1));
    let mut stats = FlowStats::new(0);
    let mut info = packet_info(40000, 0);
    let mut t = 0u64;
    g.bench_function("flow_stats_update", |b| {
        b.iter(|| {
            t += 137;
            info.ts = t;
            stats.update(black_box(&info), t % 3 != 0);
        })
    });
    g.finish();
}

fn bench_inference(c: &mut Criterion) {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/lab/model.onnx");
    let mut clf = match OnnxClassifier::load(&model, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED inference benchmark: {e}");
            return;
        }
    };
    let labels = clf.info().labels.len();
    let mut g = c.benchmark_group("inference");
    for batch in [1usize, 8, 64, 256, 1024] {
        let rows: Vec<f32> = (0..batch * NUM_FEATURES).map(|i| ((i * 37) % 1000) as f32 / 10.0).collect();
        let mut out = vec![0f32; batch * labels];
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_with_input(BenchmarkId::new("rows_per_batch", batch), &batch, |b, &n| {
            b.iter(|| clf.classify(black_box(&rows), n, &mut out).expect("the bundled model classifies"))
        });
    }
    g.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_decode, bench_flow, bench_features, bench_inference
}
criterion_main!(micro);
