//! Writes hostile-traffic captures (classic pcap, Ethernet) for `benches/floods.sh`:
//!
//! ```text
//! flood_gen syn     OUT.pcap [PACKETS]    SYN flood: every packet from a new spoofed source (default 3 M)
//! flood_gen frag    OUT.pcap [PACKETS]    never-completed IPv4 datagrams, by batches of 16 384: first
//!                                         fragments, then one far past each (offset 63 KiB) (default 1 M)
//! flood_gen storm   OUT.pcap [PACKETS]    out-of-order, overlapping TCP over 100 k connections: holes
//!                                         never filled, overlaps of different bytes (default 2 M)
//! flood_gen bulk    OUT.pcap [GIGABYTES]  one connection sending this many GB in 64 000-byte segments,
//!                                         ACKed by the receiver (default 3)
//! flood_gen mixed   OUT.pcap [PACKETS]    the flood-heavy benchmark (`make bench`): a spoofed SYN flood
//!                                         (8 % of packets), a spoofed UDP flood (4 %), a SYN scan
//!                                         answered by resets (12 %) and benign keep-alive HTTP sessions of
//!                                         20 packets between them (76 %); of its ~250 k flows, ~80 %
//!                                         have 1 or 2 packets (default 1.13 M, like the capture of
//!                                         issue 13: 187 k flows, mostly of 1 to 4 packets)
//! ```
//!
//! Deterministic (a fixed xorshift seed), written with `std::io` only, at
//! disk speed. Packets are 1 µs apart (1 M packets/s of capture time), so
//! timeouts play their part as in a real flood.
#![allow(clippy::unwrap_used)]

use std::io::{BufWriter, Write};

const TS0: u64 = 1_750_000_000_000_000;

struct Pcap<W: Write> {
    out: W,
    packets: u64,
    bytes: u64,
}

