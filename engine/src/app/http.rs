//! HTTP/1.x: every request and response of a connection, keep-alive and
//! pipelined: method, host, URI, user agent, status, content type and body
//! sizes. Bodies are framed as RFC 9112 §6 says (Content-Length, chunked, no
//! body for HEAD, 1xx, 204 and 304, or until the connection closes) and
//! skipped, never buffered. The first transaction fills [`HttpMeta`]'s own
//! fields, as before; the later ones go to [`HttpMeta::transactions`]
//! (bounded) and [`HttpMeta::transaction_count`] counts them all. A `CONNECT`
//! answered 2xx, or a `101 Switching Protocols`, ends HTTP on the connection:
//! what follows is a tunnel (`Step::Upgraded`), where TLS is looked for.

use super::{text, AppMeta, Probe};

/// One request and its response.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpTransaction {
    /// Request method as sent (e.g. `GET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `Host` header of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Request target as sent: a path and query, or an absolute URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `User-Agent` header of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Status code of the response (interim 1xx responses other than 101 are skipped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Content-Type` header of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Body bytes of the request (after de-chunking), where it has a body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body_len: Option<u64>,
    /// Body bytes of the response seen so far (after de-chunking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body_len: Option<u64>,
}

impl HttpTransaction {
    fn text_len(&self) -> usize {
        [&self.method, &self.host, &self.uri, &self.user_agent, &self.content_type]
            .iter()
            .map(|f| f.as_ref().map_or(0, String::len))
            .sum()
    }
}

/// HTTP requests and responses of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HttpMeta {
    /// The first transaction (its fields at the top level of the JSON, as before).
    #[serde(flatten)]
    pub first: HttpTransaction,
    /// The transactions after the first, in order, bounded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transactions: Vec<HttpTransaction>,
    /// Transactions in the connection, the first and any past the bound
    /// included; written when there is more than one.
    #[serde(skip_serializing_if = "at_most_one")]
    pub transaction_count: u32,
    #[serde(skip)]
    stored_text: usize,
    /// No more transactions are stored (a bound was reached): `transactions` stays a prefix.
    #[serde(skip)]
    full: bool,
    #[serde(skip)]
    retained: super::retained::Retained,
}

fn at_most_one(n: &u32) -> bool {
    *n <= 1
}

/// Transactions kept per connection after the first.
pub const MAX_TRANSACTIONS: usize = 256;
/// Bytes of text fields kept per connection in [`HttpMeta::transactions`].
pub const MAX_STORED_TEXT: usize = 16 * 1024;

impl HttpMeta {
    /// Transaction `i` (0 is the first), created when it is the next one;
    /// `None` past the bound.
    fn tx(&mut self, i: u32) -> Option<&mut HttpTransaction> {
        if i == 0 {
            return Some(&mut self.first);
        }
        let k = (i - 1) as usize;
        if k == self.transactions.len() && !self.full {
            if k < MAX_TRANSACTIONS && self.stored_text < MAX_STORED_TEXT {
                self.transactions.push(HttpTransaction::default());
            } else {
                self.full = true;
            }
        }
        self.transactions.get_mut(k)
    }

    fn seen(&mut self, i: u32) {
        self.transaction_count = self.transaction_count.max(i.saturating_add(1));
        let k = i.saturating_sub(1) as usize;
        if i > 0 {
            if let Some(t) = self.transactions.get(k) {
                let total =
                    self.transactions.iter().take(k).map(HttpTransaction::text_len).sum::<usize>() + t.text_len();
                if !self.retained.try_take(total.saturating_sub(self.stored_text)) {
                    // Over the process-wide cap: keep what is there, store no more.
                    self.full = true;
                }
                self.stored_text = total.max(self.stored_text);
            }
        }
    }

    /// Every host of the connection, in order.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.first).chain(&self.transactions).filter_map(|t| t.host.as_deref())
    }
}

impl std::ops::Deref for HttpMeta {
    type Target = HttpTransaction;
    fn deref(&self) -> &HttpTransaction {
        &self.first
    }
}

