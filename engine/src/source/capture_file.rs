//! A native reader of capture files, replacing libpcap for files.
//!
//! It reads classic pcap (either byte order, microsecond or nanosecond
//! timestamps) and pcapng (any number of sections, each with any number of
//! interfaces, each with its own link type, snaplen, timestamp resolution and
//! offset; Enhanced, Simple and obsolete Packet blocks), and either of them
//! compressed with gzip or zstd. The link type travels with every packet.
//!
//! Why not libpcap: libpcap 1.10 refuses a pcapng whose interfaces differ in
//! link type or snaplen, which Wireshark writes routinely, and then the whole
//! capture reads as empty.
//!
//! The input is read in large chunks into one reusable buffer and packets are
//! lent out of it, so there is no copy or allocation per packet, and pipes and
//! decompressors are read the same way as files. A damaged or cut file is
//! read as far as it goes; the reader then reports why it stopped
//! ([`CaptureReader::fault`]) and never panics.

use std::io::{self, Read};

use super::{LinkType, Micros, RawPacket, MAX_TIMESTAMP};

/// Bytes read from the input at a time.
const CHUNK: usize = 1 << 20;
/// Largest pcapng block accepted (libpcap's bound); a larger one means a damaged file.
const MAX_BLOCK: usize = 16 * 1024 * 1024;
/// Largest classic pcap record accepted (libpcap's bound), whatever the file's header says.
const MAX_SNAPLEN: u32 = 262_144;
/// Interfaces one pcapng section may describe; more means a damaged file.
const MAX_INTERFACES: usize = 65_536;

const PCAP_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_NANOS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const GZIP: [u8; 2] = [0x1f, 0x8b];
const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How one input's raw timestamps turn into microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    /// Units are microseconds.
    Micros,
    /// Units are finer: divide.
    Div(u64),
    /// Units are coarser: multiply.
    Mul(u64),
    /// Units per second that are not a power of ten (pcapng `if_tsresol` base 2).
    PerSecond(u128),
}

impl Scale {
    /// From a pcapng `if_tsresol` byte: 10^-n, or 2^-n with the top bit set.
    fn from_tsresol(v: u8) -> Scale {
        let n = u32::from(v & 0x7f);
        if v & 0x80 != 0 {
            return Scale::PerSecond(1u128.checked_shl(n).unwrap_or(u128::MAX));
        }
        match n {
            6 => Scale::Micros,
            0..=5 => Scale::Mul(10u64.pow(6 - n)),
            7..=25 => Scale::Div(10u64.pow(n - 6)),
            // Finer than 10^-25 s: no timestamp below a microsecond survives.
            _ => Scale::PerSecond(u128::MAX),
        }
    }

    fn micros(self, units: u64) -> u64 {
        match self {
            Scale::Micros => units,
            Scale::Div(d) => units / d,
            Scale::Mul(m) => units.saturating_mul(m),
            Scale::PerSecond(p) => {
                let us = u128::from(units).saturating_mul(1_000_000) / p.max(1);
                u64::try_from(us).unwrap_or(u64::MAX)
            }
        }
    }
}

/// One pcapng interface (an Interface Description Block).
#[derive(Clone, Copy, Debug)]
struct Interface {
    link_type: LinkType,
    snaplen: u32,
    scale: Scale,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Classic { big_endian: bool, scale: Scale, link_type: LinkType },
    Ng { big_endian: bool, interfaces: Vec<Interface> },
}

/// The input, seen through one reusable buffer.
struct Window {
    src: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// First byte not consumed yet.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    eof: bool,
}

impl Window {
    fn new(src: Box<dyn Read + Send>) -> Self {
        Window { src, buf: vec![0; CHUNK], start: 0, end: 0, eof: false }
    }

