//! `PcapFileSource`: pcap and pcapng files read one after the other by the
//! crate's own reader (feature `pcap`).

use std::path::{Path, PathBuf};

use super::{CaptureReader, LinkType, Micros, PacketSource, PartialRead, RawPacket, MAX_TIMESTAMP};
use crate::error::{Error, Result};

/// Reads pcap and pcapng files (plain, gzip or zstd) one after the other,
/// with the native [`CaptureReader`].
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
    reader: Option<CaptureReader>,
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
            let reader = open_capture(path)?;
            // A regular file is opened again when its turn comes (so that a
            // long list of files does not hold a descriptor each). A pipe or
            // device cannot be opened twice without losing what the first
            // open read: keep that capture open.
            let reopenable = std::fs::metadata(path).is_ok_and(|m| m.is_file());
            let (reader, link_type) = if reopenable {
                drop(reader);
                (None, LinkType(-1))
            } else {
                let link_type = reader.link_type().unwrap_or(LinkType(-1));
                (Some(reader), link_type)
            };
            let head = FileReader {
                path: path.clone(),
                ts_offset: *ts_offset,
                reader,
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

fn open_capture(path: &Path) -> Result<CaptureReader> {
    let fail = |reason: String| Error::CaptureOpen { path: path.to_path_buf(), reason };
    if path.as_os_str() != "-" {
        let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
        if meta.is_dir() {
            return Err(fail("is a directory".into()));
        }
    }
    CaptureReader::open(path).map_err(fail)
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
        if self.head.reader.is_none() {
            let reader = open_capture(&self.head.path)?;
            self.head.link_type = reader.link_type().unwrap_or(LinkType(-1));
            self.head.reader = Some(reader);
        }
        let advanced = self.head.reader.as_mut().is_some_and(CaptureReader::advance);
        if advanced {
            self.head.packets += 1;
            let offset = self.head.ts_offset;
            let packet = self.head.reader.as_ref().and_then(CaptureReader::packet);
            return Ok(packet.map(|p| RawPacket { ts: p.ts.saturating_add(offset).min(MAX_TIMESTAMP), ..p }));
        }
        if let Some(reason) = self.head.reader.as_ref().and_then(CaptureReader::fault) {
            self.head.partial = Some(PartialRead {
                path: self.head.path.clone(),
                packets_read: self.head.packets,
                reason: reason.to_string(),
            });
        }
        self.head.finished = true;
        // Close the file now rather than at the end of the whole chain.
        self.head.reader = None;
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
