//! Live capture from network interfaces through libpcap.
//!
//! One reader thread per interface copies packets into pooled buffers and
//! hands them over through a bounded queue. When the queue is full the
//! packet is dropped and counted (`queue_dropped`): capture never stalls
//! behind a slow engine. Kernel and interface drops are read from libpcap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::{LinkType, Micros, PacketSource, RawPacket};
use crate::error::{Error, Result};

/// How to open each interface.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LiveConfig {
    /// Names of the interfaces to capture on, e.g. `eth0`; one reader thread each.
    pub interfaces: Vec<String>,
    /// Put the interfaces in promiscuous mode, to see traffic not addressed to this host.
    pub promiscuous: bool,
    /// Most bytes kept of each packet; longer packets are cut (default 262144).
    pub snaplen: i32,
    /// BPF filter expression; empty for none.
    pub bpf_filter: String,
    /// Kernel buffer size in bytes (0: libpcap's default).
    pub buffer_size: i32,
    /// Deliver packets as they arrive rather than in kernel batches.
    pub immediate: bool,
    /// Longest a read waits before the engine gets an idle tick.
    pub read_timeout_ms: i32,
    /// Packets that may wait between the readers and the engine.
    pub queue_packets: usize,
}

impl LiveConfig {
    /// Capture on these interfaces, with every other setting at its default
    /// (change a field after: the struct is `#[non_exhaustive]`).
    pub fn on(interfaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        LiveConfig { interfaces: interfaces.into_iter().map(Into::into).collect(), ..LiveConfig::default() }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            promiscuous: true,
            snaplen: 262_144,
            bpf_filter: String::new(),
            buffer_size: 64 << 20,
            immediate: true,
            read_timeout_ms: 100,
            queue_packets: 65_536,
        }
    }
}

/// Counters of one interface.
#[derive(Debug, Default)]
pub struct InterfaceCounters {
    /// Name of the interface, e.g. `eth0`.
    pub name: String,
    /// Packets libpcap handed to the reader, including those dropped at the queue.
    pub received: AtomicU64,
    /// Dropped because the queue to the engine was full.
    pub queue_dropped: AtomicU64,
    /// libpcap's `ps_drop`: dropped by the kernel (buffer full).
    pub kernel_dropped: AtomicU64,
    /// libpcap's `ps_ifdrop`: dropped by the interface or driver.
    pub interface_dropped: AtomicU64,
}

impl InterfaceCounters {
    /// The counters as a JSON object, keyed `interface`, `received` and the drop counters.
    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "interface": self.name, "received": g(&self.received), "queue_dropped": g(&self.queue_dropped),
            "kernel_dropped": g(&self.kernel_dropped), "interface_dropped": g(&self.interface_dropped),
        })
    }
}

struct LivePacket {
    ts: Micros,
    wire_len: u32,
    link_type: LinkType,
    data: Vec<u8>,
}

/// Packets from one or more live interfaces. See the module documentation.
pub struct LiveSource {
    rx: Receiver<LivePacket>,
    pool: Sender<Vec<u8>>,
    current: Option<LivePacket>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<Option<String>>>,
    counters: Vec<Arc<InterfaceCounters>>,
    /// Why a reader stopped on its own (interface gone, read error).
    failures: Vec<String>,
    done: bool,
    /// The queue was found empty and the engine told, since the last packet.
    idle_reported: bool,
}

fn wall_micros() -> Micros {
    super::micros_from_system_time(SystemTime::now())
}

fn open_interface(name: &str, cfg: &LiveConfig) -> Result<pcap::Capture<pcap::Active>> {
    let fail = |what: &str, e: pcap::Error| Error::Interface {
        name: name.into(),
        reason: format!("{what}: {e} (does the interface exist and is it up, and do we have CAP_NET_RAW?)"),
    };
    let mut inactive = pcap::Capture::from_device(name)
        .map_err(|e| fail("no such interface", e))?
        .promisc(cfg.promiscuous)
        .snaplen(cfg.snaplen)
        .immediate_mode(cfg.immediate)
        .timeout(cfg.read_timeout_ms);
    if cfg.buffer_size > 0 {
        inactive = inactive.buffer_size(cfg.buffer_size);
    }
    let mut cap = inactive.open().map_err(|e| fail("cannot capture", e))?;
    if !cfg.bpf_filter.trim().is_empty() {
        cap.filter(&cfg.bpf_filter, true).map_err(|e| fail("bad BPF filter", e))?;
    }
    // Non-blocking: libpcap in immediate mode may not honour the read
    // timeout on a quiet interface, which would keep a reader from seeing
    // the stop flag or refreshing the drop counters. The reader naps 1 ms
    // when nothing is waiting instead.
    cap.setnonblock().map_err(|e| fail("cannot set non-blocking mode", e))
}

/// Checks that a BPF filter expression compiles (for an Ethernet capture),
/// without opening an interface: what `check-config` needs before `run`.
pub fn check_bpf_filter(filter: &str) -> std::result::Result<(), String> {
    if filter.trim().is_empty() {
        return Ok(());
    }
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    cap.compile(filter, true).map(|_| ()).map_err(|e| e.to_string())
}

/// Whether a network interface of this name exists on this machine.
pub fn interface_exists(name: &str) -> bool {
    if std::path::Path::new("/sys/class/net").is_dir() {
        return std::path::Path::new("/sys/class/net").join(name).exists();
    }
    pcap::Device::list().is_ok_and(|devices| devices.iter().any(|d| d.name == name))
}