    /// Reads until `n` bytes are available past the cursor, or the input ends.
    /// Returns how many are available, at most `n`.
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        while self.end - self.start < n && !self.eof {
            if self.start + n > self.buf.len() {
                // Not enough room after the cursor: move what is left to the front.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if n > self.buf.len() {
                    self.buf.resize(n.next_power_of_two(), 0);
                }
            }
            let Some(room) = self.buf.get_mut(self.end..) else { break };
            match self.src.read(room) {
                Ok(0) => self.eof = true,
                Ok(r) => self.end += r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((self.end - self.start).min(n))
    }

    /// The next `n` bytes (after a `fill` that made them available).
    fn peek(&self, n: usize) -> &[u8] {
        self.buf.get(self.start..self.start + n).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let v = [b.get(at).copied().unwrap_or(0), b.get(at + 1).copied().unwrap_or(0)];
    if big_endian {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let mut v = [0u8; 4];
    for (i, x) in v.iter_mut().enumerate() {
        *x = b.get(at + i).copied().unwrap_or(0);
    }
    if big_endian {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

fn u64_at(b: &[u8], at: usize, big_endian: bool) -> u64 {
    let (hi, lo) = if big_endian { (at, at + 4) } else { (at + 4, at) };
    (u64::from(u32_at(b, hi, big_endian)) << 32) | u64::from(u32_at(b, lo, big_endian))
}

/// Where a packet lies in the window, found before it is lent out.
struct Found {
    ts: Micros,
    wire_len: u32,
    link_type: LinkType,
    /// Offset of the packet bytes from the cursor, and their length.
    at: usize,
    len: usize,
    /// Bytes of the record or block, consumed with the packet.
    record: usize,
}

/// Reads one capture file (or stream). See the module documentation.
pub struct CaptureReader {
    input: Window,
    format: Format,
    /// Timestamp of the last packet (for Simple Packet Blocks, which carry none).
    last_ts: Micros,
    /// The packet [`CaptureReader::advance`] found: where its bytes are in the buffer.
    current: Option<(RawMeta, usize, usize)>,
    fault: Option<String>,
}

/// A packet's fields other than its bytes.
#[derive(Clone, Copy, Debug)]
struct RawMeta {
    ts: Micros,
    wire_len: u32,
    link_type: LinkType,
}

impl std::fmt::Debug for CaptureReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader").field("format", &self.format).field("fault", &self.fault).finish()
    }
}

fn truncated(what: &str, want: usize, got: usize) -> String {
    format!("truncated dump file; tried to read {want} {what} bytes, only got {got}")
}

impl CaptureReader {
    /// Reads the file header. An input that is not a capture at all is an
    /// error here, with a reason; damage later in the input is a
    /// [`CaptureReader::fault`].
    pub fn new(src: Box<dyn Read + Send>) -> Result<Self, String> {
        let mut input = Window::new(src);
        let got = input.fill(4).map_err(|e| e.to_string())?;
        let mut head = [0u8; 4];
        head.get_mut(..got).unwrap_or(&mut []).copy_from_slice(input.peek(got));
        let head = head.get(..got).unwrap_or(&[]);
        if head.starts_with(&GZIP) {
            let inner = flate2::read::MultiGzDecoder::new(WindowRead(input));
            return Self::new(Box::new(inner)).map_err(|e| format!("gzip-compressed: {e}"));
        }
        if head.starts_with(&ZSTD) {
            let inner = ruzstd::decoding::StreamingDecoder::new(WindowRead(input))
                .map_err(|e| format!("zstd-compressed: {e}"))?;
            return Self::new(Box::new(inner)).map_err(|e| format!("zstd-compressed: {e}"));
        }
        if got < 4 {
            return Err(if got == 0 { "file is empty".into() } else { "unknown file format".into() });
        }
        let magic_le = u32_at(head, 0, false);
        let magic_be = u32_at(head, 0, true);
        let format = if magic_le == PCAPNG_SHB {
            // The section header is read as the first block.
            Format::Ng { big_endian: false, interfaces: Vec::new() }
        } else if [PCAP_MICROS, PCAP_NANOS].contains(&magic_le) || [PCAP_MICROS, PCAP_NANOS].contains(&magic_be) {
            let big_endian = [PCAP_MICROS, PCAP_NANOS].contains(&magic_be);
            let got = input.fill(24).map_err(|e| e.to_string())?;
            if got < 24 {
                return Err(truncated("file header", 24, got));
            }
            let h = input.peek(24);
            let nanos = u32_at(h, 0, big_endian) == PCAP_NANOS;
            // The upper bits hold FCS information, not the link type.
            let link_type = LinkType((u32_at(h, 20, big_endian) & 0x03ff_ffff) as i32);
            input.consume(24);
            let scale = if nanos { Scale::Div(1000) } else { Scale::Micros };
            Format::Classic { big_endian, scale, link_type }
        } else {
            return Err("unknown file format".into());
        };
        Ok(CaptureReader { input, format, last_ts: 0, current: None, fault: None })
    }

    /// Opens a file by path (`-` is standard input).
    pub fn open(path: &std::path::Path) -> Result<Self, String> {
        if path.as_os_str() == "-" {
            return Self::new(Box::new(io::stdin()));
        }
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        Self::new(Box::new(file))
    }

    /// Link type of a classic pcap file, or of the first interface of a
    /// pcapng file once its description has been read.
    pub fn link_type(&self) -> Option<LinkType> {
        match &self.format {
            Format::Classic { link_type, .. } => Some(*link_type),
            Format::Ng { interfaces, .. } => interfaces.first().map(|i| i.link_type),
        }
    }

    /// Why reading stopped before the end of the input, if it did.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    /// Moves to the next packet; false at the end of the input or at the
    /// first damage (then [`CaptureReader::fault`] says why). The packet is
    /// then [`CaptureReader::packet`]. Two steps, so that a caller can look
    /// at the reader again when there is no packet.
    pub fn advance(&mut self) -> bool {
        self.current = None;
        if self.fault.is_some() {
            return false;
        }
        let found = match self.find_next() {
            Ok(Some(f)) => f,
            Ok(None) => return false,
            Err(reason) => {
                self.fault = Some(reason);
                return false;
            }
        };
        self.last_ts = found.ts;
        let from = self.input.start + found.at;
        self.input.consume(found.record);
        let meta = RawMeta { ts: found.ts, wire_len: found.wire_len, link_type: found.link_type };
        self.current = Some((meta, from, found.len));
        true
    }

    /// The packet the last [`CaptureReader::advance`] moved to.
    pub fn packet(&self) -> Option<RawPacket<'_>> {
        let (m, from, len) = self.current?;
        let data = self.input.buf.get(from..from + len)?;
        Some(RawPacket { ts: m.ts, wire_len: m.wire_len, link_type: m.link_type, data })
    }

    /// [`CaptureReader::advance`], then [`CaptureReader::packet`].
    pub fn next_packet(&mut self) -> Option<RawPacket<'_>> {
        if self.advance() {
            self.packet()
        } else {
            None
        }
    }

