//! Tunnels and fragments on real captures of the public corpus: the inner
//! packet is the flow, the layers it came through are on the record, and
//! fragmented datagrams are whole again. Expected values were read with
//! tshark (`tshark -V`) on the same files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use tidewatch::flow::IpProto;
use tidewatch::Trigger;

/// Ended flows of a capture as (proto, tunnel layers) → count.
fn flows_by_layers(file: &std::path::Path) -> BTreeMap<(String, String), usize> {
    let (_, rows) = common::features_of(&[file.to_path_buf()], 0);
    let mut out = BTreeMap::new();
    for (r, _) in rows.iter().filter(|(r, _)| r.trigger == Trigger::End) {
        let layers = r
            .detail
            .tunnels
            .map_or(String::new(), |t| t.layers().iter().map(|k| k.name()).collect::<Vec<_>>().join(","));
        *out.entry((r.proto.to_string(), layers)).or_default() += 1;
    }
    out
}

/// (inner protocol, tunnel layers, flows)
type Expected = &'static [(&'static str, &'static str, usize)];

#[test]
fn inner_flows_of_tunnelled_captures() {
    let Some(shared) = common::shared_pcaps("inner_flows_of_tunnelled_captures") else { return };
    let cases: &[(&str, Expected)] = &[
        ("edge/ndpi__vxlan.pcap", &[("tcp", "vxlan", 2), ("udp", "vxlan", 2)]),
        ("edge/ndpi__gre.pcapng", &[("udp", "gre", 1)]), // PPTP: enhanced GRE carrying PPP
        ("edge/ndpi__4in4tunnel.pcap", &[("udp", "ip-in-ip", 5)]),
        ("edge/ndpi__6in4tunnel.pcap", &[("icmpv6", "ip-in-ip", 3), ("tcp", "ip-in-ip", 5), ("udp", "ip-in-ip", 2)]),
        ("edge/ndpi__6in6tunnel.pcap", &[("udp", "ip-in-ip", 1)]),
        ("edge/ndpi__ipv6_in_gtp.pcap", &[("esp", "gtp-u", 1), ("udp", "gtp-u", 1)]),
        ("edge/tcpdump__geneve-gcp.pcap", &[("tcp", "geneve", 1)]),
        ("edge/tcpdump__erspan-type-i-1.pcap", &[("icmp", "gre,erspan", 1)]),
        ("edge/tcpdump__erspan-type-ii-1.pcap", &[("pim", "gre,erspan", 1)]),
        ("edge/tcpdump__erspan-type-iii-ft-0.pcap", &[("icmp", "gre,erspan", 1)]),
    ];
    for (file, want) in cases {
        let path = shared.join("public").join(file);
        if !path.is_file() {
            panic!("{} missing from the corpus", path.display());
        }
        let want: BTreeMap<(String, String), usize> =
            want.iter().map(|(p, l, n)| ((p.to_string(), l.to_string()), *n)).collect();
        assert_eq!(flows_by_layers(&path), want, "{file}");
    }
}

#[test]
fn vxlan_keeps_its_vni_and_outer_endpoints() {
    let Some(shared) = common::shared_pcaps("vxlan_keeps_its_vni_and_outer_endpoints") else { return };
    let (_, rows) = common::features_of(&[shared.join("public/edge/ndpi__vxlan.pcap")], 0);
    let (r, _) = rows.iter().find(|(r, _)| r.trigger == Trigger::End && r.proto == IpProto::Tcp).unwrap();
    let t = r.detail.tunnels.unwrap();
    assert_eq!(t.id, Some(1111));
    let outer = t.outer.unwrap();
    let ip = |a: &[u8; 16]| tidewatch::decode::to_ip(a, outer.is_ipv6).to_string();
    let mut ends = [ip(&outer.src), ip(&outer.dst)];
    ends.sort();
    assert_eq!(ends, ["192.168.22.4", "192.168.22.5"]);
}

#[test]
fn fragmented_datagrams_are_reassembled() {
    let Some(shared) = common::shared_pcaps("fragmented_datagrams_are_reassembled") else { return };
    // 6 fragments of 2 ICMP echo datagrams (request and reply, 3 fragments each).
    let (s, rows) = common::features_of(&[shared.join("public/edge/csanders__ip_frag_source.pcapng")], 0);
    assert_eq!((s.packets, s.decoded, s.fragments), (6, 0, 6));
    assert_eq!((s.defrag.datagrams, s.defrag.pending, s.defrag.timed_out), (2, 0, 0));
    let ends: Vec<_> = rows.iter().filter(|(r, _)| r.trigger == Trigger::End).collect();
    assert_eq!(ends.len(), 1);
    assert_eq!((ends[0].0.proto, ends[0].0.packets), (IpProto::Icmp, 2));
    // DNS answers too big for one packet, over IPv4 and IPv6: 14 fragments, 7 datagrams,
    // and every reassembled answer parses as DNS.
    let (s, rows) = common::features_of(&[shared.join("public/edge/ndpi__dns_fragmented.pcap")], 0);
    assert_eq!((s.fragments, s.defrag.datagrams, s.defrag.invalid), (14, 7, 0));
    let answered = rows
        .iter()
        .filter(|(r, _)| r.trigger == Trigger::End)
        .filter_map(|(r, _)| r.detail.app.as_ref()?.dns.as_ref()?.answers)
        .count();
    assert!(answered >= 7, "{answered} DNS flows with an answer count");
}
