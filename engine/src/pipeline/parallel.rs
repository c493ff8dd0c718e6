//! `ParallelEngine`: the multi-core engine for a caller with its own
//! capture loop. The caller pushes packets (`process`, `tick`) and pulls
//! events (`poll_event`), as with `Engine`; behind it, `Engine::run` runs on
//! its own thread with the configured workers, reading the caller's packets
//! from a bounded queue. The same capture gives the same events, in the same
//! order, as `Engine::run` with that worker count.
//!
//! Queues and their policies:
//! - packets: at most `PACKET_QUEUE` copies wait; when full, `process`
//!   waits (never drops), moving finished events aside meanwhile so the
//!   engine never waits on a caller who is itself waiting. Packet buffers
//!   are recycled, so a steady stream allocates nothing per packet.
//! - events: at most `EVENT_QUEUE` wait in the channel; events moved aside
//!   while `process` waited are kept in order until `poll_event` takes them,
//!   so they stay few when the caller polls after each call.

use std::collections::VecDeque;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Select, Sender, TryRecvError, TrySendError};

use super::{EngineBuilder, Stats};
use crate::error::{Error, Result, SinkError};
use crate::event::Event;
use crate::incident::Incident;
use crate::sink::{FlowRecord, SinkControl, Verdict, VerdictSink};
use crate::source::{LinkType, Micros, PacketSource, RawPacket};

/// Packet copies that may wait for the engine thread.
const PACKET_QUEUE: usize = 1024;
/// Events that may wait in the channel for the caller.
const EVENT_QUEUE: usize = 4096;

/// What the caller hands the engine thread.
enum Input {
    Packet { ts: Micros, wire_len: u32, link_type: LinkType, data: Vec<u8> },
    Tick(Micros),
}

/// A multi-core engine fed from the caller's own loop. See the module docs.
///
/// ```no_run
/// use tidewatch::{Engine, Event, ParallelEngine};
/// # fn capture() -> Option<tidewatch::RawPacket<'static>> { None }
/// # fn main() -> Result<(), tidewatch::Error> {
/// let mut engine = ParallelEngine::start(Engine::builder().model("models/lab/model.onnx").workers(2))?;
/// while let Some(packet) = capture() {
///     engine.process(&packet)?;
///     while let Some(event) = engine.poll_event() {
///         if let Event::Verdict(v) = event { println!("{} {}", v.flow.flow_id, v.label) }
///     }
/// }
/// let stats = engine.finish()?;
/// while let Some(event) = engine.poll_event() { /* the last flows' verdicts */ }
/// # Ok(()) }
/// ```
pub struct ParallelEngine {
    input: Option<Sender<Input>>,
    free: Receiver<Vec<u8>>,
    events: Receiver<Event>,
    /// Events taken from the channel while `process` waited, oldest first.
    held: VecDeque<Event>,
    thread: Option<JoinHandle<Result<Stats>>>,
    stats: Option<Stats>,
}

impl ParallelEngine {
    /// Builds the engine from `builder` (every check of `EngineBuilder::build`
    /// applies) and starts its thread. Events go both to the builder's sinks,
    /// if any, and to `poll_event`.
    pub fn start(builder: EngineBuilder) -> Result<Self> {
        let (event_tx, events) = bounded(EVENT_QUEUE);
        let mut engine = builder.sink(EventSender(event_tx)).build()?;
        engine.lossless = true;
        let (input_tx, input_rx) = bounded(PACKET_QUEUE);
        let (free_tx, free) = bounded(PACKET_QUEUE + 2);
        let thread = std::thread::Builder::new()
            .name("tidewatch-parallel".into())
            .spawn(move || {
                let mut source =
                    QueueSource { input: input_rx, free: free_tx, current: Vec::new(), now: None, done: false };
                engine.run(&mut source)
            })
            .map_err(|e| Error::Internal(format!("cannot start the engine thread: {e}")))?;
        Ok(ParallelEngine {
            input: Some(input_tx),
            free,
            events,
            held: VecDeque::new(),
            thread: Some(thread),
            stats: None,
        })
    }

    /// Hands one packet to the engine (copied; the caller keeps its buffer).
    /// Waits while the engine is behind. An error means the engine stopped
    /// (a sink asked to, or failed); `finish` returns the reason.
    pub fn process(&mut self, pkt: &RawPacket<'_>) -> Result<()> {
        let mut data = self.free.try_recv().unwrap_or_default();
        data.clear();
        data.extend_from_slice(pkt.data);
        self.send(Input::Packet { ts: pkt.ts, wire_len: pkt.wire_len, link_type: pkt.link_type, data })
    }

