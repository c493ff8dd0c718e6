//! Packet sources: where packets enter the engine.
//!
//! A [`PacketSource`] lends one packet at a time; the engine never keeps the
//! borrowed bytes past the call, so sources can reuse their buffers.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Link-layer framing of a capture, as a pcap LINKTYPE number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// `DLT_RAW` as written by Linux and most BSDs.
    pub const RAW_12: LinkType = LinkType(12);
    /// `DLT_RAW` as written by OpenBSD.
    pub const RAW_14: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// Capture time in microseconds since the Unix epoch. All engine time is
/// packet time: the engine never reads a clock, so replays are deterministic.
pub type Micros = u64;

/// One captured packet, borrowed from its source.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    pub ts: Micros,
    /// Length of the packet on the wire (may exceed `data.len()` under a snaplen).
    pub wire_len: u32,
    pub link_type: LinkType,
    pub data: &'a [u8],
}

/// Why a source stopped reading a file before its end.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartialRead {
    pub path: PathBuf,
    pub packets_read: u64,
    pub reason: String,
}

/// A source of packets. Implement this to feed the engine from anything.
///
/// Contract: `next_packet` returns `Ok(Some(packet))` until the input is
/// exhausted, then `Ok(None)` forever. A damaged input is not an error here:
/// the source reads what it can and reports the rest through
/// [`PacketSource::partial_reads`].
pub trait PacketSource {
    /// The next packet; `None` when the input is exhausted, or, for a live
    /// source ([`PacketSource::is_live`]), when no packet came in its timeout.
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>>;

    /// A live source returns `None` from `next_packet` when it is merely
    /// idle; it has ended only when [`PacketSource::finished`] says so.
    fn is_live(&self) -> bool {
        false
    }

    /// For live sources: no packet will come any more (stopped or failed).
    fn finished(&self) -> bool {
        true
    }

    /// For live sources: the current time, in the packets' clock, so the
    /// engine can end idle flows and flush batches while no packet comes.
    fn now(&self) -> Option<Micros> {
        None
    }

    /// Inputs that ended early (truncated or corrupt), with how far they got.
    fn partial_reads(&self) -> Vec<PartialRead> {
        Vec::new()
    }
}

/// Reads pcap and pcapng files through libpcap, one after the other.
///
/// Files are checked when the source is built (a missing or non-capture file
/// is an error before any packet flows) and opened one at a time while read.
pub struct PcapFileSource {
    head: FileReader,
    // The files after this one. A chain rather than a list, so that moving to
    // the next file touches a different field than the capture whose packet
    // is being lent out (the borrow checker needs the two to be disjoint).
    tail: Option<Box<PcapFileSource>>,
    /// Partial reads of files already left behind.
    earlier: Vec<PartialRead>,
}

struct FileReader {
    path: PathBuf,
    /// Added to every timestamp (replays shifted in time by `open_looped`).
    ts_offset: Micros,
    cap: Option<pcap::Capture<pcap::Offline>>,
    link_type: LinkType,
    packets: u64,
    finished: bool,
    partial: Option<PartialRead>,
}

impl PcapFileSource {
    /// Checks every file up front so that a missing or non-capture file is
    /// reported before any packet is processed.
    pub fn open<P: AsRef<Path>>(paths: &[P]) -> Result<Self> {
        let files: Vec<(PathBuf, Micros)> = paths.iter().map(|p| (p.as_ref().to_path_buf(), 0)).collect();
        Self::chain(&files)
    }

    /// Reads the files `loops` times over, each pass shifted in time past
    /// the previous one by the capture's span plus `gap`, so that flows of
    /// different passes never meet (choose `gap` above the idle timeouts).
    /// For benchmarks on small files.
    pub fn open_looped<P: AsRef<Path>>(paths: &[P], loops: usize, gap: Micros) -> Result<Self> {
        let (mut first, mut last) = (Micros::MAX, 0);
        if loops > 1 {
            // A pipe can be read once only.
            for p in paths {
                let p = p.as_ref();
                if !std::fs::metadata(p).is_ok_and(|m| m.is_file()) {
                    return Err(Error::CaptureOpen {
                        path: p.to_path_buf(),
                        reason: "not a regular file, so it cannot be replayed more than once (drop --loop)".into(),
                    });
                }
            }
            // One pass to learn the span; benchmarks time the run, not this.
            let mut scan = Self::open(paths)?;
            while let Some(p) = scan.next_packet()? {
                first = first.min(p.ts);
                last = last.max(p.ts);
            }
        }
        let period = last.saturating_sub(first.min(last)).saturating_add(gap);
        let mut files = Vec::with_capacity(paths.len() * loops.max(1));
        for k in 0..loops.max(1) {
            for p in paths {
                files.push((p.as_ref().to_path_buf(), period.saturating_mul(k as u64)));
            }
        }
        Self::chain(&files)
    }