    fn find_next(&mut self) -> Result<Option<Found>, String> {
        match self.format {
            Format::Classic { big_endian, scale, link_type } => self.classic_record(big_endian, scale, link_type),
            Format::Ng { .. } => loop {
                if let Some(f) = self.ng_block()? {
                    return Ok(Some(f));
                }
                if self.input.end == self.input.start && self.input.eof {
                    return Ok(None);
                }
            },
        }
    }

    fn classic_record(&mut self, big_endian: bool, scale: Scale, link_type: LinkType) -> Result<Option<Found>, String> {
        let input = &mut self.input;
        match input.fill(16).map_err(|e| e.to_string())? {
            0 => return Ok(None),
            got if got < 16 => return Err(truncated("header", 16, got)),
            _ => {}
        }
        let h = input.peek(16);
        let secs = u64::from(u32_at(h, 0, big_endian));
        let frac = u64::from(u32_at(h, 4, big_endian));
        let caplen = u32_at(h, 8, big_endian);
        let len = u32_at(h, 12, big_endian);
        // libpcap's bound, whatever the header claims: a damaged header's
        // snaplen (4 GiB) must not make a record that size.
        if caplen > MAX_SNAPLEN {
            return Err(format!("invalid packet capture length {caplen}, bigger than snaplen of {MAX_SNAPLEN}"));
        }
        let caplen = caplen as usize;
        let got = input.fill(16 + caplen).map_err(|e| e.to_string())?;
        if got < 16 + caplen {
            return Err(truncated("captured", caplen, got - 16));
        }
        let ts = secs.saturating_mul(1_000_000).saturating_add(scale.micros(frac).min(999_999)).min(MAX_TIMESTAMP);
        Ok(Some(Found { ts, wire_len: len.max(caplen as u32), link_type, at: 16, len: caplen, record: 16 + caplen }))
    }

