//! Peer agreement (issue 4) on a fixed subset of the public corpus, against
//! tshark run live on the same captures (scripts/compare-peers.py does the
//! whole corpus):
//! - reassembled streams (`tidewatchd flows --streams`) byte-equal to
//!   `tshark -z follow,tcp,raw,N` for 31 named connections (retransmissions,
//!   duplicate ACKs, zero window, split requests, fragmented SMB, large
//!   downloads), and equal once tshark's "[N bytes missing in capture file]"
//!   marker is removed for two connections with a hole in the capture;
//! - TLS/QUIC SNI, HTTP host and DNS query name equal to tshark's first value
//!   per 5-tuple on a handful of captures;
//! - per-direction frames and bytes of the flows, summed per 5-tuple, equal
//!   to tshark's `-z conv,tcp -z conv,udp` (several rows of one 5-tuple summed).
//!
//! Skips loudly when the corpus (TIDEWATCH_SHARED_PCAPS, its `public/`
//! subdirectory) or tshark is absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TIDEWATCH_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"));
    if !dir.join("public/MANIFEST.tsv").is_file() {
        eprintln!(
            "SKIPPED peers {what}: public capture corpus not found at {} (set TIDEWATCH_SHARED_PCAPS)",
            dir.display()
        );
        return None;
    }
    let tshark = Command::new("tshark").arg("--version").output();
    if !tshark.map(|o| o.status.success()).unwrap_or(false) {
        eprintln!("SKIPPED peers {what}: tshark not found on PATH");
        return None;
    }
    Some(dir.join("public"))
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tidewatch-peers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The flow records of `tidewatchd flows` on one capture (with `--streams DIR` when given).
fn tw_flows(pcap: &Path, streams: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidewatchd"));
    cmd.arg("flows").arg(pcap).args(["--output", "json:-", "--workers", "0"]);
    if let Some(d) = streams {
        cmd.arg("--streams").arg(d);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "tidewatchd flows {}: {}", pcap.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn tshark(pcap: &Path, args: &[String]) -> String {
    let o = Command::new("tshark").arg("-r").arg(pcap).args(args).output().unwrap();
    assert!(o.status.success(), "tshark on {}: {}", pcap.display(), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn endpoint(f: &Value, side: &str) -> String {
    format!("{}:{}", f[format!("{side}_ip")].as_str().unwrap(), f[format!("{side}_port")])
}

/// Direction-free key of a 5-tuple: (proto, lower endpoint, higher endpoint).
type Key = (String, String, String);

fn key(proto: &str, a: &str, b: &str) -> Key {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (proto.to_string(), lo.to_string(), hi.to_string())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// `tshark -z follow,tcp,raw,N` for several N: stream -> (node 0, node 1, bytes from node 0, bytes from node 1).
fn follow(pcap: &Path, streams: &[u32]) -> BTreeMap<u32, (String, String, Vec<u8>, Vec<u8>)> {
    let mut args = vec!["-q".to_string()];
    for n in streams {
        args.push("-z".into());
        args.push(format!("follow,tcp,raw,{n}"));
    }
    let out = tshark(pcap, &args);
    let mut res = BTreeMap::new();
    for block in out.split("Follow: tcp,raw\n").skip(1) {
        let mut lines = block.lines();
        let n: u32 = lines.next().unwrap().strip_prefix("Filter: tcp.stream eq ").unwrap().parse().unwrap();
        let node0 = lines.next().unwrap().strip_prefix("Node 0: ").unwrap().to_string();
        let node1 = lines.next().unwrap().strip_prefix("Node 1: ").unwrap().to_string();
        let (mut d0, mut d1) = (Vec::new(), Vec::new());
        for line in lines.take_while(|l| !l.starts_with("=====")) {
            match line.strip_prefix('\t') {
                Some(h) => d1.extend(unhex(h.trim())),
                None => d0.extend(unhex(line.trim())),
            }
        }
        res.insert(n, (node0, node1, d0, d1));
    }
    res
}

/// Removes tshark's "[N bytes missing in capture file]" markers (NUL-terminated) from a followed stream.
fn strip_gap_markers(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'[' {
            let rest = &data[i + 1..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let tail = b" bytes missing in capture file]";
            if digits > 0 && rest[digits..].starts_with(tail) {
                i += 1 + digits + tail.len();
                if data.get(i) == Some(&0) {
                    i += 1;
                }
                continue;
            }
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// One connection: tshark's tcp.stream index, initiator, responder, initiator->responder and
/// responder->initiator byte counts, whether the capture has a hole in it (tshark then writes a marker).
type Conn = (u32, &'static str, &'static str, usize, usize, bool);

/// Connections whose reassembled streams equal tshark's, by capture.
const STREAMS: &[(&str, &[Conn])] = &[
    ("protocols/csanders__http_google.pcapng", &[(0, "172.16.16.128:1606", "74.125.95.104:80", 627, 4857, false)]),
    ("edge/csanders__tcp_retransmissions.pcapng", &[(0, "10.3.30.1:1048", "10.3.71.7:1043", 648, 0, false)]),
    ("edge/csanders__tcp_dupack.pcapng", &[(0, "172.31.136.85:38760", "195.81.202.68:80", 0, 4104, false)]),
    ("edge/csanders__tcp_zerowindowrecovery.pcapng", &[(0, "192.168.0.20:2235", "192.168.0.30:1720", 0, 2920, false)]),
    (
        "edge/ndpi__http_ua_splitted_in_two_pkts.pcapng",
        &[(0, "254.125.135.128:21359", "66.152.103.45:80", 62424, 6280, false)],
    ),
    ("edge/ndpi__http-lines-split.pcap", &[(0, "192.168.0.1:39236", "192.168.0.20:31337", 67, 1632, false)]),
    ("edge/ndpi__smb_frags.pcap", &[(0, "10.202.211.125:54120", "10.202.7.8:445", 1651, 536, false)]),
    ("edge/ndpi__tls_missing_ch_frag.pcap", &[(0, "192.168.0.1:33063", "10.10.10.1:443", 3029, 6121, true)]),
    (
        "protocols/ndpi__ssh.pcap",
        &[
            (0, "172.16.238.1:58395", "172.16.238.168:22", 5109, 13389, false),
            (1, "127.0.0.1:58496", "127.0.0.1:8000", 4270, 2703, false),
        ],
    ),
    ("protocols/ndpi__smtp.pcap", &[(0, "194.7.248.153:2127", "172.16.114.207:25", 16527, 1428, false)]),
    (
        "protocols/ndpi__ftp.pcap",
        &[
            (0, "192.168.1.212:50694", "90.130.70.73:21", 174, 889, false),
            (1, "192.168.1.212:50695", "90.130.70.73:25685", 0, 1205, false),
        ],
    ),
    (
        "attacks/csanders__ek_to_cryptowall4.pcapng",
        &[
            (0, "192.168.122.145:49314", "113.20.11.49:80", 434, 16832, false),
            (3, "192.168.122.145:49339", "45.32.238.202:80", 276, 358666, false),
            (4, "192.168.122.145:49356", "213.186.33.18:80", 494, 444, false),
            (5, "192.168.122.145:49357", "184.170.149.44:80", 498, 274, false),
            (6, "192.168.122.145:49358", "213.186.33.18:80", 553, 361, false),
            (7, "192.168.122.145:49359", "184.170.149.44:80", 504, 123916, false),
            (8, "192.168.122.145:49360", "213.186.33.18:80", 557, 361, false),
            (9, "192.168.122.145:49361", "184.170.149.44:80", 508, 266, false),
        ],
    ),
    (
        "protocols/csanders__http_espn.pcapng",
        &[
            (0, "172.16.0.122:52166", "199.181.132.250:80", 379, 430, false),
            (1, "172.16.0.122:44955", "68.71.208.11:80", 2983, 37286, false),
            (2, "172.16.0.122:41834", "205.234.218.129:80", 3573, 101525, false),
            (3, "172.16.0.122:41835", "205.234.218.129:80", 3574, 168182, true),
            (5, "172.16.0.122:41162", "205.234.218.82:80", 683, 16669, false),
            (7, "172.16.0.122:41839", "205.234.218.129:80", 1344, 35392, false),
            (9, "172.16.0.122:33720", "63.85.36.72:80", 1823, 71409, false),
            (12, "172.16.0.122:41844", "205.234.218.129:80", 2052, 13925, false),
            (16, "172.16.0.122:41848", "205.234.218.129:80", 1296, 30231, false),
            (17, "172.16.0.122:33728", "63.85.36.72:80", 617, 17582, false),
            (22, "172.16.0.122:35135", "66.235.139.152:80", 3792, 2257, false),
            (24, "172.16.0.122:38433", "63.85.36.9:80", 1044, 3548, false),
        ],
    ),
];

#[test]
fn streams_equal_tshark_follow() {
    let Some(root) = corpus("streams") else { return };
    let dir = scratch("streams");
    let (mut equal, mut with_gap) = (0, 0);
    for (i, (file, conns)) in STREAMS.iter().enumerate() {
        let pcap = root.join(file);
        let out = dir.join(i.to_string());
        std::fs::create_dir_all(&out).unwrap();
        let flows = tw_flows(&pcap, Some(&out));
        let indices: Vec<u32> = conns.iter().map(|c| c.0).collect();
        let followed = follow(&pcap, &indices);
        for &(n, client, server, c2s_len, s2c_len, gap) in conns.iter() {
            let what = format!("{file} tcp.stream {n} {client} -> {server}");
            let mine: Vec<&Value> = flows
                .iter()
                .filter(|f| f["proto"] == "tcp" && endpoint(f, "src") == client && endpoint(f, "dst") == server)
                .collect();
            assert_eq!(mine.len(), 1, "{what}: Tidewatch flows {mine:?}");
            let id = mine[0]["flow_id"].as_u64().unwrap();
            let read = |ext: &str| std::fs::read(out.join(format!("{id}.{ext}"))).unwrap_or_default();
            let (tw_c2s, tw_s2c) = (read("c2s"), read("s2c"));
            let (node0, node1, d0, d1) = followed.get(&n).unwrap_or_else(|| panic!("{what}: no tshark follow"));
            let (ts_c2s, ts_s2c) = match (node0.as_str(), node1.as_str()) {
                (a, b) if a == client && b == server => (d0.clone(), d1.clone()),
                (a, b) if a == server && b == client => (d1.clone(), d0.clone()),
                _ => panic!("{what}: tshark follows {node0} / {node1}"),
            };
            let gaps = mine[0]["fwd_gaps"].as_u64().unwrap() + mine[0]["bwd_gaps"].as_u64().unwrap();
            let (ts_c2s, ts_s2c) = if gap {
                assert_eq!(gaps, 1, "{what}: one gap expected");
                let stripped = (strip_gap_markers(&ts_c2s), strip_gap_markers(&ts_s2c));
                assert!(stripped.0.len() + stripped.1.len() < ts_c2s.len() + ts_s2c.len(), "{what}: no marker");
                with_gap += 1;
                stripped
            } else {
                assert_eq!(gaps, 0, "{what}: no gap expected");
                (ts_c2s, ts_s2c)
            };
            assert_eq!((tw_c2s.len(), tw_s2c.len()), (c2s_len, s2c_len), "{what}: Tidewatch stream lengths");
            assert_eq!((ts_c2s.len(), ts_s2c.len()), (c2s_len, s2c_len), "{what}: tshark stream lengths");
            assert!(tw_c2s == ts_c2s, "{what}: initiator->responder bytes differ from tshark's");
            assert!(tw_s2c == ts_s2c, "{what}: responder->initiator bytes differ from tshark's");
            assert_eq!(
                (mine[0]["fwd_payload_bytes"].as_u64(), mine[0]["bwd_payload_bytes"].as_u64()),
                (Some(c2s_len as u64), Some(s2c_len as u64)),
                "{what}: payload byte counters"
            );
            equal += 1;
        }
    }
    assert_eq!((equal, with_gap), (33, 2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Captures and the number of 5-tuples per tshark field (SNI, http.host, dns.qry.name) that agree.
const METADATA: &[(&str, [usize; 3])] = &[
    ("protocols/csanders__http_espn.pcapng", [0, 25, 14]),
    ("protocols/csanders__dns.pcap", [0, 0, 7]),
    ("protocols/ndpi__443-firefox.pcap", [1, 0, 0]),
    ("protocols/ndpi__tls_ech.pcapng", [1, 0, 0]),
    ("protocols/ndpi__dns_doh.pcap", [1, 0, 0]),
    ("protocols/ndpi__quic-29.pcap", [1, 0, 0]),
    ("attacks/csanders__ek_to_cryptowall4.pcapng", [0, 9, 0]),
];

#[test]
fn metadata_equals_tshark_fields() {
    let Some(root) = corpus("metadata") else { return };
    let fields = ["tls.handshake.extensions_server_name", "http.host", "dns.qry.name"];
    for (file, expected) in METADATA {
        let pcap = root.join(file);
        let mut args: Vec<String> =
            ["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f", "-Y"].iter().map(|s| s.to_string()).collect();
        args.push(fields.join(" or "));
        for f in
            ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]
                .iter()
                .chain(fields.iter())
        {
            args.push("-e".into());
            args.push(f.to_string());
        }
        // tshark's first value of each field per 5-tuple
        let mut first: BTreeMap<(Key, usize), String> = BTreeMap::new();
        for line in tshark(&pcap, &args).lines() {
            let c: Vec<&str> = line.split('\t').collect();
            let (src, dst) = (if c[0].is_empty() { c[1] } else { c[0] }, if c[2].is_empty() { c[3] } else { c[2] });
            let (proto, sp, dp) = if c[4].is_empty() { ("udp", c[6], c[7]) } else { ("tcp", c[4], c[5]) };
            let k = key(proto, &format!("{src}:{sp}"), &format!("{dst}:{dp}"));
            for (i, v) in c[8..11].iter().enumerate() {
                if !v.is_empty() {
                    first.entry((k.clone(), i)).or_insert_with(|| v.to_string());
                }
            }
        }
        let flows = tw_flows(&pcap, None);
        let mut agree = [0usize; 3];
        for ((k, i), v) in &first {
            let mine: Vec<&Value> = flows
                .iter()
                .filter(|f| key(f["proto"].as_str().unwrap(), &endpoint(f, "src"), &endpoint(f, "dst")) == *k)
                .collect();
            let value = |f: &Value| -> Option<String> {
                let app = &f["app"];
                let v = match i {
                    0 => app["tls"]["sni"].as_str().or(app["quic"]["sni"].as_str()),
                    1 => app["http"]["host"].as_str(),
                    _ => app["dns"]["query"].as_str(),
                };
                v.map(str::to_string)
            };
            let got = mine.iter().find_map(|f| value(f));
            assert_eq!(got.as_deref(), Some(v.as_str()), "{file} {k:?}: {} differs from tshark's", fields[*i]);
            agree[*i] += 1;
        }
        assert_eq!(agree, *expected, "{file}: 5-tuples per field (SNI, host, query)");
    }
}

/// Captures and their number of TCP/UDP conversations (5-tuples).
const CONVERSATIONS: &[(&str, usize)] = &[
    ("protocols/csanders__http_espn.pcapng", 39),
    ("protocols/csanders__dns.pcap", 7),
    ("protocols/ndpi__FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", 5),
    ("protocols/ndpi__quic.pcap", 10),
    ("protocols/ndpi__ssh.pcap", 2),
    ("attacks/csanders__ek_to_cryptowall4.pcapng", 10),
];

/// tshark's printed size ("5564 bytes", "143 kB") as the range of byte counts it stands for.
fn size_range(num: &str, unit: &str) -> (u64, u64) {
    let n: u64 = num.replace(',', "").parse().unwrap();
    let u = match unit {
        "bytes" => 1,
        "kB" => 1_000,
        "MB" => 1_000_000,
        _ => panic!("unit {unit}"),
    };
    (n * u, n * u + u - 1)
}

#[test]
fn flow_table_equals_tshark_conv() {
    let Some(root) = corpus("flow table") else { return };
    let mut multi_row = 0;
    for (file, expected) in CONVERSATIONS {
        let pcap = root.join(file);
        let args: Vec<String> = ["-q", "-z", "conv,tcp", "-z", "conv,udp"].iter().map(|s| s.to_string()).collect();
        // 5-tuple -> endpoint -> (frames sent, bytes sent low, high); rows of one 5-tuple summed
        type Sent = BTreeMap<String, (u64, u64, u64)>;
        let mut convs: BTreeMap<Key, (Sent, usize)> = BTreeMap::new();
        let mut proto = "";
        for line in tshark(&pcap, &args).lines() {
            if line.starts_with("TCP Conversations") {
                proto = "tcp";
            } else if line.starts_with("UDP Conversations") {
                proto = "udp";
            }
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 9 || t[1] != "<->" {
                continue;
            }
            let e = convs.entry(key(proto, t[0], t[2])).or_default();
            e.1 += 1;
            for (who, frames, num, unit) in [(t[2], t[3], t[4], t[5]), (t[0], t[6], t[7], t[8])] {
                let (lo, hi) = size_range(num, unit);
                let s = e.0.entry(who.to_string()).or_default();
                s.0 += frames.parse::<u64>().unwrap();
                s.1 += lo;
                s.2 += hi;
            }
        }
        let mut mine: BTreeMap<Key, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
        for f in tw_flows(&pcap, None) {
            let proto = f["proto"].as_str().unwrap();
            if proto != "tcp" && proto != "udp" {
                continue;
            }
            let (s, d) = (endpoint(&f, "src"), endpoint(&f, "dst"));
            let e = mine.entry(key(proto, &s, &d)).or_default();
            for (who, dir) in [(s, "fwd"), (d, "bwd")] {
                let x = e.entry(who).or_default();
                x.0 += f[format!("{dir}_packets")].as_u64().unwrap();
                x.1 += f[format!("{dir}_bytes")].as_u64().unwrap();
            }
        }
        assert_eq!(convs.len(), *expected, "{file}: tshark conversations");
        assert_eq!(mine.keys().collect::<Vec<_>>(), convs.keys().collect::<Vec<_>>(), "{file}: 5-tuples");
        for (k, (sent, rows)) in &convs {
            multi_row += usize::from(*rows > 1);
            for (who, &(frames, lo, hi)) in sent {
                let (p, b) = mine[k][who];
                assert_eq!(p, frames, "{file} {k:?}: frames sent by {who}");
                assert!((lo..=hi).contains(&b), "{file} {k:?}: {who} sent {b} bytes, tshark {lo}..={hi}");
            }
        }
    }
    assert_eq!(multi_row, 1, "the FAX call's RTP 5-tuple is listed in several rows by tshark");
}
