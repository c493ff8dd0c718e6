//! `tidewatchd replay` on damaged, odd and unusual capture files: the exact
//! exit code (0 read, as far as it goes; 2 not a capture — see main.rs) and
//! the partial-read counters. Every capture is written byte by byte here,
//! never taken from a corpus. Every run is bounded in time.
//!
//! Already in cli.rs (not repeated): an empty file, a text file, a directory,
//! a nonexistent path, a cut inside the 24-byte file header (all exit 2) and
//! a cut in the middle of a packet of the demo capture (exit 0, "ended early").
//!
//! Behaviour documented here:
//! - A capture is read record by record (by the native reader,
//!   `tidewatch::source::CaptureReader`) to its end; a damaged record (cut
//!   header or data, a capture length above 256 KiB and the snaplen) ends
//!   the file as a partial read: exit 0, `partial_reads` in `--stats json`
//!   names the file, the packets read and the reason (libpcap's wording),
//!   and the summary warns "ended early".
//! - A file that grows while it is read is read up to the end the reader finds
//!   when it gets there: no following (`tail -f`); appended records it meets
//!   are read, a record half-written at that moment is a partial read.
//! - A FIFO (or any non-regular file) is opened once and read to its end;
//!   it cannot be `--loop`ed (exit 2).
//! - pcapng: every interface is read with its own link type (libpcap
//!   refused a second link type); a packet for an interface the section
//!   never described ends the file as a partial read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TS0: u64 = 1_700_000_000_000_000;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidewatchd-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An Ethernet/IPv4/UDP frame of packet `i` (three flows, to port 53).
fn frame(i: u16) -> Vec<u8> {
    let mut f = vec![2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x08, 0x00];
    f.extend(ip_udp(i));
    f
}