    /// Reads one pcapng block: a packet, or `None` for any other block (or the end).
    fn ng_block(&mut self) -> Result<Option<Found>, String> {
        let Format::Ng { big_endian, interfaces } = &mut self.format else { return Ok(None) };
        let input = &mut self.input;
        match input.fill(12).map_err(|e| e.to_string())? {
            0 => return Ok(None),
            got if got < 12 => return Err(truncated("block header", 12, got)),
            _ => {}
        }
        let head = input.peek(12);
        if u32_at(head, 0, false) == PCAPNG_SHB {
            // A new section: its own byte order, its own interfaces.
            *big_endian = match u32_at(head, 8, false) {
                PCAPNG_BYTE_ORDER => false,
                m if m.swap_bytes() == PCAPNG_BYTE_ORDER => true,
                m => return Err(format!("section header with a bad byte-order magic {m:#010x}")),
            };
            interfaces.clear();
        }
        let be = *big_endian;
        let kind = u32_at(head, 0, be);
        let total = u32_at(head, 4, be) as usize;
        if total < 12 || total % 4 != 0 || total > MAX_BLOCK {
            return Err(format!("block of type {kind:#x} has an invalid total length {total}"));
        }
        let got = input.fill(total).map_err(|e| e.to_string())?;
        if got < total {
            return Err(truncated("block", total, got));
        }
        let block = input.peek(total);
        if u32_at(block, total - 4, be) as usize != total {
            return Err(format!("block of type {kind:#x}: total length in header and trailer don't match"));
        }
        let body_end = total - 4;
        let found = match kind {
            // Interface Description Block.
            1 => {
                if total < 20 {
                    return Err(format!("interface description block too short ({total} bytes)"));
                }
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(format!("more than {MAX_INTERFACES} interfaces in one section"));
                }
                let mut iface = Interface {
                    link_type: LinkType(i32::from(u16_at(block, 8, be))),
                    snaplen: u32_at(block, 12, be),
                    scale: Scale::Micros,
                    offset_secs: 0,
                };
                for (code, value) in options(block.get(16..body_end).unwrap_or(&[]), be) {
                    match (code, value) {
                        (9, [v, ..]) => iface.scale = Scale::from_tsresol(*v),
                        (14, v) if v.len() >= 8 => iface.offset_secs = u64_at(v, 0, be) as i64,
                        _ => {}
                    }
                }
                interfaces.push(iface);
                None
            }
            // Enhanced Packet Block, and the obsolete Packet Block.
            6 | 2 => {
                if total < 32 {
                    return Err(format!("packet block too short ({total} bytes)"));
                }
                let (ifid, ts_at) = if kind == 6 {
                    (u32_at(block, 8, be) as usize, 12)
                } else {
                    (usize::from(u16_at(block, 8, be)), 12)
                };
                let Some(iface) = interfaces.get(ifid) else {
                    return Err(format!("packet for interface {ifid}, which the section does not describe"));
                };
                let units = (u64::from(u32_at(block, ts_at, be)) << 32) | u64::from(u32_at(block, ts_at + 4, be));
                let caplen = u32_at(block, 20, be) as usize;
                let len = u32_at(block, 24, be);
                if 28 + caplen > body_end {
                    return Err(format!("packet block claims {caplen} captured bytes, more than the block holds"));
                }
                let us = iface.scale.micros(units);
                let offset = iface.offset_secs.saturating_mul(1_000_000);
                let ts = if offset >= 0 {
                    us.saturating_add(offset as u64)
                } else {
                    us.saturating_sub(offset.unsigned_abs())
                };
                Some(Found {
                    ts: ts.min(MAX_TIMESTAMP),
                    wire_len: len.max(caplen as u32),
                    link_type: iface.link_type,
                    at: 28,
                    len: caplen,
                    record: total,
                })
            }
            // Simple Packet Block: interface 0, no timestamp.
            3 => {
                let Some(iface) = interfaces.first() else {
                    return Err("simple packet block before any interface description".into());
                };
                let len = u32_at(block, 8, be);
                let mut caplen = (len as usize).min(body_end.saturating_sub(12));
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                Some(Found {
                    ts: self.last_ts,
                    wire_len: len,
                    link_type: iface.link_type,
                    at: 12,
                    len: caplen,
                    record: total,
                })
            }
            // Section headers (handled above), statistics, names, secrets, custom blocks: skipped.
            _ => None,
        };
        if found.is_none() {
            input.consume(total);
        }
        Ok(found)
    }
}

