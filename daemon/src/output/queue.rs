//! One bounded queue and one thread per output, so that a slow or dead
//! output never stalls the engine.
//!
//! The engine sees a [`QueuedSink`]: its `verdict` and `incident` filter
//! (what this output carries: syslog takes incidents by default, benign
//! verdicts only when asked) and clone the record; the records of one
//! engine batch are handed to the output thread together, at the engine's
//! `end_of_batch` (or every 64 records), so a burst costs one channel
//! message and at most one wake-up per batch, not per record. The queue
//! holds up to `capacity / 64` such hand-offs (at least 2). A full queue
//! of a healthy output is waited for; only an output that makes the engine
//! wait longer than its stall limit is called stuck, and then drops and
//! counts until its queue has drained to half. Formatting happens on the
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
use std::sync::mpsc::{self, RecvTimeoutError as DoneTimeout};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError};
use tidewatch::{FlowRecord, Incident, SinkControl, SinkError, Verdict, VerdictSink};

use super::syslog::SyslogFormatter;
use super::transport::{OnError, Transport};

/// First pause before reconnecting; doubles on each failure.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest pause between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Most records handed to an output thread at once: the engine's sink
/// collects the records of one engine batch and hands them over together
/// (one channel message and at most one wake-up per batch).
const HANDOFF: usize = 64;
/// How often an idle output thread looks at the reopen flag.
const IDLE_TICK: Duration = Duration::from_millis(250);

/// What travels through an output's queue.
#[derive(Clone, Debug)]
pub enum Record {
    Verdict(Verdict),
    Incident(Incident),
    /// An ended flow (`--flow-records`).
    Flow(FlowRecord),
}

/// Turns a record into the bytes of one message.
pub trait Format: Send {
    /// Appends the message for `r` to `out`; returns whether it was truncated.
    fn format(&mut self, r: &Record, out: &mut Vec<u8>) -> bool;
}

/// One JSON object and a newline per record, as [`tidewatch::JsonLinesSink`] writes.
pub struct JsonFormat;

impl Format for JsonFormat {
    fn format(&mut self, r: &Record, out: &mut Vec<u8>) -> bool {
        // Writing to a Vec cannot fail, and both records always serialize.
        let _ = match r {
            Record::Verdict(v) => v.write_json(out),
            Record::Incident(i) => serde_json::to_writer(&mut *out, i),
            Record::Flow(f) => serde_json::to_writer(&mut *out, f),
        };
        out.push(b'\n');
        false
    }
}

impl Format for SyslogFormatter {
    fn format(&mut self, r: &Record, out: &mut Vec<u8>) -> bool {
        SyslogFormatter::format(self, r, out)
    }
}

/// What to do when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for room up to the limit: a healthy output that is only behind
    /// (a burst, every open flow ending at shutdown) loses nothing. An
    /// output that makes the engine wait longer is stuck: its records are
    /// dropped and counted (`dropped_queue_full`) without waiting until its
    /// queue has drained to half, so it never stalls the engine twice in a row.
    WaitThenDrop(Duration),
    /// Wait for room (backpressure), as a plain file writer would.
    Block,
}

/// How long live capture waits for a full output before calling it stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(2);

/// Which records an output carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Events {
    pub verdicts: bool,
    pub incidents: bool,
    /// Flow records (only produced with `--flow-records`).
    pub flows: bool,
}

impl Events {
    pub const ALL: Events = Events { verdicts: true, incidents: true, flows: true };

    /// Parses a list such as `["incident", "verdict"]`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Events, String> {
        let mut e = Events { verdicts: false, incidents: false, flows: false };
        for n in names {
            match n.as_ref().trim() {
                "verdict" | "verdicts" => e.verdicts = true,
                "incident" | "incidents" => e.incidents = true,
                "flow" | "flows" => e.flows = true,
                other => {
                    return Err(format!("unknown event type {other:?} (use \"incident\", \"verdict\" and/or \"flow\")"))
                }
            }
        }
        Ok(e)
    }
}

