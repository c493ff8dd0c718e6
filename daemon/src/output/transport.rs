//! Where formatted messages go: files and stdout (JSON lines), and syslog
//! over UDP, TCP (RFC 6587 octet counting) or a unix socket.
//!
//! Every transport is driven by one output thread (see `queue`); none is
//! ever touched by the engine thread. Blocking calls are bounded: connects
//! and writes on sockets time out.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use super::syslog::octet_frame;

/// How long a TCP connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one socket write may block (a peer that stops reading).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a failed `send` means for the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Count it and go on (datagrams: the next one may well get through).
    Count,
    /// Count it, drop the connection and reconnect with backoff (streams).
    Reconnect,
    /// Count it and fail the run (JSON files under `replay`: a verdict file
    /// with holes is worse than an error).
    Fatal,
}

pub trait Transport: Send {
    /// Opens (or re-opens) the destination.
    fn connect(&mut self) -> io::Result<()>;
    fn is_connected(&self) -> bool;
    fn disconnect(&mut self);
    /// Sends one message (unframed; the transport frames it).
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Writes out what is buffered (called when the queue runs empty).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// For SIGHUP / logrotate: files are reopened (appending), connections re-made.
    fn reopen(&mut self) -> io::Result<()> {
        self.disconnect();
        self.connect()
    }
    fn on_error(&self) -> OnError;
    /// Short note on how messages are framed, for warnings.
    fn framing(&self) -> &'static str;
}

/// Resolves `host:port`; an empty answer is an error too.
fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host} resolves to no address")));
    }
    Ok(addrs)
}

/// JSON lines to stdout or a file.
pub struct JsonLines {
    path: Option<PathBuf>,
    out: Option<BufWriter<Box<dyn Write + Send>>>,
    on_error: OnError,
}

impl JsonLines {
    pub fn stdout() -> Self {
        Self {
            path: None,
            out: Some(BufWriter::with_capacity(1 << 16, Box::new(io::stdout()))),
            on_error: OnError::Fatal,
        }
    }

    /// A file already created (truncated) by the caller, so that a path that
    /// cannot be created is reported before the run starts.
    pub fn file(path: PathBuf, file: File) -> Self {
        Self {
            path: Some(path),
            out: Some(BufWriter::with_capacity(1 << 16, Box::new(file))),
            on_error: OnError::Fatal,
        }
    }

    /// Live capture: a write error (a full disk) drops and counts, and the
    /// file is reopened with backoff until writes succeed again; the daemon
    /// goes on capturing.
    pub fn retrying(mut self) -> Self {
        self.on_error = OnError::Reconnect;
        self
    }
}

impl Transport for JsonLines {
    fn connect(&mut self) -> io::Result<()> {
        if self.out.is_none() {
            let w: Box<dyn Write + Send> = match &self.path {
                // Append: after logrotate moved the file this creates a new
                // one; after `copytruncate` it goes on at the (new) end.
                Some(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
                None => Box::new(io::stdout()),
            };
            self.out = Some(BufWriter::with_capacity(1 << 16, w));
        }
        Ok(())
    }
    fn is_connected(&self) -> bool {
        self.out.is_some()
    }
    fn disconnect(&mut self) {
        if let Some(mut w) = self.out.take() {
            let _ = w.flush();
        }
    }
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.write_all(msg),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "output is closed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
    fn reopen(&mut self) -> io::Result<()> {
        if self.path.is_none() {
            return self.flush(); // stdout: nothing to reopen
        }
        let flushed = self.flush();
        self.out = None;
        self.connect()?;
        flushed
    }
    fn on_error(&self) -> OnError {
        self.on_error
    }
    fn framing(&self) -> &'static str {
        "JSON lines"
    }
}

/// Syslog over UDP: one datagram per message (RFC 5426).
pub struct Udp {
    host: String,
    port: u16,
    sock: Option<UdpSocket>,
    pace: Pacer,
}

/// Datagrams per second a UDP syslog output sends at most, and how many
/// may go back to back. A receiver's socket buffer (rsyslog's is ~200 KiB,
/// some 500 messages) overflows silently in its kernel when a burst comes
/// faster than it reads; pacing keeps bursts within it. The queue absorbs
/// the difference, and TCP syslog is the lossless choice.
pub const UDP_RATE: f64 = 2000.0;
pub const UDP_BURST: f64 = 200.0;

/// A token bucket that makes the output thread wait (never the engine).
struct Pacer {
    tokens: f64,
    last: std::time::Instant,
}

impl Pacer {
    fn new() -> Self {
        Self { tokens: UDP_BURST, last: std::time::Instant::now() }
    }

    fn wait_for_one(&mut self) {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * UDP_RATE).min(UDP_BURST);
        self.last = now;
        if self.tokens < 1.0 {
            std::thread::sleep(Duration::from_secs_f64((1.0 - self.tokens) / UDP_RATE));
            self.tokens = 1.0;
            self.last = std::time::Instant::now();
        }
        self.tokens -= 1.0;
    }
}

impl Udp {
    pub fn new(host: &str, port: u16) -> Self {
        Self { host: host.into(), port, sock: None, pace: Pacer::new() }
    }
}

