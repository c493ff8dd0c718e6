//! Application-layer parsers: pure, I/O-free and panic-free.
//!
//! An [`AppParser`] belongs to one flow. It is fed the in-order bytes of each
//! direction of a TCP stream ([`AppParser::on_stream`], with
//! [`AppParser::on_gap`] for lost bytes) or the payloads of UDP datagrams
//! ([`AppParser::on_datagram`]) and fills an [`AppMeta`].
//!
//! Identification is by content, whatever the ports: a TLS record header, an
//! HTTP request method or `HTTP/1.` status line, an `SSH-` banner, a DNS
//! message that parses exactly (with its 2-byte length prefix on TCP), or a
//! QUIC Initial packet of a known version that decrypts. Only when no parser
//! recognised anything does the well-known-port guess stand
//! ([`DetectMethod::Port`]).
//!
//! TLS is also found after a plaintext prelude: STARTTLS in SMTP, IMAP,
//! POP3, FTP, LDAP and XMPP, a SOCKS4/5 handshake, or an HTTP `CONNECT`.
//! When no probe recognises either direction (or HTTP becomes a tunnel),
//! both directions are scanned, up to [`MAX_PRELUDE`] bytes each, for a
//! record carrying a ClientHello or ServerHello; from there the flow is TLS.
//!
//! Memory is bounded: at most [`MAX_BUFFER`] bytes are buffered per direction;
//! a direction that needs more is given up on.

pub mod dns;
pub mod http;
pub mod quic;
mod registry;
pub mod retained;
pub mod ssh;
pub mod tls;

pub use dns::DnsMeta;
pub use http::HttpMeta;
pub use quic::QuicMeta;
pub use registry::port_guess;
use registry::{AppParsable, FlowPorts, Step};
pub use ssh::SshMeta;
pub use tls::TlsMeta;

/// Most bytes buffered per direction of one flow.
pub const MAX_BUFFER: usize = 16 * 1024;

/// Bytes per direction scanned for TLS after a plaintext prelude.
pub const MAX_PRELUDE: usize = 16 * 1024;

/// Datagrams per direction that may fail every probe before that direction is given up on.
const MAX_UNKNOWN_DATAGRAMS: u32 = 4;

/// Application protocol of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum AppProto {
    /// No parser recognised the bytes and no well-known port matched.
    #[default]
    Unknown,
    /// HTTP/1.x, over TCP or (SSDP, UPnP) in UDP datagrams.
    Http,
    /// TLS over TCP, also when found after a plaintext prelude (STARTTLS, SOCKS, `CONNECT`).
    Tls,
    /// DNS, mDNS or LLMNR, over UDP or TCP.
    Dns,
    /// SSH, recognised by its `SSH-` banner.
    Ssh,
    /// QUIC, recognised by a client Initial packet of a known version.
    Quic,
}

impl AppProto {
    /// Every protocol, in declaration order, so `ALL[p.index()] == p`.
    pub const ALL: [AppProto; 6] =
        [AppProto::Unknown, AppProto::Http, AppProto::Tls, AppProto::Dns, AppProto::Ssh, AppProto::Quic];

    /// Stable name used in counters and JSON.
    pub fn name(self) -> &'static str {
        match self {
            AppProto::Unknown => "unknown",
            AppProto::Http => "http",
            AppProto::Tls => "tls",
            AppProto::Dns => "dns",
            AppProto::Ssh => "ssh",
            AppProto::Quic => "quic",
        }
    }

    /// Position of this protocol in `ALL`, for per-protocol counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How [`AppMeta::proto`] was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DetectMethod {
    /// A parser recognised the bytes.
    Content,
    /// Only a well-known-port guess.
    Port,
}

/// What the parsers learned about one flow.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AppMeta {
    /// Application protocol found by content, or guessed from the ports.
    pub proto: AppProto,
    /// How `proto` was decided; `None` while it is `Unknown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<DetectMethod>,
    /// HTTP requests and responses, when the flow is HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMeta>,
    /// TLS handshake details and fingerprints, when the flow is TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMeta>,
    /// DNS transactions and counters, when the flow is DNS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsMeta>,
    /// SSH banners and HASSH fingerprints, when the flow is SSH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshMeta>,
    /// QUIC version and ClientHello details, when the flow is QUIC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic: Option<QuicMeta>,
}

