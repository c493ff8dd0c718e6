//! Flow tables against tshark's conversation tables (`-z conv,tcp`,
//! `-z conv,udp`): same conversations, same frames in each direction, and
//! the same bytes where tshark prints them exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use tidewatch::features::FEATURE_NAMES;
use tidewatch::flow::IpProto;
use tidewatch::Trigger;

/// (proto, endpoint a, endpoint b) with a < b, as "ip:port" strings.
type Conv = (String, String, String);

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    /// Frames sent by endpoint a, and by endpoint b.
    frames_a: u64,
    frames_b: u64,
    /// Total frame bytes, when tshark printed them in bytes.
    bytes: Option<u64>,
}

fn endpoint(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn split_endpoint(s: &str) -> (String, String) {
    let at = s.rfind(':').unwrap();
    (s[..at].trim_matches(|c| c == '[' || c == ']').to_string(), s[at + 1..].to_string())
}

fn tshark_convs(file: &Path) -> BTreeMap<Conv, Counts> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-q", "-z", "conv,tcp", "-z", "conv,udp"])
        .output()
        .unwrap();
    assert!(out.status.success(), "tshark failed on {}", file.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut proto = "";
    let mut convs = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = "tcp";
        } else if line.starts_with("UDP Conversations") {
            proto = "udp";
        }
        let Some((left, rest)) = line.split_once("<->") else {
            continue;
        };
        let t: Vec<&str> = rest.split_whitespace().collect();
        // b  <-frames  <-bytes unit  ->frames  ->bytes unit  total-frames total-bytes unit ...
        let (a, b) = (split_endpoint(left.trim()), split_endpoint(t[0]));
        let frames_b: u64 = t[1].parse().unwrap();
        let frames_a: u64 = t[4].parse().unwrap();
        let bytes = (t[9] == "bytes").then(|| t[8].parse().unwrap());
        let (ea, eb) = (endpoint(&a.0, &a.1), endpoint(&b.0, &b.1));
        let (key, counts) = if ea <= eb {
            ((proto.to_string(), ea, eb), Counts { frames_a, frames_b, bytes })
        } else {
            ((proto.to_string(), eb, ea), Counts { frames_a: frames_b, frames_b: frames_a, bytes })
        };
        // tshark keeps one row per conversation; merge repeats (port reuse) to compare like with like.
        let e = convs.entry(key).or_insert(Counts { frames_a: 0, frames_b: 0, bytes: Some(0) });
        e.frames_a += counts.frames_a;
        e.frames_b += counts.frames_b;
        e.bytes = e.bytes.zip(counts.bytes).map(|(x, y)| x + y);
    }
    convs
}

fn tidewatch_convs(file: &Path) -> BTreeMap<Conv, Counts> {
    let (_, rows) = common::features_of(&[file.to_path_buf()], 0);
    let col = |n: &str| FEATURE_NAMES.iter().position(|x| *x == n).unwrap();
    let mut convs = BTreeMap::new();
    for (r, f) in rows.iter().filter(|(r, _)| r.trigger == Trigger::End) {
        if r.proto != IpProto::Tcp && r.proto != IpProto::Udp {
            continue;
        }
        let (src, dst) = (
            endpoint(&r.src_ip.to_string(), &r.src_port.to_string()),
            endpoint(&r.dst_ip.to_string(), &r.dst_port.to_string()),
        );
        let (fwd, bwd) = (f[col("fwd_packets")] as u64, f[col("bwd_packets")] as u64);
        let (key, counts) = if src <= dst {
            ((r.proto.to_string(), src, dst), Counts { frames_a: fwd, frames_b: bwd, bytes: Some(r.bytes) })
        } else {
            ((r.proto.to_string(), dst, src), Counts { frames_a: bwd, frames_b: fwd, bytes: Some(r.bytes) })
        };
        let e = convs.entry(key).or_insert(Counts { frames_a: 0, frames_b: 0, bytes: Some(0) });
        e.frames_a += counts.frames_a;
        e.frames_b += counts.frames_b;
        e.bytes = e.bytes.zip(counts.bytes).map(|(x, y)| x + y);
    }
    convs
}

fn assert_agrees(file: &Path) -> usize {
    let theirs = tshark_convs(file);
    let ours = tidewatch_convs(file);
    let ours_keys: Vec<_> = ours.keys().collect();
    let theirs_keys: Vec<_> = theirs.keys().collect();
    assert_eq!(ours_keys, theirs_keys, "conversations differ on {}", file.display());
    for (k, t) in &theirs {
        let o = ours[k];
        assert_eq!((o.frames_a, o.frames_b), (t.frames_a, t.frames_b), "frames differ for {k:?} in {}", file.display());
        if let Some(tb) = t.bytes {
            assert_eq!(o.bytes, Some(tb), "bytes differ for {k:?} in {}", file.display());
        }
    }
    theirs.len()
}

#[test]
fn flow_tables_agree_with_tshark_on_project_captures() {
    if !common::have("tshark") {
        eprintln!(
            "SKIPPED flow_tables_agree_with_tshark_on_project_captures: tshark not installed (make test installs it)"
        );
        return;
    }
    let mut files = vec![common::pcap("demo.pcap"), common::pcap("tiny_tcp.pcap")];
    for f in ["eth.pcap", "vlan.pcap", "qinq.pcap", "sll.pcap", "sll2.pcap", "raw.pcap", "null.pcap", "eth.pcapng"] {
        files.push(common::pcap(&format!("linktypes/{f}")));
    }
    let mut total = 0;
    for f in &files {
        total += assert_agrees(f);
    }
    assert!(total > 100, "only {total} conversations compared");
}
