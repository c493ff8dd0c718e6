//! TLS: ClientHello (SNI, ALPN, versions, cipher suites, JA3, JA4) and
//! ServerHello (chosen version and cipher, JA3S).
//!
//! Records may span several segments and a handshake message several records.
//! GREASE values (RFC 8701) are left out of every list and fingerprint, as the
//! JA3 and JA4 specifications say. The ClientHello parser is shared with QUIC.

use sha2::Digest;

use super::{hex, md5_hex, text, AppMeta, Probe, Rd, MAX_BUFFER};

/// What the parser learned from the TLS handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TlsMeta {
    /// Server name from the ClientHello's SNI extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocols offered by the client, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// Versions offered: supported_versions if present, else the ClientHello's version.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<u16>,
    /// Cipher suites offered, in order, GREASE left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<u16>,
    /// JA3 string: version,ciphers,extensions,groups,point formats (decimal, no GREASE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3: Option<String>,
    /// JA3 fingerprint: md5 (hex) of `ja3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3_hash: Option<String>,
    /// JA4 fingerprint of the ClientHello, with the `t` (TCP) prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// Version chosen by the server (its supported_versions extension if present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<u16>,
    /// Cipher suite chosen by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cipher: Option<u16>,
    /// ALPN protocol chosen by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_alpn: Option<String>,
    /// JA3S string: version,cipher,extensions of the ServerHello (decimal, no GREASE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s: Option<String>,
    /// JA3S fingerprint: md5 (hex) of `ja3s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja3s_hash: Option<String>,
}

/// RFC 8701 GREASE values: 0x0a0a, 0x1a1a, ..., 0xfafa.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

const EXT_SNI: u16 = 0;
const EXT_GROUPS: u16 = 10;
const EXT_POINT_FORMATS: u16 = 11;
const EXT_SIG_ALGS: u16 = 13;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Content probe: a TLS handshake record carrying a ClientHello or ServerHello.
pub(crate) fn probe(b: &[u8], _from_initiator: bool) -> Probe {
    let checks: [fn(u8) -> bool; 6] = [|x| x == 22, |x| x == 3, |x| x <= 4, |_| true, |_| true, |x| x == 1 || x == 2];
    for (i, check) in checks.iter().enumerate() {
        match b.get(i) {
            None => return Probe::NeedMore,
            Some(&x) if !check(x) => return Probe::No,
            Some(_) => {}
        }
    }
    let len = b.get(3..5).map_or(0, |l| u16::from_be_bytes([l[0], l[1]]));
    if len == 0 || len > 16384 + 2048 {
        return Probe::No;
    }
    Probe::Yes
}

/// Where a TLS record carrying a ClientHello (from the initiator) or a
/// ServerHello (from the responder) starts in `b`: how TLS is found after a
/// plaintext prelude (STARTTLS, SOCKS, HTTP CONNECT). The record header, the
/// handshake header and the hello's version must all agree, so text and
/// most binary preludes never match by chance. A header cut by the end of
/// `b` is not reported: callers keep the last [`RECORD_PROBE_LEN`] bytes.
pub(crate) fn find_hello_record(b: &[u8], from_initiator: bool) -> Option<usize> {
    let want = if from_initiator { 1 } else { 2 };
    let mut i = 0;
    while let Some(p) = b.get(i..)?.iter().position(|&c| c == 22) {
        let at = i + p;
        i = at + 1;
        let h = b.get(at..at + RECORD_PROBE_LEN)?;
        let record_len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        let hello_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        if h[1] == 3
            && h[2] <= 4
            && (42..=16384 + 2048).contains(&record_len)
            && h[5] == want
            && (38..=65536).contains(&hello_len)
            && h[9] == 3
            && h[10] <= 4
        {
            return Some(at);
        }
    }
    None
}

/// Bytes of a record header, handshake header and hello version checked by [`find_hello_record`].
pub(crate) const RECORD_PROBE_LEN: usize = 11;

/// A parsed ClientHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types in order (GREASE included, left out where needed).
    pub exts: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub alpn_first_raw: Option<Vec<u8>>,
    pub versions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub sig_algs: Vec<u16>,
}