/// Result of a content probe on the first bytes of a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Yes,
    No,
    NeedMore,
}

#[derive(Debug, Default)]
struct Dir {
    buf: Vec<u8>,
    /// Nothing more is parsed in this direction.
    finished: bool,
    /// Every probe said no: waits (bounded) for the other direction to identify the flow.
    probe_failed: bool,
    /// Datagrams that no probe recognised.
    unknown_datagrams: u32,
    /// Scanning for TLS after a plaintext prelude (see the module documentation).
    prelude: bool,
    /// Prelude bytes scanned and let go.
    prelude_scanned: usize,
}

/// Application parser of one flow. See the module documentation.
#[derive(Debug)]
pub struct AppParser {
    ports: FlowPorts,
    meta: AppMeta,
    dirs: [Dir; 2],
    /// The identified protocol's parser (see [`registry`]); `None` until a probe matched.
    parser: Option<Box<dyn AppParsable>>,
    /// Over UDP, only the initiator's datagrams are parsed.
    initiator_datagrams_only: bool,
}

fn di(from_initiator: bool) -> usize {
    if from_initiator {
        0
    } else {
        1
    }
}

impl AppParser {
    /// transport: 6 (TCP) or 17 (UDP); ports of the flow's initiator and responder.
    pub fn new(transport: u8, initiator_port: u16, responder_port: u16) -> Self {
        let guess = port_guess(transport, initiator_port, responder_port);
        let mut meta = AppMeta::default();
        if guess != AppProto::Unknown {
            meta.proto = guess;
            meta.method = Some(DetectMethod::Port);
        }
        let ports = FlowPorts { transport, initiator: initiator_port, responder: responder_port };
        let mut p = AppParser { ports, meta, dirs: Default::default(), parser: None, initiator_datagrams_only: false };
        if transport != 6 && transport != 17 {
            p.dirs[0].finished = true;
            p.dirs[1].finished = true;
        }
        p
    }

    /// Whether a parser recognised the flow's protocol by content.
    pub fn identified(&self) -> bool {
        self.parser.is_some()
    }

    /// TCP: the next in-order bytes of one direction's reassembled stream.
    pub fn on_stream(&mut self, from_initiator: bool, data: &[u8]) {
        if self.ports.transport != 6 {
            return;
        }
        let d = di(from_initiator);
        let mut rest = data;
        while !rest.is_empty() {
            let dir = match self.dirs.get_mut(d) {
                Some(dir) if !dir.finished => dir,
                _ => return,
            };
            // Bytes a parser passes over (HTTP bodies) are counted, never copied.
            if let (Some(parser), true) = (self.parser.as_mut(), dir.buf.is_empty() && !dir.prelude) {
                let skip = parser.skip(&mut self.meta, from_initiator, rest.len());
                rest = rest.get(skip..).unwrap_or(&[]);
                if rest.is_empty() {
                    return;
                }
            }
            let room = MAX_BUFFER.saturating_sub(dir.buf.len());
            if room == 0 {
                // The parser could not make progress within the bound.
                dir.finished = true;
                dir.buf = Vec::new();
                return;
            }
            let n = room.min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            dir.buf.extend_from_slice(chunk);
            rest = tail;
            self.process_stream(d);
        }
    }

    /// TCP: `len` bytes of that direction were lost. Parsers do not resync
    /// inside a message, so the direction is given up on, unless it had
    /// already finished.
    pub fn on_gap(&mut self, from_initiator: bool, len: u64) {
        if len == 0 {
            return;
        }
        if let Some(dir) = self.dirs.get_mut(di(from_initiator)) {
            dir.finished = true;
            dir.buf = Vec::new();
        }
        self.check_probe_dead_end();
    }

