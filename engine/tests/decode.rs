//! Decode of every supported link type, and the drop accounting, on the
//! project's own captures (pcaps/linktypes, described in its EXPECTED.md),
//! then on the real captures of the public corpus when present.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::decode::DropReason;
use tidewatch::Trigger;

/// (file, packets, tcp flows, udp flows, icmp flows)
const LINKTYPES: &[(&str, u64, usize, usize, usize)] = &[
    ("eth.pcap", 15, 1, 2, 1),
    ("vlan.pcap", 15, 1, 2, 1),
    ("qinq.pcap", 15, 1, 2, 1),
    ("sll.pcap", 15, 1, 2, 1),
    ("sll2.pcap", 15, 1, 2, 1),
    ("raw.pcap", 15, 1, 2, 1),
    ("ipv4.pcap", 13, 1, 1, 1),
    ("ipv6.pcap", 2, 0, 1, 0),
    ("null.pcap", 15, 1, 2, 1),
    ("eth.pcapng", 15, 1, 2, 1),
];

#[test]
fn every_supported_link_type_decodes_the_same_conversation() {
    let mut reference = None;
    for (file, packets, tcp, udp, icmp) in LINKTYPES {
        let (stats, rows) = common::features_of(&[common::pcap(&format!("linktypes/{file}"))], 0);
        assert_eq!(stats.packets, *packets, "{file}");
        assert_eq!(stats.decoded, *packets, "{file}: drops {:?}", stats.drops);
        let count = |p: &str| rows.iter().filter(|(r, _)| r.trigger == Trigger::End && r.proto.name() == p).count();
        assert_eq!((count("tcp"), count("udp"), count("icmp")), (*tcp, *udp, *icmp), "{file}");
        // The full files carry identical flows: same ids, same feature rows.
        if *packets == 15 {
            let mut rows: Vec<_> = rows.iter().map(|(r, f)| (r.flow_id, r.packets, f.clone())).collect();
            rows.sort_by_key(|r| r.0);
            match &reference {
                None => reference = Some(rows),
                Some(want) => assert_eq!(&rows, want, "{file} differs from eth.pcap"),
            }
        }
    }
}

/// Every capture in pcaps/linktypes against the facts tshark gave for it
/// (EXPECTED.json, written by `python3 pcaps/generate.py linktypes`): more
/// link types (PPP, PPP-in-HDLC, Cisco HDLC, PPI, radiotap 802.11) and the
/// capture formats libpcap could not read (pcapng interfaces of different
/// link types, several sections, big-endian sections, Simple and obsolete
/// Packet blocks, timestamp resolutions and offsets, gzip).
#[test]
fn every_capture_agrees_with_its_expected_facts() {
    let dir = common::pcap("linktypes");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("EXPECTED.json")).unwrap()).unwrap();
    let eth = common::features_of(&[dir.join("eth.pcap")], 0).1;
    let rows_of = |rows: &[common::Row]| {
        let mut v: Vec<_> = rows.iter().map(|(r, f)| (r.flow_id, r.packets, f.clone())).collect();
        v.sort_by_key(|r| r.0);
        v
    };
    let mut checked = 0;
    for (file, want) in expected.as_object().unwrap() {
        // Drops by reason of these two are checked above, with their reasons.
        if file == "malformed.pcap" || file == "unsupported.pcap" {
            continue;
        }
        let n = |k: &str| want[k].as_u64().unwrap();
        let (stats, rows) = common::features_of(&[dir.join(file)], 0);
        assert_eq!(stats.packets, n("packets"), "{file}: {:?}", stats.partial_reads);
        assert_eq!(stats.decoded, n("ip_packets"), "{file}: drops {:?}", stats.drops);
        assert_eq!(stats.drop_count(DropReason::NotIp), n("non_ip"), "{file}");
        let count =
            |p: &str| rows.iter().filter(|(r, _)| r.trigger == Trigger::End && r.proto.name() == p).count() as u64;
        assert_eq!(
            (count("tcp"), count("udp"), count("icmp")),
            (n("tcp_flows"), n("udp_flows"), n("icmp_flows")),
            "{file}"
        );
        let cut = file.starts_with("truncated");
        assert_eq!(stats.partial_reads.len(), usize::from(cut), "{file}: {:?}", stats.partial_reads);
        // Same packets at the same microseconds as eth.pcap: the same flows and rows.
        let same_times = !["tsoffset.pcapng", "blocks.pcapng", "ipv4.pcap", "ipv6.pcap"].contains(&file.as_str());
        if !cut && same_times && n("ip_packets") == 15 {
            assert_eq!(rows_of(&rows), rows_of(&eth), "{file} differs from eth.pcap");
        }
        checked += 1;
    }
    assert!(checked >= 22, "{checked}");
}