const METHODS: [&[u8]; 30] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
    // WebDAV, CalDAV, versioning (RFC 4918, 4791, 3253, 3744, 5323, 5842).
    b"PROPFIND ",
    b"PROPPATCH ",
    b"MKCOL ",
    b"COPY ",
    b"MOVE ",
    b"LOCK ",
    b"UNLOCK ",
    b"SEARCH ",
    b"REPORT ",
    b"MKCALENDAR ",
    b"MKACTIVITY ",
    b"CHECKOUT ",
    b"MERGE ",
    b"ACL ",
    b"BIND ",
    b"UNBIND ",
    b"PURGE ",
    // HTTP over UDP (SSDP, UPnP eventing, RFC 7231-style messages in datagrams).
    b"M-SEARCH ",
    b"NOTIFY ",
    b"SUBSCRIBE ",
    b"UNSUBSCRIBE ",
];
/// Methods SIP has too: HTTP only when the request line names an HTTP version.
const SHARED_WITH_SIP: [&[u8]; 3] = [b"NOTIFY ", b"SUBSCRIBE ", b"UNSUBSCRIBE "];
/// Longest request line looked through for the version of a method SIP shares.
const MAX_REQUEST_LINE: usize = 2048;
const RESPONSE: &[u8] = b"HTTP/1.";
/// Longest text field kept.
const MAX_FIELD: usize = 512;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 1024;

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
            Probe::Yes if SHARED_WITH_SIP.contains(&t) => return request_line_is_http(b),
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