    /// UDP: one datagram's payload.
    pub fn on_datagram(&mut self, from_initiator: bool, data: &[u8]) {
        if self.ports.transport != 17 {
            return;
        }
        let d = di(from_initiator);
        if self.dirs.get(d).is_none_or(|dir| dir.finished) {
            return;
        }
        if self.parser.is_none() {
            let found =
                registry::DATAGRAM.iter().find_map(|e| Some((e, (e.datagram?)(data, from_initiator, self.ports)?)));
            let Some((entry, parser)) = found else {
                if let Some(dir) = self.dirs.get_mut(d) {
                    dir.unknown_datagrams += 1;
                    if dir.unknown_datagrams >= MAX_UNKNOWN_DATAGRAMS {
                        dir.finished = true;
                    }
                }
                return;
            };
            self.identify(entry.proto, parser);
            if entry.initiator_datagrams_only {
                self.initiator_datagrams_only = true;
                if let Some(dir) = self.dirs.get_mut(1) {
                    dir.finished = true;
                }
            }
        }
        let fin = match self.parser.as_mut() {
            Some(p) if !(self.initiator_datagrams_only && d == 1) => p.on_datagram(&mut self.meta, d == 0, data),
            _ => true,
        };
        if fin {
            if let Some(dir) = self.dirs.get_mut(d) {
                dir.finished = true;
            }
        }
    }

    /// Nothing more will be learned: callers may stop feeding bytes.
    pub fn done(&self) -> bool {
        self.dirs.iter().all(|d| d.finished)
    }

    /// What the parsers have learned about the flow so far.
    pub fn meta(&self) -> &AppMeta {
        &self.meta
    }

    /// Consumes the parser, returning what it learned about the flow.
    pub fn into_meta(self) -> AppMeta {
        self.meta
    }

    fn identify(&mut self, proto: AppProto, parser: Box<dyn AppParsable>) {
        self.meta.proto = proto;
        self.meta.method = Some(DetectMethod::Content);
        self.parser = Some(parser);
    }