impl LiveSource {
    /// Opens every interface (so errors come before any privilege drop) and
    /// starts reading.
    pub fn open(cfg: &LiveConfig) -> Result<Self> {
        if cfg.interfaces.is_empty() {
            return Err(Error::Config("no interface to capture on".into()));
        }
        let caps = cfg.interfaces.iter().map(|i| open_interface(i, cfg)).collect::<Result<Vec<_>>>()?;
        let (tx, rx) = bounded::<LivePacket>(cfg.queue_packets.max(1));
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(cfg.queue_packets.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut counters = Vec::new();
        for (name, cap) in cfg.interfaces.iter().zip(caps) {
            let c = Arc::new(InterfaceCounters { name: name.clone(), ..Default::default() });
            counters.push(c.clone());
            let (tx, pool_rx, stop) = (tx.clone(), pool_rx.clone(), stop.clone());
            let snaplen = usize::try_from(cfg.snaplen).unwrap_or(65_535).min(262_144);
            readers.push(std::thread::spawn(move || read_interface(cap, tx, pool_rx, stop, c, snaplen)));
        }
        Ok(Self {
            rx,
            pool: pool_tx,
            current: None,
            stop,
            readers,
            counters,
            failures: Vec::new(),
            done: false,
            idle_reported: false,
        })
    }

    /// A flag that, once set, makes the readers stop; the source then
    /// reports itself finished after the queue is drained.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The live counters of each interface, in configuration order.
    pub fn counters(&self) -> Vec<Arc<InterfaceCounters>> {
        self.counters.clone()
    }

    /// Why readers stopped on their own, once the source is finished.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// Waits for the readers (non-blocking reads: each sees the stop flag
    /// within a millisecond) and keeps why any of them ended on its own.
    fn collect_readers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.readers) {
            match h.join() {
                Ok(Some(reason)) => self.failures.push(reason),
                Ok(None) => {}
                Err(_) => self.failures.push("a capture thread stopped unexpectedly".into()),
            }
        }
    }
}

fn read_interface(
    mut cap: pcap::Capture<pcap::Active>,
    tx: Sender<LivePacket>,
    pool: Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
    counters: Arc<InterfaceCounters>,
    snaplen: usize,
) -> Option<String> {
    let link_type = LinkType(cap.get_datalink().0);
    let mut last_stats = std::time::Instant::now();
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break None;
        }
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = std::time::Instant::now();
            if let Ok(s) = cap.stats() {
                counters.kernel_dropped.store(u64::from(s.dropped), Ordering::Relaxed);
                counters.interface_dropped.store(u64::from(s.if_dropped), Ordering::Relaxed);
            }
        }
        match cap.next_packet() {
            Ok(p) => {
                counters.received.fetch_add(1, Ordering::Relaxed);
                let mut buf = pool.try_recv().unwrap_or_else(|_| Vec::with_capacity(snaplen.min(2048)));
                buf.clear();
                buf.extend_from_slice(p.data);
                #[allow(clippy::unnecessary_cast)] // time_t is not i64 everywhere
                let ts = u64::try_from(p.header.ts.tv_sec as i64).unwrap_or(0).saturating_mul(1_000_000)
                    + u64::try_from(p.header.ts.tv_usec as i64).unwrap_or(0).min(999_999);
                let pkt = LivePacket { ts, wire_len: p.header.len, link_type, data: buf };
                if tx.try_send(pkt).is_err() {
                    counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(pcap::Error::TimeoutExpired) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => break Some(format!("capture on {} stopped: {e}", counters.name)),
        }
    };
    if let Ok(s) = cap.stats() {
        counters.kernel_dropped.store(u64::from(s.dropped), Ordering::Relaxed);
        counters.interface_dropped.store(u64::from(s.if_dropped), Ordering::Relaxed);
    }
    outcome
}

impl PacketSource for LiveSource {
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>> {
        if let Some(old) = self.current.take() {
            let _ = self.pool.try_send(old.data);
        }
        // The first time the queue is found empty after packets, say so at
        // once (an idle tick): the engine then hands on what it holds
        // instead of keeping a burst's last packets until the next one.
        let next = match self.rx.try_recv() {
            Ok(p) => Ok(p),
            Err(_) if !self.idle_reported => {
                self.idle_reported = true;
                return Ok(None);
            }
            Err(_) => self.rx.recv_timeout(Duration::from_millis(10)),
        };
        match next {
            Ok(p) => {
                self.idle_reported = false;
                let p = self.current.insert(p);
                Ok(Some(RawPacket { ts: p.ts, wire_len: p.wire_len, link_type: p.link_type, data: &p.data }))
            }
            Err(RecvTimeoutError::Timeout) => {
                if self.stop.load(Ordering::Relaxed) || self.readers.iter().all(|h| h.is_finished()) {
                    // Stopped, or every interface failed: drain, then finish.
                    if self.rx.is_empty() {
                        self.collect_readers();
                        self.done = true;
                    }
                }
                Ok(None)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.collect_readers();
                self.done = true;
                Ok(None)
            }
        }
    }

    fn is_live(&self) -> bool {
        true
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn now(&self) -> Option<Micros> {
        Some(wall_micros())
    }
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.collect_readers();
    }
}
