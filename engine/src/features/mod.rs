//! Features: per-flow statistics computed incrementally, with no per-packet
//! storage, plus the host context of [`host`].
//!
//! The feature schema is versioned: a model records the schema it was
//! trained on and the engine refuses one that does not match. Every feature
//! is documented in `FEATURES.md` at the repository root. The same code
//! produces the rows for training (`tidewatchd features`) and for inference.

pub mod host;

use crate::app::{AppMeta, AppProto, DetectMethod};
use crate::decode::{PacketInfo, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use crate::source::Micros;
pub use host::{HostContext, HostContextConfig, HostFeatures};

/// Name of the feature schema this engine computes.
pub const SCHEMA_NAME: &str = "tidewatch-flow";
/// Version of the feature schema; bump on any change to names or meaning.
pub const SCHEMA_VERSION: u32 = 5;
/// Number of leading packets described one by one (sizes, directions, gaps).
pub const EARLY_PACKETS: usize = 8;

/// Where one feature's value comes from: the flow (computed by the flow's
/// worker) or the host context (filled in by the merge stage).
#[derive(Clone, Copy)]
enum Source {
    /// From the flow's statistics and facts, computed in f64, stored as f32.
    Flow(fn(&FlowStats, &FlowFacts) -> f64),
    /// From the host context as of the row's last packet.
    Host(fn(&HostFeatures) -> f32),
}
use Source::{Flow, Host};

/// The feature row, defined once: each feature's name beside what computes
/// it, in row order. `FEATURE_NAMES`, `write_row` and `write_host` all read
/// this table, so a name and its value cannot drift apart. `FEATURES.md`
/// documents each one.
const FEATURES: [(&str, Source); NUM_FEATURES] = [
    ("duration_s", Flow(|s, _| duration(s))),
    ("fwd_packets", Flow(|s, _| f64::from(s.fwd.packets))),
    ("bwd_packets", Flow(|s, _| f64::from(s.bwd.packets))),
    ("fwd_bytes", Flow(|s, _| s.fwd.bytes as f64)),
    ("bwd_bytes", Flow(|s, _| s.bwd.bytes as f64)),
    ("fwd_payload_bytes", Flow(|s, _| s.fwd.payload_bytes as f64)),
    ("bwd_payload_bytes", Flow(|s, _| s.bwd.payload_bytes as f64)),
    ("fwd_pkt_len_min", Flow(|s, _| s.fwd.len.min())),
    ("fwd_pkt_len_max", Flow(|s, _| s.fwd.len.max())),
    ("fwd_pkt_len_mean", Flow(|s, _| s.fwd.len.mean())),
    ("fwd_pkt_len_std", Flow(|s, _| s.fwd.len.std())),
    ("bwd_pkt_len_min", Flow(|s, _| s.bwd.len.min())),
    ("bwd_pkt_len_max", Flow(|s, _| s.bwd.len.max())),
    ("bwd_pkt_len_mean", Flow(|s, _| s.bwd.len.mean())),
    ("bwd_pkt_len_std", Flow(|s, _| s.bwd.len.std())),
    ("fwd_iat_min_s", Flow(|s, _| s.fwd.iat.min())),
    ("fwd_iat_max_s", Flow(|s, _| s.fwd.iat.max())),
    ("fwd_iat_mean_s", Flow(|s, _| s.fwd.iat.mean())),
    ("fwd_iat_std_s", Flow(|s, _| s.fwd.iat.std())),
    ("bwd_iat_min_s", Flow(|s, _| s.bwd.iat.min())),
    ("bwd_iat_max_s", Flow(|s, _| s.bwd.iat.max())),
    ("bwd_iat_mean_s", Flow(|s, _| s.bwd.iat.mean())),
    ("bwd_iat_std_s", Flow(|s, _| s.bwd.iat.std())),
    ("flow_iat_min_s", Flow(|s, _| s.flow_iat.min())),
    ("flow_iat_max_s", Flow(|s, _| s.flow_iat.max())),
    ("flow_iat_mean_s", Flow(|s, _| s.flow_iat.mean())),
    ("flow_iat_std_s", Flow(|s, _| s.flow_iat.std())),
    ("fin_count", Flow(|s, _| f64::from(s.flag_counts[0]))),
    ("syn_count", Flow(|s, _| f64::from(s.flag_counts[1]))),
    ("rst_count", Flow(|s, _| f64::from(s.flag_counts[2]))),
    ("psh_count", Flow(|s, _| f64::from(s.flag_counts[3]))),
    ("ack_count", Flow(|s, _| f64::from(s.flag_counts[4]))),
    ("urg_count", Flow(|s, _| f64::from(s.flag_counts[5]))),
    ("ece_count", Flow(|s, _| f64::from(s.flag_counts[6]))),
    ("cwr_count", Flow(|s, _| f64::from(s.flag_counts[7]))),
    ("fwd_init_window", Flow(|s, _| f64::from(s.init_windows[0]))),
    ("bwd_init_window", Flow(|s, _| f64::from(s.init_windows[1]))),
    ("packets_per_s", Flow(|s, _| per_s(s, s.packets() as f64))),
    ("bytes_per_s", Flow(|s, _| per_s(s, (s.fwd.bytes + s.bwd.bytes) as f64))),
    (
        "down_up_ratio",
        Flow(|s, _| if s.fwd.packets > 0 { f64::from(s.bwd.packets) / f64::from(s.fwd.packets) } else { 0.0 }),
    ),
    ("fwd_payload_packets", Flow(|s, _| f64::from(s.fwd.payload_packets))),
    ("bwd_payload_packets", Flow(|s, _| f64::from(s.bwd.payload_packets))),
    ("is_tcp", Flow(|_, f| b(f.proto == PROTO_TCP))),
    ("is_udp", Flow(|_, f| b(f.proto == PROTO_UDP))),
    ("is_icmp", Flow(|_, f| b(f.proto == PROTO_ICMP || f.proto == PROTO_ICMPV6))),
    ("tcp_handshake_complete", Flow(|_, f| b(f.handshake_complete))),
    ("tcp_responder_reset", Flow(|_, f| b(f.responder_reset))),
    (
        "dst_port_well_known",
        Flow(|_, f| b(f.proto != PROTO_ICMP && f.proto != PROTO_ICMPV6 && f.responder_port < 1024)),
    ),
    ("early_size_1", Flow(|s, _| early_size(s, 0))),
    ("early_size_2", Flow(|s, _| early_size(s, 1))),
    ("early_size_3", Flow(|s, _| early_size(s, 2))),
    ("early_size_4", Flow(|s, _| early_size(s, 3))),
    ("early_size_5", Flow(|s, _| early_size(s, 4))),
    ("early_size_6", Flow(|s, _| early_size(s, 5))),
    ("early_size_7", Flow(|s, _| early_size(s, 6))),
    ("early_size_8", Flow(|s, _| early_size(s, 7))),
    ("early_gap_1_s", Flow(|s, _| f64::from(s.early_gaps[0]) / 1e6)),
    ("early_gap_2_s", Flow(|s, _| f64::from(s.early_gaps[1]) / 1e6)),
    ("early_gap_3_s", Flow(|s, _| f64::from(s.early_gaps[2]) / 1e6)),
    ("early_gap_4_s", Flow(|s, _| f64::from(s.early_gaps[3]) / 1e6)),
    ("early_gap_5_s", Flow(|s, _| f64::from(s.early_gaps[4]) / 1e6)),
    ("early_gap_6_s", Flow(|s, _| f64::from(s.early_gaps[5]) / 1e6)),
    ("early_gap_7_s", Flow(|s, _| f64::from(s.early_gaps[6]) / 1e6)),
    ("early_gap_8_s", Flow(|s, _| f64::from(s.early_gaps[7]) / 1e6)),
    ("src_new_flows_rate", Host(|h| h.src_new_flows_rate)),
    ("src_distinct_dst_ports", Host(|h| h.src_distinct_dst_ports)),
    ("src_distinct_dst_hosts", Host(|h| h.src_distinct_dst_hosts)),
    ("src_failed_share", Host(|h| h.src_failed_share)),
    ("pair_new_flows_rate", Host(|h| h.pair_new_flows_rate)),
    ("pair_distinct_dst_ports", Host(|h| h.pair_distinct_dst_ports)),
    ("dst_new_flows_rate", Host(|h| h.dst_new_flows_rate)),
    ("dst_distinct_src_hosts", Host(|h| h.dst_distinct_src_hosts)),
    ("app_http", Flow(|_, f| b(f.app.proto == Some(AppProto::Http)))),
    ("app_tls", Flow(|_, f| b(f.app.proto == Some(AppProto::Tls)))),
    ("app_dns", Flow(|_, f| b(f.app.proto == Some(AppProto::Dns)))),
    ("app_ssh", Flow(|_, f| b(f.app.proto == Some(AppProto::Ssh)))),
    ("app_quic", Flow(|_, f| b(f.app.proto == Some(AppProto::Quic)))),
    ("tls_sni_present", Flow(|_, f| b(f.app.tls_sni))),
    ("http_status_class", Flow(|_, f| f64::from(f.app.http_status_class))),
    ("dns_qname_len", Flow(|_, f| f64::from(f.app.dns_qname_len))),
    ("dns_qname_entropy", Flow(|_, f| f64::from(f.app.dns_qname_entropy))),
    ("dns_rcode", Flow(|_, f| f64::from(f.app.dns_rcode))),
    ("dns_queries", Flow(|_, f| f64::from(f.app.dns_queries))),
    ("dns_distinct_names", Flow(|_, f| f64::from(f.app.dns_distinct_names))),
    ("dns_label_len_mean", Flow(|_, f| f64::from(f.app.dns_label_len_mean))),
    ("dns_label_entropy_mean", Flow(|_, f| f64::from(f.app.dns_label_entropy_mean))),
    ("dns_txt_null_share", Flow(|_, f| f64::from(f.app.dns_txt_null_share))),
    ("dns_nxdomain_share", Flow(|_, f| f64::from(f.app.dns_nxdomain_share))),
    ("pair_flows", Host(|h| h.pair_flows)),
    ("pair_interval_regularity", Host(|h| h.pair_interval_regularity)),
    ("pair_size_regularity", Host(|h| h.pair_size_regularity)),
];

/// Feature names, in row order.
pub const FEATURE_NAMES: &[&str] = &feature_names();

const fn feature_names() -> [&'static str; NUM_FEATURES] {
    let mut out = [""; NUM_FEATURES];
    let mut i = 0;
    while i < NUM_FEATURES {
        out[i] = FEATURES[i].0;
        i += 1;
    }
    out
}

fn duration(s: &FlowStats) -> f64 {
    s.last_ts.saturating_sub(s.first_ts) as f64 / 1e6
}

fn per_s(s: &FlowStats, x: f64) -> f64 {
    let d = duration(s);
    if d > 0.0 {
        x / d
    } else {
        0.0
    }
}

fn b(x: bool) -> f64 {
    if x {
        1.0
    } else {
        0.0
    }
}

/// The i-th early packet's size, negative when it went backward.
fn early_size(s: &FlowStats, i: usize) -> f64 {
    let size = f64::from(s.early_sizes[i]);
    if s.early_backward & (1 << i) != 0 {
        -size
    } else {
        size
    }
}

/// Number of values in a feature row.
pub const NUM_FEATURES: usize = 91;

const _: () = assert!(FEATURE_NAMES.len() == NUM_FEATURES);

/// `name vN`, as shown in errors and model metadata.
pub fn schema_id() -> String {
    format!("{SCHEMA_NAME} v{SCHEMA_VERSION}")
}

/// Running min/max/mean/variance (Welford). Stored in f32 to keep flows
/// small (a million flows in a few hundred MB); updated in f64.
#[derive(Clone, Copy, Debug, Default)]
pub struct Running {
    /// Values pushed so far.
    pub n: u32,
    min: f32,
    max: f32,
    mean: f32,
    m2: f32,
}

impl Running {
    /// Adds one value.
    #[inline]
    pub fn push(&mut self, x: f64) {
        let xf = x as f32;
        if self.n == 0 {
            self.min = xf;
            self.max = xf;
        } else {
            self.min = self.min.min(xf);
            self.max = self.max.max(xf);
        }
        self.n += 1;
        let mean = f64::from(self.mean);
        let d = x - mean;
        let mean = mean + d / f64::from(self.n);
        self.m2 = (f64::from(self.m2) + d * (x - mean)) as f32;
        self.mean = mean as f32;
    }

    /// Smallest value pushed (0 before any).
    pub fn min(&self) -> f64 {
        f64::from(self.min)
    }

    /// Largest value pushed (0 before any).
    pub fn max(&self) -> f64 {
        f64::from(self.max)
    }

    /// Mean of the values pushed (0 before any).
    pub fn mean(&self) -> f64 {
        f64::from(self.mean)
    }

    /// Sample standard deviation (n - 1), as CICFlowMeter; 0 below two values.
    pub fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (f64::from(self.m2) / f64::from(self.n - 1)).max(0.0).sqrt()
        }
    }
}