fn u16_list(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

/// Parses a ClientHello body (after the 4-byte handshake header).
pub(crate) fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut r = Rd::new(body);
    let mut ch = ClientHello { legacy_version: r.u16()?, ..Default::default() };
    r.take(32)?;
    r.vec8()?;
    ch.ciphers = u16_list(r.vec16()?);
    r.vec8()?;
    if r.remaining() == 0 {
        return Some(ch);
    }
    let mut ex = Rd::new(r.vec16()?);
    while ex.remaining() > 0 {
        let ty = ex.u16()?;
        let data = ex.vec16()?;
        ch.exts.push(ty);
        let mut d = Rd::new(data);
        match ty {
            EXT_SNI => {
                if let Some(mut list) = d.vec16().map(Rd::new) {
                    while list.remaining() > 0 {
                        let (Some(kind), Some(name)) = (list.u8(), list.vec16()) else { break };
                        if kind == 0 && ch.sni.is_none() {
                            ch.sni = Some(text(name, 255));
                        }
                    }
                }
            }
            EXT_ALPN => {
                if let Some(mut list) = d.vec16().map(Rd::new) {
                    while let Some(p) = list.vec8() {
                        if ch.alpn_first_raw.is_none() {
                            ch.alpn_first_raw = Some(p.to_vec());
                        }
                        if ch.alpn.len() < 16 {
                            ch.alpn.push(text(p, 64));
                        }
                    }
                }
            }
            EXT_SUPPORTED_VERSIONS => ch.versions = d.vec8().map(u16_list).unwrap_or_default(),
            EXT_GROUPS => ch.groups = d.vec16().map(u16_list).unwrap_or_default(),
            EXT_POINT_FORMATS => ch.point_formats = d.vec8().map(<[u8]>::to_vec).unwrap_or_default(),
            EXT_SIG_ALGS => ch.sig_algs = d.vec16().map(u16_list).unwrap_or_default(),
            _ => {}
        }
    }
    Some(ch)
}

fn dash_join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|v| v.to_string()).collect::<Vec<_>>().join("-")
}

fn sha256_12(s: &str) -> String {
    let h = sha2::Sha256::digest(s.as_bytes());
    hex(h.get(..6).unwrap_or(&[]))
}

fn ja4_version(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

impl ClientHello {
    /// JA3 string: version,ciphers,extensions,groups,point formats (decimal, GREASE left out).
    pub fn ja3(&self) -> String {
        let ng = |v: &&u16| !is_grease(**v);
        format!(
            "{},{},{},{},{}",
            self.legacy_version,
            dash_join(self.ciphers.iter().filter(ng)),
            dash_join(self.exts.iter().filter(ng)),
            dash_join(self.groups.iter().filter(ng)),
            dash_join(self.point_formats.iter()),
        )
    }

    /// The versions offered: supported_versions without GREASE, else the legacy version.
    pub fn offered_versions(&self) -> Vec<u16> {
        let v: Vec<u16> = self.versions.iter().copied().filter(|v| !is_grease(*v)).collect();
        if v.is_empty() {
            vec![self.legacy_version]
        } else {
            v
        }
    }

    /// JA4 (FoxIO, BSD-3-Clause) with the given transport prefix: 't' (TCP) or 'q' (QUIC).
    pub fn ja4(&self, transport: char) -> String {
        let version = self.offered_versions().into_iter().max().unwrap_or(self.legacy_version);
        let sni = if self.exts.contains(&EXT_SNI) { 'd' } else { 'i' };
        let mut ciphers: Vec<u16> = self.ciphers.iter().copied().filter(|v| !is_grease(*v)).collect();
        let exts: Vec<u16> = self.exts.iter().copied().filter(|v| !is_grease(*v)).collect();
        let alpn = match self.alpn_first_raw.as_deref() {
            Some(p @ [first, .., last]) | Some(p @ [first @ last]) => {
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                    format!("{}{}", char::from(*first), char::from(*last))
                } else {
                    let h = hex(p);
                    let mut cs = h.chars();
                    let a = cs.next().unwrap_or('0');
                    let b = h.chars().last().unwrap_or('0');
                    format!("{a}{b}")
                }
            }
            _ => "00".to_string(),
        };
        let a = format!(
            "{transport}{}{sni}{:02}{:02}{alpn}",
            ja4_version(version),
            ciphers.len().min(99),
            exts.len().min(99)
        );
        ciphers.sort_unstable();
        let b = if ciphers.is_empty() {
            "000000000000".to_string()
        } else {
            sha256_12(&ciphers.iter().map(|c| format!("{c:04x}")).collect::<Vec<_>>().join(","))
        };
        let mut sorted: Vec<u16> = exts.into_iter().filter(|&e| e != EXT_SNI && e != EXT_ALPN).collect();
        sorted.sort_unstable();
        let c = if sorted.is_empty() {
            "000000000000".to_string()
        } else {
            let mut s = sorted.iter().map(|e| format!("{e:04x}")).collect::<Vec<_>>().join(",");
            let sigs: Vec<String> =
                self.sig_algs.iter().filter(|v| !is_grease(**v)).map(|v| format!("{v:04x}")).collect();
            if !sigs.is_empty() {
                s.push('_');
                s.push_str(&sigs.join(","));
            }
            sha256_12(&s)
        };
        format!("{a}_{b}_{c}")
    }

    /// Fills the client side of [`TlsMeta`].
    pub fn fill(&self, m: &mut TlsMeta) {
        m.sni.clone_from(&self.sni);
        m.alpn.clone_from(&self.alpn);
        m.versions = self.offered_versions();
        m.cipher_suites = self.ciphers.iter().copied().filter(|v| !is_grease(*v)).collect();
        let ja3 = self.ja3();
        m.ja3_hash = Some(md5_hex(&ja3));
        m.ja3 = Some(ja3);
        m.ja4 = Some(self.ja4('t'));
    }
}

