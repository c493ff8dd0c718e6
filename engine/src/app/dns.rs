//! DNS over UDP and TCP (and mDNS and LLMNR, which share its format): every
//! transaction of a flow, and counters over every message ([`DnsFlowStats`]).
//! A tunnel or a resolver-to-resolver flow carries thousands of queries on
//! one 5-tuple, and its first query says little.
//!
//! A transaction is one question and the response with the same id and
//! name. The first transaction fills [`DnsMeta`]'s own fields (as before);
//! the later ones go to [`DnsMeta::transactions`], at most
//! [`MAX_TRANSACTIONS`] of them and [`MAX_STORED_NAME_BYTES`] of names, and
//! [`DnsMeta::transaction_count`] counts every one, stored or not. A
//! message is recognised only when its header, question and every resource
//! record parse and end exactly at the message's end.

use super::{AppMeta, Probe, Rd, MAX_BUFFER};

/// DNS transactions of one flow, and counters over all its messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsMeta {
    /// The first transaction (its fields at the top level of the JSON, as before).
    #[serde(flatten)]
    pub first: DnsTransaction,
    /// The transactions after the first, in order, bounded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<DnsTransaction>,
    /// Transactions in the flow, the first and any past the bound included;
    /// written when there is more than one.
    #[serde(skip_serializing_if = "at_most_one")]
    pub transaction_count: u32,
    /// Bytes of names held in `transactions`.
    #[serde(skip)]
    stored_name_bytes: usize,
    /// Once one transaction was not stored, none after it is: `transactions` stays a prefix.
    #[serde(skip)]
    full: bool,
    #[serde(skip)]
    retained: super::retained::Retained,
    /// Counters over every message of the flow (features, not JSON).
    #[serde(skip)]
    pub stats: DnsFlowStats,
}

/// Transactions kept per flow after the first.
pub const MAX_TRANSACTIONS: usize = 1024;
/// Bytes of query names kept per flow in [`DnsMeta::transactions`] (a DNS
/// tunnel's few hundred long names fit), within the process-wide cap of
/// [`super::retained`].
pub const MAX_STORED_NAME_BYTES: usize = 128 * 1024;

fn at_most_one(n: &u32) -> bool {
    *n <= 1
}

/// One DNS transaction: a question and the response with the same id and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsTransaction {
    /// Query name, dot-separated, without the final dot ("" for the root).
    pub query: String,
    /// Query type (RR type number: 1 = A, 28 = AAAA, 16 = TXT, ...).
    pub qtype: u16,
    /// Response code of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<u8>,
    /// Answer count of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answers: Option<u16>,
    /// Message id (to match the response).
    #[serde(skip)]
    id: u16,
}

/// The first transaction's fields read as the flow's own (`meta.query`).
impl std::ops::Deref for DnsMeta {
    type Target = DnsTransaction;
    fn deref(&self) -> &DnsTransaction {
        &self.first
    }
}

impl DnsMeta {
    /// A flow's first transaction: a query for `query` of type `qtype`.
    pub fn new(query: impl Into<String>, qtype: u16) -> Self {
        let first = DnsTransaction { query: query.into(), qtype, ..Default::default() };
        DnsMeta { first, transaction_count: 1, ..Default::default() }
    }

    /// Every query name of the flow, in order: the first, then the later transactions'.
    pub fn queries(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.first).chain(&self.transactions).map(|t| t.query.as_str())
    }

    fn push(&mut self, t: DnsTransaction) {
        self.transaction_count = self.transaction_count.saturating_add(1);
        self.full = self.full
            || self.transactions.len() >= MAX_TRANSACTIONS
            || self.stored_name_bytes + t.query.len() > MAX_STORED_NAME_BYTES
            || !self.retained.try_take(t.query.len());
        if !self.full {
            self.stored_name_bytes += t.query.len();
            self.transactions.push(t);
        }
    }

    /// The newest unanswered transaction with this id and name (the first one last).
    fn pending(&mut self, id: u16, name: &str) -> Option<&mut DnsTransaction> {
        let open = |t: &DnsTransaction| t.id == id && t.rcode.is_none() && t.query.eq_ignore_ascii_case(name);
        if let Some(i) = self.transactions.iter().rposition(open) {
            return self.transactions.get_mut(i);
        }
        open(&self.first).then_some(&mut self.first)
    }
}

