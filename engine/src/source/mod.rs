//! Packet sources: where packets enter the engine.
//!
//! A [`PacketSource`] lends one packet at a time; the engine never keeps the
//! borrowed bytes past the call, so sources can reuse their buffers.

use std::path::PathBuf;

use crate::error::Result;

/// Link-layer framing of a capture, as a pcap LINKTYPE number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II (and 802.3) frames.
    pub const ETHERNET: LinkType = LinkType(1);
    /// PPP, with or without HDLC address and control bytes.
    pub const PPP: LinkType = LinkType(9);
    /// PPP in HDLC-like framing (RFC 1662); may also carry Cisco HDLC frames.
    pub const PPP_HDLC: LinkType = LinkType(50);
    /// `DLT_RAW` as written by Linux and most BSDs.
    pub const RAW_12: LinkType = LinkType(12);
    /// `DLT_RAW` as written by OpenBSD.
    pub const RAW_14: LinkType = LinkType(14);
    /// Raw IP, IPv4 or IPv6 told by the version field; no link header.
    pub const RAW: LinkType = LinkType(101);
    /// Cisco HDLC.
    pub const CISCO_HDLC: LinkType = LinkType(104);
    /// IEEE 802.11 without a radio header.
    pub const IEEE802_11: LinkType = LinkType(105);
    /// OpenBSD loopback: a 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// IEEE 802.11 behind a radiotap header.
    pub const RADIOTAP: LinkType = LinkType(127);
    /// Per-Packet Information header, then the link type it names.
    pub const PPI: LinkType = LinkType(192);
    /// Linux cooked capture v1 (16-byte header), e.g. from the `any` interface.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4, no link header.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6, no link header.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2 (20-byte header).
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// Capture time in microseconds since the Unix epoch. All engine time is
/// packet time: the engine never reads a clock, so replays are deterministic.
pub type Micros = u64;

/// A wall-clock time as [`Micros`] since the Unix epoch (0 before it), for a
/// caller whose packets carry `SystemTime`s or who ticks an idle live loop.
pub fn micros_from_system_time(t: std::time::SystemTime) -> Micros {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, micros_from_duration)
}

/// A duration as [`Micros`], saturating at `Micros::MAX`.
pub fn micros_from_duration(d: std::time::Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

/// One captured packet, borrowed from its source.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    /// Capture time of the packet.
    pub ts: Micros,
    /// Length of the packet on the wire (may exceed `data.len()` under a snaplen).
    pub wire_len: u32,
    /// Framing of `data`, from the capture's header.
    pub link_type: LinkType,
    /// The captured bytes, from the link-layer header on (at most the snaplen).
    pub data: &'a [u8],
}

/// Why a source stopped reading a file before its end.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartialRead {
    /// Path of the capture file.
    pub path: PathBuf,
    /// Packets read from it before it stopped.
    pub packets_read: u64,
    /// What was wrong with the file at that point, in words.
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

/// The latest capture time a file may give: 9999-12-31T23:59:59.999999Z.
/// Later (corrupt) timestamps are clamped to it, far enough below
/// `u64::MAX` that engine time plus a timeout never saturates and every
/// event still sorts before the end-of-input watermark.
pub const MAX_TIMESTAMP: Micros = 253_402_300_799_999_999;

#[cfg(feature = "pcap")]
pub mod capture_file;
#[cfg(feature = "pcap")]
pub mod live;
#[cfg(feature = "pcap")]
mod pcap_file;

#[cfg(feature = "pcap")]
pub use capture_file::CaptureReader;
#[cfg(feature = "pcap")]
pub use pcap_file::PcapFileSource;

#[cfg(test)]
mod micros_tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn wall_times_and_durations_become_micros() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(micros_from_system_time(t), 1_700_000_000_123_456);
        assert_eq!(micros_from_system_time(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(micros_from_duration(Duration::from_millis(1500)), 1_500_000);
        assert_eq!(micros_from_duration(Duration::MAX), Micros::MAX);
    }
}
