//! One bounded queue and one thread per output, so that a slow or dead
//! output never stalls the engine.
//!
//! The engine sees a [`QueuedSink`]: its `verdict` filters (benign verdicts
//! are not sent to syslog unless asked), clones the verdict and does a
//! `try_send`; a full queue drops and counts. Formatting happens on the
//! output's thread, not the engine's: the engine delivers every verdict to
//! every sink from its one merge thread, so keeping that thread's cost to a
//! clone and a channel send per output (no string building, no escaping)
//! keeps it constant whatever the outputs and formats, the formatting of
//! several outputs runs in parallel, and a verdict dropped at a full queue
//! costs nothing more.
//!
//! The output thread counts what it `sent`, what `failed` (write errors),
//! what it dropped while disconnected, and reconnects with exponential
//! backoff (100 ms doubling to 10 s). `finish` closes the queue and waits
//! for the thread to drain it, for at most the flush timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tidewatch::{SinkControl, SinkError, Verdict, VerdictSink};

use super::syslog::SyslogFormatter;
use super::transport::{OnError, Transport};

/// First pause before reconnecting; doubles on each failure.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often an idle output thread looks at the reopen flag.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// Turns a verdict into the bytes of one message.
pub trait Format: Send {
    /// Appends the message for `v` to `out`; returns whether it was truncated.
    fn format(&mut self, v: &Verdict, out: &mut Vec<u8>) -> bool;
}

/// One JSON object and a newline per verdict, as [`tidewatch::JsonLinesSink`] writes.
pub struct JsonFormat;

impl Format for JsonFormat {
    fn format(&mut self, v: &Verdict, out: &mut Vec<u8>) -> bool {
        // Writing to a Vec cannot fail, and a Verdict always serializes.
        let _ = serde_json::to_writer(&mut *out, v);
        out.push(b'\n');
        false
    }
}

impl Format for SyslogFormatter {
    fn format(&mut self, v: &Verdict, out: &mut Vec<u8>) -> bool {
        SyslogFormatter::format(self, v, out)
    }
}

/// What to do when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the verdict and count it (`dropped_queue_full`): the engine never waits.
    Drop,
    /// Wait for room (backpressure), as a plain file writer would.
    Block,
}

/// Live counters of one output, shared by the sink, its thread and
/// whoever reports on them (summary, periodic stats).
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Verdicts put on the queue.
    pub queued: AtomicU64,
    /// Messages written to the destination.
    pub sent: AtomicU64,
    /// Messages whose write failed.
    pub failed: AtomicU64,
    /// Verdicts dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Verdicts dropped because the destination was unreachable.
    pub dropped_disconnected: AtomicU64,
    /// Verdicts still queued when `finish` stopped waiting.
    pub dropped_unflushed: AtomicU64,
    /// Verdicts not meant for this output (benign ones, for syslog).
    pub filtered: AtomicU64,
    /// Messages cut to the maximum size.
    pub truncated: AtomicU64,
    /// Connections made again after the destination was lost or unreachable.
    pub reconnects: AtomicU64,
    /// Connect attempts that failed.
    pub connect_failures: AtomicU64,
}

/// A copy of [`OutputCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub queued: u64,
    pub sent: u64,
    pub failed: u64,
    pub dropped_queue_full: u64,
    pub dropped_disconnected: u64,
    pub dropped_unflushed: u64,
    pub filtered: u64,
    pub truncated: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    /// Queued and not yet sent, failed or dropped.
    pub pending: u64,
}

impl CounterSnapshot {
    /// Every verdict meant for this output that did not reach it, failed
    /// writes aside: queue full, disconnected, unflushed or still pending.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_disconnected + self.dropped_unflushed + self.pending
    }
}

impl OutputCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = CounterSnapshot {
            queued: get(&self.queued),
            sent: get(&self.sent),
            failed: get(&self.failed),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_disconnected: get(&self.dropped_disconnected),
            dropped_unflushed: get(&self.dropped_unflushed),
            filtered: get(&self.filtered),
            truncated: get(&self.truncated),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
            pending: 0,
        };
        let done = s.sent + s.failed + s.dropped_disconnected + s.dropped_unflushed;
        s.pending = s.queued.saturating_sub(done);
        s
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// State shared between a sink, its thread and its handles.
#[derive(Debug, Default)]
pub struct Shared {
    pub counters: OutputCounters,
    reopen: AtomicBool,
    abandon: AtomicBool,
    finished: AtomicBool,
    fatal: Mutex<Option<String>>,
    has_fatal: AtomicBool,
}

impl Shared {
    fn set_fatal(&self, message: String) {
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(message);
        }
        self.has_fatal.store(true, Ordering::SeqCst);
    }

    fn fatal(&self) -> Option<String> {
        if !self.has_fatal.load(Ordering::SeqCst) {
            return None;
        }
        self.fatal.lock().ok().and_then(|f| f.clone())
    }
}

