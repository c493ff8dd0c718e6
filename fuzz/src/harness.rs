//! What each fuzz target does with its input, and the invariants it checks.
//!
//! Shared by the libFuzzer targets (`fuzz/fuzz_targets/`) and by the
//! regression test that replays saved inputs (`engine/tests/regressions.rs`
//! includes this file), so a crash found by fuzzing stays a test.
//! Everything here panics on a broken promise; that is the point.

use std::path::Path;

use tidewatch::decode::{decode, decode_frame, Decoded, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use tidewatch::features::HostContextConfig;
use tidewatch::features::{FEATURE_NAMES, SCHEMA_NAME, SCHEMA_VERSION};
use tidewatch::flow::FlowConfig;
use tidewatch::{Classifier, Engine, FnSink, LinkType, ModelInfo, PcapFileSource, RawPacket, Stats};

/// Link types the first byte of a `decode` input picks from: every type the
/// decoder reads, and one it does not (must be counted, not crash).
pub const LINK_TYPES: [LinkType; 11] = [
    LinkType::ETHERNET,
    LinkType::NULL,
    LinkType::LOOP,
    LinkType::RAW,
    LinkType::RAW_12,
    LinkType::RAW_14,
    LinkType::IPV4,
    LinkType::IPV6,
    LinkType::LINUX_SLL,
    LinkType::LINUX_SLL2,
    LinkType(147),
];

/// Panics unless `ok`, with the check's name, except for checks named in
/// the `TIDEWATCH_FUZZ_SKIP_CHECKS` environment variable (space-separated):
/// open bugs already reported (`fuzz/KNOWN_OPEN_CHECKS`), so that a fuzz run
/// looks for new ones. The regression test does not set it.
pub fn check(name: &str, ok: bool, message: impl FnOnce() -> String) {
    static SKIP: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    if ok {
        return;
    }
    let skip = SKIP.get_or_init(|| {
        std::env::var("TIDEWATCH_FUZZ_SKIP_CHECKS").unwrap_or_default().split_whitespace().map(str::to_string).collect()
    });
    if !skip.iter().any(|s| s == name) {
        panic!("check {name} failed: {}", message());
    }
}

/// A classifier that checks every row is finite (FEATURES.md promises it)
/// and answers a constant.
pub struct CheckingClassifier(ModelInfo);

impl CheckingClassifier {
    pub fn new() -> Self {
        Self(ModelInfo {
            name: "fuzz".into(),
            version: "1".into(),
            schema: SCHEMA_NAME.into(),
            schema_version: SCHEMA_VERSION,
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            labels: vec!["a".into(), "b".into()],
            thresholds: vec![0.0, 0.0],
            benign_medians: Vec::new(),
        })
    }
}

impl Default for CheckingClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Classifier for CheckingClassifier {
    fn info(&self) -> &ModelInfo {
        &self.0
    }
    fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> tidewatch::Result<()> {
        let width = FEATURE_NAMES.len();
        assert_eq!(rows.len(), n * width, "row buffer of {} values for {n} rows", rows.len());
        for (i, v) in rows.iter().enumerate() {
            assert!(v.is_finite(), "feature {} ({}) is {v}", i % width, FEATURE_NAMES[i % width]);
        }
        for i in 0..n {
            out[i * 2] = 1.0;
            out[i * 2 + 1] = 0.0;
        }
        Ok(())
    }
}

/// Small tables, so that eviction and the host-context caps are reached.
pub const MAX_FLOWS: usize = 8;

/// An engine on the calling thread with tiny tables and timeouts.
pub fn small_engine() -> Engine {
    let mut flows = FlowConfig::default();
    flows.tcp_idle_timeout = 2_000_000;
    flows.tcp_closed_timeout = 500_000;
    flows.udp_idle_timeout = 1_000_000;
    flows.icmp_idle_timeout = 1_000_000;
    flows.other_idle_timeout = 1_000_000;
    flows.active_timeout = 5_000_000;
    flows.max_flows = MAX_FLOWS;
    let mut hosts = HostContextConfig::default();
    hosts.max_sources = 4;
    hosts.max_destinations = 4;
    hosts.max_pairs = 8;
    hosts.max_rhythms = 8;
    let result = Engine::builder()
        .classifier(Box::new(CheckingClassifier::new()))
        .sink(FnSink(|_| {}))
        .workers(0)
        .early_packets(2)
        .batch_size(4)
        .flow_config(flows)
        .host_context(hosts)
        .build();
    match result {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    }
}

/// The counters' promises: every packet decoded or dropped for a reason,
/// every flow ended once with a reason and an end verdict, the table bounded.
pub fn check_stats(s: &Stats, packets_fed: Option<u64>) {
    assert_eq!(s.packets, s.decoded + s.fragments + s.dropped(), "packets = decoded + fragments + drops: {s:?}");
    assert_eq!(s.fragments, s.defrag.fragments, "fragments counted twice or not at all: {s:?}");
    assert_eq!(s.defrag.pending, 0, "a datagram left pending at the end: {s:?}");
    if let Some(n) = packets_fed {
        assert_eq!(s.packets, n, "packets counted vs fed");
    }
    assert_eq!(s.flows_created, s.flows_ended_total(), "every flow ends once: {s:?}");
    assert_eq!(s.verdicts_end, s.flows_created, "one end verdict per flow: {s:?}");
    assert!(s.verdicts_early <= s.flows_created, "at most one early verdict per flow: {s:?}");
    assert!(s.flows_peak as usize <= MAX_FLOWS, "flow table above its cap: {s:?}");
    if s.decoded == 0 && s.defrag.datagrams == 0 {
        assert_eq!(s.flows_created, 0, "flows without a packet: {s:?}");
    }
}

/// `decode`: the first byte picks the link type (low nibble) and how the
/// frame was cut (high nibble: 0 whole, 1–14 cut by a snaplen so the wire
/// length is longer, 15 a corrupt record whose wire length is shorter than
/// what was captured); the rest is the frame.
pub fn decode_input(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link_type = LINK_TYPES[usize::from(sel & 0x0f) % LINK_TYPES.len()];
    let cut = u32::from(sel >> 4);
    let len = frame.len() as u32;
    let wire_len = match cut {
        15 => len / 2,
        c => len + c * 97,
    };
    let pkt = RawPacket { ts: 1_000_000, wire_len, link_type, data: frame };
    let simple = decode(&pkt);
    let info = match decode_frame(&pkt) {
        Ok(Decoded::Packet(info)) => info,
        Ok(Decoded::Fragment(f)) => {
            assert!(simple.is_err(), "decode() gave a packet for a fragment");
            assert!(f.data.len() + f.header.len() <= frame.len(), "fragment bytes beyond the frame");
            return;
        }
        Err(_) => return,
    };
    assert_eq!(simple.ok(), Some(info), "decode() and decode_frame() disagree");
    assert!(info.payload_len <= info.ip_len, "payload {} > IP length {}", info.payload_len, info.ip_len);
    if cut != 15 {
        check("ip_len_above_wire_len", info.ip_len <= wire_len, || {
            format!("IP length {} > wire length {wire_len}: {info:?}", info.ip_len)
        });
    }
    if !info.is_ipv6 {
        assert_eq!(&info.src[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], "IPv4 source not v4-mapped");
        assert_eq!(&info.dst[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], "IPv4 dest not v4-mapped");
    }
    assert_eq!(info.tcp.is_some(), info.proto == PROTO_TCP, "TCP fields without TCP or the reverse: {info:?}");
    if info.icmp_echo_id.is_some() {
        assert!(matches!(info.proto, PROTO_ICMP | PROTO_ICMPV6));
    }
    assert_eq!(info.ts, pkt.ts);
    assert_eq!(info.wire_len, wire_len);
}

/// `pcap_file`: the bytes as a capture file at `path`, read through
/// `PcapFileSource` and the engine. A file libpcap refuses must be a clear
/// `CaptureOpen` error; anything it opens must run to the end (a truncated
/// or corrupt record is a counted partial read) with the counters' promises.
pub fn pcap_file(data: &[u8], path: &Path) {
    if let Err(e) = std::fs::write(path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    let mut source = match PcapFileSource::open(&[path]) {
        Ok(s) => s,
        Err(tidewatch::Error::CaptureOpen { .. }) => return,
        Err(e) => panic!("opening a capture failed with something else than CaptureOpen: {e}"),
    };
    let mut engine = small_engine();
    let stats = match engine.run(&mut source) {
        Ok(s) => s,
        Err(e) => panic!("the engine failed on capture content: {e}"),
    };
    check_stats(&stats, None);
    assert!(stats.partial_reads.len() <= 1, "one file, at most one partial read: {:?}", stats.partial_reads);
    for p in &stats.partial_reads {
        assert_eq!(p.packets_read, stats.packets, "partial read counts vs engine: {p:?}");
        assert!(!p.reason.is_empty());
    }
}

const PORTS: [u16; 8] = [0, 1, 53, 80, 443, 1024, 40000, 65535];

/// `flow_table`: 8-byte records, each one packet built as a real Ethernet
/// frame and fed to a single-thread engine with 8 flow slots, tiny host
/// context tables and short timeouts. Few addresses and ports, so flows
/// collide, reuse ports, close, reopen, time out and get evicted; time jumps
/// forwards and backwards; idle ticks in between.
///
/// Record: `b0` protocol (bits 0–1: TCP, UDP, ICMP, GRE), IPv6 (bit 2), a tick
/// before the packet (bit 7); `b1`/`b2` source/destination host (low 3
/// bits); `b3` ports (two 3-bit indexes into a small set); `b4` TCP flags or
/// ICMP type; `b5`/`b6` time step (0xff: +1 h; 0xfe: back `b6` s; else
/// `b5·b6` ms); `b7` payload length.
pub fn flow_table(data: &[u8]) {
    let mut engine = small_engine();
    let mut ts: u64 = 1_700_000_000_000_000;
    let mut frame = Vec::with_capacity(2048);
    let mut fed = 0u64;
    for r in data.chunks_exact(8) {
        ts = match (r[5], r[6]) {
            (0xff, _) => ts + 3_600_000_000,
            (0xfe, back) => ts.saturating_sub(u64::from(back) * 1_000_000),
            (a, b) => ts + u64::from(a) * u64::from(b) * 1_000,
        };
        if r[0] & 0x80 != 0 {
            if let Err(e) = engine.tick(ts) {
                panic!("tick: {e}");
            }
        }
        build_frame(r, &mut frame);
        let pkt = RawPacket { ts, wire_len: frame.len() as u32, link_type: LinkType::ETHERNET, data: &frame };
        if let Err(e) = engine.process(&pkt) {
            panic!("process: {e}");
        }
        fed += 1;
    }
    match engine.finish() {
        Ok(s) => {
            check_stats(&s, Some(fed));
            assert_eq!(s.dropped(), 0, "every built frame decodes: {s:?}");
        }
        Err(e) => panic!("finish: {e}"),
    }
}

fn build_frame(r: &[u8], f: &mut Vec<u8>) {
    let proto = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47][usize::from(r[0] & 3)];
    let v6 = r[0] & 4 != 0;
    let proto = if v6 && proto == PROTO_ICMP { PROTO_ICMPV6 } else { proto };
    let (src, dst) = (r[1] & 7, r[2] & 7);
    let (sport, dport) = (PORTS[usize::from(r[3] & 7)], PORTS[usize::from((r[3] >> 3) & 7)]);
    let payload = match proto {
        // ICMP timestamp messages are exactly 20 bytes (etherparse drops longer ones as truncated_transport).
        PROTO_ICMP if matches!(r[4], 13 | 14) => 12,
        // Some ICMPv6 messages need more than 8 bytes.
        PROTO_ICMP | PROTO_ICMPV6 => usize::from(r[7]).max(16),
        _ => usize::from(r[7]),
    };
    let l4 = match proto {
        PROTO_TCP => 20,
        _ => 8,
    };
    f.clear();
    f.extend_from_slice(&[2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src]);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((l4 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        for host in [src, dst] {
            f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, host]);
        }
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + l4 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, src, 10, 0, 0, dst]);
    }
    match proto {
        PROTO_TCP => {
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&u32::from(r[7]).wrapping_mul(1000).to_be_bytes());
            f.extend_from_slice(&u32::from(r[4]).to_be_bytes());
            f.extend_from_slice(&[0x50, r[4], 0xff, 0xff, 0, 0, 0, 0]);
        }
        PROTO_UDP => {
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
            f.extend_from_slice(&[0, 0]);
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            // Echo request/reply (with an identifier) or any other type.
            f.extend_from_slice(&[r[4], r[3] & 3, 0, 0]);
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&[0, 1]);
        }
        _ => f.extend_from_slice(&[0, 0, 0x08, 0x00, 0, 0, 0, 0]),
    }
    f.resize(f.len() + payload, 0xaa);
}