    /// The stream probes of the registry, in order: the first that says yes.
    fn probe_stream(buf: &[u8], from_initiator: bool) -> Result<&'static registry::ParserEntry, Probe> {
        let mut need_more = false;
        for entry in registry::STREAM {
            let Some((probe, _)) = entry.stream else { continue };
            match probe(buf, from_initiator) {
                Probe::Yes => return Ok(entry),
                Probe::NeedMore => need_more = true,
                Probe::No => {}
            }
        }
        Err(if need_more { Probe::NeedMore } else { Probe::No })
    }

    fn process_stream(&mut self, d: usize) {
        if self.dirs.get(d).is_some_and(|dir| dir.prelude) {
            self.scan_prelude(d);
            return;
        }
        if self.parser.is_none() {
            let Some(dir) = self.dirs.get_mut(d) else { return };
            if dir.probe_failed {
                // Waits for the other direction; TLS may start after a prelude meanwhile.
                if let Some(at) = tls::find_hello_record(&dir.buf, d == 0) {
                    self.tls_found(d, at);
                }
                return;
            }
            match Self::probe_stream(&dir.buf, d == 0) {
                Ok(entry) => {
                    if let Some((_, new)) = entry.stream {
                        self.identify(entry.proto, new());
                    }
                    // The other direction may have waited for this.
                    self.run_parser(1 - d);
                }
                Err(Probe::NeedMore) => return,
                Err(_) => {
                    dir.probe_failed = true;
                    // A hello may already be in these bytes, after a prefix
                    // (a PROXY protocol line) in a flow where nothing more comes.
                    if let Some(at) = tls::find_hello_record(&dir.buf, d == 0) {
                        self.tls_found(d, at);
                        return;
                    }
                    self.check_probe_dead_end();
                    return;
                }
            }
        }
        self.run_parser(d);
    }

    /// Both directions failed (or ended) without identifying anything: look
    /// for TLS after a prelude, then give up.
    fn check_probe_dead_end(&mut self) {
        if self.parser.is_none() && self.dirs.iter().all(|d| d.finished || d.probe_failed) {
            self.start_prelude();
        }
    }

    /// Both directions scan for a TLS hello from here on.
    fn start_prelude(&mut self) {
        for d in 0..self.dirs.len() {
            if let Some(dir) = self.dirs.get_mut(d) {
                if dir.finished || dir.prelude {
                    continue;
                }
                dir.prelude = true;
                dir.probe_failed = false;
            }
            self.scan_prelude(d);
        }
    }

    /// A TLS hello starts at `at` in direction `d`'s bytes, after a prelude:
    /// from there the direction is TLS, and the other direction, unless it
    /// already parses TLS, looks for its own hello after its own prelude.
    fn tls_found(&mut self, d: usize, at: usize) {
        if let Some(dir) = self.dirs.get_mut(d) {
            dir.buf.drain(..at.min(dir.buf.len()));
            dir.prelude = false;
            dir.probe_failed = false;
        }
        // STARTTLS and tunnels: TLS follows a prelude, whatever came before.
        if !(self.parser.is_some() && self.meta.proto == AppProto::Tls) {
            self.identify(AppProto::Tls, (registry::new_tls)());
            if let Some(other) = self.dirs.get_mut(1 - d) {
                if !other.finished {
                    other.prelude = true;
                    other.probe_failed = false;
                }
            }
            self.scan_prelude(1 - d);
        }
        self.run_parser(d);
    }

    /// Looks for a TLS hello in direction `d`'s bytes; from there the direction is TLS.
    fn scan_prelude(&mut self, d: usize) {
        let Some(dir) = self.dirs.get_mut(d) else { return };
        match tls::find_hello_record(&dir.buf, d == 0) {
            Some(at) => self.tls_found(d, at),
            None => {
                // Keep the last bytes: a record header may straddle the next chunk.
                let drop = dir.buf.len().saturating_sub(tls::RECORD_PROBE_LEN - 1);
                dir.buf.drain(..drop);
                dir.prelude_scanned += drop;
                if dir.prelude_scanned > MAX_PRELUDE {
                    dir.finished = true;
                    dir.prelude = false;
                    dir.buf = Vec::new();
                }
            }
        }
    }

    fn run_parser(&mut self, d: usize) {
        let Some(dir) = self.dirs.get_mut(d) else { return };
        if dir.finished || dir.prelude || dir.buf.is_empty() {
            return;
        }
        let from_initiator = d == 0;
        let Some(parser) = self.parser.as_mut() else { return };
        let fin = match parser.on_stream(&mut self.meta, from_initiator, &mut dir.buf) {
            Step::More => false,
            Step::Finished => true,
            Step::Upgraded => {
                // A tunnel (CONNECT, 101): TLS may follow in both directions.
                for dir in &mut self.dirs {
                    dir.probe_failed = false;
                    dir.finished = false;
                    dir.prelude = false;
                }
                self.start_prelude();
                return;
            }
        };
        if fin {
            dir.finished = true;
            dir.buf = Vec::new();
        }
    }
}

/// Bounds-checked big-endian reader over a byte slice.
#[derive(Clone, Debug)]
pub(crate) struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Rd { b, p: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.p
    }
    pub(crate) fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.p)
    }
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.p.checked_add(n)?;
        let s = self.b.get(self.p..end)?;
        self.p = end;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        let s = self.take(2)?;
        Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
    }
    pub(crate) fn u24(&mut self) -> Option<u32> {
        let s = self.take(3)?;
        Some(u32::from_be_bytes([0, *s.first()?, *s.get(1)?, *s.get(2)?]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let s = self.take(4)?;
        Some(u32::from_be_bytes([*s.first()?, *s.get(1)?, *s.get(2)?, *s.get(3)?]))
    }
    /// A vector with a 1-byte length.
    pub(crate) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// A vector with a 2-byte length.
    pub(crate) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    /// A QUIC variable-length integer (RFC 9000 §16).
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let len = 1usize << (first >> 6);
        let mut v = u64::from(first & 0x3f);
        for _ in 1..len {
            v = (v << 8) | u64::from(self.u8()?);
        }
        Some(v)
    }
}

/// Lowercase hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(H[usize::from(b >> 4)]));
        s.push(char::from(H[usize::from(b & 0x0f)]));
    }
    s
}

/// MD5 of a string, lowercase hex.
pub(crate) fn md5_hex(s: &str) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(s.as_bytes()))
}