/// The options of a pcapng block body: (code, value) until `opt_endofopt`.
fn options(mut b: &[u8], big_endian: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let code = u16_at(b, 0, big_endian);
        let len = usize::from(u16_at(b, 2, big_endian));
        let value = b.get(4..4 + len)?;
        b = b.get(4 + len.next_multiple_of(4)..).unwrap_or(&[]);
        (code != 0).then_some((code, value))
    })
}

/// What remains of a window, read as a stream (for a decompressor on top of it).
struct WindowRead(Window);

impl Read for WindowRead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let w = &mut self.0;
        if w.start == w.end {
            if w.eof {
                return Ok(0);
            }
            w.start = 0;
            w.end = 0;
            w.fill(1)?;
        }
        let n = out.len().min(w.end - w.start);
        if let (Some(dst), Some(src)) = (out.get_mut(..n), w.buf.get(w.start..w.start + n)) {
            dst.copy_from_slice(src);
        }
        w.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: Vec<u8>) -> Result<CaptureReader, String> {
        CaptureReader::new(Box::new(io::Cursor::new(bytes)))
    }

    fn classic(big_endian: bool, nanos: bool, packets: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut out = Vec::new();
        out.extend(w32(if nanos { PCAP_NANOS } else { PCAP_MICROS }));
        out.extend(w16(2));
        out.extend(w16(4));
        out.extend(w32(0));
        out.extend(w32(0));
        out.extend(w32(65535));
        out.extend(w32(1));
        for (secs, frac, data) in packets {
            out.extend(w32(*secs));
            out.extend(w32(*frac));
            out.extend(w32(data.len() as u32));
            out.extend(w32(data.len() as u32 + 10));
            out.extend_from_slice(data);
        }
        out
    }

    fn all(r: &mut CaptureReader) -> Vec<(Micros, u32, i32, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            out.push((p.ts, p.wire_len, p.link_type.0, p.data.to_vec()));
        }
        out
    }

    #[test]
    fn classic_pcap_in_both_byte_orders_and_resolutions() {
        for big_endian in [false, true] {
            for nanos in [false, true] {
                let frac = if nanos { 123_456_789 } else { 123_456 };
                let bytes = classic(big_endian, nanos, &[(10, frac, b"abc"), (11, 0, b"")]);
                let mut r = reader(bytes).unwrap();
                let got = all(&mut r);
                assert_eq!(got.len(), 2);
                assert_eq!(got[0], (10_123_456, 13, 1, b"abc".to_vec()));
                assert_eq!(got[1].0, 11_000_000);
                assert_eq!(r.fault(), None);
            }
        }
    }

    #[test]
    fn cut_records_are_faults_after_the_whole_packets() {
        let bytes = classic(false, false, &[(1, 0, b"abcdef"), (2, 0, b"ghijkl")]);
        for cut in 24..bytes.len() {
            let mut r = reader(bytes[..cut].to_vec()).unwrap();
            let n = all(&mut r).len();
            let whole = if cut >= 24 + 22 + 22 {
                2
            } else if cut >= 24 + 22 {
                1
            } else {
                0
            };
            assert_eq!(n, whole, "cut at {cut}");
            let at_boundary = cut == 24 || cut == 24 + 22;
            assert_eq!(r.fault().is_some(), !at_boundary, "cut at {cut}: {:?}", r.fault());
        }
        let mut r = reader(bytes[..24 + 22 + 10].to_vec()).unwrap();
        all(&mut r);
        assert_eq!(r.fault(), Some("truncated dump file; tried to read 16 header bytes, only got 10"));
    }

    #[test]
    fn not_a_capture_is_refused() {
        assert_eq!(reader(Vec::new()).err().as_deref(), Some("file is empty"));
        assert_eq!(reader(b"hello world, no capture".to_vec()).err().as_deref(), Some("unknown file format"));
        assert!(reader(classic(false, false, &[])[..20].to_vec()).is_err());
    }

    #[test]
    fn huge_capture_length_is_a_fault_not_an_allocation() {
        let mut bytes = classic(false, false, &[(1, 0, b"abc")]);
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = reader(bytes).unwrap();
        assert!(r.next_packet().is_none());
        assert!(r.fault().unwrap_or("").contains("invalid packet capture length"), "{:?}", r.fault());
    }

    struct Ng {
        be: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn w32(&self, v: u32) -> [u8; 4] {
            if self.be {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }
        fn block(&mut self, kind: u32, body: &[u8]) {
            let mut body = body.to_vec();
            while body.len() % 4 != 0 {
                body.push(0);
            }
            let total = 12 + body.len() as u32;
            let (k, t) = (self.w32(kind), self.w32(total));
            self.out.extend(k);
            self.out.extend(t);
            self.out.extend(body);
            self.out.extend(t);
        }
        fn section(&mut self, be: bool) {
            self.be = be;
            let mut body = self.w32(PCAPNG_BYTE_ORDER).to_vec();
            body.extend(if be { [0, 1, 0, 0] } else { [1, 0, 0, 0] });
            body.extend([0xff; 8]);
            self.block(PCAPNG_SHB, &body);
        }
        fn interface(&mut self, link: u16, snaplen: u32, opts: &[(u16, &[u8])]) {
            let w16 = |v: u16| if self.be { v.to_be_bytes() } else { v.to_le_bytes() };
            let mut body = Vec::new();
            body.extend(w16(link));
            body.extend([0, 0]);
            body.extend(self.w32(snaplen));
            for (code, v) in opts {
                body.extend(w16(*code));
                body.extend(w16(v.len() as u16));
                body.extend_from_slice(v);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
            body.extend([0; 4]);
            self.block(1, &body);
        }
        fn epb(&mut self, ifid: u32, units: u64, data: &[u8]) {
            let mut body = self.w32(ifid).to_vec();
            body.extend(self.w32((units >> 32) as u32));
            body.extend(self.w32(units as u32));
            body.extend(self.w32(data.len() as u32));
            body.extend(self.w32(data.len() as u32));
            body.extend_from_slice(data);
            self.block(6, &body);
        }
    }

    #[test]
    fn pcapng_interfaces_differ_and_sections_restart() {
        let mut ng = Ng { be: false, out: Vec::new() };
        ng.section(false);
        ng.interface(1, 262_144, &[]);
        ng.interface(113, 65_535, &[(9, &[9])]);
        ng.block(4, &[0; 8]); // a name resolution block, skipped
        ng.epb(0, 5_000_001, b"eth");
        ng.epb(1, 6_000_000_123, b"sll");
        ng.section(true);
        ng.interface(101, 0, &[(9, &[0x80 | 10]), (14, &100u64.to_be_bytes())]);
        ng.epb(0, 2048, b"raw");
        ng.block(3, &[0, 0, 0, 9, b'x', b'y']); // a simple packet block: no timestamp
        let mut r = reader(ng.out.clone()).unwrap();
        let got = all(&mut r);
        assert_eq!(r.fault(), None);
        assert_eq!(
            got,
            vec![
                (5_000_001, 3, 1, b"eth".to_vec()),
                (6_000_000, 3, 113, b"sll".to_vec()),
                (102_000_000, 3, 101, b"raw".to_vec()),
                (102_000_000, 9, 101, b"xy\0\0".to_vec()),
            ]
        );
        // Cut anywhere: never a panic, the whole blocks before the cut are read.
        for cut in 0..ng.out.len() {
            if let Ok(mut r) = reader(ng.out[..cut].to_vec()) {
                assert!(all(&mut r).len() <= 4);
            }
        }
    }

    #[test]
    fn packet_for_an_undescribed_interface_is_a_fault() {
        let mut ng = Ng { be: false, out: Vec::new() };
        ng.section(false);
        ng.interface(1, 0, &[]);
        ng.epb(0, 1, b"a");
        ng.epb(3, 2, b"b");
        let mut r = reader(ng.out).unwrap();
        assert_eq!(all(&mut r).len(), 1);
        assert!(r.fault().unwrap_or("").contains("interface 3"), "{:?}", r.fault());
    }

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(Scale::from_tsresol(6).micros(7), 7);
        assert_eq!(Scale::from_tsresol(9).micros(7_999), 7);
        assert_eq!(Scale::from_tsresol(3).micros(7), 7_000);
        assert_eq!(Scale::from_tsresol(0x80 | 20).micros(1 << 20), 1_000_000);
        assert_eq!(Scale::from_tsresol(0x80 | 127).micros(u64::MAX), 0);
        assert_eq!(Scale::from_tsresol(0).micros(u64::MAX), u64::MAX);
    }

    #[test]
    fn compressed_inputs_read_like_plain_ones() {
        use std::io::Write;
        let plain = classic(false, false, &[(1, 5, b"abc"), (2, 6, b"defg")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let mut r = reader(gz.clone()).unwrap();
        let want = all(&mut reader(plain).unwrap());
        assert_eq!(all(&mut r), want);
        assert_eq!(r.fault(), None);
        // Cut: the whole packets, then a fault, never a panic.
        let mut r = reader(gz[..gz.len() - 12].to_vec()).unwrap();
        assert!(all(&mut r).len() <= 2);
        assert!(r.fault().is_some());
    }

    #[test]
    fn packets_larger_than_a_chunk_are_read_whole() {
        let big = vec![7u8; CHUNK + 100];
        let mut ng = Ng { be: false, out: Vec::new() };
        ng.section(false);
        ng.interface(1, 0, &[]);
        ng.epb(0, 1, b"small");
        ng.epb(0, 2, &big);
        ng.epb(0, 3, b"after");
        let mut r = reader(ng.out).unwrap();
        let got = all(&mut r);
        assert_eq!(r.fault(), None);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].3.len(), CHUNK + 100);
        assert_eq!(got[2].3, b"after".to_vec());
    }
}