/// Per-direction accumulators.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirStats {
    /// Packets sent in this direction.
    pub packets: u32,
    /// IP bytes (headers and payload, as sent) in this direction.
    pub bytes: u64,
    /// Transport payload bytes (as sent) in this direction.
    pub payload_bytes: u64,
    /// Packets in this direction with a non-empty transport payload.
    pub payload_packets: u32,
    /// IP lengths of this direction's packets, in bytes.
    pub len: Running,
    /// Gaps between consecutive packets of this direction, in seconds.
    pub iat: Running,
    /// Capture time of this direction's latest packet, microseconds since the Unix epoch.
    pub last_ts: Micros,
}

/// Incremental statistics of one flow. Updated once per packet, O(1).
#[derive(Clone, Debug, Default)]
pub struct FlowStats {
    /// Capture time of the flow's first packet, microseconds since the Unix epoch.
    pub first_ts: Micros,
    /// Capture time of the flow's latest packet (never goes backwards), microseconds.
    pub last_ts: Micros,
    /// Packets sent by the initiator.
    pub fwd: DirStats,
    /// Packets sent by the responder.
    pub bwd: DirStats,
    /// Gaps between consecutive packets of either direction, in seconds.
    pub flow_iat: Running,
    /// Counts of FIN, SYN, RST, PSH, ACK, URG, ECE, CWR over every packet
    /// (saturating at 65535).
    pub flag_counts: [u16; 8],
    /// TCP window of the first packet in each direction (initiator, responder).
    pub init_windows: [u16; 2],
    /// Bit i set: packet i (of the first ones) came from the responder.
    pub early_backward: u8,
    /// IP lengths of the first packets (direction in `early_backward`).
    pub early_sizes: [u16; EARLY_PACKETS],
    /// Gaps before each of the first packets, in microseconds.
    pub early_gaps: [u32; EARLY_PACKETS],
}