/// A way to watch and steer one output from outside the engine.
#[derive(Clone, Debug)]
pub struct OutputHandle {
    /// The address as given, e.g. `syslog:udp://127.0.0.1:514`.
    #[cfg_attr(not(test), allow(dead_code))] // for `run`'s periodic stats
    pub spec: String,
    /// Where it goes, e.g. `stdout`, `build/v.jsonl`, `syslog:udp://127.0.0.1:514`.
    pub target: String,
    /// What goes there, e.g. `JSON lines`, `syslog RFC 5424`.
    pub kind: String,
    shared: Arc<Shared>,
}

impl OutputHandle {
    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Asks the output thread to reopen its file (SIGHUP after logrotate) or
    /// reconnect its socket; done within a quarter of a second.
    #[cfg_attr(not(test), allow(dead_code))] // for `run`'s SIGHUP handler
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::SeqCst);
    }

    /// True once the engine called `finish` on this output's sink.
    pub fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::SeqCst)
    }

    /// `stdout (JSON lines)`
    pub fn description(&self) -> String {
        format!("{} ({})", self.target, self.kind)
    }

    /// `syslog:udp://127.0.0.1:514 (syslog RFC 5424: sent 425, dropped 0, 355 benign not sent)`
    pub fn summary(&self) -> String {
        let c = self.counters();
        let mut s = format!("{} ({}: sent {}, dropped {}", self.target, self.kind, c.sent, c.dropped());
        let mut extra = |n: u64, what: &str| {
            if n > 0 {
                s.push_str(&format!(", {what} {n}"));
            }
        };
        extra(c.failed, "failed");
        extra(c.filtered, "benign not sent");
        extra(c.truncated, "truncated");
        extra(c.reconnects, "reconnects");
        s.push(')');
        s
    }
}

/// Settings of one queued output.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub capacity: usize,
    pub overflow: Overflow,
    pub flush_timeout: Duration,
    /// Verdicts with this label are counted as `filtered`, not queued.
    pub skip_label: Option<String>,
}

/// The [`VerdictSink`] the engine sees for one output.
pub struct QueuedSink {
    tx: Option<SyncSender<Verdict>>,
    /// Disconnects when the output thread ends.
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    cfg: QueueConfig,
    spec: String,
}

/// Starts the output thread for `transport` and returns the sink for the
/// engine and a handle for the daemon.
pub fn spawn(
    spec: &str,
    target: String,
    kind: String,
    format: Box<dyn Format>,
    transport: Box<dyn Transport>,
    cfg: QueueConfig,
) -> std::io::Result<(QueuedSink, OutputHandle)> {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::sync_channel(cfg.capacity.max(1));
    let (done_tx, done) = mpsc::sync_channel::<()>(0);
    let worker = Worker {
        spec: spec.to_string(),
        rx,
        format,
        transport,
        shared: Arc::clone(&shared),
        _done: done_tx,
        buf: Vec::with_capacity(1024),
        backoff: BACKOFF_START,
        retry_at: None,
        failures_in_a_row: 0,
        warned_send: false,
    };
    let name: String = format!("out-{spec}").chars().take(15).collect();
    let thread = std::thread::Builder::new().name(name).spawn(move || worker.run())?;
    let handle = OutputHandle { spec: spec.to_string(), target, kind, shared: Arc::clone(&shared) };
    Ok((QueuedSink { tx: Some(tx), done, thread: Some(thread), shared, cfg, spec: spec.to_string() }, handle))
}

impl QueuedSink {
    fn fatal_error(&self) -> Option<SinkError> {
        self.shared.fatal().map(|m| SinkError::Other(format!("{}: {m}", self.spec)))
    }
}

