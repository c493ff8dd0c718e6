//! HTTP/1.x: the first request (method, host, URI, user agent) and the first
//! final response (status, content type). Header blocks may span any number of
//! `on_stream` calls; they are bounded by the per-direction buffer.

use super::{text, AppMeta, Probe};

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

const METHODS: [&[u8]; 14] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
];
const RESPONSE: &[u8] = b"HTTP/1.";
/// Longest text field kept.
const MAX_FIELD: usize = 512;

fn prefix_probe(b: &[u8], token: &[u8]) -> Probe {
    let n = b.len().min(token.len());
    if b.get(..n) != token.get(..n) {
        Probe::No
    } else if n < token.len() {
        Probe::NeedMore
    } else {
        Probe::Yes
    }
}

/// Content probe: an HTTP request method token or `HTTP/1.`.
pub(crate) fn probe(b: &[u8], _from_initiator: bool) -> Probe {
    let mut need = false;
    for t in METHODS.iter().copied().chain(std::iter::once(RESPONSE)) {
        match prefix_probe(b, t) {
            Probe::Yes => return Probe::Yes,
            Probe::NeedMore => need = true,
            Probe::No => {}
        }
    }
    if need {
        Probe::NeedMore
    } else {
        Probe::No
    }
}

/// Length of the header block (through the empty line), if complete.
fn header_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = b.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + pos;
        // The next line is empty ("\n" or "\r\n").
        match (b.get(nl + 1), b.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

fn lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    block.split(|&c| c == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn header<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    lines(block).skip(1).find_map(|l| {
        let colon = l.iter().position(|&c| c == b':')?;
        let (k, v) = l.split_at(colon);
        if k.eq_ignore_ascii_case(name.as_bytes()) {
            Some(v.get(1..).unwrap_or(&[]).trim_ascii())
        } else {
            None
        }
    })
}

/// Parses complete header blocks at the start of `buf`. True when this direction is finished.
pub(crate) fn on_stream(meta: &mut AppMeta, _from_initiator: bool, buf: &mut Vec<u8>) -> bool {
    loop {
        // Tolerate blank lines between messages.
        let skip = buf.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
        buf.drain(..skip);
        let Some(end) = header_end(buf) else { return false };
        let block = buf.get(..end).unwrap_or(&[]);
        let first = lines(block).next().unwrap_or(&[]);
        let mut parts = first.splitn(3, |&c| c == b' ');
        let (a, b) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
        let h = meta.http.get_or_insert_with(HttpMeta::default);
        if a.starts_with(RESPONSE) {
            let status = std::str::from_utf8(b).ok().and_then(|s| s.parse::<u16>().ok());
            match status {
                // Interim responses: the final one follows.
                Some(s @ 100..=199) if s != 101 => {
                    buf.drain(..end);
                    continue;
                }
                _ => {
                    if h.status.is_none() {
                        h.status = status;
                        h.content_type = header(block, "content-type").map(|v| text(v, MAX_FIELD));
                    }
                }
            }
        } else if h.method.is_none() {
            h.method = Some(text(a, 32));
            h.uri = Some(text(b, MAX_FIELD));
            h.host = header(block, "host").map(|v| text(v, MAX_FIELD));
            h.user_agent = header(block, "user-agent").map(|v| text(v, MAX_FIELD));
        }
        return true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppParser, AppProto, DetectMethod, MAX_BUFFER};

    const REQ: &[u8] =
        b"POST /api/v1?q=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nuser-agent:  curl/8.1\r\nAccept: */*\r\n\r\nbody";
    const RESP: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html>";

    #[test]
    fn request_and_response_split_everywhere() {
        for split in 0..REQ.len() {
            let mut p = AppParser::new(6, 40000, 12345);
            let (a, b) = REQ.split_at(split);
            p.on_stream(true, a);
            p.on_stream(true, b);
            p.on_stream(false, &RESP[..split.min(RESP.len())]);
            p.on_stream(false, &RESP[split.min(RESP.len())..]);
            assert_eq!(p.meta().proto, AppProto::Http, "split {split}");
            assert_eq!(p.meta().method, Some(DetectMethod::Content));
            let h = p.meta().http.clone().unwrap_or_default();
            assert_eq!(h.method.as_deref(), Some("POST"));
            assert_eq!(h.uri.as_deref(), Some("/api/v1?q=1"));
            assert_eq!(h.host.as_deref(), Some("Example.COM:8080"));
            assert_eq!(h.user_agent.as_deref(), Some("curl/8.1"));
            assert_eq!(h.status, Some(404), "split {split}");
            assert_eq!(h.content_type.as_deref(), Some("text/html; charset=utf-8"));
            assert!(p.done());
        }
    }

    #[test]
    fn response_first_and_bare_newlines() {
        let mut p = AppParser::new(6, 80, 40000);
        p.on_stream(false, b"HTTP/1.0 200 OK\nContent-Type: image/png\n\n");
        p.on_stream(true, b"GET /x HTTP/1.0\n\n");
        let h = p.meta().http.clone().unwrap_or_default();
        assert_eq!(h.status, Some(200));
        assert_eq!(h.content_type.as_deref(), Some("image/png"));
        assert_eq!(h.method.as_deref(), Some("GET"));
        assert_eq!(h.host, None);
    }

    #[test]
    fn probe_rules() {
        assert_eq!(probe(b"GE", true), Probe::NeedMore);
        assert_eq!(probe(b"GET ", true), Probe::Yes);
        assert_eq!(probe(b"GETX", true), Probe::No);
        assert_eq!(probe(b"HTTP/1.1 200", false), Probe::Yes);
        assert_eq!(probe(b"HTTP/2", false), Probe::No);
        assert_eq!(probe(b"", false), Probe::NeedMore);
    }

    #[test]
    fn endless_headers_are_given_up() {
        let mut p = AppParser::new(6, 1, 80);
        p.on_stream(true, b"GET / HTTP/1.1\r\n");
        for _ in 0..2000 {
            p.on_stream(true, b"X-Filler: aaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(p.dirs[0].finished);
        assert!(p.dirs[0].buf.len() <= MAX_BUFFER);
        assert_eq!(p.meta().http.as_ref().and_then(|h| h.method.clone()), None);
    }

    #[test]
    fn garbage_after_method_never_panics() {
        let mut p = AppParser::new(6, 1, 80);
        p.on_stream(true, b"GET \xff\xfe\r\n\r\n");
        let h = p.meta().http.clone().unwrap_or_default();
        assert_eq!(h.method.as_deref(), Some("GET"));
        assert_eq!(h.uri.as_deref(), Some("\\xff\\xfe"));
    }
}