/// A parsed ServerHello.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    pub exts: Vec<u16>,
    pub selected_version: Option<u16>,
    pub alpn: Option<String>,
}

/// Parses a ServerHello body (after the 4-byte handshake header).
pub(crate) fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut r = Rd::new(body);
    let mut sh = ServerHello { legacy_version: r.u16()?, ..Default::default() };
    r.take(32)?;
    r.vec8()?;
    sh.cipher = r.u16()?;
    r.u8()?;
    if r.remaining() == 0 {
        return Some(sh);
    }
    let mut ex = Rd::new(r.vec16()?);
    while ex.remaining() > 0 {
        let ty = ex.u16()?;
        let mut d = Rd::new(ex.vec16()?);
        sh.exts.push(ty);
        match ty {
            EXT_SUPPORTED_VERSIONS => sh.selected_version = d.u16(),
            EXT_ALPN => sh.alpn = d.vec16().and_then(|l| Rd::new(l).vec8()).map(|p| text(p, 64)),
            _ => {}
        }
    }
    Some(sh)
}

impl ServerHello {
    /// JA3S string: version,cipher,extensions (decimal, GREASE left out).
    pub fn ja3s(&self) -> String {
        format!("{},{},{}", self.legacy_version, self.cipher, dash_join(self.exts.iter().filter(|v| !is_grease(**v))))
    }

    pub fn fill(&self, m: &mut TlsMeta) {
        m.server_version = Some(self.selected_version.unwrap_or(self.legacy_version));
        m.server_cipher = Some(self.cipher);
        m.server_alpn.clone_from(&self.alpn);
        let s = self.ja3s();
        m.ja3s_hash = Some(md5_hex(&s));
        m.ja3s = Some(s);
    }
}

/// Reassembles handshake messages across records, per direction.
#[derive(Debug, Default)]
pub(crate) struct TlsState {
    hs: [Vec<u8>; 2],
}

/// Handshake message parsing outcome.
enum Hs {
    NeedMore,
    Done,
}

impl TlsState {
    /// Parses the records at the start of `buf`, draining what it consumed.
    /// Returns true when this direction is finished.
    pub(crate) fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> bool {
        let Some(hs) = self.hs.get_mut(usize::from(!from_initiator)) else { return true };
        let mut consumed = 0usize;
        let mut finished = false;
        loop {
            let mut r = Rd::new(buf.get(consumed..).unwrap_or(&[]));
            let (Some(ctype), Some(major), Some(_minor), Some(len)) = (r.u8(), r.u8(), r.u8(), r.u16()) else {
                break;
            };
            // Alerts and ChangeCipherSpec may come before a hello (a warning
            // alert before the ServerHello, a middlebox-compatibility CCS); anything
            // else is not (or no longer) the handshake: nothing more to learn here.
            if major != 3 || !matches!(ctype, 20..=22) {
                finished = true;
                break;
            }
            let Some(frag) = r.take(usize::from(len)) else { break };
            consumed += 5 + usize::from(len);
            if ctype != 22 {
                continue;
            }
            hs.extend_from_slice(frag);
            match handshake(meta, hs) {
                Hs::Done => {
                    finished = true;
                    break;
                }
                Hs::NeedMore => {}
            }
        }
        buf.drain(..consumed.min(buf.len()));
        finished || hs.len() + buf.len() > MAX_BUFFER
    }
}

