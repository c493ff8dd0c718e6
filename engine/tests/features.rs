//! Feature values against hand-computed ones on pcaps/tiny_tcp.pcap
//! (its packets are listed in pcaps/tiny_tcp.expected.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::features::FEATURE_NAMES;
use tidewatch::{Engine, PcapFileSource, Trigger};

fn get(row: &[f32], name: &str) -> f32 {
    let i = FEATURE_NAMES.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no feature {name}"));
    row[i]
}

fn close(a: f32, b: f64, name: &str) {
    let tol = 1e-4 * b.abs().max(1.0);
    assert!((f64::from(a) - b).abs() <= tol, "{name}: got {a}, want {b}");
}

#[test]
fn tiny_tcp_end_row_matches_hand_computed_values() {
    let (stats, rows) = common::features_of(&[common::pcap("tiny_tcp.pcap")], 8);
    assert_eq!(stats.packets, 10);
    assert_eq!(stats.flows_created, 1);
    let end = rows.iter().find(|(r, _)| r.trigger == Trigger::End).unwrap();
    let (rec, row) = (&end.0, &end.1);
    assert_eq!(rec.src_ip.to_string(), "10.0.0.1");
    assert_eq!((rec.src_port, rec.dst_port), (40000, 80));
    assert_eq!(rec.packets, 10);
    assert_eq!(rec.proto, tidewatch::flow::IpProto::Tcp);
    let want: &[(&str, f64)] = &[
        ("duration_s", 0.12),
        ("fwd_packets", 6.0),
        ("bwd_packets", 4.0),
        ("fwd_bytes", 340.0),
        ("bwd_bytes", 460.0),
        ("fwd_payload_bytes", 100.0),
        ("bwd_payload_bytes", 300.0),
        ("fwd_pkt_len_min", 40.0),
        ("fwd_pkt_len_max", 140.0),
        ("fwd_pkt_len_mean", 340.0 / 6.0),
        ("fwd_pkt_len_std", (8333.333_f64 / 5.0).sqrt()),
        ("bwd_pkt_len_min", 40.0),
        ("bwd_pkt_len_max", 340.0),
        ("bwd_pkt_len_mean", 115.0),
        ("bwd_pkt_len_std", 150.0),
        ("fwd_iat_min_s", 0.01),
        ("fwd_iat_max_s", 0.04),
        ("fwd_iat_mean_s", 0.024),
        ("fwd_iat_std_s", (130e-6_f64).sqrt()),
        ("bwd_iat_min_s", 0.01),
        ("bwd_iat_max_s", 0.05),
        ("bwd_iat_mean_s", 0.1 / 3.0),
        ("bwd_iat_std_s", (866.667e-6_f64 / 2.0).sqrt()),
        ("flow_iat_min_s", 0.01),
        ("flow_iat_max_s", 0.03),
        ("flow_iat_mean_s", 0.12 / 9.0),
        ("fin_count", 2.0),
        ("syn_count", 2.0),
        ("rst_count", 0.0),
        ("psh_count", 2.0),
        ("ack_count", 9.0),
        ("fwd_init_window", 64240.0),
        ("bwd_init_window", 65160.0),
        ("packets_per_s", 10.0 / 0.12),
        ("bytes_per_s", 800.0 / 0.12),
        ("down_up_ratio", 4.0 / 6.0),
        ("fwd_payload_packets", 1.0),
        ("bwd_payload_packets", 1.0),
        ("is_tcp", 1.0),
        ("is_udp", 0.0),
        ("tcp_handshake_complete", 1.0),
        ("tcp_responder_reset", 0.0),
        ("dst_port_well_known", 1.0),
        ("early_size_1", 40.0),
        ("early_size_2", -40.0),
        ("early_size_4", 140.0),
        ("early_size_6", -340.0),
        ("early_size_8", 40.0),
        ("early_gap_1_s", 0.0),
        ("early_gap_5_s", 0.02),
        ("early_gap_8_s", 0.03),
        ("src_failed_share", 0.0),
    ];
    for (name, v) in want {
        close(get(row, name), *v, name);
    }
    // flow IAT std over gaps 10,10,10,20,10,10,30,10,10 ms
    let gaps = [10.0, 10.0, 10.0, 20.0, 10.0, 10.0, 30.0, 10.0, 10.0_f64];
    let mean = gaps.iter().sum::<f64>() / 9.0;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / 8.0;
    close(get(row, "flow_iat_std_s"), var.sqrt() / 1000.0, "flow_iat_std_s");
    assert_eq!(rec.end_reason, Some(tidewatch::flow::EndReason::EndOfInput));
}

#[test]
fn tiny_tcp_early_row_covers_the_first_k_packets() {
    let (_, rows) = common::features_of(&[common::pcap("tiny_tcp.pcap")], 8);
    let early: Vec<_> = rows.iter().filter(|(r, _)| r.trigger == Trigger::Early).collect();
    assert_eq!(early.len(), 1);
    let (rec, row) = (&early[0].0, &early[0].1);
    assert_eq!(rec.packets, 8);
    // Triggered by packet 8 at T+0.100 s.
    assert_eq!(rec.ts - rec.flow_start, 100_000);
    close(get(row, "fwd_packets"), 5.0, "fwd_packets");
    close(get(row, "bwd_packets"), 3.0, "bwd_packets");
    close(get(row, "duration_s"), 0.1, "duration_s");
    close(get(row, "fin_count"), 1.0, "fin_count");
}

#[test]
fn no_early_row_when_disabled_and_rows_are_finite() {
    let (_, rows) = common::features_of(&[common::pcap("tiny_tcp.pcap")], 0);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].1.iter().all(|v| v.is_finite()));
    assert_eq!(rows[0].1.len(), FEATURE_NAMES.len());
}

#[test]
fn feature_sinks_add_up_like_verdict_sinks_each_gets_every_row() {
    let (a, b) = (common::Rows::default(), common::Rows::default());
    let mut engine = Engine::builder().feature_sink(a.clone()).feature_sink(b.clone()).build().unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    let (a, b) = (a.0.lock().unwrap(), b.0.lock().unwrap());
    assert_eq!(a.len() as u64, stats.feature_rows);
    assert!(a.len() > 600, "{}", a.len());
    let ids = |v: &[common::Row]| v.iter().map(|(r, _)| (r.flow_id, r.trigger)).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
}