/// Live counters of one output, shared by the sink, its thread and
/// whoever reports on them (summary, periodic stats).
#[derive(Debug, Default)]
pub struct OutputCounters {
    /// Records (verdicts and incidents) put on the queue.
    pub queued: AtomicU64,
    /// Messages written to the destination.
    pub sent: AtomicU64,
    /// Writes that failed: of a message, or of a flush of buffered ones.
    pub failed: AtomicU64,
    /// Verdicts dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Verdicts dropped because the destination was unreachable.
    pub dropped_disconnected: AtomicU64,
    /// Verdicts still queued when `finish` stopped waiting.
    pub dropped_unflushed: AtomicU64,
    /// Records not meant for this output (benign verdicts for syslog, or
    /// an event type it does not carry).
    pub filtered: AtomicU64,
    /// Times the engine found the queue full and waited for room.
    pub waited: AtomicU64,
    /// Times the output was declared stuck (waited past the stall limit).
    pub stalls: AtomicU64,
    /// Reopens (SIGHUP) that failed.
    pub reopen_failures: AtomicU64,
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
    pub waited: u64,
    pub stalls: u64,
    pub reopen_failures: u64,
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

impl CounterSnapshot {
    /// This output as a stage (the engine's `StageCounts` layout): every
    /// record handed to it is sent, discarded on purpose (`filtered`), or
    /// failed (a failed write, or dropped: queue full, disconnected,
    /// unflushed). Records still pending count as failed until they go.
    pub fn stage(&self) -> serde_json::Value {
        serde_json::json!({
            "received": self.queued + self.dropped_queue_full + self.filtered,
            "sent": self.sent,
            "discarded": self.filtered,
            "failed": self.failed + self.dropped(),
        })
    }
}

impl std::ops::AddAssign for CounterSnapshot {
    fn add_assign(&mut self, o: Self) {
        self.queued += o.queued;
        self.sent += o.sent;
        self.failed += o.failed;
        self.dropped_queue_full += o.dropped_queue_full;
        self.dropped_disconnected += o.dropped_disconnected;
        self.dropped_unflushed += o.dropped_unflushed;
        self.filtered += o.filtered;
        self.waited += o.waited;
        self.stalls += o.stalls;
        self.reopen_failures += o.reopen_failures;
        self.truncated += o.truncated;
        self.reconnects += o.reconnects;
        self.connect_failures += o.connect_failures;
        self.pending += o.pending;
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
            waited: get(&self.waited),
            stalls: get(&self.stalls),
            reopen_failures: get(&self.reopen_failures),
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

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
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
    /// Whole lines to write besides verdicts (periodic stats objects, for
    /// JSON outputs only); taken by the output thread on its next turn.
    extra: Mutex<Vec<Vec<u8>>>,
    has_extra: AtomicBool,
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
    #[allow(dead_code)] // for `run`'s SIGHUP handler
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::SeqCst);
    }

    /// Queues one JSON object (a stats record, as in Suricata's EVE) to be
    /// written between verdicts; JSON outputs only, at most 64 waiting.
    pub fn write_json_object(&self, obj: &serde_json::Value) {
        if self.kind != "JSON lines" {
            return;
        }
        let mut line = obj.to_string().into_bytes();
        line.push(b'\n');
        if let Ok(mut q) = self.shared.extra.lock() {
            if q.len() < 64 {
                q.push(line);
                self.shared.has_extra.store(true, Ordering::SeqCst);
            }
        }
    }

    /// The counters as a JSON object (numbers, for stats records and metrics).
    pub fn to_json(&self) -> serde_json::Value {
        let c = self.counters();
        let mut j = serde_json::to_value(c).unwrap_or_default();
        j["output"] = self.spec.clone().into();
        j["kind"] = self.kind.clone().into();
        j["dropped"] = c.dropped().into();
        j["stage"] = c.stage();
        j
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
    /// Which records this output carries; the others are counted as `filtered`.
    pub events: Events,
}

/// The [`VerdictSink`] the engine sees for one output.
pub struct QueuedSink {
    tx: Option<Sender<Vec<Record>>>,
    /// Records waiting for the next hand-off.
    pending: Vec<Record>,
    /// Emptied batches, back from the output thread.
    spare: Receiver<Vec<Record>>,
    /// Disconnects when the output thread ends.
    done: mpsc::Receiver<()>,
    /// Set when the output made the engine wait past the stall limit;
    /// cleared once its queue has drained to half.
    stuck: bool,
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
    // The queue holds hand-offs of up to HANDOFF records each.
    let handoffs = cfg.capacity.div_ceil(HANDOFF).max(2);
    let (tx, rx) = crossbeam_channel::bounded(handoffs);
    // Room for every batch that can exist at once (queued, being written,
    // being filled), so each one comes back: under a burst that fills the
    // queue, no batch is allocated by the engine's thread and freed by the
    // output thread (a cross-thread malloc/free pair per hand-off).
    let (spare_tx, spare) = crossbeam_channel::bounded(handoffs + 2);
    let (done_tx, done) = mpsc::sync_channel::<()>(0);
    let worker = Worker {
        spec: spec.to_string(),
        rx,
        spare: spare_tx,
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
    Ok((
        QueuedSink {
            tx: Some(tx),
            pending: Vec::with_capacity(HANDOFF),
            spare,
            done,
            stuck: false,
            thread: Some(thread),
            shared,
            cfg,
            spec: spec.to_string(),
        },
        handle,
    ))
}

impl QueuedSink {
    fn fatal_error(&self) -> Option<SinkError> {
        self.shared.fatal().map(|m| SinkError::Other(format!("{}: {m}", self.spec)))
    }
}

impl QueuedSink {
    /// Keeps one record for the next hand-off, which comes at the engine's
    /// end of batch or once `HANDOFF` records wait.
    fn queue(&mut self, r: Record) -> Result<SinkControl, SinkError> {
        self.pending.push(r);
        if self.pending.len() >= HANDOFF {
            return self.hand_off();
        }
        Ok(SinkControl::Continue)
    }