/// Counters over every DNS message of a flow, in fixed memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsFlowStats {
    /// Query messages seen in the flow.
    pub queries: u32,
    /// Response messages seen in the flow.
    pub responses: u32,
    /// Linear-counting bitmap of the query names (distinct names).
    names: u64,
    /// Sum over queries of the longest label's length.
    longest_label_sum: u64,
    /// Sum over queries of the first label's entropy, in millibits per character.
    first_label_entropy_milli: u64,
    /// Queries of type TXT or NULL (how most DNS tunnels carry data).
    txt_null: u32,
    /// Responses with code 3 (NXDOMAIN).
    nxdomain: u32,
}

impl DnsFlowStats {
    fn add(&mut self, m: &Message) {
        if m.response {
            self.responses = self.responses.saturating_add(1);
            if m.rcode == 3 {
                self.nxdomain = self.nxdomain.saturating_add(1);
            }
            return;
        }
        self.queries = self.queries.saturating_add(1);
        self.names |= 1u64 << (mix(&m.qname) >> 58);
        let longest = m.qname.split('.').map(str::len).max().unwrap_or(0);
        self.longest_label_sum += longest as u64;
        let first = m.qname.split('.').next().unwrap_or("");
        self.first_label_entropy_milli += (crate::features::entropy(first.as_bytes()) * 1000.0) as u64;
        if matches!(m.qtype, 10 | 16) {
            self.txt_null = self.txt_null.saturating_add(1);
        }
    }

    /// Estimated distinct query names (exact to a few percent up to ~40, saturating near 270).
    pub fn distinct_names(&self) -> f32 {
        let zeros = self.names.count_zeros();
        if zeros == 0 {
            return 64.0 * (64f32).ln();
        }
        -64.0 * (zeros as f32 / 64.0).ln()
    }

    /// Mean length of each query's longest label.
    pub fn label_len_mean(&self) -> f32 {
        ratio(self.longest_label_sum as f32, self.queries)
    }

    /// Mean Shannon entropy of each query's first label (bits per character).
    pub fn label_entropy_mean(&self) -> f32 {
        ratio(self.first_label_entropy_milli as f32 / 1000.0, self.queries)
    }

    /// Share of queries of type TXT or NULL.
    pub fn txt_null_share(&self) -> f32 {
        ratio(self.txt_null as f32, self.queries)
    }

    /// Share of responses that were NXDOMAIN.
    pub fn nxdomain_share(&self) -> f32 {
        ratio(self.nxdomain as f32, self.responses)
    }
}

/// `part / count`, 0 when nothing was counted (FEATURES.md: ratios with a zero denominator are 0).
fn ratio(part: f32, count: u32) -> f32 {
    if count == 0 {
        0.0
    } else {
        part / count as f32
    }
}

/// FNV-1a, then a final mix so the top bits are uniform.
fn mix(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A structurally valid DNS message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    pub ancount: u16,
    pub qname: String,
    pub qtype: u16,
    /// Questions after the first (mDNS queries may ask several).
    pub more: Vec<(String, u16)>,
}

