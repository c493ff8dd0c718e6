//! The application parsers against tshark (and nDPI's expected JA4 values) on
//! the shared public captures.
//!
//! For every capture of `$TIDEWATCH_SHARED_PCAPS/public/protocols` (default
//! `../shared/pcaps` beside the repository) whose name speaks of TLS, QUIC,
//! SSH, HTTP or DNS (with `TIDEWATCH_APP_TSHARK_ALL=1`: every capture of
//! `protocols/`, `attacks/` and `edge/`), packets
//! are decoded with tidewatch's own decoder, grouped into flows and fed in
//! order to one `AppParser` per flow (a small in-order TCP follower: gaps are
//! reported, retransmissions skipped). The first value per flow of each field
//! is compared with the first value tshark reports in a frame of that flow:
//! SNI, JA3 string, JA3S string, HTTP host, DNS query name, HASSH, HASSH-server.
//! tshark 4.0 has no JA4, so JA4 is compared with the flows of nDPI's expected
//! output (`ndpi-expected/<capture>.out`): all of it is reported, and all but
//! the SNI and ALPN characters (where nDPI departs from the JA4 specification)
//! must agree.
//!
//! Fails on any disagreement where both sides have a value, or when a field
//! is never compared at all; prints the agreement table.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use tidewatch::app::{AppMeta, AppParser};
use tidewatch::decode::{decode, to_ip, PacketInfo, PROTO_TCP, PROTO_UDP};
use tidewatch::{PacketSource, PcapFileSource};

const FIELDS: [&str; 8] = ["sni", "ja3", "ja3s", "http_host", "dns_query", "hassh", "hassh_server", "quic_sni"];
/// tshark fields in the order of `FIELDS`; the SNI column serves "sni" (TCP) and "quic_sni" (QUIC frames).
const TSHARK_FIELDS: [&str; 7] = [
    "tls.handshake.extensions_server_name",
    "tls.handshake.ja3_full",
    "tls.handshake.ja3s_full",
    "http.host",
    "dns.qry.name",
    "ssh.kex.hassh",
    "ssh.kex.hasshserver",
];

fn pcaps_dir() -> PathBuf {
    match std::env::var_os("TIDEWATCH_SHARED_PCAPS") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"),
    }
}

/// Our values of the compared fields.
fn ours(m: &AppMeta) -> [Option<String>; 8] {
    let tls = m.tls.as_ref();
    let ssh = m.ssh.as_ref();
    [
        tls.and_then(|t| t.sni.clone()),
        tls.and_then(|t| t.ja3.clone()),
        tls.and_then(|t| t.ja3s.clone()),
        m.http.as_ref().and_then(|h| h.host.clone()),
        m.dns.as_ref().map(|d| d.query.clone()),
        ssh.and_then(|s| s.hassh.clone()),
        ssh.and_then(|s| s.hassh_server.clone()),
        m.quic.as_ref().and_then(|q| q.sni.clone()),
    ]
}

fn ja4_of(m: &AppMeta) -> Option<String> {
    m.tls.as_ref().and_then(|t| t.ja4.clone()).or_else(|| m.quic.as_ref().and_then(|q| q.ja4.clone()))
}

/// JA4 without the two parts nDPI computes differently from the JA4 specification: the
/// SNI character (nDPI says "d" when it knows a host name from elsewhere) and the ALPN
/// characters (nDPI takes the first two characters, the specification the first and last).
/// nDPI also hashes an empty list where the specification writes twelve zeros.
fn ja4_core(ja4: &str) -> String {
    let head: String = ja4.chars().take(10).enumerate().filter(|(i, _)| *i != 3 && *i < 8).map(|(_, c)| c).collect();
    format!("{head}{}", ja4.get(10..).unwrap_or("").replace("e3b0c44298fc", "000000000000"))
}