    /// Hands the waiting records to the output thread in one message (one
    /// wake-up per batch, not per record), under the overflow policy.
    fn hand_off(&mut self) -> Result<SinkControl, SinkError> {
        if self.pending.is_empty() {
            return Ok(SinkControl::Continue);
        }
        let c = &self.shared.counters;
        let n = self.pending.len() as u64;
        let Some(tx) = self.tx.as_ref() else {
            self.pending.clear();
            return Ok(SinkControl::Continue);
        };
        // The emptied batches come back from the output thread: no allocation per hand-off.
        let spare = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(HANDOFF));
        let batch = std::mem::replace(&mut self.pending, spare);
        let sent = match self.cfg.overflow {
            Overflow::Block => tx.send(batch).is_ok(),
            Overflow::WaitThenDrop(limit) => {
                if self.stuck && tx.len() <= tx.capacity().unwrap_or(0) / 2 {
                    self.stuck = false;
                    eprintln!("tidewatchd: output {}: drained to half its queue; records are queued again", self.spec);
                }
                match tx.try_send(batch) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) if self.stuck => {
                        add(&c.dropped_queue_full, n);
                        return Ok(SinkControl::Continue);
                    }
                    Err(TrySendError::Full(batch)) => {
                        bump(&c.waited);
                        match tx.send_timeout(batch, limit) {
                            Ok(()) => true,
                            Err(SendTimeoutError::Timeout(_)) => {
                                self.stuck = true;
                                bump(&c.stalls);
                                add(&c.dropped_queue_full, n);
                                eprintln!(
                                    "tidewatchd: warning: output {} is stuck (its queue stayed full for {:.1} s); \
                                     records are dropped (counted) until it drains to half",
                                    self.spec,
                                    limit.as_secs_f64()
                                );
                                return Ok(SinkControl::Continue);
                            }
                            Err(SendTimeoutError::Disconnected(_)) => false,
                        }
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            }
        };
        if sent {
            add(&c.queued, n);
            return Ok(SinkControl::Continue);
        }
        match self.fatal_error() {
            Some(e) => Err(e),
            None => {
                // The thread is gone without an error (it cannot, short of a
                // bug): count as lost, never stop the engine for syslog.
                add(&c.dropped_disconnected, n);
                Ok(SinkControl::Continue)
            }
        }
    }
}

impl VerdictSink for QueuedSink {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        // Suppressed alerts go where everything goes (JSON), not where alerts go (syslog).
        let suppressed = v.suppressed.is_some() && self.cfg.skip_label.is_some();
        if !self.cfg.events.verdicts || suppressed || self.cfg.skip_label.as_deref() == Some(&*v.label) {
            bump(&self.shared.counters.filtered);
            return Ok(SinkControl::Continue);
        }
        self.queue(Record::Verdict(v.clone()))
    }

    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        if !self.cfg.events.incidents {
            bump(&self.shared.counters.filtered);
            return Ok(SinkControl::Continue);
        }
        self.queue(Record::Incident(i.clone()))
    }

    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        if let Some(e) = self.fatal_error() {
            return Err(e);
        }
        if !self.cfg.events.flows {
            bump(&self.shared.counters.filtered);
            return Ok(SinkControl::Continue);
        }
        self.queue(Record::Flow(r.clone()))
    }

    fn end_of_batch(&mut self) -> Result<(), SinkError> {
        self.hand_off().map(|_| ())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let _ = self.hand_off();
        if self.tx.take().is_some() {
            match self.done.recv_timeout(self.cfg.flush_timeout) {
                Err(DoneTimeout::Timeout) => {
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
                Ok(()) | Err(DoneTimeout::Disconnected) => {
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
    rx: Receiver<Vec<Record>>,
    /// Where emptied batches go back to the engine's side.
    spare: Sender<Vec<Record>>,
    format: Box<dyn Format>,
    transport: Box<dyn Transport>,
    shared: Arc<Shared>,
    /// Dropped when the thread ends, which wakes `finish`.
    _done: mpsc::SyncSender<()>,
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
            if self.shared.has_extra.swap(false, Ordering::SeqCst) && self.transport.is_connected() {
                let lines = self.shared.extra.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default();
                for line in lines {
                    if let Err(e) = self.transport.send(&line) {
                        bump(&self.shared.counters.failed);
                        self.write_failed(&e);
                    } else {
                        dirty = true;
                    }
                }
            }
            let next = if dirty {
                match self.rx.try_recv() {
                    Ok(v) => v,
                    Err(TryRecvError::Empty) => {
                        dirty = false;
                        if let Err(e) = self.transport.flush() {
                            bump(&self.shared.counters.failed);
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
            let mut batch = next;
            for record in batch.drain(..) {
                dirty |= self.write(&record);
            }
            let _ = self.spare.try_send(batch);
        }
        if dirty {
            if let Err(e) = self.transport.flush() {
                bump(&self.shared.counters.failed);
                self.write_failed(&e);
            }
        }
        self.transport.disconnect();
    }

    /// Formats and sends one record, counting what became of it; true
    /// when something was written (a flush is due).
    fn write(&mut self, record: &Record) -> bool {
        let c = &self.shared.counters;
        if self.shared.abandon.load(Ordering::SeqCst) {
            bump(&c.dropped_unflushed);
            return false;
        }
        if self.shared.has_fatal.load(Ordering::SeqCst) || !self.transport.is_connected() {
            bump(&c.dropped_disconnected);
            return false;
        }
        self.buf.clear();
        if self.format.format(record, &mut self.buf) {
            bump(&c.truncated);
        }
        match self.transport.send(&self.buf) {
            Ok(()) => {
                bump(&c.sent);
                true
            }
            Err(e) => {
                bump(&c.failed);
                self.write_failed(&e);
                false
            }
        }
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
            bump(&self.shared.counters.reopen_failures);
            eprintln!(
                "tidewatchd: error: output {}: reopen failed: {e}; records are dropped (counted) until it \
                 can be opened again (check the directory's permissions for the daemon's user)",
                self.spec
            );
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::io::{self, BufRead, Read};
    use std::net::TcpListener;
    use std::sync::mpsc::Receiver;

    use super::super::syslog::tests::verdict;
    use super::super::transport::{JsonLines, Tcp};
    use super::*;

    /// A transport whose sends wait for a go-ahead on a channel.
    struct Gated {
        go: Receiver<()>,
        hang: bool,
    }

    impl Transport for Gated {
        fn connect(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn is_connected(&self) -> bool {
            true
        }
        fn disconnect(&mut self) {}
        fn send(&mut self, _: &[u8]) -> io::Result<()> {
            if self.hang {
                std::thread::sleep(Duration::from_secs(3600));
            }
            self.go.recv().map_err(|_| io::Error::other("closed"))
        }
        fn on_error(&self) -> OnError {
            OnError::Count
        }
        fn framing(&self) -> &'static str {
            "test"
        }
    }

    fn cfg(capacity: usize, flush_ms: u64) -> QueueConfig {
        QueueConfig {
            capacity,
            overflow: Overflow::WaitThenDrop(Duration::from_millis(200)),
            flush_timeout: Duration::from_millis(flush_ms),
            skip_label: Some("benign".into()),
            events: Events::ALL,
        }
    }

    /// A transport that takes a millisecond per message: slow, but healthy.
    struct Slow(Arc<AtomicU64>);

    impl Transport for Slow {
        fn connect(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn is_connected(&self) -> bool {
            true
        }
        fn disconnect(&mut self) {}
        fn send(&mut self, _: &[u8]) -> io::Result<()> {
            std::thread::sleep(Duration::from_millis(1));
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        fn on_error(&self) -> OnError {
            OnError::Count
        }
        fn framing(&self) -> &'static str {
            "test"
        }
    }

    fn start(t: Box<dyn Transport>, c: QueueConfig) -> (QueuedSink, OutputHandle) {
        spawn("test", "test".into(), "test".into(), Box::new(JsonFormat), t, c).unwrap()
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_slow_but_healthy_output_is_waited_for_and_loses_nothing() {
        let sent = Arc::new(AtomicU64::new(0));
        let mut c = cfg(4, 5000);
        c.overflow = Overflow::WaitThenDrop(Duration::from_secs(10));
        let (mut sink, h) = start(Box::new(Slow(sent.clone())), c);
        for _ in 0..300 {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
        }
        sink.finish().unwrap();
        let c = h.counters();
        assert_eq!((c.sent, c.dropped(), c.stalls), (300, 0, 0), "{c:?}");
        assert!(c.waited > 0, "the queue of 4 was full at times: {c:?}");
        assert_eq!(sent.load(Ordering::Relaxed), 300);
    }

    #[test]
    fn a_stuck_output_stalls_the_engine_once_then_drops_and_counts() {
        let (go_tx, go) = mpsc::channel();
        let (mut sink, h) = start(Box::new(Gated { go, hang: false }), cfg(4, 5000));
        for i in 0..100 {
            let label = if i % 10 == 0 { "benign" } else { "dos" };
            assert_eq!(sink.verdict(&verdict(label)).unwrap(), SinkControl::Continue);
            sink.end_of_batch().unwrap();
        }
        let c = h.counters();
        // At most two waits (the thread may take the first record during
        // one), then stuck: every later record is dropped at once.
        assert_eq!(c.stalls, 1, "{c:?}");
        assert!((1..=2).contains(&c.waited), "{c:?}");
        assert_eq!(c.filtered, 10);
        assert_eq!(c.queued + c.dropped_queue_full, 90);
        assert!(c.queued <= 5, "{c:?}"); // 4 queued + 1 taken by the thread
        for _ in 0..c.queued {
            go_tx.send(()).unwrap();
        }
        sink.finish().unwrap();
        let c = h.counters();
        assert_eq!(c.sent, c.queued);
        assert_eq!(c.dropped(), c.dropped_queue_full);
        assert_eq!(c.pending, 0);
        assert!(h.summary().contains(&format!("sent {}, dropped {}", c.sent, c.dropped())), "{}", h.summary());
    }

    #[test]
    fn finish_gives_up_after_the_flush_timeout() {
        let (_go_tx, go) = mpsc::channel();
        let (mut sink, h) = start(Box::new(Gated { go, hang: true }), cfg(100, 300));
        for _ in 0..10 {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
        }
        let t = Instant::now();
        sink.finish().unwrap();
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
        let c = h.counters();
        assert_eq!(c.sent, 0);
        assert_eq!(c.dropped(), 10, "{c:?}"); // all of them, stuck in the queue or in the write
        assert!(h.finished());
    }

    #[test]
    fn a_dead_tcp_server_never_blocks_and_counts_drops() {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        }; // closed again: connections are refused
        let (mut sink, h) = start(Box::new(Tcp::new("127.0.0.1", port)), cfg(10_000, 5000));
        let t = Instant::now();
        for _ in 0..2000 {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
        }
        sink.finish().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let c = h.counters();
        assert_eq!((c.sent, c.dropped()), (0, 2000), "{c:?}");
        assert!(c.connect_failures >= 1);
    }

    /// Accepts one connection (then stops listening), hands a clone of it
    /// to the test and reads octet-counted frames from it into `got`.
    fn frame_server(l: TcpListener, got: Arc<Mutex<Vec<String>>>) -> Receiver<std::net::TcpStream> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            drop(l);
            tx.send(s.try_clone().unwrap()).unwrap();
            let mut r = io::BufReader::new(s);
            loop {
                let mut len = Vec::new();
                if r.read_until(b' ', &mut len).unwrap_or(0) == 0 {
                    return;
                }
                let n: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
                let mut msg = vec![0; n];
                if r.read_exact(&mut msg).is_err() {
                    return;
                }
                got.lock().unwrap().push(String::from_utf8(msg).unwrap());
            }
        });
        rx
    }

    #[test]
    fn tcp_reconnects_with_backoff_when_the_server_comes_back() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let conn = frame_server(l, Arc::clone(&got));
        let (mut sink, h) = start(Box::new(Tcp::new("127.0.0.1", port)), cfg(1000, 5000));
        for _ in 0..5 {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
        }
        wait_for("5 frames", || got.lock().unwrap().len() == 5);
        assert!(got.lock().unwrap().iter().all(|m| m.starts_with('{') && m.ends_with('\n')));
        // The server dies: its connection is closed and nobody listens.
        conn.recv().unwrap().shutdown(std::net::Shutdown::Both).unwrap();
        let t = Instant::now();
        while h.counters().connect_failures < 2 {
            sink.verdict(&verdict("dos")).unwrap(); // never blocks
            sink.end_of_batch().unwrap();
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", h.counters());
            std::thread::sleep(Duration::from_millis(10));
        }
        // It comes back on the same port.
        let got2 = Arc::new(Mutex::new(Vec::new()));
        let _conn2 = frame_server(TcpListener::bind(("127.0.0.1", port)).unwrap(), Arc::clone(&got2));
        let t = Instant::now();
        while got2.lock().unwrap().is_empty() {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
            assert!(t.elapsed() < Duration::from_secs(15), "{:?}", h.counters());
            std::thread::sleep(Duration::from_millis(20));
        }
        sink.finish().unwrap();
        let c = h.counters();
        assert_eq!(c.reconnects, 1, "{c:?}");
        assert!(c.failed + c.dropped_disconnected >= 1, "{c:?}");
        assert_eq!(c.queued, c.sent + c.failed + c.dropped_disconnected, "{c:?}");
    }

    #[test]
    fn json_file_reopens_after_rotation_and_write_errors_fail_the_run() {
        let dir = std::env::temp_dir().join(format!("tidewatchd-queue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v.jsonl");
        let f = std::fs::File::create(&path).unwrap();
        let mut c = cfg(100, 5000);
        c.skip_label = None;
        c.overflow = Overflow::Block;
        let (mut sink, h) = start(Box::new(JsonLines::file(path.clone(), f)), c.clone());
        for _ in 0..3 {
            sink.verdict(&verdict("benign")).unwrap();
            sink.end_of_batch().unwrap();
        }
        wait_for("3 lines", || std::fs::read_to_string(&path).unwrap().lines().count() == 3);
        let rotated = dir.join("v.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        h.reopen();
        wait_for("the new file", || path.exists());
        for _ in 0..2 {
            sink.verdict(&verdict("dos")).unwrap();
            sink.end_of_batch().unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap().lines().count(), 3);
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new.lines().count(), 2);
        assert!(new.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"] == "dos"));
        assert_eq!(h.counters().sent, 5);

        // A full disk: the error reaches the engine, which stops the run (exit 1).
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (mut sink, h) = start(Box::new(JsonLines::file("/dev/full".into(), full)), c);
        sink.verdict(&verdict("dos")).unwrap();
        sink.end_of_batch().unwrap();
        let err = sink.finish().unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert!(h.counters().failed >= 1);
    }

    #[test]
    fn live_json_file_drops_counts_and_recovers_when_writes_work_again() {
        // The file starts on a full device; once reopened (backoff), its
        // path is a normal file: the disk "has room again".
        let dir = std::env::temp_dir().join(format!("tidewatchd-queue-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("live.jsonl");
        let _ = std::fs::remove_file(&path);
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let mut c = cfg(1000, 5000);
        c.skip_label = None;
        let (mut sink, h) = start(Box::new(JsonLines::file(path.clone(), full).retrying()), c);
        let t = Instant::now();
        while !path.exists() || std::fs::read_to_string(&path).unwrap().lines().count() < 3 {
            // Never an error: the run goes on while the output is down.
            assert_eq!(sink.verdict(&verdict("dos")).unwrap(), SinkControl::Continue);
            sink.end_of_batch().unwrap();
            assert!(t.elapsed() < Duration::from_secs(15), "{:?}", h.counters());
            std::thread::sleep(Duration::from_millis(20));
        }
        sink.finish().unwrap();
        let c = h.counters();
        assert!(c.failed >= 1 && c.dropped_disconnected >= 1, "{c:?}");
        assert_eq!(c.reconnects, 1, "{c:?}");
        // A flush that fails counts the buffered lines once as sent and the
        // flush once as failed; nothing is uncounted.
        assert!(c.queued <= c.sent + c.failed + c.dropped_disconnected, "{c:?}");
        let lines = std::fs::read_to_string(&path).unwrap();
        assert!(lines.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "{lines}");
        assert!(c.sent >= lines.lines().count() as u64, "{c:?}");
    }
}