/// Payload byte at TCP sequence number `seq` of direction `dir`: every
/// segment carries these, so the bytes delivered can be checked.
fn pattern(dir: usize, seq: u32) -> u8 {
    (seq.wrapping_mul(31) >> 3) as u8 ^ (dir as u8).wrapping_mul(0x5a)
}

/// `reassembly`: the two half-streams of one TCP connection with small caps
/// (4 KiB per connection, 6 KiB per shard, 8 segments behind a gap).
/// Records of 8 bytes: `b0` bit 0 direction, bit 1 an ACK from the other
/// side instead of a segment; `b1` TCP flags; `b2..6` sequence number
/// relative to the direction's ISN (little-endian); `b6..8` payload length
/// (mod 2048). Payload bytes are a function of their sequence number, so
/// every byte delivered is checked against it: in order, exactly once, never
/// corrupted. Caps hold at every step; at the end every buffer is released.
pub fn reassembly(data: &[u8]) {
    use tidewatch::reassembly::{Budget, HalfStream, ReassemblyConfig, StreamEvent};
    const ISN: [u32; 2] = [0xfff0_0000, 0x0000_1000];
    let mut cfg = ReassemblyConfig::default();
    cfg.max_buffered_per_flow = 4096;
    cfg.max_buffered_total = 6144;
    cfg.max_segments_waiting = 8;
    let mut budget = Budget::new(cfg);
    let mut halves = [HalfStream::default(), HalfStream::default()];
    // Where each direction's stream starts (sequence number of offset 0) and how far it got.
    let mut base: [Option<u32>; 2] = [None, None];
    let mut pos = [0u64; 2];
    let mut abandoned = false;
    let mut payload = Vec::with_capacity(2048);
    let feed = |dir: usize, base: &Option<u32>, pos: &mut u64, ev: StreamEvent<'_>| match ev {
        StreamEvent::Data(bytes) => {
            let Some(b) = *base else { panic!("data before the stream started") };
            for (i, &x) in bytes.iter().enumerate() {
                let seq = b.wrapping_add((*pos + i as u64) as u32);
                assert_eq!(
                    x,
                    pattern(dir, seq),
                    "dir {dir}: byte at stream offset {} is not the one sent",
                    *pos + i as u64
                );
            }
            *pos += bytes.len() as u64;
        }
        StreamEvent::Gap(n) => {
            assert!(n > 0, "empty gap");
            *pos += n;
        }
    };
    for r in data.chunks_exact(8) {
        if abandoned {
            break;
        }
        let dir = usize::from(r[0] & 1);
        let rel = u32::from_le_bytes([r[2], r[3], r[4], r[5]]);
        if r[0] & 2 != 0 {
            let ack = ISN[dir].wrapping_add(rel);
            let (b, p) = (base[dir], &mut pos[dir]);
            halves[dir].acked(ack, &mut budget, &mut |ev| feed(dir, &b, p, ev));
            continue;
        }
        let flags = r[1];
        let seq = ISN[dir].wrapping_add(rel);
        let len = usize::from(u16::from_le_bytes([r[6], r[7]]) % 2048);
        let syn = flags & 0x02 != 0;
        // The same rule as HalfStream: a SYN, data, FIN or RST starts the stream.
        if base[dir].is_none() && (syn || len > 0 || flags & 0x05 != 0) {
            base[dir] = Some(if syn { seq.wrapping_add(1) } else { seq });
        }
        let first = if syn { seq.wrapping_add(1) } else { seq };
        payload.clear();
        payload.extend((0..len as u32).map(|i| pattern(dir, first.wrapping_add(i))));
        let others = halves[1 - dir].buffered();
        let (b, p) = (base[dir], &mut pos[dir]);
        let ok = halves[dir].segment(seq, flags, &payload, others, &mut budget, &mut |ev| feed(dir, &b, p, ev));
        if ok {
            let held = halves[0].buffered() + halves[1].buffered();
            assert!(held <= cfg.max_buffered_per_flow, "connection holds {held} B, cap {}", cfg.max_buffered_per_flow);
            assert!(
                budget.used <= cfg.max_buffered_total,
                "shard holds {} B, cap {}",
                budget.used,
                cfg.max_buffered_total
            );
            assert_eq!(budget.used, held, "budget and buffers disagree");
        } else {
            for h in halves.iter_mut() {
                h.release(&mut budget);
            }
            abandoned = true;
        }
    }
    for (dir, h) in halves.iter_mut().enumerate() {
        let (b, p) = (base[dir], &mut pos[dir]);
        h.flush(&mut budget, &mut |ev| feed(dir, &b, p, ev));
        h.release(&mut budget);
        assert_eq!(h.buffered(), 0);
        assert_eq!(h.delivered + h.gap_bytes, pos[dir], "dir {dir}: delivered + gaps vs events");
    }
    assert_eq!(budget.used, 0, "bytes still counted after every buffer was released");
}