#[test]
fn unsupported_link_type_is_counted_not_fatal() {
    let (stats, rows) = common::features_of(&[common::pcap("linktypes/unsupported.pcap")], 0);
    assert_eq!(stats.packets, 3);
    assert_eq!(stats.drop_count(DropReason::UnsupportedLinkType), 3);
    assert!(rows.is_empty());
}

#[test]
fn malformed_packets_are_dropped_by_reason() {
    // See pcaps/linktypes/malformed.expected.txt.
    let (stats, rows) = common::features_of(&[common::pcap("linktypes/malformed.pcap")], 0);
    assert_eq!(stats.packets, 10);
    assert_eq!(stats.decoded, 4);
    assert_eq!(
        stats.drop_count(DropReason::Truncated),
        3,
        "runt frame, IPv4 cut in header, IPv6 shorter than its length"
    );
    assert_eq!(stats.drop_count(DropReason::BadIpHeader), 1, "IHL 3");
    assert_eq!(stats.drop_count(DropReason::TruncatedTransport), 1, "12-byte TCP header");
    assert_eq!(stats.drop_count(DropReason::NotIp), 1, "ARP");
    assert_eq!(stats.packets, stats.decoded + stats.dropped());
    assert_eq!(rows.len(), 2, "one UDP and one ICMP flow");
}

#[test]
fn several_files_are_read_in_order() {
    let files = [common::pcap("linktypes/eth.pcap"), common::pcap("linktypes/sll.pcap"), common::pcap("tiny_tcp.pcap")];
    let (stats, _) = common::features_of(&files, 0);
    assert_eq!(stats.packets, 15 + 15 + 10);
    assert_eq!(stats.decoded, stats.packets);
}

/// Real captures of each link type from the public corpus: the accounting
/// identity holds and most packets decode.
#[test]
fn public_captures_of_each_link_type_decode() {
    let Some(shared) = common::shared_pcaps("public_captures_of_each_link_type_decode") else {
        return;
    };
    let manifest = std::fs::read_to_string(shared.join("public/MANIFEST.tsv")).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, link) = (cols[0], cols[4]);
        // Ordinary traffic only: edge/ holds captures that are malformed on purpose.
        let ordinary = file.starts_with("protocols/") || file.starts_with("attacks/") || file.contains("sll2");
        let broken = ["fuzz", "oobr", "overflow", "asan", "invalid", "malformed"].iter().any(|w| file.contains(w));
        if !["ether", "linux-sll", "linux-sll2", "rawip", "rawip4", "rawip6", "null"].contains(&link)
            || !ordinary
            || broken
        {
            continue;
        }
        let entry = seen.entry(link.to_string()).or_insert((0u64, 0u64, 0usize));
        if entry.2 >= 5 {
            continue;
        }
        let path = shared.join("public").join(file);
        let Ok(mut src) = tidewatch::PcapFileSource::open(&[&path]) else {
            continue;
        };
        let rows = common::Rows::default();
        let mut engine = tidewatch::Engine::builder().feature_sink(rows).build().unwrap();
        let stats = engine.run(&mut src).unwrap();
        assert_eq!(stats.packets, stats.decoded + stats.dropped(), "{file}");
        entry.0 += stats.packets;
        entry.1 += stats.decoded;
        entry.2 += 1;
    }
    for (link, (packets, decoded, files)) in &seen {
        eprintln!("{link}: {files} files, {decoded}/{packets} packets decoded");
        assert!(*decoded * 10 >= *packets * 6, "{link}: only {decoded} of {packets} packets decoded");
    }
    for link in ["ether", "linux-sll", "linux-sll2", "rawip", "null"] {
        assert!(seen.contains_key(link), "no public capture of link type {link}");
    }
}