    fn chain(files: &[(PathBuf, Micros)]) -> Result<Self> {
        let mut chain: Option<Box<PcapFileSource>> = None;
        for (path, ts_offset) in files.iter().rev() {
            let cap = open_capture(path)?;
            // A regular file is opened again when its turn comes (so that a
            // long list of files does not hold a descriptor each). A pipe or
            // device cannot be opened twice without losing what the first
            // open read: keep that capture open.
            let reopenable = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            let (cap, link_type) = if reopenable {
                drop(cap);
                (None, LinkType(-1))
            } else {
                let link_type = LinkType(cap.get_datalink().0);
                (Some(cap), link_type)
            };
            let head = FileReader {
                path: path.clone(),
                ts_offset: *ts_offset,
                cap,
                link_type,
                packets: 0,
                finished: false,
                partial: None,
            };
            chain = Some(Box::new(PcapFileSource { head, tail: chain, earlier: Vec::new() }));
        }
        chain.map(|b| *b).ok_or_else(|| Error::Config("no capture file given".into()))
    }

    /// Link type of the file being read (or last read).
    pub fn link_type(&self) -> LinkType {
        match &self.tail {
            Some(t) if self.head.finished => t.link_type(),
            _ => self.head.link_type,
        }
    }
}

fn open_capture(path: &Path) -> Result<pcap::Capture<pcap::Offline>> {
    let fail = |reason: String| Error::CaptureOpen { path: path.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.is_dir() {
        return Err(fail("is a directory".into()));
    }
    if meta.is_file() && meta.len() == 0 {
        return Err(fail("file is empty".into()));
    }
    pcap::Capture::from_file(path).map_err(|e| fail(e.to_string()))
}

/// The latest capture time a file may give: 9999-12-31T23:59:59.999999Z.
/// Later (corrupt) timestamps are clamped to it, far enough below
/// `u64::MAX` that engine time plus a timeout never saturates and every
/// event still sorts before the end-of-input watermark.
pub const MAX_TIMESTAMP: Micros = 253_402_300_799_999_999;

/// Timestamps before 1970 (a corrupt header) are clamped to the epoch,
/// timestamps after year 9999 to [`MAX_TIMESTAMP`].
fn timeval_micros(secs: i64, usecs: i64) -> Micros {
    let secs = u64::try_from(secs).unwrap_or(0);
    let usecs = u64::try_from(usecs).unwrap_or(0).min(999_999);
    secs.saturating_mul(1_000_000).saturating_add(usecs).min(MAX_TIMESTAMP)
}

impl PacketSource for PcapFileSource {
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>> {
        // Step past finished files, so the chain is never walked per packet.
        while self.head.finished {
            let Some(tail) = self.tail.take() else {
                return Ok(None);
            };
            let mut earlier = std::mem::take(&mut self.earlier);
            earlier.extend(self.head.partial.take());
            *self = *tail;
            self.earlier = earlier;
        }
        {
            if self.head.cap.is_none() {
                let cap = open_capture(&self.head.path)?;
                self.head.link_type = LinkType(cap.get_datalink().0);
                self.head.cap = Some(cap);
            }
            if let Some(cap) = self.head.cap.as_mut() {
                match cap.next_packet() {
                    Ok(p) => {
                        self.head.packets += 1;
                        #[allow(clippy::unnecessary_cast)] // time_t is not i64 everywhere
                        let ts = timeval_micros(p.header.ts.tv_sec as i64, p.header.ts.tv_usec as i64);
                        return Ok(Some(RawPacket {
                            ts: ts.saturating_add(self.head.ts_offset).min(MAX_TIMESTAMP),
                            wire_len: p.header.len,
                            link_type: self.head.link_type,
                            data: p.data,
                        }));
                    }
                    Err(e) => {
                        if !matches!(e, pcap::Error::NoMorePackets) {
                            self.head.partial = Some(PartialRead {
                                path: self.head.path.clone(),
                                packets_read: self.head.packets,
                                reason: e.to_string(),
                            });
                        }
                        self.head.finished = true;
                    }
                }
            }
        }
        match self.tail.as_mut() {
            Some(t) => t.next_packet(),
            None => Ok(None),
        }
    }

    fn partial_reads(&self) -> Vec<PartialRead> {
        let mut out = self.earlier.clone();
        out.extend(self.head.partial.iter().cloned());
        if let Some(t) = &self.tail {
            out.extend(t.partial_reads());
        }
        out
    }
}
pub mod live;