/// Where the transport payload is in the frame: the IP header is found by its addresses.
fn payload<'a>(data: &'a [u8], info: &PacketInfo) -> Option<&'a [u8]> {
    let (soff, aoff, alen) = if info.is_ipv6 { (8, 24, 16) } else { (12, 16, 4) };
    let (src, dst) = (&info.src[16 - alen..], &info.dst[16 - alen..]);
    let version = if info.is_ipv6 { 6 } else { 4 };
    let ip = (0..data.len().min(160)).find(|&o| {
        data.get(o).map(|b| b >> 4) == Some(version)
            && data.get(o + soff..o + soff + alen) == Some(src)
            && data.get(o + soff + alen..o + aoff + alen) == Some(dst)
    })?;
    let end = ip + info.ip_len as usize;
    let start = end.checked_sub(info.payload_len as usize)?;
    data.get(start..end)
}

type Key = (bool, [u8; 16], u16, [u8; 16], u16);

struct Flow {
    parser: AppParser,
    initiator: ([u8; 16], u16),
    next_seq: [Option<u32>; 2],
    ours: [Option<String>; 8],
    theirs: [Option<String>; 8],
    endpoints: (String, String),
}

fn endpoint(a: &[u8; 16], v6: bool, port: u16) -> String {
    match to_ip(a, v6) {
        std::net::IpAddr::V6(x) => format!("[{x}]:{port}"),
        x => format!("{x}:{port}"),
    }
}

/// tshark's fields per frame number.
fn tshark(path: &Path) -> Option<HashMap<u64, [Option<String>; 8]>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-n", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f"]);
    cmd.args(["-e", "frame.number", "-e", "quic.version"]);
    for f in TSHARK_FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames = HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let Some(n) = cols.first().and_then(|c| c.parse::<u64>().ok()) else { continue };
        let is_quic = cols.get(1).is_some_and(|c| !c.is_empty());
        let mut v: [Option<String>; 8] = Default::default();
        for (i, slot) in v.iter_mut().enumerate() {
            // The SNI column is TLS-over-TCP's or QUIC's, by the frame; tshark's JA3 of QUIC is not compared.
            let col = match i {
                0..=2 if is_quic => None,
                7 if is_quic => Some(0),
                7 => None,
                i => Some(i),
            };
            let c = col.and_then(|c| cols.get(c + 2)).copied().unwrap_or("");
            if !c.is_empty() {
                *slot = Some(if c == "<Root>" { String::new() } else { c.to_string() });
            }
        }
        if v.iter().any(Option::is_some) {
            frames.insert(n, v);
        }
    }
    Some(frames)
}

/// nDPI's expected JA4 per flow: (endpoint, endpoint) → JA4.
fn ndpi_ja4(path: &Path) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    let Some(name) = path.file_name() else { return out };
    let exp = path.with_file_name("ndpi-expected").join(format!("{}.out", name.to_string_lossy()));
    let Ok(text) = std::fs::read_to_string(exp) else { return out };
    for line in text.lines() {
        let Some(ja4) = line.split("[JA4: ").nth(1).and_then(|r| r.split(']').next()) else { continue };
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(arrow) = words.iter().position(|w| *w == "<->") else { continue };
        let (Some(a), Some(b)) = (words.get(arrow - 1), words.get(arrow + 1)) else { continue };
        out.insert((a.to_string(), b.to_string()), ja4.to_string());
        out.insert((b.to_string(), a.to_string()), ja4.to_string());
    }
    out
}

#[derive(Default)]
struct Tally {
    agree: u64,
    disagree: u64,
    tshark_only: u64,
    ours_only: u64,
}