fn ip_udp(i: u16) -> Vec<u8> {
    let payload = 10u16;
    let mut p = vec![0x45, 0];
    p.extend((20 + 8 + payload).to_be_bytes());
    p.extend(i.to_be_bytes());
    p.extend([0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend((40000 + i % 3).to_be_bytes());
    p.extend(53u16.to_be_bytes());
    p.extend((8 + payload).to_be_bytes());
    p.extend([0, 0]);
    p.extend(std::iter::repeat_n(b'x', payload as usize));
    p
}

/// Classic pcap file header (little-endian).
fn header(magic: u32, snaplen: u32, linktype: u32) -> Vec<u8> {
    let mut h = magic.to_le_bytes().to_vec();
    h.extend(2u16.to_le_bytes());
    h.extend(4u16.to_le_bytes());
    h.extend([0; 8]);
    h.extend(snaplen.to_le_bytes());
    h.extend(linktype.to_le_bytes());
    h
}

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;

fn record(ts_us: u64, data: &[u8], caplen: u32, wire: u32) -> Vec<u8> {
    let mut r = ((ts_us / 1_000_000) as u32).to_le_bytes().to_vec();
    r.extend(((ts_us % 1_000_000) as u32).to_le_bytes());
    r.extend(caplen.to_le_bytes());
    r.extend(wire.to_le_bytes());
    r.extend(data);
    r
}

fn rec(i: u16) -> Vec<u8> {
    let f = frame(i);
    record(TS0 + u64::from(i) * 1000, &f, f.len() as u32, f.len() as u32)
}

/// A good capture of `n` packets.
fn capture(n: u16) -> Vec<u8> {
    let mut c = header(MAGIC_US, 65535, 1);
    for i in 0..n {
        c.extend(rec(i));
    }
    c
}

struct Run {
    code: Option<i32>,
    stderr: String,
    stats: Option<Value>,
}

/// Runs tidewatchd, killing it after `limit`.
fn tidewatchd_bounded(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewatchd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("tidewatchd {args:?} still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let stats = stderr.lines().rev().find(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap());
    Run { code: status.code(), stderr, stats }
}

/// `replay FILE --stats json`, verdicts to `json_out`.
fn replay(path: &Path, json_out: &Path) -> Run {
    let out = format!("json:{}", json_out.display());
    tidewatchd_bounded(
        &["replay", path.to_str().unwrap(), "--stats", "json", "--workers", "1", "--output", &out],
        Duration::from_secs(60),
    )
}

fn replay_bytes(name: &str, bytes: &[u8]) -> Run {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    replay(&path, &tmp(&format!("{name}.jsonl")))
}

/// Exit 0 and the counters: (packets, decoded, partial reads).
fn ok_counts(r: &Run) -> (u64, u64, Vec<Value>) {
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.stats.as_ref().unwrap_or_else(|| panic!("no stats: {}", r.stderr));
    let partial = s["partial_reads"].as_array().unwrap().clone();
    (s["packets"].as_u64().unwrap(), s["decoded"].as_u64().unwrap(), partial)
}

fn drops(r: &Run, reason: &str) -> u64 {
    r.stats.as_ref().unwrap()["drops"][reason].as_u64().unwrap()
}

/// Exactly one partial read, after `packets`, with a reason containing `why`.
fn assert_partial(r: &Run, file: &str, packets: u64, why: &str) {
    let (read, _, partial) = ok_counts(r);
    assert_eq!(read, packets, "{}", r.stderr);
    assert_eq!(partial.len(), 1, "{partial:?}");
    let p = &partial[0];
    assert!(p["path"].as_str().unwrap().ends_with(file), "{p}");
    assert_eq!(p["packets_read"].as_u64(), Some(packets), "{p}");
    assert!(p["reason"].as_str().unwrap().contains(why), "reason lacks {why:?}: {p}");
    assert!(r.stderr.contains(&format!("ended early after {packets} packets")), "{}", r.stderr);
}

fn assert_exit_2(r: &Run, needle: &str) {
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains(needle), "message lacks {needle:?}: {}", r.stderr);
}

#[test]
fn header_only_is_an_empty_capture() {
    let r = replay_bytes("header-only.pcap", &header(MAGIC_US, 65535, 1));
    let (packets, _, partial) = ok_counts(&r);
    assert_eq!(packets, 0);
    assert!(partial.is_empty(), "{partial:?}");
    assert_eq!(r.stats.as_ref().unwrap()["verdicts"], 0);
}

#[test]
fn cut_inside_a_record_header_is_a_partial_read() {
    let mut c = capture(2);
    c.extend(&rec(2)[..10]);
    let r = replay_bytes("cut-record-header.pcap", &c);
    assert_partial(&r, "cut-record-header.pcap", 2, "tried to read 16 header bytes, only got 10");
    assert_eq!(ok_counts(&r).1, 2, "both whole packets decoded");
}

#[test]
fn cut_inside_packet_data_is_a_partial_read() {
    let mut c = capture(2);
    c.extend(&rec(2)[..16 + 5]);
    let r = replay_bytes("cut-packet.pcap", &c);
    assert_partial(&r, "cut-packet.pcap", 2, "truncated dump file");
}

#[test]
fn wrong_magic_exits_2() {
    let mut c = capture(3);
    c[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    let r = replay_bytes("wrong-magic.pcap", &c);
    assert_exit_2(&r, "cannot open capture");
    assert!(r.stderr.contains("unknown file format"), "{}", r.stderr);
}

#[test]
fn absurd_snaplens_in_the_file_header() {
    // 0, 4 GiB and 20 bytes: the header's snaplen does not cut records; each
    // is read whole, as tshark reads it (libpcap cut the 20-byte one).
    for snap in [0u32, u32::MAX, 20] {
        let mut c = header(MAGIC_US, snap, 1);
        (0..3).for_each(|i| c.extend(rec(i)));
        let r = replay_bytes(&format!("snaplen-{snap}.pcap"), &c);
        assert_eq!(ok_counts(&r), (3, 3, vec![]), "snaplen {snap}: {}", r.stderr);
    }
}

#[test]
fn records_cut_by_the_capture_are_counted_drops() {
    // Capture lengths of 20 bytes (inside the IP header) under wire lengths
    // of a whole frame: read, and each packet dropped, counted.
    let mut c = header(MAGIC_US, 20, 1);
    (0..3u16).for_each(|i| {
        let f = frame(i);
        c.extend(record(TS0 + u64::from(i), &f[..20], 20, f.len() as u32));
    });
    let r = replay_bytes("caplen-20.pcap", &c);
    assert_eq!(ok_counts(&r), (3, 0, vec![]), "{}", r.stderr);
    assert_eq!(drops(&r, "truncated"), 3);
}

#[test]
fn capture_length_above_256_kib_ends_the_file() {
    let mut c = capture(1);
    let big = vec![0u8; 300_000];
    c.extend(record(TS0 + 5000, &big, 300_000, 300_000));
    c.extend(rec(7));
    let r = replay_bytes("caplen-300000.pcap", &c);
    assert_partial(&r, "caplen-300000.pcap", 1, "invalid packet capture length 300000");
}

#[test]
fn capture_length_above_the_wire_length_is_read() {
    let f = frame(0);
    let mut c = header(MAGIC_US, 65535, 1);
    c.extend(record(TS0, &f, f.len() as u32, 10));
    c.extend(rec(1));
    let r = replay_bytes("caplen-over-wire.pcap", &c);
    assert_eq!(ok_counts(&r), (2, 2, vec![]), "{}", r.stderr);
}

#[test]
fn nanosecond_pcap_keeps_microseconds() {
    let f = frame(0);
    let mut c = header(MAGIC_NS, 65535, 1);
    let mut r = 1_700_000_000u32.to_le_bytes().to_vec();
    r.extend(123_456_789u32.to_le_bytes());
    r.extend((f.len() as u32).to_le_bytes());
    r.extend((f.len() as u32).to_le_bytes());
    r.extend(&f);
    c.extend(r);
    let path = tmp("nano.pcap");
    std::fs::write(&path, &c).unwrap();
    let json = tmp("nano.jsonl");
    let run = replay(&path, &json);
    assert_eq!(ok_counts(&run), (1, 1, vec![]));
    let v: Value = serde_json::from_str(std::fs::read_to_string(&json).unwrap().lines().next().unwrap()).unwrap();
    // 123456789 ns is 123456 µs (truncated, as libpcap gives it).
    assert_eq!(v["flow_start"], "2023-11-14T22:13:20.123456Z");
}

#[test]
fn unsupported_link_type_is_counted() {
    let mut c = header(MAGIC_US, 65535, 147);
    (0..3).for_each(|i| c.extend(rec(i)));
    let r = replay_bytes("linktype-147.pcap", &c);
    assert_eq!(ok_counts(&r), (3, 0, vec![]));
    assert_eq!(drops(&r, "unsupported_link_type"), 3);
}

fn ng_block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(body.len().div_ceil(4) * 4, 0);
    let len = (12 + body.len()) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend(len.to_le_bytes());
    b.extend(body);
    b.extend(len.to_le_bytes());
    b
}

fn ng_shb() -> Vec<u8> {
    let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    ng_block(0x0a0d_0d0a, &body)
}

fn ng_idb(linktype: u16) -> Vec<u8> {
    let mut body = linktype.to_le_bytes().to_vec();
    body.extend([0, 0]);
    body.extend(65535u32.to_le_bytes());
    ng_block(1, &body)
}

fn ng_epb(iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
    let mut body = iface.to_le_bytes().to_vec();
    body.extend(((ts >> 32) as u32).to_le_bytes());
    body.extend((ts as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(data);
    ng_block(6, &body)
}

#[test]
fn pcapng_with_several_interfaces() {
    // Two Ethernet interfaces: both read.
    let mut c = ng_shb();
    c.extend(ng_idb(1));
    c.extend(ng_idb(1));
    c.extend(ng_epb(0, TS0, &frame(0)));
    c.extend(ng_epb(1, TS0 + 1, &frame(1)));
    c.extend(ng_epb(0, TS0 + 2, &frame(2)));
    let r = replay_bytes("two-ethernet.pcapng", &c);
    assert_eq!(ok_counts(&r), (3, 3, vec![]), "{}", r.stderr);

    // Ethernet then raw IP, the second interface described after packets of
    // the first (libpcap 1.10 refused this file after one packet): every
    // packet is read and decoded with its own interface's link type.
    let mut c = ng_shb();
    c.extend(ng_idb(1));
    c.extend(ng_epb(0, TS0, &frame(0)));
    c.extend(ng_idb(101));
    c.extend(ng_epb(1, TS0 + 1, &ip_udp(1)));
    c.extend(ng_epb(0, TS0 + 2, &frame(2)));
    let r = replay_bytes("ethernet-then-raw.pcapng", &c);
    assert_eq!(ok_counts(&r), (3, 3, vec![]), "{}", r.stderr);

    // Both interface blocks up front (libpcap read nothing of it).
    let mut c = ng_shb();
    c.extend(ng_idb(1));
    c.extend(ng_idb(101));
    c.extend(ng_epb(0, TS0, &frame(0)));
    c.extend(ng_epb(1, TS0 + 1, &ip_udp(1)));
    let r = replay_bytes("two-link-types.pcapng", &c);
    assert_eq!(ok_counts(&r), (2, 2, vec![]), "{}", r.stderr);

    // A packet for an interface the file never described ends the file there.
    let mut c = ng_shb();
    c.extend(ng_idb(1));
    c.extend(ng_epb(0, TS0, &frame(0)));
    c.extend(ng_epb(5, TS0 + 1, &frame(1)));
    let r = replay_bytes("undescribed-interface.pcapng", &c);
    assert_partial(&r, "undescribed-interface.pcapng", 1, "interface 5");

    // A raw-IP pcapng on its own is read.
    let mut c = ng_shb();
    c.extend(ng_idb(101));
    c.extend(ng_epb(0, TS0, &ip_udp(0)));
    let r = replay_bytes("raw.pcapng", &c);
    assert_eq!(ok_counts(&r), (1, 1, vec![]));
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn fifo_fed_by_a_writer_is_read_to_its_end() {
    let fifo = tmp("capture.fifo");
    mkfifo(&fifo);
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // Blocks until tidewatchd opens the FIFO for reading.
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            let c = capture(50);
            // In pieces, with pauses: the reader must wait for data, not stop.
            for piece in c.chunks(700) {
                w.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let r = replay(&fifo, &tmp("fifo.jsonl"));
    writer.join().unwrap();
    assert_eq!(ok_counts(&r), (50, 50, vec![]), "{}", r.stderr);

    // A FIFO can be read once only: --loop is refused before anything is read.
    mkfifo(&fifo);
    let r = tidewatchd_bounded(&["replay", fifo.to_str().unwrap(), "--loop", "2"], Duration::from_secs(30));
    assert_exit_2(&r, "cannot be replayed more than once");
}

#[test]
fn a_file_growing_while_read_is_read_to_the_end_found() {
    // 200k packets (~14 MB) and a writer that keeps appending whole records
    // (one write each) while tidewatchd reads: it must stop at the end it
    // finds, not follow the file, and count only whole records.
    let path = tmp("growing.pcap");
    let start = 200_000u32;
    let mut c = header(MAGIC_US, 65535, 1);
    for i in 0..start {
        let f = frame(i as u16);
        c.extend(record(TS0 + u64::from(i) * 100, &f, f.len() as u32, f.len() as u32));
    }
    std::fs::write(&path, &c).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appended = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (path, stop, appended) = (path.clone(), stop.clone(), appended.clone());
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
            let mut i = start;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let f = frame(i as u16);
                let r = record(TS0 + u64::from(i) * 100, &f, f.len() as u32, f.len() as u32);
                w.write_all(&r).unwrap();
                appended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let r = replay(&path, &tmp("growing.jsonl"));
    let at_exit = appended.load(std::sync::atomic::Ordering::Relaxed);
    // Growth goes on after tidewatchd is done: it did not wait for it.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let total = appended.load(std::sync::atomic::Ordering::Relaxed);
    assert!(total > at_exit, "the writer was still appending when tidewatchd exited");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s = r.stats.as_ref().unwrap();
    let packets = s["packets"].as_u64().unwrap();
    assert!(
        (u64::from(start)..=u64::from(start) + at_exit).contains(&packets),
        "read {packets} packets: the file had {start} at start, {at_exit} more were appended by the exit"
    );
    // A record half-written when the reader got there is a partial read, named; none other.
    let partial = s["partial_reads"].as_array().unwrap();
    assert!(partial.len() <= 1, "{partial:?}");
    for p in partial {
        assert!(p["reason"].as_str().unwrap().contains("truncated dump file"), "{p}");
    }
    eprintln!(
        "growing file: {start} records at start, read {packets}, {at_exit} appended by exit, {total} in all, \
         partial read: {}",
        !partial.is_empty()
    );
}