/// Text from wire bytes: printable ASCII kept, anything else as `\xNN`; at most `max` bytes read.
pub(crate) fn text(bytes: &[u8], max: usize) -> String {
    let bytes = bytes.get(..max.min(bytes.len())).unwrap_or(bytes);
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str("\\x");
            s.push_str(&hex(&[b]));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_proto_names_and_indexes() {
        for (i, p) in AppProto::ALL.iter().enumerate() {
            assert_eq!(p.index(), i);
        }
        assert_eq!(AppProto::Quic.name(), "quic");
        assert_eq!(serde_json::to_string(&AppProto::Tls).ok().as_deref(), Some("\"tls\""));
        assert_eq!(serde_json::to_string(&DetectMethod::Port).ok().as_deref(), Some("\"port\""));
    }

    #[test]
    fn port_guess_only_without_content() {
        let p = AppParser::new(6, 40000, 443);
        assert_eq!(p.meta().proto, AppProto::Tls);
        assert_eq!(p.meta().method, Some(DetectMethod::Port));
        let json = serde_json::to_string(p.meta()).unwrap_or_default();
        assert_eq!(json, r#"{"proto":"tls","method":"port"}"#);
        // Content wins over the port: HTTP on 443.
        let mut p = AppParser::new(6, 40000, 443);
        p.on_stream(true, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert_eq!(p.meta().proto, AppProto::Http);
        assert_eq!(p.meta().method, Some(DetectMethod::Content));
        assert!(p.meta().tls.is_none());
        // Nothing known.
        let p = AppParser::new(6, 40000, 40001);
        assert_eq!(p.meta().proto, AppProto::Unknown);
        assert_eq!(p.meta().method, None);
    }

    #[test]
    fn unknown_bytes_give_up_both_directions_after_the_prelude_bound() {
        let mut p = AppParser::new(6, 40000, 443);
        p.on_stream(true, b"\x00\x01garbage that is nothing");
        assert!(!p.done());
        p.on_stream(false, b"more garbage here, also nothing");
        // Both failed: TLS is looked for after a prelude, up to the bound.
        assert!(!p.done());
        let noise = [0x16u8, 3, 1, 0, 5, 1, 0, 0, 1, 9, 9].repeat(200);
        for _ in 0..=MAX_PRELUDE / noise.len() {
            p.on_stream(true, &noise);
            p.on_stream(false, &noise);
            assert!(p.dirs.iter().all(|d| d.buf.len() < 16));
        }
        assert!(p.done());
        assert_eq!(p.meta().proto, AppProto::Tls);
        assert_eq!(p.meta().method, Some(DetectMethod::Port));
    }

    #[test]
    fn tls_after_a_starttls_prelude() {
        let hello = tls::tests::client_hello_msg();
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hello);
        for split in [1, 5, 11, rec.len()] {
            let mut p = AppParser::new(6, 40000, 21);
            p.on_stream(false, b"220 ftp.example.org ready\r\n");
            p.on_stream(true, b"AUTH TLS\r\n");
            p.on_stream(false, b"234 AUTH TLS OK.\r\n");
            p.on_stream(true, &rec[..split]);
            p.on_stream(true, &rec[split..]);
            assert_eq!(p.meta().proto, AppProto::Tls, "split {split}: {:?}", p.dirs);
            assert!(p.meta().tls.as_ref().is_some_and(|t| t.sni.is_some()), "split {split}: {:?}", p.meta());
        }
    }

    #[test]
    fn bulk_unknown_stream_is_bounded() {
        let mut p = AppParser::new(6, 1, 2);
        // A prefix of an HTTP method forever: the probe keeps asking for more until the bound.
        p.on_stream(true, b"GE");
        assert!(!p.done());
        let big = vec![0x16u8; 40_000];
        p.on_stream(false, &big);
        assert!(p.dirs[1].finished || p.dirs[1].probe_failed);
        assert!(p.dirs.iter().all(|d| d.buf.len() <= MAX_BUFFER));
    }

    #[test]
    fn gap_gives_up_direction() {
        let mut p = AppParser::new(6, 40000, 80);
        p.on_stream(true, b"GET / HTTP/1.1\r\nHo");
        p.on_gap(true, 100);
        p.on_stream(true, b"st: x\r\n\r\n");
        assert_eq!(p.meta().proto, AppProto::Http);
        assert_eq!(p.meta().http.as_ref().and_then(|h| h.host.clone()), None);
        assert!(p.dirs[0].finished);
    }

    #[test]
    fn udp_unknown_gives_up_after_a_few_datagrams() {
        let mut p = AppParser::new(17, 5000, 5001);
        for _ in 0..MAX_UNKNOWN_DATAGRAMS {
            p.on_datagram(true, b"\x01\x02\x03");
            p.on_datagram(false, b"\x01\x02\x03");
        }
        assert!(p.done());
        assert_eq!(p.meta().proto, AppProto::Unknown);
    }

    /// Mutated, truncated and re-split protocol messages, and plain noise, through every
    /// entry point: nothing panics and no direction buffers more than the bound.
    #[test]
    fn mutation_fuzz_never_panics_and_stays_bounded() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let hello = tls::tests::client_hello_msg();
        let mut tls_rec = vec![22, 3, 1];
        tls_rec.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        tls_rec.extend_from_slice(&hello);
        let quic_hex: Vec<u8> = include_str!("testdata/rfc9001_a2.hex").bytes().filter(u8::is_ascii_hexdigit).collect();
        let quic: Vec<u8> = quic_hex
            .chunks(2)
            .filter_map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?.trim(), 16).ok())
            .collect();
        let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        dns.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        let mut dns_tcp = (dns.len() as u16).to_be_bytes().to_vec();
        dns_tcp.extend_from_slice(&dns);
        let seeds: [&[u8]; 6] = [
            &tls_rec,
            b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n\x00\x00\x00\x2c\x04\x14aaaaaaaaaaaaaaaa\x00\x00\x00\x01x\x00\x00\x00\x00",
            &dns,
            &dns_tcp,
            &quic,
        ];
        let mut identified = [0u32; 6];
        for round in 0..3000u64 {
            let seed = seeds[(next() % seeds.len() as u64) as usize];
            let mut data = seed.to_vec();
            for _ in 0..(next() % 4) {
                let i = (next() as usize) % data.len().max(1);
                if let Some(b) = data.get_mut(i) {
                    *b ^= (next() as u8) | 1;
                }
            }
            data.truncate((next() as usize) % (data.len() + 1) + usize::from(round % 2 == 0) * data.len());
            if round % 7 == 0 {
                data = (0..(next() % 3000)).map(|_| next() as u8).collect();
            }
            let transport = if next() % 2 == 0 { 6 } else { 17 };
            let mut p = AppParser::new(transport, (next() % 65536) as u16, [80, 443, 22, 53][(next() % 4) as usize]);
            let mut rest = &data[..];
            while !rest.is_empty() {
                // Datagrams are mostly whole messages; streams are cut anywhere.
                let whole = transport == 17 && next() % 4 != 0;
                let n = if whole { rest.len() } else { ((next() as usize) % 300 + 1).min(rest.len()) };
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let from_initiator = next() % 3 != 0;
                match next() % 20 {
                    0 => p.on_gap(from_initiator, n as u64),
                    _ if transport == 6 => p.on_stream(from_initiator, chunk),
                    _ => p.on_datagram(from_initiator, chunk),
                }
                assert!(p.dirs.iter().all(|d| d.buf.len() <= MAX_BUFFER));
            }
            if p.meta().method == Some(DetectMethod::Content) {
                identified[p.meta().proto.index()] += 1;
            }
            assert!(serde_json::to_string(p.meta()).is_ok());
        }
        // The unmutated halves still get recognised: the loop did exercise the parsers.
        for proto in [AppProto::Http, AppProto::Tls, AppProto::Dns, AppProto::Ssh, AppProto::Quic] {
            assert!(identified[proto.index()] > 5, "{proto:?}: {identified:?}");
        }
    }

    #[test]
    fn reader_is_bounds_checked() {
        let mut r = Rd::new(&[0x40, 0x25, 0x01]);
        assert_eq!(r.varint(), Some(0x25));
        assert_eq!(r.u16(), None);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u8(), None);
        let mut r = Rd::new(&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c]);
        assert_eq!(r.varint(), Some(151_288_809_941_952_652));
        assert_eq!(text(b"a\x00b", 10), "a\\x00b");
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