/// Whether the request line names an HTTP version (not `SIP/2.0`).
fn request_line_is_http(b: &[u8]) -> Probe {
    let window = b.get(..b.len().min(MAX_REQUEST_LINE)).unwrap_or(b);
    match window.iter().position(|&c| c == b'\n') {
        Some(end) if window.get(..end).is_some_and(|l| l.windows(7).any(|w| w == b" HTTP/1")) => Probe::Yes,
        Some(_) => Probe::No,
        None if window.len() == MAX_REQUEST_LINE => Probe::No,
        None => Probe::NeedMore,
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

/// How the bytes after a header block are framed, in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Framing {
    /// Expecting a header block (or blank lines).
    #[default]
    Headers,
    /// This many body bytes remain.
    Body(u64),
    /// A chunked body: expecting a chunk-size line.
    ChunkSize,
    /// A chunked body: this many bytes of the current chunk remain.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    /// The body runs to the end of the connection.
    UntilClose,
    /// After a `CONNECT`: what follows waits for the response, which makes it a tunnel or not.
    AwaitTunnel,
}

pub(crate) use super::registry::Step;

/// Parsing state of one HTTP connection.
#[derive(Debug, Default)]
pub(crate) struct HttpState {
    framing: [Framing; 2],
    /// Which transaction the body being read in each direction belongs to, and whether it is a request's.
    body_of: [(u32, bool); 2],
    requests: u32,
    responses: u32,
    /// Methods of requests not answered yet, up to a bound (HEAD and CONNECT change the response's framing).
    open_methods: std::collections::VecDeque<Method>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Head,
    Connect,
    Other,
}

/// Requests remembered for pipelined responses.
const MAX_OPEN_REQUESTS: usize = 64;

impl HttpState {
    /// Parses what it can from the start of `buf` (one direction's bytes) and
    /// drains it.
    pub(crate) fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> Step {
        let d = usize::from(!from_initiator);
        let mut at = 0;
        let step = loop {
            let rest = buf.get(at..).unwrap_or(&[]);
            let framing = self.framing.get(d).copied().unwrap_or_default();
            match framing {
                Framing::Headers => {
                    // Tolerate blank lines between messages.
                    let skip = rest.iter().take_while(|&&c| c == b'\r' || c == b'\n').count();
                    at += skip;
                    let rest = buf.get(at..).unwrap_or(&[]);
                    if rest.is_empty() {
                        break Step::More;
                    }
                    if probe(rest, from_initiator) == Probe::No {
                        break Step::Finished;
                    }
                    let Some(end) = header_end(rest) else { break Step::More };
                    let block = rest.get(..end).unwrap_or(&[]);
                    at += end;
                    let h = meta.http.get_or_insert_with(HttpMeta::default);
                    match self.on_header_block(h, d, block) {
                        Some(Step::Upgraded) => break Step::Upgraded,
                        _ => continue,
                    }
                }
                Framing::Body(n) | Framing::ChunkData(n) => {
                    let k = n.min(rest.len() as u64);
                    at += k as usize;
                    self.count_body(meta, d, k);
                    let left = n - k;
                    let next = match (framing, left) {
                        (Framing::Body(_), 0) => Framing::Headers,
                        (Framing::Body(_), _) => Framing::Body(left),
                        (_, 0) => Framing::ChunkEnd,
                        _ => Framing::ChunkData(left),
                    };
                    self.set(d, next);
                    if left > 0 {
                        break Step::More;
                    }
                }
                Framing::AwaitTunnel => break Step::More,
                Framing::UntilClose => {
                    self.count_body(meta, d, rest.len() as u64);
                    at = buf.len();
                    break Step::More;
                }
                Framing::ChunkSize | Framing::ChunkEnd | Framing::Trailers => {
                    let Some(nl) = rest.iter().position(|&c| c == b'\n') else {
                        break if rest.len() > MAX_LINE { Step::Finished } else { Step::More };
                    };
                    let line = rest.get(..nl).unwrap_or(&[]);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    at += nl + 1;
                    let next = match framing {
                        Framing::ChunkEnd if line.is_empty() => Framing::ChunkSize,
                        Framing::ChunkEnd => break Step::Finished,
                        Framing::Trailers if line.is_empty() => Framing::Headers,
                        Framing::Trailers => Framing::Trailers,
                        _ => {
                            let size = line.split(|&c| c == b';').next().unwrap_or(&[]).trim_ascii();
                            match std::str::from_utf8(size).ok().and_then(|s| u64::from_str_radix(s, 16).ok()) {
                                Some(0) => Framing::Trailers,
                                Some(n) => Framing::ChunkData(n),
                                None => break Step::Finished,
                            }
                        }
                    };
                    self.set(d, next);
                }
            }
        };
        buf.drain(..at.min(buf.len()));
        step
    }

    /// How many of the next `len` bytes of this direction are body bytes
    /// that can be passed over without being buffered (a body of known
    /// length, or one that runs to the end of the connection); counts them.
    pub(crate) fn skip_body(&mut self, meta: &mut AppMeta, from_initiator: bool, len: usize) -> usize {
        let d = usize::from(!from_initiator);
        let (k, next) = match self.framing.get(d).copied().unwrap_or_default() {
            Framing::Body(n) => {
                let k = n.min(len as u64);
                (k, if k == n { Framing::Headers } else { Framing::Body(n - k) })
            }
            Framing::ChunkData(n) => {
                let k = n.min(len as u64);
                (k, if k == n { Framing::ChunkEnd } else { Framing::ChunkData(n - k) })
            }
            Framing::UntilClose => (len as u64, Framing::UntilClose),
            _ => return 0,
        };
        self.count_body(meta, d, k);
        self.set(d, next);
        k as usize
    }

    /// HTTP over UDP (SSDP, UPnP): each datagram is one whole message.
    pub(crate) fn on_datagram(&mut self, meta: &mut AppMeta, from_initiator: bool, data: &[u8]) {
        let d = usize::from(!from_initiator);
        self.set(d, Framing::Headers);
        let mut buf = data.to_vec();
        let _ = self.on_stream(meta, from_initiator, &mut buf);
        self.set(d, Framing::Headers);
    }

    fn set(&mut self, d: usize, f: Framing) {
        if let Some(x) = self.framing.get_mut(d) {
            *x = f;
        }
    }

    fn count_body(&self, meta: &mut AppMeta, d: usize, n: u64) {
        let Some(&(i, request)) = self.body_of.get(d) else { return };
        let Some(t) = meta.http.as_mut().and_then(|h| h.tx(i)) else { return };
        let len = if request { &mut t.request_body_len } else { &mut t.response_body_len };
        *len = Some(len.unwrap_or(0).saturating_add(n));
    }

    /// Applies one header block; `Some(Step::Upgraded)` when the connection became a tunnel.
    fn on_header_block(&mut self, h: &mut HttpMeta, d: usize, block: &[u8]) -> Option<Step> {
        let first = lines(block).next().unwrap_or(&[]);
        let mut parts = first.splitn(3, |&c| c == b' ');
        let (a, b) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
        let content_length = header(block, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = header(block, "transfer-encoding").is_some_and(|v| {
            v.split(|&c| c == b',').next_back().is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        });
        if a.starts_with(RESPONSE) {
            let status = std::str::from_utf8(b).ok().and_then(|s| s.parse::<u16>().ok());
            // Interim responses: the final one follows.
            if matches!(status, Some(100..=199)) && status != Some(101) {
                return None;
            }
            let i = self.responses;
            self.responses = self.responses.saturating_add(1);
            let method = self.open_methods.pop_front().unwrap_or(Method::Other);
            if let Some(t) = h.tx(i) {
                t.status = status;
                t.content_type = header(block, "content-type").map(|v| text(v, MAX_FIELD));
            }
            h.seen(i);
            let s = status.unwrap_or(0);
            if s == 101 || (method == Method::Connect && (200..300).contains(&s)) {
                return Some(Step::Upgraded);
            }
            if method == Method::Connect {
                // Refused: the client's side is HTTP again.
                let other = 1 - d.min(1);
                if self.framing.get(other) == Some(&Framing::AwaitTunnel) {
                    self.set(other, Framing::Headers);
                }
            }
            self.body_of[d.min(1)] = (i, false);
            let framing = if method == Method::Head || s == 204 || s == 304 {
                Framing::Headers
            } else if chunked {
                Framing::ChunkSize
            } else if let Some(n) = content_length {
                Framing::Body(n)
            } else {
                Framing::UntilClose
            };
            if framing == Framing::UntilClose || matches!(framing, Framing::Body(_) | Framing::ChunkSize) {
                self.count_body_start(h, i, false);
            }
            self.set(d, framing);
        } else {
            let i = self.requests;
            self.requests = self.requests.saturating_add(1);
            let method = match a {
                b"HEAD" => Method::Head,
                b"CONNECT" => Method::Connect,
                _ => Method::Other,
            };
            if self.open_methods.len() < MAX_OPEN_REQUESTS {
                self.open_methods.push_back(method);
            }
            if let Some(t) = h.tx(i) {
                t.method = Some(text(a, 32));
                t.uri = Some(text(b, MAX_FIELD));
                t.host = header(block, "host").map(|v| text(v, MAX_FIELD));
                t.user_agent = header(block, "user-agent").map(|v| text(v, MAX_FIELD));
            }
            h.seen(i);
            self.body_of[d.min(1)] = (i, true);
            let framing = if method == Method::Connect {
                Framing::AwaitTunnel
            } else if chunked {
                Framing::ChunkSize
            } else {
                match content_length {
                    Some(n) if n > 0 => Framing::Body(n),
                    _ => Framing::Headers,
                }
            };
            if matches!(framing, Framing::Body(_) | Framing::ChunkSize) {
                self.count_body_start(h, i, true);
            }
            self.set(d, framing);
        }
        None
    }

    /// A body starts: its length is known to be at least 0.
    fn count_body_start(&self, h: &mut HttpMeta, i: u32, request: bool) {
        if let Some(t) = h.tx(i) {
            let len = if request { &mut t.request_body_len } else { &mut t.response_body_len };
            len.get_or_insert(0);
        }
    }
}

impl super::registry::AppParsable for HttpState {
    fn on_stream(&mut self, meta: &mut AppMeta, from_initiator: bool, buf: &mut Vec<u8>) -> Step {
        HttpState::on_stream(self, meta, from_initiator, buf)
    }
    fn skip(&mut self, meta: &mut AppMeta, from_initiator: bool, len: usize) -> usize {
        self.skip_body(meta, from_initiator, len)
    }
    fn on_datagram(&mut self, meta: &mut AppMeta, from_initiator: bool, data: &[u8]) -> bool {
        HttpState::on_datagram(self, meta, from_initiator, data);
        false
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
            // "body" after a request without a length is not HTTP: that direction is done.
            assert!(p.dirs[0].finished, "split {split}");
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

    /// Keep-alive and pipelined: the same transactions however the bytes are cut.
    #[test]
    fn keep_alive_transactions_whatever_the_segmentation() {
        let req: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhelloHEAD /h HTTP/1.1\r\nHost: c\r\n\r\nGET /c HTTP/1.1\r\nHost: d\r\n\r\n";
        let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n2;x=1\r\n12\r\n0\r\nT: v\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nrest of the connection";
        for step in 1..=resp.len() {
            let mut p = AppParser::new(6, 40000, 80);
            for c in req.chunks(step) {
                p.on_stream(true, c);
            }
            for c in resp.chunks(step) {
                p.on_stream(false, c);
            }
            let h = p.meta().http.clone().unwrap_or_default();
            let all: Vec<_> = std::iter::once(&h.first)
                .chain(&h.transactions)
                .map(|t| (t.host.clone().unwrap_or_default(), t.status, t.request_body_len, t.response_body_len))
                .collect();
            assert_eq!(
                all,
                [
                    ("a".to_string(), Some(200), None, Some(3)),
                    ("b".to_string(), Some(201), Some(5), Some(6)),
                    ("c".to_string(), Some(200), None, None),
                    ("d".to_string(), Some(404), None, Some(22)),
                ],
                "step {step}"
            );
            assert_eq!(h.transaction_count, 4);
        }
    }

    #[test]
    fn a_connect_tunnel_carries_tls() {
        let hello = crate::app::tls::tests::client_hello_msg();
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hello.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hello);
        let mut p = AppParser::new(6, 40000, 3128);
        p.on_stream(true, b"CONNECT www.example.org:443 HTTP/1.1\r\nHost: www.example.org:443\r\n\r\n");
        // Sent before the proxy answered: waits for the answer.
        p.on_stream(true, &rec);
        p.on_stream(false, b"HTTP/1.1 200 Connection established\r\n\r\n");
        assert_eq!(p.meta().proto, AppProto::Tls);
        assert_eq!(p.meta().http.as_ref().and_then(|h| h.method.clone()).as_deref(), Some("CONNECT"));
        assert_eq!(p.meta().tls.as_ref().and_then(|t| t.sni.clone()).as_deref(), Some("www.example.org"));
    }

    #[test]
    fn http_in_datagrams_and_methods_sip_shares() {
        let mut p = AppParser::new(17, 50000, 1900);
        p.on_datagram(
            true,
            b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nST: ssdp:all\r\n\r\n",
        );
        p.on_datagram(true, b"NOTIFY * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nNT: upnp:rootdevice\r\n\r\n");
        assert_eq!(p.meta().proto, AppProto::Http);
        let h = p.meta().http.clone().unwrap_or_default();
        assert_eq!(h.hosts().collect::<Vec<_>>(), ["239.255.255.250:1900", "239.255.255.250:1900"]);
        assert_eq!(h.transactions[0].method.as_deref(), Some("NOTIFY"));
        // SIP's NOTIFY is not HTTP; WebDAV's LOCK is.
        assert_eq!(probe(b"NOTIFY sip:bob@example.org SIP/2.0\r\n", true), Probe::No);
        assert_eq!(probe(b"NOTIFY * HTT", true), Probe::NeedMore);
        assert_eq!(probe(b"LOCK /doc HTTP/1.1\r\n", true), Probe::Yes);
    }
}
