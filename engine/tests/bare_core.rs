//! The core with no optional feature: no libpcap, no ONNX Runtime. The
//! caller brings its own packets and its own classifier, and polls events.
//! `make test` also runs this file with `--no-default-features`, so it may
//! use nothing behind `pcap` or `onnx` (nor `tests/common`, which does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use etherparse::PacketBuilder;
use tidewatch::features::NUM_FEATURES;
use tidewatch::flow::{EndReason, IpProto};
use tidewatch::{Classifier, Engine, Event, LinkType, ModelInfo, RawPacket};

/// Calls a flow "chatty" past 4 packets.
struct Chatty(ModelInfo);

impl Classifier for Chatty {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        for (row, p) in rows.chunks_exact(NUM_FEATURES).take(n).zip(out.chunks_exact_mut(2)) {
            let chatty = if row[1] + row[2] > 4.0 { 1.0 } else { 0.0 };
            p[0] = 1.0 - chatty;
            p[1] = chatty;
        }
        Ok(())
    }
}

fn tcp(from_client: bool, seq: u32, ack: u32, syn: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) =
        if from_client { ([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80) } else { ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000) };
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
    if syn {
        b = b.syn();
    }
    if fin {
        b = b.fin();
    }
    if ack != 0 {
        b = b.ack(ack);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp_query() -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 53], 64).udp(5353, 53);
    let mut out = Vec::new();
    b.write(&mut out, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01").unwrap();
    out
}

#[test]
fn own_packets_and_own_classifier_give_verdicts_and_flow_records() {
    let info = ModelInfo::for_this_engine("chatty", "1", &["benign", "chatty"]);
    let mut engine =
        Engine::builder().classifier(Box::new(Chatty(info))).flow_records(true).early_packets(0).build().unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let packets = [
        tcp(true, 100, 0, true, false, b""),
        tcp(false, 500, 101, true, false, b""),
        tcp(true, 101, 501, false, false, b""),
        tcp(true, 101, 501, false, false, request),
        tcp(false, 501, 101 + request.len() as u32, false, false, b"HTTP/1.1 204 No Content\r\n\r\n"),
        tcp(true, 101 + request.len() as u32, 529, false, true, b""),
        udp_query(),
    ];
    let mut events = Vec::new();
    for (i, data) in packets.iter().enumerate() {
        let ts = 1_700_000_000_000_000 + i as u64 * 1_000;
        let p = RawPacket { ts, wire_len: data.len() as u32, link_type: LinkType::ETHERNET, data };
        engine.process(&p).unwrap();
        events.extend(std::iter::from_fn(|| engine.poll_event()));
    }
    let stats = engine.finish().unwrap();
    events.extend(std::iter::from_fn(|| engine.poll_event()));
    assert_eq!((stats.packets, stats.decoded, stats.flows_created), (7, 7, 2));
    let flows: Vec<_> = events.iter().filter_map(|e| if let Event::Flow(f) = e { Some(f) } else { None }).collect();
    let verdicts: Vec<_> =
        events.iter().filter_map(|e| if let Event::Verdict(v) = e { Some(v) } else { None }).collect();
    assert_eq!(flows.len(), 2);
    let web = flows.iter().find(|f| f.proto == IpProto::Tcp).expect("the TCP flow has a record");
    assert_eq!((web.packets, web.dst_port, web.end_reason), (6, 80, Some(EndReason::EndOfInput)));
    let labels: Vec<(IpProto, &str)> = verdicts.iter().map(|v| (v.flow.proto, &*v.label)).collect();
    assert!(labels.contains(&(IpProto::Tcp, "chatty")), "{labels:?}");
    assert!(labels.contains(&(IpProto::Udp, "benign")), "{labels:?}");
}