/// Appends one label: printable ASCII as is, '.', '\\' and ASCII control
/// bytes escaped (`\DDD`), UTF-8 text kept, and each maximal sequence that
/// is not UTF-8 as one U+FFFD — all as tshark shows names.
fn push_label(name: &mut String, label: &[u8]) {
    let push_byte = |name: &mut String, c: u8| match c {
        b'.' | b'\\' => {
            name.push('\\');
            name.push(char::from(c));
        }
        0x21..=0x7e => name.push(char::from(c)),
        _ => name.push_str(&format!("\\{c:03}")),
    };
    for chunk in label.utf8_chunks() {
        for ch in chunk.valid().chars() {
            match u8::try_from(ch) {
                Ok(c) if c.is_ascii() => push_byte(name, c),
                _ if ch.is_control() => ch.encode_utf8(&mut [0; 4]).bytes().for_each(|c| push_byte(name, c)),
                _ => name.push(ch),
            }
        }
        // Bytes that are not UTF-8: one replacement character per maximal
        // invalid sequence (as `String::from_utf8_lossy`, and tshark, print them).
        if !chunk.invalid().is_empty() {
            name.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// Reads a (possibly compressed) name starting at `at`; returns it and the offset after it.
fn read_name(msg: &[u8], at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = at;
    let mut end = None;
    let mut jumps = 0;
    let mut total = 0usize;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((name, end.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                total += usize::from(len) + 1;
                if total > 255 {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let ptr = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(pos + 1)?]));
                jumps += 1;
                // Pointers may point anywhere in the message (nmap's
                // version.bind probe points forward, and tshark reads it);
                // a loop ends at the jump bound.
                if ptr == pos || ptr >= msg.len() || jumps > 32 {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = ptr;
            }
            _ => return None,
        }
    }
}

/// Parses a whole DNS message; None unless it parses exactly.
pub(crate) fn parse(msg: &[u8]) -> Option<Message> {
    let mut r = Rd::new(msg);
    let id = r.u16()?;
    let flags = r.u16()?;
    let (qd, an, ns, ar) = (r.u16()?, r.u16()?, r.u16()?, r.u16()?);
    let opcode = (flags >> 11) & 0xf;
    // One question in unicast DNS; mDNS queries may ask several.
    if !(1..=64).contains(&qd) || !matches!(opcode, 0 | 2 | 4 | 5) {
        return None;
    }
    let mut pos = 12;
    let mut first = None;
    let mut more = Vec::new();
    for _ in 0..qd {
        let (name, after) = read_name(msg, pos)?;
        let mut r = Rd::new(msg.get(after..)?);
        let qtype = r.u16()?;
        let qclass = r.u16()? & 0x7fff;
        if qtype == 0 || !matches!(qclass, 1 | 3 | 4 | 254 | 255) {
            return None;
        }
        pos = after + 4;
        if first.is_none() {
            first = Some((name, qtype));
        } else {
            more.push((name, qtype));
        }
    }
    let (qname, qtype) = first?;
    for _ in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        let (_, after) = read_name(msg, pos)?;
        let mut r = Rd::new(msg.get(after..)?);
        let _ty = r.u16()?;
        let _class = r.u16()?;
        let _ttl = r.u32()?;
        r.vec16()?;
        pos = after + r.pos();
    }
    if pos != msg.len() {
        return None;
    }
    Some(Message { id, response: flags & 0x8000 != 0, rcode: (flags & 0xf) as u8, ancount: an, qname, qtype, more })
}

/// UDP content probe.
pub(crate) fn probe_message(data: &[u8]) -> Probe {
    if parse(data).is_some() {
        Probe::Yes
    } else {
        Probe::No
    }
}

/// TCP content probe: a 2-byte length, then a message that parses exactly.
pub(crate) fn probe_tcp(b: &[u8], _from_initiator: bool) -> Probe {
    let Some(l) = b.get(..2) else { return Probe::NeedMore };
    let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
    if len < 17 || len + 2 > MAX_BUFFER {
        return Probe::No;
    }
    // Judge the header as soon as it is there, rather than waiting for a
    // length that text (a "220 " banner) makes look like 12 KiB.
    if let Some(h) = b.get(2..14) {
        let opcode = (h[2] >> 3) & 0xf;
        let questions = u16::from_be_bytes([h[4], h[5]]);
        if !matches!(opcode, 0 | 2 | 4 | 5) || !(1..=64).contains(&questions) {
            return Probe::No;
        }
    }
    match b.get(2..2 + len) {
        None => Probe::NeedMore,
        Some(m) => probe_message(m),
    }
}

/// Applies one message: a question opens a transaction (the first fills
/// [`DnsMeta`]'s own fields), a response completes the newest open one with
/// its id and name, or opens its own when none is open; every message counts
/// in [`DnsFlowStats`]. A direction is never finished by DNS itself, so every
/// message of the flow is seen.
pub(crate) fn on_message(meta: &mut AppMeta, data: &[u8]) {
    let Some(m) = parse(data) else { return };
    // A response answers; a question asks.
    let answered = |t: DnsTransaction| {
        if m.response {
            DnsTransaction { rcode: Some(m.rcode), answers: Some(m.ancount), ..t }
        } else {
            t
        }
    };
    let Some(d) = meta.dns.as_mut() else {
        let first = answered(DnsTransaction { query: m.qname.clone(), qtype: m.qtype, id: m.id, ..Default::default() });
        let mut d = DnsMeta { first, transaction_count: 1, ..Default::default() };
        d.stats.add(&m);
        if !m.response {
            for (query, qtype) in m.more {
                d.push(DnsTransaction { query, qtype, id: m.id, ..Default::default() });
            }
        }
        meta.dns = Some(d);
        return;
    };
    d.stats.add(&m);
    match d.pending(m.id, &m.qname) {
        Some(t) if m.response => {
            t.rcode = Some(m.rcode);
            t.answers = Some(m.ancount);
        }
        // A query repeating an open transaction is a retransmission.
        Some(_) => {}
        None => {
            let more = if m.response { Vec::new() } else { m.more };
            d.push(answered(DnsTransaction { query: m.qname, qtype: m.qtype, id: m.id, ..Default::default() }));
            for (query, qtype) in more {
                d.push(DnsTransaction { query, qtype, id: m.id, ..Default::default() });
            }
        }
    }
}