impl FlowStats {
    /// Empty statistics of a flow that starts at `ts` (microseconds since the Unix epoch).
    pub fn new(ts: Micros) -> Self {
        Self { first_ts: ts, last_ts: ts, ..Default::default() }
    }

    /// Packets seen in both directions.
    pub fn packets(&self) -> u64 {
        u64::from(self.fwd.packets) + u64::from(self.bwd.packets)
    }

    /// Adds one packet. `forward` is true when the initiator sent it.
    #[inline]
    pub fn update(&mut self, p: &PacketInfo, forward: bool) {
        let idx = self.packets();
        // Capture files are not always in time order: never go backwards.
        let ts = p.ts.max(self.last_ts);
        if idx > 0 {
            self.flow_iat.push((ts - self.last_ts) as f64 / 1e6);
        }
        if (idx as usize) < EARLY_PACKETS {
            self.early_sizes[idx as usize] = u16::try_from(p.ip_len).unwrap_or(u16::MAX);
            if !forward {
                self.early_backward |= 1 << idx;
            }
            self.early_gaps[idx as usize] =
                if idx == 0 { 0 } else { u32::try_from(ts - self.last_ts).unwrap_or(u32::MAX) };
        }
        self.last_ts = ts;
        let d = if forward { &mut self.fwd } else { &mut self.bwd };
        if d.packets > 0 {
            d.iat.push(ts.saturating_sub(d.last_ts) as f64 / 1e6);
        }
        let first_in_direction = d.packets == 0;
        d.last_ts = ts;
        d.packets = d.packets.saturating_add(1);
        d.bytes += u64::from(p.ip_len);
        d.payload_bytes += u64::from(p.payload_len);
        if p.payload_len > 0 {
            d.payload_packets = d.payload_packets.saturating_add(1);
        }
        d.len.push(f64::from(p.ip_len));
        if let Some(t) = &p.tcp {
            if first_in_direction {
                self.init_windows[usize::from(!forward)] = t.window;
            }
            for (bit, count) in self.flag_counts.iter_mut().enumerate() {
                if t.flags & (1 << bit) != 0 {
                    *count = count.saturating_add(1);
                }
            }
        }
    }
}