impl VerdictSink for QueuedSink {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        let c = &self.shared.counters;
        if self.cfg.skip_label.as_deref() == Some(&*v.label) {
            bump(&c.filtered);
            return Ok(SinkControl::Continue);
        }
        let Some(tx) = self.tx.as_ref() else {
            return Ok(SinkControl::Continue);
        };
        let sent = match self.cfg.overflow {
            Overflow::Drop => match tx.try_send(v.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    bump(&c.dropped_queue_full);
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
            Overflow::Block => tx.send(v.clone()).is_ok(),
        };
        if sent {
            bump(&c.queued);
            return Ok(SinkControl::Continue);
        }
        match self.fatal_error() {
            Some(e) => Err(e),
            None => {
                // The thread is gone without an error (it cannot, short of a
                // bug): count as lost, never stop the engine for syslog.
                bump(&c.dropped_disconnected);
                Ok(SinkControl::Continue)
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.tx.take().is_some() {
            match self.done.recv_timeout(self.cfg.flush_timeout) {
                Err(RecvTimeoutError::Timeout) => {
                    // Leave the thread behind; it drops what is left, counted.
                    self.shared.abandon.store(true, Ordering::SeqCst);
                    let left = self.shared.counters.snapshot().pending;
                    eprintln!(
                        "tidewatchd: warning: output {} did not drain within {:.1} s; \
                         {left} verdicts still queued are dropped (counted)",
                        self.spec,
                        self.cfg.flush_timeout.as_secs_f64()
                    );
                }
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    if let Some(t) = self.thread.take() {
                        let _ = t.join();
                    }
                }
            }
        }
        self.shared.finished.store(true, Ordering::SeqCst);
        match self.fatal_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The output thread.
struct Worker {
    spec: String,
    rx: Receiver<Verdict>,
    format: Box<dyn Format>,
    transport: Box<dyn Transport>,
    shared: Arc<Shared>,
    /// Dropped when the thread ends, which wakes `finish`.
    _done: SyncSender<()>,
    buf: Vec<u8>,
    backoff: Duration,
    /// Set while disconnected: when to try again.
    retry_at: Option<Instant>,
    failures_in_a_row: u64,
    warned_send: bool,
}

impl Worker {
    fn run(mut self) {
        if !self.transport.is_connected() {
            self.connect(Instant::now());
        }
        let mut dirty = false;
        loop {
            if self.shared.reopen.swap(false, Ordering::SeqCst) {
                self.reopen();
            }
            let now = Instant::now();
            if self.retry_at.is_some_and(|t| now >= t) {
                self.connect(now);
            }
            let next = if dirty {
                match self.rx.try_recv() {
                    Ok(v) => v,
                    Err(TryRecvError::Empty) => {
                        dirty = false;
                        if let Err(e) = self.transport.flush() {
                            self.write_failed(&e);
                        }
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                let wait = match self.retry_at {
                    Some(t) => t.saturating_duration_since(now).min(IDLE_TICK),
                    None => IDLE_TICK,
                };
                match self.rx.recv_timeout(wait) {
                    Ok(v) => v,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            };
            let c = &self.shared.counters;
            if self.shared.abandon.load(Ordering::SeqCst) {
                bump(&c.dropped_unflushed);
                continue;
            }
            if self.shared.has_fatal.load(Ordering::SeqCst) || !self.transport.is_connected() {
                bump(&c.dropped_disconnected);
                continue;
            }
            self.buf.clear();
            if self.format.format(&next, &mut self.buf) {
                bump(&c.truncated);
            }
            match self.transport.send(&self.buf) {
                Ok(()) => {
                    bump(&c.sent);
                    dirty = true;
                }
                Err(e) => {
                    bump(&c.failed);
                    self.write_failed(&e);
                }
            }
        }
        if dirty {
            if let Err(e) = self.transport.flush() {
                self.write_failed(&e);
            }
        }
        self.transport.disconnect();
    }

    fn connect(&mut self, now: Instant) {
        let retrying = self.retry_at.is_some();
        match self.transport.connect() {
            Ok(()) => {
                if retrying {
                    bump(&self.shared.counters.reconnects);
                    eprintln!(
                        "tidewatchd: output {}: connected ({}) after {} failed attempts",
                        self.spec,
                        self.transport.framing(),
                        self.failures_in_a_row
                    );
                }
                self.retry_at = None;
                self.backoff = BACKOFF_START;
                self.failures_in_a_row = 0;
            }
            Err(e) => {
                bump(&self.shared.counters.connect_failures);
                if self.failures_in_a_row == 0 {
                    eprintln!(
                        "tidewatchd: warning: output {}: cannot connect: {e}; verdicts are dropped (counted) \
                         until it is reachable, retrying every {:.1} s up to {} s",
                        self.spec,
                        BACKOFF_START.as_secs_f64(),
                        BACKOFF_MAX.as_secs()
                    );
                }
                self.failures_in_a_row += 1;
                self.schedule_retry(now);
            }
        }
    }

    fn schedule_retry(&mut self, now: Instant) {
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn reopen(&mut self) {
        if let Err(e) = self.transport.reopen() {
            match self.transport.on_error() {
                OnError::Fatal => self.shared.set_fatal(format!("cannot reopen: {e}")),
                OnError::Count | OnError::Reconnect => {
                    self.transport.disconnect();
                    bump(&self.shared.counters.connect_failures);
                    self.failures_in_a_row = 1;
                    self.schedule_retry(Instant::now());
                }
            }
        }
    }

    fn write_failed(&mut self, e: &std::io::Error) {
        match self.transport.on_error() {
            OnError::Count => {
                if !self.warned_send {
                    self.warned_send = true;
                    eprintln!(
                        "tidewatchd: warning: output {}: send failed: {e} (further failures are only counted)",
                        self.spec
                    );
                }
            }
            OnError::Fatal => {
                self.shared.set_fatal(format!("write failed: {e}"));
                self.transport.disconnect();
            }
            OnError::Reconnect => {
                eprintln!(
                    "tidewatchd: warning: output {}: write failed: {e}; reconnecting, verdicts are dropped \
                     (counted) meanwhile",
                    self.spec
                );
                self.transport.disconnect();
                self.failures_in_a_row = 1;
                self.schedule_retry(Instant::now());
            }
        }
    }
}