    /// Moves engine time to `now` with no packet (an idle capture), as
    /// `Engine::tick` does.
    pub fn tick(&mut self, now: Micros) -> Result<()> {
        self.send(Input::Tick(now))
    }

    fn send(&mut self, mut input: Input) -> Result<()> {
        let Some(tx) = self.input.as_ref() else { return Err(Error::Finished) };
        loop {
            match tx.try_send(input) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => {
                    return Err(Error::Internal("the engine stopped; finish() says why".into()))
                }
                Err(TrySendError::Full(back)) => input = back,
            }
            // Full: wait until there is room or an event to move aside, so
            // a sink never waits on this thread while it waits on the engine.
            let mut ready = Select::new();
            ready.send(tx);
            let events = ready.recv(&self.events);
            if ready.ready() == events {
                match self.events.try_recv() {
                    Ok(e) => self.held.push_back(e),
                    // The engine is gone: the next send says so.
                    Err(TryRecvError::Disconnected) => std::thread::yield_now(),
                    Err(TryRecvError::Empty) => {}
                }
            }
        }
    }

    /// The next event, oldest first; `None` when none is ready yet.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.held.pop_front().or_else(|| self.events.try_recv().ok())
    }

    /// Ends the input: every open flow ends, pending rows are classified,
    /// and the engine thread stops. Every event is then ready for
    /// `poll_event`. Returns the counters, or the error that stopped the
    /// engine. Further calls return the same counters.
    pub fn finish(&mut self) -> Result<Stats> {
        if let Some(s) = &self.stats {
            return Ok(s.clone());
        }
        // The source sees the end of its input; the engine's sinks hold
        // the event sender until the thread ends.
        self.input = None;
        while let Ok(e) = self.events.recv() {
            self.held.push_back(e);
        }
        let thread = self.thread.take().ok_or(Error::Finished)?;
        let stats = thread.join().map_err(|_| Error::Internal("the engine thread stopped unexpectedly".into()))??;
        self.stats = Some(stats.clone());
        Ok(stats)
    }
}

impl Drop for ParallelEngine {
    fn drop(&mut self) {
        // Without `finish`: end the input, let the thread run out, discard.
        self.input = None;
        if let Some(t) = self.thread.take() {
            while self.events.recv().is_ok() {}
            let _ = t.join();
        }
    }
}

/// The engine thread's source: the caller's packets, one at a time.
struct QueueSource {
    input: Receiver<Input>,
    free: Sender<Vec<u8>>,
    /// The buffer of the packet lent out last.
    current: Vec<u8>,
    now: Option<Micros>,
    done: bool,
}

impl PacketSource for QueueSource {
    fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>> {
        match self.input.recv() {
            Ok(Input::Packet { ts, wire_len, link_type, data }) => {
                let used = std::mem::replace(&mut self.current, data);
                let _ = self.free.try_send(used);
                Ok(Some(RawPacket { ts, wire_len, link_type, data: &self.current }))
            }
            Ok(Input::Tick(now)) => {
                self.now = Some(now);
                Ok(None)
            }
            Err(_) => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// "Live" so that a tick (`next_packet` gives `None`) moves time
    /// instead of ending the run; the engine is lossless regardless.
    fn is_live(&self) -> bool {
        true
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn now(&self) -> Option<Micros> {
        self.now
    }
}

/// The sink that carries the engine's events to the caller's thread.
struct EventSender(Sender<Event>);

impl EventSender {
    fn send(&self, e: Event) -> std::result::Result<SinkControl, SinkError> {
        // A bounded channel: a healthy caller is waited for. Gone: stop.
        match self.0.send(e) {
            Ok(()) => Ok(SinkControl::Continue),
            Err(_) => Ok(SinkControl::Stop),
        }
    }
}

impl VerdictSink for EventSender {
    fn verdict(&mut self, v: &Verdict) -> std::result::Result<SinkControl, SinkError> {
        self.send(Event::Verdict(v.clone()))
    }
    fn incident(&mut self, i: &Incident) -> std::result::Result<SinkControl, SinkError> {
        self.send(Event::Incident(i.clone()))
    }
    fn flow(&mut self, r: &FlowRecord) -> std::result::Result<SinkControl, SinkError> {
        self.send(Event::Flow(r.clone()))
    }
}