/// Flow facts the feature row needs besides [`FlowStats`].
#[derive(Clone, Copy, Debug)]
pub struct FlowFacts {
    /// IP protocol number of the flow (6 = TCP, 17 = UDP, 1 or 58 = ICMP).
    pub proto: u8,
    /// Responder's port, host byte order (meaningful for TCP and UDP).
    pub responder_port: u16,
    /// The initiator's SYN was answered by SYN-ACK and then ACKed.
    pub handshake_complete: bool,
    /// The responder sent a TCP RST.
    pub responder_reset: bool,
    /// What the application parsers contribute.
    pub app: AppFeatures,
}

/// What the application parsers contribute to a row (schema v2). Only
/// protocols recognised by content count: a port guess is not evidence.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AppFeatures {
    /// Application protocol recognised by content; `None` for a port guess or nothing.
    pub proto: Option<AppProto>,
    /// The TLS ClientHello named a server (SNI).
    pub tls_sni: bool,
    /// HTTP status / 100 (2 for 200..299), 0 before a response.
    pub http_status_class: f32,
    /// The first DNS query name: length and Shannon entropy (bits per
    /// character); long, random names are how data leaves in DNS.
    pub dns_qname_len: f32,
    /// Shannon entropy of the first DNS query name, in bits per character.
    pub dns_qname_entropy: f32,
    /// Response code answering the first DNS query (0 before a response; 3 = NXDOMAIN).
    pub dns_rcode: f32,
    /// Over every DNS message of the flow (schema v4).
    pub dns_queries: f32,
    /// Estimated distinct query names (linear counting; saturates near 270).
    pub dns_distinct_names: f32,
    /// Mean over queries of each name's longest label, in characters.
    pub dns_label_len_mean: f32,
    /// Mean over queries of the first label's Shannon entropy, bits per character.
    pub dns_label_entropy_mean: f32,
    /// Share of queries of type TXT or NULL, 0 to 1.
    pub dns_txt_null_share: f32,
    /// Share of responses with code 3 (NXDOMAIN), 0 to 1.
    pub dns_nxdomain_share: f32,
}

