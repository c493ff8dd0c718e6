//! QUIC: the version, and from the client's Initial packets the TLS
//! ClientHello (SNI, ALPN, JA4 with the 'q' prefix).
//!
//! Initial keys are derived from the client's first Destination Connection ID
//! (RFC 9001 §5.2 for v1 and drafts 29–34, the draft-23..28 and draft-22
//! salts, RFC 9369 §3.3 for v2, mvfst's versions, and v1 keys for the
//! reserved versions that force version negotiation), header protection is removed (AES-128-ECB
//! mask), the payload decrypted (AES-128-GCM) and CRYPTO frames collected
//! across coalesced packets and datagrams, in any order, up to
//! [`MAX_BUFFER`] bytes.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes_gcm::aead::{Aead, Payload};
use hkdf::Hkdf;
use sha2::Sha256;

use super::tls::parse_client_hello;
use super::{AppMeta, Rd, MAX_BUFFER};

/// What the parser learned from a QUIC flow's long header and client Initial packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct QuicMeta {
    /// QUIC version from the long header (e.g. `VERSION_1`).
    pub version: u32,
    /// Server name from the ClientHello's SNI extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// ALPN protocols offered in the ClientHello, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// JA4 fingerprint of the ClientHello, with the `q` (QUIC) prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
}

/// QUIC version 1 (RFC 9000).
pub const VERSION_1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const VERSION_2: u32 = 0x6b33_43cf;

const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f,
    0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e,
    0xd9,
];
const SALT_D29: [u8; 20] = [
    0xaf, 0xbf, 0xec, 0x28, 0x99, 0x93, 0xd2, 0x4c, 0x9e, 0x97, 0x86, 0xf1, 0x9c, 0x61, 0x11, 0xe0, 0x43, 0x90, 0xa8,
    0x99,
];
const SALT_D23: [u8; 20] = [
    0xc3, 0xee, 0xf7, 0x12, 0xc7, 0x2e, 0xbb, 0x5a, 0x11, 0xa7, 0xd2, 0x43, 0x2b, 0xb4, 0x63, 0x65, 0xbe, 0xf9, 0xf5,
    0x02,
];
const SALT_D22: [u8; 20] = [
    0x7f, 0xbc, 0xdb, 0x0e, 0x7c, 0x66, 0xbb, 0xe9, 0x19, 0x3a, 0x96, 0xcd, 0x21, 0x51, 0x9e, 0xbd, 0x7a, 0x02, 0x64,
    0x4a,
];

/// Initial salts to try, and whether the version uses the v2 labels and packet types.
fn version_params(version: u32) -> Option<(&'static [&'static [u8; 20]], bool)> {
    match version {
        VERSION_1 | 0xff00_0021 | 0xff00_0022 => Some((&[&SALT_V1], false)),
        VERSION_2 => Some((&[&SALT_V2], true)),
        0xff00_001d..=0xff00_0020 => Some((&[&SALT_D29], false)),
        0xff00_0017..=0xff00_001c => Some((&[&SALT_D23], false)),
        0xff00_0016 => Some((&[&SALT_D22], false)),
        // mvfst (Facebook): draft-22 and draft-27 based versions.
        0xface_b001 => Some((&[&SALT_D22], false)),
        0xface_b002 | 0xface_b00e => Some((&[&SALT_D23], false)),
        // Reserved versions that force version negotiation (RFC 9000 §15):
        // clients protect them with the keys of a version they speak (the
        // decryption is the real check).
        v if is_reserved(v) => Some((&[&SALT_V1, &SALT_D29], false)),
        _ => None,
    }
}

/// A reserved version (0x?a?a?a?a), sent to force version negotiation.
fn is_reserved(version: u32) -> bool {
    version & 0x0f0f_0f0f == 0x0a0a_0a0a
}

/// Client Initial packet protection keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Keys {
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

fn expand_label(prk: &Hkdf<Sha256>, label: &str, out: &mut [u8]) -> Option<()> {
    let full = [b"tls13 ", label.as_bytes()].concat();
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&u16::try_from(out.len()).ok()?.to_be_bytes());
    info.push(u8::try_from(full.len()).ok()?);
    info.extend_from_slice(&full);
    info.push(0);
    prk.expand(&info, out).ok()
}

/// Derives the client Initial keys for a version and the client's first DCID
/// (the first salt's, for versions with several candidates).
#[cfg(test)]
pub(crate) fn client_initial_keys(version: u32, dcid: &[u8]) -> Option<Keys> {
    candidate_keys(version, dcid).into_iter().next()
}