impl Transport for Udp {
    fn connect(&mut self) -> io::Result<()> {
        let mut last = None;
        for addr in resolve(&self.host, self.port)? {
            let local: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
            let attempt = UdpSocket::bind(local).and_then(|s| {
                s.connect(addr)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(s)
            });
            match attempt {
                Ok(s) => {
                    self.sock = Some(s);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no address")))
    }
    fn is_connected(&self) -> bool {
        self.sock.is_some()
    }
    fn disconnect(&mut self) {
        self.sock = None;
    }
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.pace.wait_for_one();
        match &self.sock {
            Some(s) => s.send(msg).map(|_| ()),
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }
    fn on_error(&self) -> OnError {
        // e.g. ECONNREFUSED after an ICMP port unreachable: the next
        // datagram may get through once the server is back.
        OnError::Count
    }
    fn framing(&self) -> &'static str {
        "one datagram per message"
    }
}

/// Syslog over TCP with RFC 6587 octet-counting framing (`LEN SP MSG`).
pub struct Tcp {
    host: String,
    port: u16,
    stream: Option<TcpStream>,
    frame: Vec<u8>,
}

impl Tcp {
    pub fn new(host: &str, port: u16) -> Self {
        Self { host: host.into(), port, stream: None, frame: Vec::with_capacity(1024) }
    }
}

impl Transport for Tcp {
    fn connect(&mut self) -> io::Result<()> {
        let mut last = None;
        for addr in resolve(&self.host, self.port)? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    self.stream = Some(s);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no address")))
    }
    fn is_connected(&self) -> bool {
        self.stream.is_some()
    }
    fn disconnect(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let Some(s) = self.stream.as_mut() else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "not connected"));
        };
        self.frame.clear();
        octet_frame(msg, &mut self.frame);
        s.write_all(&self.frame)
    }
    fn on_error(&self) -> OnError {
        // A partial write leaves the stream mid-frame: only a new
        // connection can go on.
        OnError::Reconnect
    }
    fn framing(&self) -> &'static str {
        "RFC 6587 octet counting"
    }
}

enum UnixSock {
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

/// Syslog to a unix socket such as `/dev/log`: a datagram socket (what
/// rsyslog's imuxsock and journald create). If the path is a stream socket
/// (older syslog-ng `unix-stream()`), messages go over the stream, each
/// terminated by a newline (non-transparent framing, RFC 6587 §3.4.2),
/// which is what line-based stream readers expect.
pub struct Unix {
    path: PathBuf,
    sock: Option<UnixSock>,
    line: Vec<u8>,
}

impl Unix {
    pub fn new(path: PathBuf) -> Self {
        Self { path, sock: None, line: Vec::with_capacity(1024) }
    }
}

impl Transport for Unix {
    fn connect(&mut self) -> io::Result<()> {
        let dgram = UnixDatagram::unbound().and_then(|s| {
            s.connect(&self.path)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            Ok(s)
        });
        match dgram {
            Ok(s) => {
                self.sock = Some(UnixSock::Datagram(s));
                Ok(())
            }
            // A missing path or a refused connect means nobody listens;
            // anything else (EPROTOTYPE: a stream socket) is worth a try
            // as a stream.
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => Err(e),
            Err(e) => match UnixStream::connect(&self.path) {
                Ok(s) => {
                    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    self.sock = Some(UnixSock::Stream(s));
                    Ok(())
                }
                Err(_) => Err(e),
            },
        }
    }
    fn is_connected(&self) -> bool {
        self.sock.is_some()
    }
    fn disconnect(&mut self) {
        self.sock = None;
    }
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self.sock.as_mut() {
            Some(UnixSock::Datagram(s)) => s.send(msg).map(|_| ()),
            Some(UnixSock::Stream(s)) => {
                self.line.clear();
                self.line.extend_from_slice(msg);
                self.line.push(b'\n');
                s.write_all(&self.line)
            }
            None => Err(io::Error::new(io::ErrorKind::NotConnected, "not connected")),
        }
    }
    fn on_error(&self) -> OnError {
        // The daemon behind the socket restarted (ECONNREFUSED) or is
        // overwhelmed (the write timed out): reconnect after a pause.
        OnError::Reconnect
    }
    fn framing(&self) -> &'static str {
        match self.sock {
            Some(UnixSock::Stream(_)) => "unix stream, one message per line",
            _ => "unix datagram",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A burst beyond `UDP_BURST` is spread at `UDP_RATE`.
    #[test]
    fn udp_bursts_are_paced() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
        let mut tx = Udp::new("127.0.0.1", rx.local_addr().unwrap().port());
        tx.connect().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut got = 0;
            while rx.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        let n = 600;
        let started = std::time::Instant::now();
        for i in 0..n {
            tx.send(format!("message {i:04} {}", "x".repeat(300)).as_bytes()).unwrap();
        }
        // (600 - 200) datagrams at 2000/s: at least 0.2 s (a busy machine only adds).
        let floor = (n as f64 - UDP_BURST) / UDP_RATE;
        assert!(started.elapsed().as_secs_f64() >= floor * 0.95, "{:?}", started.elapsed());
        // Loopback under a busy test run may still drop a few; most arrive.
        assert!(reader.join().unwrap() > n / 2);
    }
}