#[test]
fn app_parsers_agree_with_tshark_and_ndpi() {
    let dir = pcaps_dir().join("public/protocols");
    if !dir.is_dir() {
        eprintln!(
            "\n\n*** SKIPPED app_tshark: no shared captures at {} (set TIDEWATCH_SHARED_PCAPS) ***\n",
            dir.display()
        );
        return;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        eprintln!("\n\n*** SKIPPED app_tshark: tshark is not installed ***\n");
        return;
    }
    let all = std::env::var_os("TIDEWATCH_APP_TSHARK_ALL").is_some();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    if all {
        // Every capture of the corpus: attacks and parser-stress captures too.
        for sub in ["attacks", "edge"] {
            if let Ok(rd) = std::fs::read_dir(pcaps_dir().join("public").join(sub)) {
                files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    files.retain(|p| {
        let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let capture = n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".cap");
        let topical = ["tls", "ssl", "quic", "ssh", "http", "dns", "doh", "443"].iter().any(|k| n.contains(k));
        capture && (all || topical)
    });
    files.sort();

    let mut tally: BTreeMap<&str, Tally> = FIELDS.iter().map(|f| (*f, Tally::default())).collect();
    let mut ja4 = Tally::default();
    let mut ja4_core_t = Tally::default();
    let mut disagreements = Vec::new();
    for path in &files {
        let Some(frames) = tshark(path) else { continue };
        let ndpi = ndpi_ja4(path);
        let fuzzed = path.file_name().is_some_and(|n| n.to_string_lossy().contains("fuzz"));
        let Ok(mut src) = PcapFileSource::open(&[path]) else { continue };
        let mut flows: HashMap<Key, Flow> = HashMap::new();
        let mut frame = 0u64;
        while let Ok(Some(pkt)) = src.next_packet() {
            frame += 1;
            let Ok(info) = decode(&pkt) else { continue };
            if info.proto != PROTO_TCP && info.proto != PROTO_UDP {
                continue;
            }
            let (a, b) = ((info.src, info.src_port), (info.dst, info.dst_port));
            let key: Key = if a <= b {
                (info.proto == PROTO_TCP, a.0, a.1, b.0, b.1)
            } else {
                (info.proto == PROTO_TCP, b.0, b.1, a.0, a.1)
            };
            let flow = flows.entry(key).or_insert_with(|| {
                // The SYN sender, else the first sender, else the higher port, is the initiator.
                let syn_ack = info.tcp.is_some_and(|t| t.flags & 0x12 == 0x12);
                let (ini, resp) = if syn_ack { (b, a) } else { (a, b) };
                Flow {
                    parser: AppParser::new(info.proto, ini.1, resp.1),
                    initiator: ini,
                    next_seq: [None, None],
                    ours: Default::default(),
                    theirs: Default::default(),
                    endpoints: (endpoint(&ini.0, info.is_ipv6, ini.1), endpoint(&resp.0, info.is_ipv6, resp.1)),
                }
            });
            if let Some(theirs) = frames.get(&frame) {
                for (slot, v) in flow.theirs.iter_mut().zip(theirs) {
                    if slot.is_none() {
                        slot.clone_from(v);
                    }
                }
            }
            let from_ini = (info.src, info.src_port) == flow.initiator;
            let d = usize::from(!from_ini);
            let data = payload(pkt.data, &info);
            if let Some(t) = info.tcp {
                let len = info.payload_len;
                if t.flags & 0x02 != 0 {
                    flow.next_seq[d] = Some(t.seq.wrapping_add(1));
                    continue;
                }
                if len == 0 {
                    continue;
                }
                let next = *flow.next_seq[d].get_or_insert(t.seq);
                let ahead = t.seq.wrapping_sub(next) as i32;
                let Some(data) = data.filter(|p| p.len() == len as usize) else {
                    flow.parser.on_gap(from_ini, u64::from(len));
                    flow.next_seq[d] = Some(t.seq.wrapping_add(len));
                    continue;
                };
                if ahead > 0 {
                    flow.parser.on_gap(from_ini, ahead as u64);
                    flow.parser.on_stream(from_ini, data);
                } else {
                    // A retransmission: only bytes past what was fed.
                    let skip = (-(ahead as i64)) as usize;
                    if skip >= data.len() {
                        continue;
                    }
                    flow.parser.on_stream(from_ini, data.get(skip..).unwrap_or(&[]));
                }
                flow.next_seq[d] = Some(t.seq.wrapping_add(len));
            } else if let Some(data) = data {
                flow.parser.on_datagram(from_ini, data);
            }
            for (slot, v) in flow.ours.iter_mut().zip(ours(flow.parser.meta())) {
                if slot.is_none() {
                    *slot = v;
                }
            }
        }
        for flow in flows.values() {
            for (i, name) in FIELDS.iter().enumerate() {
                let Some(t) = tally.get_mut(name) else { continue };
                match (&flow.ours[i], &flow.theirs[i]) {
                    (Some(o), Some(w)) if o == w => t.agree += 1,
                    (Some(o), Some(w)) => {
                        let line =
                            format!("{}: {} {:?}: ours {o:?} tshark {w:?}", path.display(), name, flow.endpoints);
                        if fuzzed {
                            // Fuzzer-made captures: tshark names what it could of broken
                            // messages that the parsers refuse, so the first values differ.
                            eprintln!("DIFFERS in a fuzzed capture (not counted) {line}");
                        } else {
                            t.disagree += 1;
                            disagreements.push(line);
                        }
                    }
                    (None, Some(w)) => {
                        t.tshark_only += 1;
                        if std::env::var_os("APP_TSHARK_VERBOSE").is_some() {
                            eprintln!("PEER_ONLY {} {name} {:?} {w:?}", path.display(), flow.endpoints);
                        }
                    }
                    (Some(o), None) => {
                        t.ours_only += 1;
                        if std::env::var_os("APP_TSHARK_VERBOSE").is_some() {
                            eprintln!("OURS_ONLY {} {name} {:?} {o:?}", path.display(), flow.endpoints);
                        }
                    }
                    (None, None) => {}
                }
            }
            let expected = ndpi.get(&flow.endpoints);
            match (ja4_of(flow.parser.meta()), expected) {
                (Some(o), Some(w)) => {
                    if &o == w {
                        ja4.agree += 1;
                    } else {
                        ja4.disagree += 1;
                        eprintln!("JA4 differs from nDPI {}: {:?}: ours {o} nDPI {w}", path.display(), flow.endpoints);
                    }
                    if ja4_core(&o) == ja4_core(w) {
                        ja4_core_t.agree += 1;
                    } else {
                        ja4_core_t.disagree += 1;
                        disagreements.push(format!("{}: ja4 {:?}: ours {o} nDPI {w}", path.display(), flow.endpoints));
                    }
                }
                (None, Some(w)) => {
                    if std::env::var_os("APP_TSHARK_VERBOSE").is_some() {
                        eprintln!("PEER_ONLY {} ja4 {:?} {w:?}", path.display(), flow.endpoints);
                    }
                    ja4.tshark_only += 1;
                    ja4_core_t.tshark_only += 1;
                }
                (Some(_), None) => {
                    ja4.ours_only += 1;
                    ja4_core_t.ours_only += 1;
                }
                (None, None) => {}
            }
        }
    }
    let root = if all { pcaps_dir().join("public") } else { dir.clone() };
    eprintln!("\napp_tshark: {} captures from {}", files.len(), root.display());
    eprintln!("{:<14}{:>8}{:>10}{:>12}{:>10}", "field", "agree", "disagree", "peer_only", "ours_only");
    let extra = [("ja4 (nDPI)", &ja4), ("ja4_core", &ja4_core_t)];
    for (name, t) in tally.iter().map(|(n, t)| (*n, t)).chain(extra) {
        eprintln!("{name:<14}{:>8}{:>10}{:>12}{:>10}", t.agree, t.disagree, t.tshark_only, t.ours_only);
    }
    for d in &disagreements {
        eprintln!("DISAGREE {d}");
    }
    assert!(files.len() > 10, "too few captures found in {}", dir.display());
    for (name, t) in &tally {
        assert!(t.agree > 0, "{name}: never compared");
        assert_eq!(t.disagree, 0, "{name}: disagreements (see above)");
    }
    assert!(ja4.agree > 0, "ja4: never compared");
    assert_eq!(ja4_core_t.disagree, 0, "ja4 (all but the SNI and ALPN characters): disagreements with nDPI");
}