fn keys_from_salt(salt: &[u8; 20], v2: bool, dcid: &[u8]) -> Option<Keys> {
    let (_, initial) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, "client in", &mut secret)?;
    let client = Hkdf::<Sha256>::from_prk(&secret).ok()?;
    let (lk, li, lh) = if v2 { ("quicv2 key", "quicv2 iv", "quicv2 hp") } else { ("quic key", "quic iv", "quic hp") };
    let mut k = Keys { key: [0; 16], iv: [0; 12], hp: [0; 16] };
    expand_label(&client, lk, &mut k.key)?;
    expand_label(&client, li, &mut k.iv)?;
    expand_label(&client, lh, &mut k.hp)?;
    Some(k)
}

fn candidate_keys(version: u32, dcid: &[u8]) -> Vec<Keys> {
    let Some((salts, v2)) = version_params(version) else { return Vec::new() };
    salts.iter().filter_map(|salt| keys_from_salt(salt, v2, dcid)).collect()
}

/// Decrypts an Initial with the first candidate key that works.
fn decrypt_any(pkt: &[u8], p: &LongPacket<'_>) -> Option<(Keys, Vec<u8>)> {
    candidate_keys(p.version, p.dcid).into_iter().find_map(|k| {
        let plain = decrypt(pkt, p.pn_offset, &k)?;
        Some((k, plain))
    })
}

/// One long-header packet at the start of a datagram.
struct LongPacket<'a> {
    version: u32,
    dcid: &'a [u8],
    initial: bool,
    /// Offset of the packet number.
    pn_offset: usize,
    /// Length of the whole packet in the datagram.
    len: usize,
}

fn parse_long(d: &[u8]) -> Option<LongPacket<'_>> {
    let mut r = Rd::new(d);
    let b0 = r.u8()?;
    if b0 & 0x80 == 0 {
        return None;
    }
    let version = r.u32()?;
    let (_, v2) = version_params(version)?;
    let dcid = r.vec8()?;
    let _scid = r.vec8()?;
    if dcid.len() > 20 {
        return None;
    }
    let ty = (b0 >> 4) & 3;
    let (initial_ty, retry_ty) = if v2 { (1, 0) } else { (0, 3) };
    if ty == retry_ty {
        return None;
    }
    let initial = ty == initial_ty;
    if initial {
        let n = r.varint()?;
        r.take(usize::try_from(n).ok()?)?;
    }
    let length = usize::try_from(r.varint()?).ok()?;
    let pn_offset = r.pos();
    let len = pn_offset.checked_add(length)?;
    if len > d.len() {
        return None;
    }
    Some(LongPacket { version, dcid, initial, pn_offset, len })
}

/// Removes header protection and decrypts one Initial packet; returns the plaintext payload.
fn decrypt(pkt: &[u8], pn_offset: usize, keys: &Keys) -> Option<Vec<u8>> {
    let sample: [u8; 16] = pkt.get(pn_offset + 4..pn_offset + 20)?.try_into().ok()?;
    let hp = aes::Aes128::new(&keys.hp.into());
    let mut mask = aes::Block::from(sample);
    hp.encrypt_block(&mut mask);
    let mut header = pkt.get(..pn_offset + 4)?.to_vec();
    let first = header.first_mut()?;
    *first ^= mask.first()? & 0x0f;
    let pn_len = usize::from(*first & 3) + 1;
    header.truncate(pn_offset + pn_len);
    let mut pn = 0u64;
    for i in 0..pn_len {
        let b = header.get_mut(pn_offset + i)?;
        *b ^= mask.get(1 + i)?;
        pn = (pn << 8) | u64::from(*b);
    }
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().skip(4).zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    let aead = aes_gcm::Aes128Gcm::new(&keys.key.into());
    let ct = pkt.get(pn_offset + pn_len..)?;
    aead.decrypt(&nonce.into(), Payload { msg: ct, aad: &header }).ok()
}

/// CRYPTO frame data of a decrypted Initial payload: (offset, data) pairs.
fn crypto_frames(payload: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut r = Rd::new(payload);
    while r.remaining() > 0 {
        let Some(ty) = r.varint() else { break };
        let ok = match ty {
            0x00 | 0x01 => Some(()),
            0x02 | 0x03 => (|| {
                r.varint()?;
                r.varint()?;
                let ranges = r.varint()?;
                r.varint()?;
                for _ in 0..ranges.min(1024) {
                    r.varint()?;
                    r.varint()?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        r.varint()?;
                    }
                }
                Some(())
            })(),
            0x06 => (|| {
                let off = r.varint()?;
                let len = usize::try_from(r.varint()?).ok()?;
                out.push((off, r.take(len)?));
                Some(())
            })(),
            0x1c => (|| {
                r.varint()?;
                r.varint()?;
                let n = usize::try_from(r.varint()?).ok()?;
                r.take(n)?;
                Some(())
            })(),
            _ => None,
        };
        if ok.is_none() {
            break;
        }
    }
    out
}