impl AppFeatures {
    /// The application features of a flow, from what its parsers learned.
    pub fn of(meta: &AppMeta) -> Self {
        let mut f = AppFeatures::default();
        if meta.method == Some(DetectMethod::Content) {
            f.proto = Some(meta.proto);
        }
        f.tls_sni = meta.tls.as_ref().is_some_and(|t| t.sni.is_some());
        f.http_status_class = meta.http.as_ref().and_then(|h| h.status).map_or(0.0, |s| f32::from(s / 100));
        if let Some(d) = &meta.dns {
            f.dns_qname_len = d.query.len() as f32;
            f.dns_qname_entropy = entropy(d.query.as_bytes());
            f.dns_rcode = d.rcode.map_or(0.0, f32::from);
            f.dns_queries = d.stats.queries as f32;
            f.dns_distinct_names = d.stats.distinct_names();
            f.dns_label_len_mean = d.stats.label_len_mean();
            f.dns_label_entropy_mean = d.stats.label_entropy_mean();
            f.dns_txt_null_share = d.stats.txt_null_share();
            f.dns_nxdomain_share = d.stats.nxdomain_share();
        }
        f
    }
}

/// Shannon entropy of a byte string, in bits per byte.
pub(crate) fn entropy(s: &[u8]) -> f32 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    s.iter().for_each(|b| counts[usize::from(*b)] += 1);
    let n = s.len() as f64;
    let h: f64 = counts.iter().filter(|c| **c > 0).map(|&c| -(f64::from(c) / n) * (f64::from(c) / n).log2()).sum();
    h as f32
}

/// Writes one feature row, in [`FEATURE_NAMES`] order, into `row`.
pub fn write_row(s: &FlowStats, facts: &FlowFacts, host: &HostFeatures, row: &mut [f32; NUM_FEATURES]) {
    for (o, (_, source)) in row.iter_mut().zip(FEATURES.iter()) {
        if let Flow(value) = source {
            *o = value(s, facts) as f32;
        }
    }
    write_host(host, row);
}

/// Writes the host-context part of a row (filled in by the merge stage).
pub fn write_host(host: &HostFeatures, row: &mut [f32; NUM_FEATURES]) {
    for (o, (_, source)) in row.iter_mut().zip(FEATURES.iter()) {
        if let Host(value) = source {
            *o = value(host);
        }
    }
}