impl<W: Write> Pcap<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&[0; 8])?;
        out.write_all(&262_144u32.to_le_bytes())?;
        out.write_all(&1u32.to_le_bytes())?;
        Ok(Self { out, packets: 0, bytes: 0 })
    }

    fn packet(&mut self, ts: u64, frame: &[u8]) -> std::io::Result<()> {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&((ts / 1_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((ts % 1_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.packets += 1;
        self.bytes += frame.len() as u64;
        Ok(())
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Ethernet + IPv4 header into `f` (cleared first); returns where the IP header starts.
fn ipv4(f: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, frag: u16, ip_payload: usize) -> usize {
    f.clear();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let total = (20 + ip_payload) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(&frag.to_be_bytes());
    f.extend_from_slice(&[64, proto, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    14
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    f: &mut Vec<u8>,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) {
    ipv4(f, src, dst, 6, 0, 0x4000, 20 + payload.len());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn syn_flood<W: Write>(p: &mut Pcap<W>, n: u64) -> std::io::Result<()> {
    let mut f = Vec::with_capacity(64);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..n {
        // A new source for every packet: 100.64.0.0/10 counted through, random ports and ISNs.
        let s = (i as u32) & 0x003f_ffff;
        let src = [100, 64 | (s >> 16) as u8, (s >> 8) as u8, s as u8];
        let r = rng.next();
        let sport = 1024 + (r as u16 % 60000);
        tcp(&mut f, src, [192, 0, 2, 10], sport, 80, (r >> 32) as u32, 0, SYN, &[]);
        p.packet(TS0 + i, &f)?;
    }
    Ok(())
}

fn udp(f: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) {
    ipv4(f, src, dst, 17, 0, 0x4000, 8 + payload.len());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
}

/// One benign session's next packet: a handshake, seven HTTP requests and
/// answers on port 80, and a FIN exchange (20 packets).
struct Session {
    client: [u8; 4],
    port: u16,
    step: u8,
}

const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const SERVER: [u8; 4] = [192, 0, 2, 20];

impl Session {
    const EXCHANGES: u32 = 7;
    const STEPS: u8 = 3 + 2 * Self::EXCHANGES as u8 + 3;

    fn packet(&self, f: &mut Vec<u8>, request: &[u8], answer: &[u8]) {
        let (c, s, cp) = (self.client, SERVER, self.port);
        let (r, a) = (request.len() as u32, answer.len() as u32);
        // Sequence numbers after `k` complete exchanges.
        let cs = |k: u32| 1001 + k * r;
        let ss = |k: u32| 5001 + k * a;
        let n = Self::EXCHANGES;
        match u32::from(self.step) {
            0 => tcp(f, c, s, cp, 80, 1000, 0, SYN, &[]),
            1 => tcp(f, s, c, 80, cp, 5000, 1001, SYN | ACK, &[]),
            2 => tcp(f, c, s, cp, 80, cs(0), ss(0), ACK, &[]),
            k if k < 3 + 2 * n => {
                let e = (k - 3) / 2;
                if (k - 3) % 2 == 0 {
                    tcp(f, c, s, cp, 80, cs(e), ss(e), PSH | ACK, request)
                } else {
                    tcp(f, s, c, 80, cp, ss(e), cs(e + 1), PSH | ACK, answer)
                }
            }
            k if k == 3 + 2 * n => tcp(f, c, s, cp, 80, cs(n), ss(n), FIN | ACK, &[]),
            k if k == 4 + 2 * n => tcp(f, s, c, 80, cp, ss(n), cs(n) + 1, FIN | ACK, &[]),
            _ => tcp(f, c, s, cp, 80, cs(n) + 1, ss(n) + 1, ACK, &[]),
        }
    }
}

fn mixed<W: Write>(p: &mut Pcap<W>, n: u64) -> std::io::Result<()> {
    let mut f = Vec::with_capacity(1600);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Keep-alive HTTP between the floods: what the parsers see every day.
    let request = b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: flood_gen\r\n\r\n".to_vec();
    let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1100\r\n\r\n".to_vec();
    answer.resize(answer.len() + 1100, b'x');
    let scanner = [203, 0, 113, 5];
    let scanned = [192, 0, 2, 12];
    let (mut syn_i, mut udp_i, mut scan_port, mut scan_reply) = (0u32, 0u32, 1u16, false);
    let mut next_client = 0u32;
    let mut sessions: Vec<Session> = Vec::with_capacity(64);
    for i in 0..n {
        let kind = rng.next() % 100;
        let r = rng.next();
        if kind < 8 {
            // SYN flood on a web server, from spoofed sources.
            syn_i = syn_i.wrapping_add(1);
            let s = syn_i & 0x003f_ffff;
            let src = [100, 64 | (s >> 16) as u8, (s >> 8) as u8, s as u8];
            tcp(&mut f, src, [192, 0, 2, 10], 1024 + (r as u16 % 60000), 80, (r >> 32) as u32, 0, SYN, &[]);
        } else if kind < 12 {
            // UDP flood on a resolver, from spoofed sources.
            udp_i = udp_i.wrapping_add(1);
            let s = udp_i & 0x003f_ffff;
            let src = [198, 18 | ((s >> 16) & 1) as u8, (s >> 8) as u8, s as u8];
            udp(&mut f, src, [192, 0, 2, 11], 1024 + (r as u16 % 60000), 53, &[0x5a; 64]);
        } else if kind < 24 {
            // A SYN scan of every port, each probe answered by a reset.
            if scan_reply {
                tcp(&mut f, scanned, scanner, scan_port, 40000, 0, 7, RST | ACK, &[]);
                scan_port = if scan_port == u16::MAX { 1 } else { scan_port + 1 };
            } else {
                tcp(&mut f, scanner, scanned, 40000, scan_port, 6, 0, SYN, &[]);
            }
            scan_reply = !scan_reply;
        } else {
            // Benign sessions between the floods, 64 open at a time.
            if sessions.len() < 64 {
                next_client = next_client.wrapping_add(1);
                let c = next_client;
                sessions.push(Session {
                    client: [10, 1, (c >> 8) as u8, c as u8],
                    port: 1024 + (c % 60000) as u16,
                    step: 0,
                });
            }
            let k = (r % sessions.len() as u64) as usize;
            sessions[k].packet(&mut f, &request, &answer);
            sessions[k].step += 1;
            if sessions[k].step >= Session::STEPS {
                sessions.swap_remove(k);
            }
        }
        p.packet(TS0 + i, &f)?;
    }
    Ok(())
}

fn frag_flood<W: Write>(p: &mut Pcap<W>, n: u64) -> std::io::Result<()> {
    // Batches of 16 384 datagrams (the defragmenter's default datagram cap):
    // first fragments (MF, offset 0) of the whole batch, then for each one a
    // fragment near the 64 KiB end (MF): never completed, and each datagram's
    // span becomes ~63 KiB after it was admitted.
    const BATCH: u64 = 16_384;
    let mut f = Vec::with_capacity(256);
    let data = [0x5au8; 128];
    let mut i = 0u64;
    let mut first = 0u64;
    while i < n {
        for far in [false, true] {
            for d in first..first + BATCH {
                if i >= n {
                    break;
                }
                let d = d as u32;
                let src = [198, 18 | ((d >> 16) & 1) as u8, (d >> 8) as u8, d as u8];
                let id = (d >> 17) as u16 ^ d as u16;
                let frag = if far { 0x2000 | (63 * 1024 / 8) } else { 0x2000 };
                ipv4(&mut f, src, [192, 0, 2, 20], 17, id, frag, data.len());
                f.extend_from_slice(&data);
                p.packet(TS0 + i, &f)?;
                i += 1;
            }
        }
        first += BATCH;
    }
    Ok(())
}

fn tcp_storm<W: Write>(p: &mut Pcap<W>, n: u64) -> std::io::Result<()> {
    const CONNS: u32 = 100_000;
    let mut f = Vec::with_capacity(1600);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut payload = vec![0u8; 1460];
    let mut i = 0u64;
    // Handshakes first, then data segments to random connections at random
    // offsets: ahead of the stream (never filled holes), overlapping held
    // segments with other bytes, duplicates, and some far out of window.
    for c in 0..CONNS {
        if i >= n {
            break;
        }
        let client = [172, 16 | (c >> 16) as u8, (c >> 8) as u8, c as u8];
        let isn = c.wrapping_mul(2_654_435_761);
        tcp(&mut f, client, [192, 0, 2, 30], 40000, 443, isn, 0, SYN, &[]);
        p.packet(TS0 + i, &f)?;
        i += 1;
        tcp(&mut f, [192, 0, 2, 30], client, 443, 40000, 7, isn.wrapping_add(1), SYN | ACK, &[]);
        p.packet(TS0 + i, &f)?;
        i += 1;
    }
    while i < n {
        let r = rng.next();
        let c = (r % u64::from(CONNS)) as u32;
        let client = [172, 16 | (c >> 16) as u8, (c >> 8) as u8, c as u8];
        let isn = c.wrapping_mul(2_654_435_761);
        // Offsets 1 KiB .. 64 KiB past the start: the first bytes never come.
        let off = 1024 + ((r >> 20) % 65536) as u32;
        let len = 200 + ((r >> 40) % 1260) as usize;
        let fill = (r >> 56) as u8;
        payload[..len].iter_mut().for_each(|b| *b = fill);
        let seq = if (r >> 8) % 50 == 0 { isn.wrapping_add(0x8000_0000) } else { isn.wrapping_add(1 + off) };
        tcp(&mut f, client, [192, 0, 2, 30], 40000, 443, seq, 8, ACK | PSH, &payload[..len]);
        p.packet(TS0 + i, &f)?;
        i += 1;
    }
    Ok(())
}

fn bulk<W: Write>(p: &mut Pcap<W>, gigabytes: f64) -> std::io::Result<()> {
    const SEG: usize = 64_000;
    let total = (gigabytes * 1e9) as u64;
    let mut f = Vec::with_capacity(SEG + 64);
    let payload: Vec<u8> = (0..SEG).map(|i| (i % 251) as u8).collect();
    let (c, s) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let (cisn, sisn) = (1_000u32, 5_000u32);
    let mut ts = TS0;
    tcp(&mut f, c, s, 50000, 5001, cisn, 0, SYN, &[]);
    p.packet(ts, &f)?;
    tcp(&mut f, s, c, 5001, 50000, sisn, cisn + 1, SYN | ACK, &[]);
    p.packet(ts + 50, &f)?;
    tcp(&mut f, c, s, 50000, 5001, cisn + 1, sisn + 1, ACK, &[]);
    p.packet(ts + 100, &f)?;
    let mut sent = 0u64;
    let mut seq = cisn.wrapping_add(1);
    while sent < total {
        ts += 50; // 64 kB every 50 µs: ~10 Gbit/s of capture time
        tcp(&mut f, c, s, 50000, 5001, seq, sisn + 1, ACK | PSH, &payload);
        p.packet(ts, &f)?;
        seq = seq.wrapping_add(SEG as u32);
        sent += SEG as u64;
        tcp(&mut f, s, c, 5001, 50000, sisn + 1, seq, ACK, &[]);
        p.packet(ts + 10, &f)?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: flood_gen syn|frag|storm|bulk|mixed OUT.pcap [COUNT (packets; for bulk: gigabytes)]";
    if args.len() < 3 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let count: Option<f64> = args.get(3).map(|s| s.parse().unwrap_or_else(|_| panic_usage(usage)));
    let file = std::fs::File::create(&args[2]).unwrap_or_else(|e| {
        eprintln!("flood_gen: cannot create {}: {e}", args[2]);
        std::process::exit(1);
    });
    let mut p = Pcap::new(BufWriter::with_capacity(1 << 20, file)).unwrap();
    let started = std::time::Instant::now();
    let n = |default: f64| count.unwrap_or(default) as u64;
    let result = match args[1].as_str() {
        "syn" => syn_flood(&mut p, n(3e6)),
        "frag" => frag_flood(&mut p, n(1e6)),
        "storm" => tcp_storm(&mut p, n(2e6)),
        "bulk" => bulk(&mut p, count.unwrap_or(3.0)),
        "mixed" => mixed(&mut p, n(1.13e6)),
        _ => panic_usage(usage),
    };
    if let Err(e) = result.and_then(|()| p.out.flush()) {
        eprintln!("flood_gen: writing {}: {e}", args[2]);
        std::process::exit(1);
    }
    eprintln!(
        "flood_gen: {} {}: {} packets, {:.2} GB in {:.1} s",
        args[1],
        args[2],
        p.packets,
        p.bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
}

fn panic_usage(usage: &str) -> ! {
    eprintln!("{usage}");
    std::process::exit(2);
}