/// TCP: takes every whole length-prefixed message from the start of `buf`.
/// True when this direction is finished (a length the buffer cannot hold).
pub(crate) fn on_tcp_stream(meta: &mut AppMeta, buf: &mut Vec<u8>) -> bool {
    let mut at = 0;
    let finished = loop {
        let Some(l) = buf.get(at..at + 2) else { break false };
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        if len + 2 > MAX_BUFFER {
            break true;
        }
        match buf.get(at + 2..at + 2 + len) {
            None => break false,
            Some(m) => {
                on_message(meta, m);
                at += 2 + len;
            }
        }
    };
    buf.drain(..at);
    finished
}

/// DNS keeps no state of its own between messages: each one is parsed
/// into the flow's [`DnsMeta`].
#[derive(Debug)]
pub(crate) struct DnsParser;

impl super::registry::AppParsable for DnsParser {
    fn on_stream(&mut self, meta: &mut AppMeta, _from_initiator: bool, buf: &mut Vec<u8>) -> super::registry::Step {
        super::registry::Step::finished_if(on_tcp_stream(meta, buf))
    }
    fn on_datagram(&mut self, meta: &mut AppMeta, _from_initiator: bool, data: &[u8]) -> bool {
        on_message(meta, data);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppParser, AppProto, DetectMethod};