/// `defrag`: fragments of a few datagrams through a defragmenter with small
/// caps (4 datagrams, 4 KiB, 1 s). Records of 8 bytes: `b0` bit 0 IPv6, bit
/// 1 more-fragments, bits 2–3 source host, bits 4–5 datagram id, bit 6 UDP
/// instead of TCP; `b1..3` offset in 8-byte units (mod 8192); `b3..5` data
/// length (mod 1500); `b5` time step in ms (0xff: +2 s); `b6..8` unused
/// filler. Checks: the counters add up, every completed datagram decodes
/// to a packet of the length assembled, and the byte cap holds.
pub fn defrag(data: &[u8]) {
    use tidewatch::decode::{decode_ip, Decoded, Fragment, Tunnels};
    use tidewatch::defrag::{DefragConfig, DefragOutcome, Defragmenter};
    let mut cfg = DefragConfig::default();
    cfg.max_datagrams = 4;
    cfg.max_bytes = 4096;
    cfg.timeout = 1_000_000;
    let mut d = Defragmenter::new(cfg);
    let mut out = Vec::new();
    let mut ts: u64 = 1_700_000_000_000_000;
    let mut body = vec![0u8; 1500];
    let mut pushed = 0u64;
    for r in data.chunks_exact(8) {
        let v6 = r[0] & 1 != 0;
        let more = r[0] & 2 != 0;
        let src = (r[0] >> 2) & 3;
        let id = u32::from((r[0] >> 4) & 3);
        let proto = if r[0] & 0x40 != 0 { PROTO_UDP } else { PROTO_TCP };
        let offset = (u16::from_le_bytes([r[1], r[2]]) % 8192) * 8;
        let len = usize::from(u16::from_le_bytes([r[3], r[4]]) % 1500);
        ts += if r[5] == 0xff { 2_000_000 } else { u64::from(r[5]) * 1000 };
        for (i, b) in body.iter_mut().enumerate().take(len) {
            *b = (usize::from(offset) + i) as u8;
        }
        let mut header = Vec::new();
        let (mut s, mut t) = ([0u8; 16], [0u8; 16]);
        if v6 {
            s[0] = 0xfd;
            s[15] = src;
            t[0] = 0xfd;
            t[15] = 9;
            header.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 44, 64]);
            header.extend_from_slice(&s);
            header.extend_from_slice(&t);
        } else {
            s[10] = 0xff;
            s[11] = 0xff;
            s[12] = 10;
            s[15] = src;
            t[10] = 0xff;
            t[11] = 0xff;
            t[12] = 10;
            t[15] = 9;
            header.extend_from_slice(&[0x45, 0, 0, 0, 0, id as u8, 0, 0, 64, proto, 0, 0, 10, 0, 0, src, 10, 0, 0, 9]);
        }
        let f = Fragment {
            ts,
            wire_len: (header.len() + len + 14) as u32,
            src: s,
            dst: t,
            is_ipv6: v6,
            id,
            proto,
            offset,
            more,
            header: &header,
            data: &body[..len],
            tunnels: Tunnels::default(),
        };
        pushed += 1;
        match d.push(&f, &mut out) {
            DefragOutcome::Complete { wire_len, .. } => {
                assert!(wire_len > 0);
                match decode_ip(&out, 0, ts, out.len() as u32, 0, Tunnels::default()) {
                    Ok(Decoded::Packet(p)) => {
                        assert_eq!(p.ip_len as usize, out.len(), "reassembled datagram length");
                        assert_eq!(p.proto, proto);
                    }
                    Ok(Decoded::Fragment(_)) => panic!("a reassembled datagram is still a fragment"),
                    // The payload is arbitrary, so its transport header may be bad.
                    Err(_) => {}
                }
            }
            DefragOutcome::Held | DefragOutcome::Discarded => {}
        }
        let st = d.stats();
        assert!(st.pending as usize <= cfg.max_datagrams, "{} datagrams held, cap {}", st.pending, cfg.max_datagrams);
        check("defrag_bytes_cap", st.peak_bytes as usize <= cfg.max_bytes, || {
            format!("{} fragment bytes held, cap {}: {st:?}", st.peak_bytes, cfg.max_bytes)
        });
        // A weaker promise: the cap is passed by one largest datagram at most.
        check("defrag_bytes_bounded", st.peak_bytes as usize <= cfg.max_bytes + 65_535, || {
            format!("fragment bytes {} beyond the cap plus one datagram: {st:?}", st.peak_bytes)
        });
    }
    d.drain();
    let st = d.stats();
    assert_eq!(st.fragments, pushed);
    assert_eq!(st.pending, 0);
    // Every datagram started ends exactly one way (a duplicate starts none).
    assert!(
        st.datagrams + st.overlaps + st.invalid + st.timed_out + st.evicted <= st.fragments,
        "more datagram outcomes than fragments: {st:?}"
    );
}