/// Parses complete handshake messages at the start of `hs`, removing them.
fn handshake(meta: &mut AppMeta, hs: &mut Vec<u8>) -> Hs {
    loop {
        let mut r = Rd::new(hs);
        let (Some(ty), Some(len)) = (r.u8(), r.u24()) else { return Hs::NeedMore };
        let Some(body) = r.take(len as usize) else {
            return if len as usize > MAX_BUFFER { Hs::Done } else { Hs::NeedMore };
        };
        match ty {
            1 => {
                if let Some(ch) = parse_client_hello(body) {
                    ch.fill(meta.tls.get_or_insert_with(TlsMeta::default));
                }
                return Hs::Done;
            }
            2 => {
                if let Some(sh) = parse_server_hello(body) {
                    sh.fill(meta.tls.get_or_insert_with(TlsMeta::default));
                }
                return Hs::Done;
            }
            // HelloRequest and the like: skip.
            0 => {
                let n = 4 + len as usize;
                hs.drain(..n.min(hs.len()));
            }
            _ => return Hs::Done,
        }
    }
}

impl super::registry::AppParsable for TlsState {
    fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> super::registry::Step {
        super::registry::Step::finished_if(TlsState::on_stream(self, meta, from_initiator, buf))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::{AppParser, AppProto, DetectMethod};

    pub(crate) fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn vec16(d: &[u8]) -> Vec<u8> {
        let mut v = (d.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(d);
        v
    }

    /// A ClientHello handshake message (with its 4-byte header), Chrome-like with GREASE.
    pub(crate) fn client_hello_msg() -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        let ciphers: [u16; 4] = [0x2a2a, 0x1301, 0x1302, 0xc02b];
        let cbytes: Vec<u8> = ciphers.iter().flat_map(|c| c.to_be_bytes()).collect();
        body.extend_from_slice(&vec16(&cbytes));
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        exts.extend(ext(0x3a3a, &[]));
        let name = b"www.example.org";
        let mut sni = vec16(&[&[0u8][..], &vec16(name)].concat());
        exts.extend(ext(0, &std::mem::take(&mut sni)));
        exts.extend(ext(10, &vec16(&[0x4a, 0x4a, 0x00, 0x1d, 0x00, 0x17])));
        exts.extend(ext(11, &[1, 0]));
        exts.extend(ext(13, &vec16(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01])));
        exts.extend(ext(16, &vec16(b"\x02h2\x08http/1.1")));
        exts.extend(ext(43, &[4, 0x5a, 0x5a, 0x03, 0x04]));
        body.extend_from_slice(&vec16(&exts));
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut r = vec![22, 3, 1];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    fn server_hello_msg() -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[9u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0x13, 0x01, 0]);
        let mut exts = ext(43, &[0x03, 0x04]);
        exts.extend(ext(51, &[0, 0x1d, 0, 0]));
        body.extend_from_slice(&vec16(&exts));
        let mut msg = vec![2];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a));
        assert!(is_grease(0xfafa));
        assert!(!is_grease(0x0a1a));
        assert!(!is_grease(0x1301));
    }

    #[test]
    fn client_hello_fields_and_fingerprints() {
        let msg = client_hello_msg();
        let ch = parse_client_hello(&msg[4..]);
        let ch = ch.as_ref();
        assert_eq!(ch.and_then(|c| c.sni.as_deref()), Some("www.example.org"));
        let ch = ch.cloned().unwrap_or_default();
        assert_eq!(ch.alpn, vec!["h2".to_string(), "http/1.1".to_string()]);
        assert_eq!(ch.ja3(), "771,4865-4866-49195,0-10-11-13-16-43,29-23,0");
        assert_eq!(ch.offered_versions(), vec![0x0304]);
        // JA4_a: t, 13, d, 3 ciphers, 6 extensions (GREASE out), h2.
        let ja4 = ch.ja4('t');
        assert!(ja4.starts_with("t13d0306h2_"), "{ja4}");
        // JA4_b: sha256("1301,1302,c02b")[..12]; JA4_c: sorted exts without 0000/0010 + sig algs.
        let b = sha256_12("1301,1302,c02b");
        let c = sha256_12("000a,000b,000d,002b_0403,0804,0401");
        assert_eq!(ja4, format!("t13d0306h2_{b}_{c}"));
        assert_eq!(ch.ja4('q').get(..1), Some("q"));
    }

    #[test]
    fn ja4_known_vector_from_spec() {
        // The JA4 README's example: sha256 of this cipher list begins 8daaf6152771.
        let s = "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9";
        assert_eq!(sha256_12(s), "8daaf6152771");
        let e = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601";
        assert_eq!(sha256_12(e), "e5627efa2ab1");
    }

    #[test]
    fn ja4_alpn_rules() {
        let mut ch = ClientHello { legacy_version: 0x0303, ..Default::default() };
        assert!(ch.ja4('t').starts_with("t12i000000_000000000000_000000000000"), "{}", ch.ja4('t'));
        ch.alpn_first_raw = Some(b"h".to_vec());
        assert_eq!(ch.ja4('t').get(..10), Some("t12i0000hh"));
        ch.alpn_first_raw = Some(vec![0xab, 0x01, 0xcd]);
        assert_eq!(ch.ja4('t').get(..10), Some("t12i0000ad"));
        ch.alpn_first_raw = Some(Vec::new());
        assert_eq!(ch.ja4('t').get(..10), Some("t12i000000"));
    }

    #[test]
    fn server_hello_and_ja3s() {
        let msg = server_hello_msg();
        let sh = parse_server_hello(&msg[4..]).unwrap_or_default();
        assert_eq!(sh.selected_version, Some(0x0304));
        assert_eq!(sh.ja3s(), "771,4865,43-51");
        let mut m = TlsMeta::default();
        sh.fill(&mut m);
        assert_eq!(m.server_version, Some(0x0304));
        assert_eq!(m.server_cipher, Some(0x1301));
        assert_eq!(m.ja3s_hash.as_deref(), Some(md5_hex("771,4865,43-51").as_str()));
    }

    #[test]
    fn stream_split_byte_by_byte_and_across_records() {
        let msg = client_hello_msg();
        // The message split over two records, and the records fed one byte at a time.
        let (a, b) = msg.split_at(50);
        let mut bytes = record(a);
        bytes.extend(record(b));
        let mut p = AppParser::new(6, 50000, 9999);
        for byte in &bytes {
            p.on_stream(true, std::slice::from_ref(byte));
        }
        assert_eq!(p.meta().proto, AppProto::Tls);
        assert_eq!(p.meta().method, Some(DetectMethod::Content));
        let t = p.meta().tls.clone().unwrap_or_default();
        assert_eq!(t.sni.as_deref(), Some("www.example.org"));
        assert_eq!(t.ja3_hash.as_deref(), Some(md5_hex("771,4865-4866-49195,0-10-11-13-16-43,29-23,0").as_str()));
        assert_eq!(t.cipher_suites, vec![0x1301, 0x1302, 0xc02b]);
        assert!(!p.done());
        let mut srv = record(&server_hello_msg());
        srv.extend_from_slice(&[23, 3, 3, 0, 2, 0xde, 0xad]);
        let (x, y) = srv.split_at(7);
        p.on_stream(false, x);
        p.on_stream(false, y);
        let t = p.meta().tls.clone().unwrap_or_default();
        assert_eq!(t.server_cipher, Some(0x1301));
        assert_eq!(t.ja3s.as_deref(), Some("771,4865,43-51"));
        assert!(p.done());
    }

    #[test]
    fn alert_and_ccs_before_server_hello_are_skipped() {
        let mut p = AppParser::new(6, 50000, 443);
        p.on_stream(true, &record(&client_hello_msg()));
        let mut srv = vec![21, 3, 3, 0, 2, 1, 112, 20, 3, 3, 0, 1, 1];
        srv.extend(record(&server_hello_msg()));
        p.on_stream(false, &srv);
        assert_eq!(p.meta().tls.as_ref().and_then(|t| t.server_cipher), Some(0x1301));
        // Application data first: the direction ends with nothing learned.
        let mut p = AppParser::new(6, 50000, 443);
        p.on_stream(true, &record(&client_hello_msg()));
        p.on_stream(false, &[23, 3, 3, 0, 1, 0]);
        assert!(p.done());
        assert_eq!(p.meta().tls.as_ref().and_then(|t| t.server_cipher), None);
    }

    #[test]
    fn truncated_and_garbage_never_panic() {
        let msg = client_hello_msg();
        for n in 0..msg.len() {
            let _ = parse_client_hello(msg.get(4..n).unwrap_or(&[]));
            let mut p = AppParser::new(6, 1, 443);
            p.on_stream(true, &record(&msg[..n]));
            p.on_stream(true, &[0xff; 7]);
        }
        // A huge handshake length is given up on.
        let mut p = AppParser::new(6, 1, 443);
        p.on_stream(true, &record(&[1, 0xff, 0xff, 0xff, 3, 3]));
        assert!(p.dirs[0].finished);
        // Records of a ClientHello that never ends stay bounded.
        let mut p = AppParser::new(6, 1, 443);
        p.on_stream(true, &record(&[1, 0x00, 0xff, 0xff]));
        for _ in 0..100 {
            p.on_stream(true, &record(&[0u8; 1000]));
        }
        assert!(p.dirs[0].finished);
        assert!(p.meta().tls.is_none());
    }
}