/// Client-side state of a QUIC flow.
#[derive(Debug)]
pub(crate) struct QuicState {
    /// Version of the Initial packets being collected.
    version: u32,
    keys: Keys,
    /// CRYPTO stream bytes from offset 0, with holes (`have` marks the bytes received).
    crypto: Vec<u8>,
    have: Vec<bool>,
    /// A ClientHello was parsed from `version`'s packets.
    hello_done: bool,
    /// Datagrams seen after a hello of a reserved version, waiting for the real one.
    after_reserved_hello: u32,
}

/// Datagrams waited for after a reserved-version hello for the negotiated one.
const MAX_AFTER_RESERVED: u32 = 8;

impl QuicState {
    fn new(version: u32, keys: Keys) -> Self {
        QuicState { version, keys, crypto: Vec::new(), have: Vec::new(), hello_done: false, after_reserved_hello: 0 }
    }

    /// Content probe: the datagram starts with an Initial packet of a known version that decrypts.
    pub(crate) fn probe(d: &[u8]) -> Option<QuicState> {
        let p = parse_long(d)?;
        if !p.initial {
            return None;
        }
        let (keys, _) = decrypt_any(d.get(..p.len)?, &p)?;
        Some(QuicState::new(p.version, keys))
    }

    fn add_crypto(&mut self, off: u64, data: &[u8]) -> Option<()> {
        let start = usize::try_from(off).ok()?;
        let end = start.checked_add(data.len())?;
        if end > MAX_BUFFER {
            return None;
        }
        if self.crypto.len() < end {
            self.crypto.resize(end, 0);
            self.have.resize(end, false);
        }
        self.crypto.get_mut(start..end)?.copy_from_slice(data);
        self.have.get_mut(start..end)?.fill(true);
        Some(())
    }

    /// One client datagram. True when the client direction is finished.
    pub(crate) fn on_datagram(&mut self, meta: &mut AppMeta, mut d: &[u8]) -> bool {
        if self.hello_done {
            self.after_reserved_hello += 1;
        }
        while let Some(p) = parse_long(d) {
            let (pkt, rest) = d.split_at(p.len.min(d.len()));
            d = rest;
            if !p.initial {
                continue;
            }
            if p.version != self.version {
                // After version negotiation: the negotiated version's handshake replaces
                // the one sent with a reserved version.
                if !is_reserved(self.version) || is_reserved(p.version) {
                    continue;
                }
                let Some((keys, _)) = decrypt_any(pkt, &p) else { continue };
                *self = QuicState::new(p.version, keys);
            }
            if self.hello_done {
                continue;
            }
            let plain = match decrypt(pkt, p.pn_offset, &self.keys) {
                Some(x) => x,
                // After a Retry the client derives keys from the new DCID.
                None => match decrypt_any(pkt, &p) {
                    Some((k, x)) => {
                        self.keys = k;
                        x
                    }
                    None => continue,
                },
            };
            for (off, data) in crypto_frames(&plain) {
                if self.add_crypto(off, data).is_none() {
                    return true;
                }
            }
        }
        meta.quic.get_or_insert_with(QuicMeta::default).version = self.version;
        if !self.hello_done && self.try_hello(meta) {
            self.hello_done = true;
        }
        self.hello_done && (!is_reserved(self.version) || self.after_reserved_hello >= MAX_AFTER_RESERVED)
    }

    /// Parses the ClientHello once its bytes are all there. True when no more is to be learned.
    fn try_hello(&mut self, meta: &mut AppMeta) -> bool {
        let prefix = self.have.iter().take_while(|&&h| h).count();
        let b = self.crypto.get(..prefix).unwrap_or(&[]);
        let mut r = Rd::new(b);
        let (Some(ty), Some(len)) = (r.u8(), r.u24()) else { return false };
        if ty != 1 || len as usize > MAX_BUFFER {
            return true;
        }
        let Some(body) = r.take(len as usize) else { return false };
        if let Some(ch) = parse_client_hello(body) {
            let q = meta.quic.get_or_insert_with(QuicMeta::default);
            q.sni.clone_from(&ch.sni);
            q.alpn.clone_from(&ch.alpn);
            q.ja4 = Some(ch.ja4('q'));
        }
        self.crypto = Vec::new();
        self.have = Vec::new();
        true
    }
}