const APP_PORTS: [u16; 16] = [80, 443, 53, 22, 8080, 8443, 5353, 137, 853, 25, 21, 3306, 1, 40000, 65535, 0];

/// `app`: one flow's application parser fed chunks. `b0` bit 0 UDP instead
/// of TCP, bits 1–4 and 5–7(+bit 0 of `b1`) the initiator and responder
/// ports (from a set of well-known and odd ones); then chunks: a control
/// byte (bit 0 from the initiator; bits 1–2: stream bytes, gap, datagram),
/// a length byte, and that many bytes. Checks only that nothing panics and
/// the metadata serialises.
pub fn app(data: &[u8]) {
    use tidewatch::app::AppParser;
    let [a, b, rest @ ..] = data else { return };
    let transport = if a & 1 != 0 { PROTO_UDP } else { PROTO_TCP };
    let iport = APP_PORTS[usize::from((a >> 1) & 15)];
    let rport = APP_PORTS[usize::from(((a >> 5) | (b << 3)) & 15)];
    let mut p = AppParser::new(transport, iport, rport);
    let mut rest = rest;
    while let [ctl, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, after) = tail.split_at(n);
        rest = after;
        let from_initiator = ctl & 1 != 0;
        match (ctl >> 1) & 3 {
            1 => p.on_gap(from_initiator, u64::from(*len)),
            2 | 3 if transport == PROTO_UDP => p.on_datagram(from_initiator, chunk),
            _ => p.on_stream(from_initiator, chunk),
        }
        let _ = p.done();
        let _ = p.identified();
    }
    if let Err(e) = serde_json::to_string(p.meta()) {
        panic!("metadata does not serialise: {e}");
    }
}
