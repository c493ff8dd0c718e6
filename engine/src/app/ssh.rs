//! SSH: client and server banners, HASSH and HASSH-server from the KEXINIT
//! packets (md5 of "kex;enc;mac;comp" name-lists of the sender's direction).

use super::{md5_hex, text, AppMeta, Probe, Rd, MAX_BUFFER};

/// What the parser learned from an SSH connection's banners and KEXINIT packets.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SshMeta {
    /// Client's version line (`SSH-2.0-...`), without the line ending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_banner: Option<String>,
    /// Server's version line (`SSH-2.0-...`), without the line ending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_banner: Option<String>,
    /// HASSH: md5 (hex) of the client's KEXINIT "kex;enc;mac;comp" name-lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hassh: Option<String>,
    /// HASSH-server: md5 (hex) of the server's KEXINIT name-lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hassh_server: Option<String>,
}

const MSG_KEXINIT: u8 = 20;
/// Lines a server may send before its banner (RFC 4253 §4.2) that we skip.
const MAX_PRE_BANNER_LINES: u8 = 32;

/// Content probe: the "SSH-" banner.
pub(crate) fn probe(b: &[u8], _from_initiator: bool) -> Probe {
    let n = b.len().min(4);
    if b.get(..n) != b"SSH-".get(..n) {
        Probe::No
    } else if n < 4 {
        Probe::NeedMore
    } else {
        Probe::Yes
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Banner,
    Kex,
}

#[derive(Debug, Default)]
pub(crate) struct SshState {
    phase: [Phase; 2],
    pre_banner_lines: [u8; 2],
}

/// The HASSH string of a KEXINIT payload (after the message byte) for one direction.
pub(crate) fn hassh_string(kexinit: &[u8], server: bool) -> Option<String> {
    let mut r = Rd::new(kexinit);
    r.take(16)?;
    let mut lists = Vec::with_capacity(10);
    for _ in 0..10 {
        let n = r.u32()? as usize;
        lists.push(text(r.take(n)?, 4096));
    }
    let pick = |c2s: usize| lists.get(if server { c2s + 1 } else { c2s }).cloned().unwrap_or_default();
    Some(format!("{};{};{};{}", lists.first()?, pick(2), pick(4), pick(6)))
}

impl SshState {
    /// True when this direction is finished.
    pub(crate) fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> bool {
        let d = usize::from(!from_initiator);
        loop {
            match self.phase.get(d).copied().unwrap_or_default() {
                Phase::Banner => {
                    let Some(nl) = buf.iter().position(|&c| c == b'\n') else { return buf.len() > 8192 };
                    let line = buf.get(..nl).unwrap_or(&[]);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.starts_with(b"SSH-") {
                        let banner = Some(text(line, 255));
                        let s = meta.ssh.get_or_insert_with(SshMeta::default);
                        if from_initiator {
                            s.client_banner = banner;
                        } else {
                            s.server_banner = banner;
                        }
                        if let Some(p) = self.phase.get_mut(d) {
                            *p = Phase::Kex;
                        }
                    } else {
                        let Some(n) = self.pre_banner_lines.get_mut(d) else { return true };
                        *n += 1;
                        if *n > MAX_PRE_BANNER_LINES {
                            return true;
                        }
                    }
                    buf.drain(..=nl.min(buf.len().saturating_sub(1)));
                }
                Phase::Kex => {
                    let mut r = Rd::new(buf);
                    let (Some(len), Some(pad)) = (r.u32(), r.u8()) else { return false };
                    let len = len as usize;
                    if !(5..=MAX_BUFFER).contains(&len) {
                        return true;
                    }
                    let Some(rest) = r.take(len - 1) else { return false };
                    let payload = rest.get(..(len - 1).saturating_sub(usize::from(pad))).unwrap_or(&[]);
                    if payload.first() == Some(&MSG_KEXINIT) {
                        let h = hassh_string(payload.get(1..).unwrap_or(&[]), !from_initiator);
                        let s = meta.ssh.get_or_insert_with(SshMeta::default);
                        let h = h.map(|h| md5_hex(&h));
                        if from_initiator {
                            s.hassh = h;
                        } else {
                            s.hassh_server = h;
                        }
                    }
                    // Only the first binary packet is looked at: KEXINIT comes first.
                    return true;
                }
            }
        }
    }
}

impl super::registry::AppParsable for SshState {
    fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> super::registry::Step {
        super::registry::Step::finished_if(SshState::on_stream(self, meta, from_initiator, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppParser, AppProto, DetectMethod};

    fn name_list(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn kexinit_packet(lists: [&str; 10]) -> Vec<u8> {
        let mut payload = vec![MSG_KEXINIT];
        payload.extend_from_slice(&[0xaa; 16]);
        for l in lists {
            payload.extend(name_list(l));
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]);
        let pad = 8 - (payload.len() + 5) % 8 + 4;
        let mut p = ((payload.len() + pad + 1) as u32).to_be_bytes().to_vec();
        p.push(pad as u8);
        p.extend(payload);
        p.extend(std::iter::repeat_n(0, pad));
        p
    }

    const LISTS: [&str; 10] = [
        "curve25519-sha256,diffie-hellman-group14-sha256",
        "ssh-ed25519",
        "aes128-ctr,aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "none,zlib@openssh.com",
        "none",
        "",
        "",
    ];

    #[test]
    fn banners_and_hassh() {
        let mut p = AppParser::new(6, 50000, 2222);
        let mut srv = b"Hello there\r\nSSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec();
        srv.extend(kexinit_packet(LISTS));
        let mut cli = b"SSH-2.0-libssh_0.10.4\r\n".to_vec();
        cli.extend(kexinit_packet(LISTS));
        // The client speaks first here; the server's first line is not a banner.
        for chunk in cli.chunks(3) {
            p.on_stream(true, chunk);
        }
        assert_eq!(p.meta().proto, AppProto::Ssh);
        assert_eq!(p.meta().method, Some(DetectMethod::Content));
        for chunk in srv.chunks(5) {
            p.on_stream(false, chunk);
        }
        let s = p.meta().ssh.clone().unwrap_or_default();
        assert_eq!(s.client_banner.as_deref(), Some("SSH-2.0-libssh_0.10.4"));
        assert_eq!(s.server_banner.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        let c = "curve25519-sha256,diffie-hellman-group14-sha256;aes128-ctr,aes256-gcm@openssh.com;hmac-sha2-256;none,zlib@openssh.com";
        let sv = "curve25519-sha256,diffie-hellman-group14-sha256;chacha20-poly1305@openssh.com;hmac-sha2-512;none";
        assert_eq!(s.hassh.as_deref(), Some(md5_hex(c).as_str()));
        assert_eq!(s.hassh_server.as_deref(), Some(md5_hex(sv).as_str()));
        assert!(p.done());
    }

    #[test]
    fn truncated_and_garbage() {
        let pkt = kexinit_packet(LISTS);
        // The name-lists end before the first_kex_follows byte, the reserved word and the padding.
        let lists_end = pkt.len() - usize::from(pkt[4]) - 5;
        assert!(hassh_string(&pkt[6..lists_end], false).is_some());
        for n in 0..pkt.len() {
            if n < lists_end {
                assert!(hassh_string(pkt.get(6..n).unwrap_or(&[]), false).is_none(), "prefix {n}");
            }
            let mut p = AppParser::new(6, 1, 22);
            p.on_stream(true, b"SSH-2.0-x\r\n");
            p.on_stream(true, &pkt[..n]);
            assert_eq!(p.meta().ssh.as_ref().and_then(|s| s.hassh.clone()), None);
        }
        let mut p = AppParser::new(6, 1, 22);
        p.on_stream(true, b"SSH-2.0-x\n\xff\xff\xff\xff\x00");
        assert!(p.dirs[0].finished);
        assert_eq!(p.meta().ssh.as_ref().and_then(|s| s.client_banner.clone()).as_deref(), Some("SSH-2.0-x"));
    }
}