impl super::registry::AppParsable for QuicState {
    /// Only the client's Initial packets are decrypted: the server's side has nothing for us.
    fn on_datagram(&mut self, meta: &mut AppMeta, from_initiator: bool, data: &[u8]) -> bool {
        !from_initiator || QuicState::on_datagram(self, meta, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{hex, AppParser, AppProto, DetectMethod};

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        s.chunks(2).map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap_or("00"), 16).unwrap_or(0)).collect()
    }

    const RFC9001_A2: &str = include_str!("testdata/rfc9001_a2.hex");
    const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    #[test]
    fn rfc9001_a1_keys() {
        let k = client_initial_keys(VERSION_1, &DCID).unwrap_or(Keys { key: [0; 16], iv: [0; 12], hp: [0; 16] });
        assert_eq!(hex(&k.key), "1f369613dd76d5467730efcbe3b1a22d");
        assert_eq!(hex(&k.iv), "fa044b2f42a3fd3b46fb255c");
        assert_eq!(hex(&k.hp), "9f50449e04a0e810283a1e9933adedd2");
    }

    #[test]
    fn rfc9369_a1_keys() {
        let k = client_initial_keys(VERSION_2, &DCID).unwrap_or(Keys { key: [0; 16], iv: [0; 12], hp: [0; 16] });
        assert_eq!(hex(&k.key), "8b1a0bc121284290a29e0971b5cd045d");
        assert_eq!(hex(&k.iv), "91f73e2351d8fa91660e909f");
        assert_eq!(hex(&k.hp), "45b95e15235d6f45a6b19cbcb0294ba9");
        assert!(client_initial_keys(0x1234_5678, &DCID).is_none());
    }

    #[test]
    fn rfc9001_a2_client_initial() {
        let pkt = unhex(RFC9001_A2);
        assert_eq!(pkt.len(), 1200);
        let p = parse_long(&pkt);
        assert_eq!(p.as_ref().map(|p| (p.pn_offset, p.len, p.initial)), Some((18, 1200, true)));
        let keys = client_initial_keys(VERSION_1, &DCID);
        let plain = keys.and_then(|k| decrypt(&pkt, 18, &k)).unwrap_or_default();
        assert_eq!(plain.len(), 1200 - 18 - 4 - 16);
        assert_eq!(hex(plain.get(..8).unwrap_or(&[])), "060040f1010000ed");
        let frames = crypto_frames(&plain);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames.first().map(|f| (f.0, f.1.len())), Some((0, 0xf1)));

        let mut parser = AppParser::new(17, 51000, 4433);
        parser.on_datagram(true, &pkt);
        assert_eq!(parser.meta().proto, AppProto::Quic);
        assert_eq!(parser.meta().method, Some(DetectMethod::Content));
        let q = parser.meta().quic.clone().unwrap_or_default();
        assert_eq!(q.version, 1);
        assert_eq!(q.sni.as_deref(), Some("example.com"));
        assert_eq!(q.alpn, vec!["alpn".to_string()]);
        // 2 ciphers (1301, 1302), 11 extensions, ALPN "alpn" -> "an".
        assert_eq!(q.ja4.as_deref().and_then(|j| j.get(..10)), Some("q13d0211an"));
        assert!(parser.done());
    }

    #[test]
    fn tampered_or_truncated_initial_is_not_quic() {
        let pkt = unhex(RFC9001_A2);
        let mut bad = pkt.clone();
        if let Some(b) = bad.get_mut(600) {
            *b ^= 1;
        }
        assert!(QuicState::probe(&bad).is_none());
        for n in [0, 1, 5, 6, 17, 18, 30, 1199] {
            assert!(QuicState::probe(&pkt[..n]).is_none(), "prefix {n}");
        }
        let mut p = AppParser::new(17, 1, 443);
        p.on_datagram(true, &bad);
        assert_eq!(p.meta().method, Some(DetectMethod::Port));
        assert!(crypto_frames(&[0x02, 0xff]).is_empty());
        assert!(crypto_frames(&[0x06, 0x00, 0x40]).is_empty());
    }

    /// Encrypts a client Initial (test helper, the inverse of `decrypt`).
    fn protect(version: u32, dcid: &[u8], pn: u8, payload: &[u8]) -> Vec<u8> {
        let keys = client_initial_keys(version, dcid).unwrap_or(Keys { key: [0; 16], iv: [0; 12], hp: [0; 16] });
        let ty: u8 = if version == VERSION_2 { 1 } else { 0 };
        let mut h = vec![0xc0 | (ty << 4), 0, 0, 0, 0];
        h[1..5].copy_from_slice(&version.to_be_bytes());
        h.push(dcid.len() as u8);
        h.extend_from_slice(dcid);
        h.push(0); // scid
        h.push(0); // token
        let len = 1 + payload.len() + 16;
        h.extend_from_slice(&(0x4000u16 | len as u16).to_be_bytes());
        let pn_offset = h.len();
        h.push(pn);
        let mut nonce = keys.iv;
        nonce[11] ^= pn;
        let aead = aes_gcm::Aes128Gcm::new(&keys.key.into());
        let ct = aead.encrypt(&nonce.into(), Payload { msg: payload, aad: &h }).unwrap_or_default();
        let mut pkt = h;
        pkt.extend_from_slice(&ct);
        let sample: [u8; 16] = pkt[pn_offset + 4..pn_offset + 20].try_into().unwrap_or([0; 16]);
        let mut mask = aes::Block::from(sample);
        aes::Aes128::new(&keys.hp.into()).encrypt_block(&mut mask);
        pkt[0] ^= mask[0] & 0x0f;
        pkt[pn_offset] ^= mask[1];
        pkt
    }

    fn crypto_frame(off: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06, 0x80 | ((off >> 24) as u8 & 0x3f), (off >> 16) as u8, (off >> 8) as u8, off as u8];
        f.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn reserved_version_hello_is_replaced_by_the_negotiated_one() {
        let rfc = unhex(RFC9001_A2);
        let plain = client_initial_keys(VERSION_1, &DCID).and_then(|k| decrypt(&rfc, 18, &k)).unwrap_or_default();
        assert!(!plain.is_empty());
        let d1 = protect(0x1a2a_3a4a, &DCID, 0, &plain);
        let mut p = AppParser::new(17, 40000, 443);
        p.on_datagram(true, &d1);
        assert_eq!(p.meta().method, Some(DetectMethod::Content));
        let q = p.meta().quic.clone().unwrap_or_default();
        assert_eq!((q.version, q.sni.as_deref()), (0x1a2a_3a4a, Some("example.com")));
        assert!(!p.done());
        let mut hello = crypto_frame(0, &crate::app::tls::tests::client_hello_msg());
        hello.resize(hello.len() + 40, 0);
        p.on_datagram(true, &protect(VERSION_1, &[9, 9, 9, 9], 0, &hello));
        let q = p.meta().quic.clone().unwrap_or_default();
        assert_eq!((q.version, q.sni.as_deref()), (VERSION_1, Some("www.example.org")));
        assert!(p.done());
    }

    #[test]
    fn v2_hello_split_over_packets_out_of_order_and_coalesced() {
        let hello = crate::app::tls::tests::client_hello_msg();
        let dcid = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let (a, rest) = hello.split_at(40);
        let (b, c) = rest.split_at(30);
        let pad = |mut v: Vec<u8>| {
            v.resize(v.len() + 40, 0);
            v
        };
        // Datagram 1: the last piece, then (coalesced) the middle one. Datagram 2: the first piece.
        let mut d1 = protect(VERSION_2, &dcid, 0, &pad(crypto_frame(70, c)));
        d1.extend(protect(VERSION_2, &dcid, 1, &pad([vec![0x01], crypto_frame(40, b)].concat())));
        let d2 = protect(VERSION_2, &dcid, 2, &pad(crypto_frame(0, a)));
        let mut p = AppParser::new(17, 40000, 40001);
        p.on_datagram(true, &d1);
        assert_eq!(p.meta().proto, AppProto::Quic);
        assert!(p.meta().quic.as_ref().is_some_and(|q| q.sni.is_none()));
        assert!(!p.done());
        p.on_datagram(false, &[0xc0, 0x6b, 0x33, 0x43, 0xcf]);
        p.on_datagram(true, &d2);
        let q = p.meta().quic.clone().unwrap_or_default();
        assert_eq!(q.version, VERSION_2);
        assert_eq!(q.sni.as_deref(), Some("www.example.org"));
        assert_eq!(q.alpn.first().map(String::as_str), Some("h2"));
        assert_eq!(q.ja4.as_deref().and_then(|j| j.get(..10)), Some("q13d0306h2"));
        assert!(p.done());
    }
}