    /// Query for www.example.com A, with an EDNS OPT record.
    pub(crate) fn query() -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        q
    }

    /// NXDOMAIN-free response: two answers, one using a compression pointer to the question name.
    fn response() -> Vec<u8> {
        let mut r = vec![0x12, 0x34, 0x81, 0x83, 0, 1, 0, 2, 0, 0, 0, 0];
        r.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34]);
        r.extend_from_slice(&[0xc0, 16, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        r
    }

    #[test]
    fn udp_query_and_response() {
        let mut p = AppParser::new(17, 40000, 5300);
        p.on_datagram(true, &query());
        assert_eq!(p.meta().proto, AppProto::Dns);
        assert_eq!(p.meta().method, Some(DetectMethod::Content));
        assert!(!p.done());
        p.on_datagram(false, &response());
        let d = p.meta().dns.clone().unwrap_or_default();
        assert_eq!(d.query, "www.example.com");
        assert_eq!(d.qtype, 1);
        assert_eq!(d.rcode, Some(3));
        assert_eq!(d.answers, Some(2));
        // Every later message still counts: a tunnel's evidence is in the rest.
        assert!(!p.done());
        let mut q2 = query();
        q2.splice(13..16, b"abc".iter().copied());
        p.on_datagram(true, &q2);
        p.on_datagram(true, &query());
        let s = p.meta().dns.clone().unwrap_or_default().stats;
        assert_eq!((s.queries, s.responses), (3, 1));
        assert!((1.9..2.2).contains(&s.distinct_names()), "{}", s.distinct_names());
        assert_eq!(s.label_len_mean(), 7.0);
        assert_eq!(s.nxdomain_share(), 1.0);
        assert_eq!(s.txt_null_share(), 0.0);
        assert_eq!(p.meta().dns.as_ref().map(|d| d.query.as_str()), Some("www.example.com"));
    }

    #[test]
    fn tunnel_like_queries_raise_label_length_entropy_and_txt_share() {
        let mut p = AppParser::new(17, 40000, 53);
        for i in 0..20u8 {
            let mut q = vec![0x12, i, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 40];
            q.extend(
                (0..40u8).map(|j| b"abcdefghijklmnopqrstuvwxyz234567"[(usize::from(i) * 7 + usize::from(j) * 13) % 32]),
            );
            q.extend_from_slice(b"\x01t\x07example\x03com\x00\x00\x10\x00\x01");
            p.on_datagram(true, &q);
        }
        let s = p.meta().dns.clone().unwrap_or_default().stats;
        assert_eq!(s.queries, 20);
        assert!(s.distinct_names() > 15.0, "{}", s.distinct_names());
        assert_eq!(s.label_len_mean(), 40.0);
        assert!(s.label_entropy_mean() > 4.0, "{}", s.label_entropy_mean());
        assert_eq!(s.txt_null_share(), 1.0);
    }

    #[test]
    fn tcp_with_length_prefix_split() {
        let mut p = AppParser::new(6, 40000, 5300);
        let q = query();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        for b in &framed {
            p.on_stream(true, std::slice::from_ref(b));
        }
        assert_eq!(p.meta().proto, AppProto::Dns);
        let r = response();
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&r);
        p.on_stream(false, &framed[..5]);
        assert_eq!(p.meta().dns.as_ref().and_then(|d| d.rcode), None);
        p.on_stream(false, &framed[5..]);
        assert_eq!(p.meta().dns.as_ref().and_then(|d| d.answers), Some(2));
        // A second query on the same connection, in one segment with a third.
        let q = query();
        let mut two = Vec::new();
        for _ in 0..2 {
            two.extend_from_slice(&(q.len() as u16).to_be_bytes());
            two.extend_from_slice(&q);
        }
        p.on_stream(true, &two);
        let s = p.meta().dns.clone().unwrap_or_default().stats;
        assert_eq!((s.queries, s.responses), (3, 1));
    }

    #[test]
    fn inexact_messages_are_not_dns() {
        let mut q = query();
        q.push(0);
        assert!(parse(&q).is_none());
        let q = query();
        for n in 0..q.len() {
            assert!(parse(&q[..n]).is_none(), "prefix {n}");
        }
        // A pointer loop.
        let mut r = vec![0, 0, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        r.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        r.extend_from_slice(&[0xc0, 19, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]);
        assert!(parse(&r).is_none());
        let mut p = AppParser::new(17, 1, 53);
        p.on_datagram(true, b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05");
        assert_eq!(p.meta().method, Some(DetectMethod::Port));
    }

    #[test]
    fn netbios_name_service_is_not_dns() {
        let mut p = AppParser::new(17, 137, 137);
        p.on_datagram(true, &query());
        assert_eq!(p.meta().proto, AppProto::Unknown);
        assert!(p.meta().dns.is_none());
    }

    #[test]
    fn names_are_escaped() {
        let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x03a.b\x02\x00z\x00\x00\x10\x00\x01");
        assert_eq!(parse(&q).map(|m| m.qname), Some("a\\.b.\\000z".to_string()));
        // UTF-8 is kept as text, each maximal invalid sequence is one U+FFFD
        // (as tshark prints it), also inside a label that mixes both: e9 alone,
        // ff, fe, then a cut 3-byte sequence (e4 b8).
        let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 6];
        q.extend_from_slice("小佛".as_bytes());
        q.extend_from_slice(&[6, 0xe9, b'a', 0xff, 0xfe, 0xe4, 0xb8, 0, 0, 1, 0, 1]);
        assert_eq!(parse(&q).map(|m| m.qname), Some("小佛.\u{fffd}a\u{fffd}\u{fffd}\u{fffd}".to_string()));
    }

    #[test]
    fn mdns_with_several_questions_takes_the_first() {
        let mut q = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x05_http\x04_tcp\x05local\x00\x00\x0c\x80\x01");
        q.extend_from_slice(b"\x04_ipp\xc0\x12\x00\x0c\x80\x01");
        let m = parse(&q);
        assert_eq!(m.as_ref().map(|m| (m.qname.as_str(), m.qtype)), Some(("_http._tcp.local", 12)));
        q.push(0);
        assert!(parse(&q).is_none());
    }

    /// A one-question message for `name` (labels split on '.').
    fn msg(id: u16, response: bool, rcode: u8, name: &str, qtype: u16) -> Vec<u8> {
        let flags: u16 = if response { 0x8180 | u16::from(rcode) } else { 0x0100 };
        let mut m = id.to_be_bytes().to_vec();
        m.extend(flags.to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.') {
            m.push(label.len() as u8);
            m.extend(label.as_bytes());
        }
        m.extend([0, 0, qtype as u8, 0, 1]);
        m
    }

    #[test]
    fn every_transaction_of_a_flow_is_reported_in_order() {
        let mut p = AppParser::new(17, 40001, 53);
        p.on_datagram(true, &msg(1, false, 0, "a.example", 1));
        p.on_datagram(false, &msg(1, true, 0, "a.example", 1));
        p.on_datagram(true, &msg(2, false, 0, "b.example", 16));
        p.on_datagram(true, &msg(2, false, 0, "b.example", 16)); // retransmitted
        p.on_datagram(true, &msg(3, false, 0, "c.example", 28));
        p.on_datagram(false, &msg(2, true, 3, "b.example", 16));
        p.on_datagram(false, &msg(9, true, 0, "unasked.example", 1));
        let d = p.meta().dns.clone().unwrap_or_default();
        assert_eq!((d.query.as_str(), d.rcode), ("a.example", Some(0)));
        let t: Vec<_> = d.transactions.iter().map(|t| (t.query.as_str(), t.qtype, t.rcode)).collect();
        assert_eq!(t, [("b.example", 16, Some(3)), ("c.example", 28, None), ("unasked.example", 1, Some(0))]);
        assert_eq!(d.transaction_count, 4);
        assert_eq!(d.queries().collect::<Vec<_>>(), ["a.example", "b.example", "c.example", "unasked.example"]);
        let json = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(json["transaction_count"], 4);
        assert_eq!(
            json["transactions"][0],
            serde_json::json!({"query": "b.example", "qtype": 16, "rcode": 3, "answers": 0})
        );
        // One transaction: today's fields only.
        let mut p = AppParser::new(17, 40001, 53);
        p.on_datagram(true, &msg(1, false, 0, "a.example", 1));
        let json = serde_json::to_string(&p.meta().dns).unwrap_or_default();
        assert_eq!(json, r#"{"query":"a.example","qtype":1}"#);
    }

    #[test]
    fn transactions_are_bounded_and_counted_beyond_the_bound() {
        let mut p = AppParser::new(17, 40001, 53);
        for i in 0..3000u16 {
            p.on_datagram(true, &msg(i, false, 0, &format!("q{i}.t.example"), 16));
        }
        let d = p.meta().dns.clone().unwrap_or_default();
        assert_eq!(d.transactions.len(), MAX_TRANSACTIONS);
        assert_eq!(d.transaction_count, 3000);
        // What is stored is a prefix: the first queries after the first.
        assert_eq!(d.transactions.last().map(|t| t.query.as_str()), Some("q1024.t.example"));
        assert_eq!(d.transactions[0].query, "q1.t.example");
        // Long names: the byte bound holds first.
        let mut p = AppParser::new(17, 40001, 53);
        let long = ["a".repeat(63), "b".repeat(63), "c".repeat(63)].join(".");
        for i in 0..1000u16 {
            p.on_datagram(true, &msg(i, false, 0, &format!("{long}.x{i}"), 16));
        }
        let d = p.meta().dns.clone().unwrap_or_default();
        assert!(d.transactions.iter().map(|t| t.query.len()).sum::<usize>() <= MAX_STORED_NAME_BYTES);
        assert!(d.transactions.len() < MAX_TRANSACTIONS);
        assert_eq!(d.transaction_count, 1000);
    }

    #[test]
    fn every_question_of_an_mdns_query_is_a_transaction() {
        let mut q = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x05_http\x04_tcp\x05local\x00\x00\x0c\x80\x01");
        q.extend_from_slice(b"\x04_ipp\xc0\x12\x00\x0c\x80\x01");
        let mut p = AppParser::new(17, 5353, 5353);
        p.on_datagram(true, &q);
        let d = p.meta().dns.clone().unwrap_or_default();
        assert_eq!(d.queries().collect::<Vec<_>>(), ["_http._tcp.local", "_ipp._tcp.local"]);
    }

    #[test]
    fn forward_pointers_are_read_and_loops_end() {
        // nmap's version.bind CH TXT probe: the name's last label points forward to a zero byte.
        let mut q = vec![0, 6, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x07version\x04bind\xc0\x1b\x00\x10\x00\x03\x00");
        assert_eq!(q[0x1b], 0);
        assert_eq!(read_name(&q, 12), Some(("version.bind".to_string(), 27)));
        // Two pointers at each other: no name, no hang.
        let looped = [0u8, 0, 0, 0, 0xc0, 6, 0xc0, 4];
        assert_eq!(read_name(&looped, 4), None);
    }
}
