//! The multi-core driver of `Engine::run`: the calling thread captures and
//! dispatches chunks by flow hash to worker threads (each owns a flow-table
//! shard); a merge thread applies their events in one order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rustc_hash::FxHasher;

use super::payload_skip::{DoneHint, SkipTable};
use super::shard::{Event, Shard, ShardStats};
use super::stats::{thread_cpu_seconds, EngineCounters};
use super::Engine;
use crate::decode::{tcp_flags, PacketInfo, PayloadBuffer, PayloadBuffers, PROTO_TCP, PROTO_UDP};
use crate::error::{Error, Result};
use crate::flow::FlowKey;
use crate::source::{Micros, PacketSource};

/// Packets per chunk handed to a worker: amortises the queue operations.
const CHUNK: usize = 256;
/// Chunks that may wait in each worker's queue.
const QUEUE_CHUNKS: usize = 16;
/// Every this many packets all workers get their pending chunk, so the merge
/// stage's watermarks advance even for workers that see little traffic.
const BROADCAST_EVERY: u64 = 256;

/// One unit of work for a worker.
#[derive(Clone, Copy)]
enum Item {
    Packet(PacketInfo, Micros),
    Sweep(Micros),
}

/// A batch of items for one worker; recycled, never reallocated.
struct Chunk {
    items: Vec<Item>,
    /// Payload bytes of the chunk's packets (each packet's `payload_off`
    /// points here), so workers can reassemble without the frames.
    payload: Vec<u8>,
    /// Engine clock after the last item.
    clock: Micros,
    /// When the chunk's first item entered the engine.
    arrival: Option<Instant>,
    /// The last chunk: drain every flow after it.
    eof: bool,
    /// On the way back from worker `hints_from`: flows whose payload bytes
    /// it no longer needs (see `payload_skip`).
    hints: Vec<DoneHint>,
    hints_from: usize,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            items: Vec::with_capacity(CHUNK),
            payload: Vec::new(),
            clock: 0,
            arrival: None,
            eof: false,
            hints: Vec::new(),
            hints_from: 0,
        }
    }
}

/// Events a worker produced from one chunk, and its progress.
struct EventBatch {
    worker: usize,
    events: Vec<Event>,
    watermark: Micros,
}

/// A packet's flow key and its hash: the worker is the hash modulo the
/// workers. The key is direction-independent, so both directions land together.
fn flow_hash(info: &PacketInfo) -> (FlowKey, u64) {
    use std::hash::{Hash, Hasher};
    let (key, _) = FlowKey::of(info);
    let mut h = FxHasher::default();
    key.hash(&mut h);
    (key, h.finish())
}

impl Engine {
    /// The multi-core path: this thread reads, decodes and dispatches by
    /// flow hash to worker threads over bounded queues; a merge thread takes
    /// their events (host context, batching, inference, sinks).
    pub(super) fn run_workers(&mut self, source: &mut dyn PacketSource) -> Result<()> {
        let n = self.workers;
        self.used_workers = n;
        let (event_tx, event_rx) = bounded::<EventBatch>(n * QUEUE_CHUNKS);
        let (free_tx, free_rx) = bounded::<Chunk>(n * (QUEUE_CHUNKS + 2));
        let (spare_events_tx, spare_events_rx) = bounded::<Vec<Event>>(n * QUEUE_CHUNKS);
        let stop = AtomicBool::new(false);
        // The merge thread borrows the merger for the scope: nothing else
        // touches it until every thread has joined.
        let (flow_cfg, early_packets, inspect_cfg) = (self.flow_cfg, self.early_packets, self.inspect_cfg);
        let (lossless, live) = (self.lossless, self.live);
        // Kept stream bytes need every byte, so nothing is skipped then.
        let skip_done_payloads = inspect_cfg.enabled && inspect_cfg.keep_stream_bytes == 0;
        // The merge thread borrows the merger for the scope, the capture
        // loop the capture state: nothing else touches either until every
        // thread has joined.
        let Engine { merger, capture, counters, queue_full, queue_dropped, shard_stats, cpu_seconds, .. } = self;
        merger.set_streams(n);
        let mut outcome: Result<()> = Ok(());
        std::thread::scope(|scope| {
            let mut workers = Vec::with_capacity(n);
            let mut txs: Vec<Sender<Chunk>> = Vec::with_capacity(n);
            for w in 0..n {
                let (tx, rx) = bounded::<Chunk>(QUEUE_CHUNKS);
                txs.push(tx);
                let (event_tx, free_tx, spare_events_rx) = (event_tx.clone(), free_tx.clone(), spare_events_rx.clone());
                let (cfg, early, counters) = (flow_cfg, early_packets, counters.clone());
                let inspect = inspect_cfg;
                workers.push(scope.spawn(move || {
                    let mut shard = Shard::new(cfg, early, inspect);
                    shard.publish_done_hints = skip_done_payloads;
                    worker(w, shard, rx, event_tx, free_tx, spare_events_rx, &counters)
                }));
            }
            drop(event_tx);
            let stop_ref = &stop;
            let merge_thread = scope.spawn(move || {
                let cpu_at_start = thread_cpu_seconds();
                loop {
                    // A waiting batch is classified at its wall deadline
                    // even when no event follows: no idle tick sets latency.
                    let next = match merger.wall_wait() {
                        Some(wait) => event_rx.recv_timeout(wait),
                        None => event_rx.recv().map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
                    };
                    match next {
                        Ok(mut b) => {
                            merger.push(b.worker, &mut b.events, b.watermark);
                            let _ = spare_events_tx.try_send(b.events);
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => merger.on_wall_timeout(),
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                    }
                    if merger.stopped() {
                        stop_ref.store(true, Ordering::Relaxed);
                    }
                }
                thread_cpu_seconds().zip(cpu_at_start).map(|(b, a)| b - a)
            });
            let mut pending: Vec<Chunk> = (0..n).map(|_| Chunk::new()).collect();
            let inspect = inspect_cfg.enabled;
            let mut since_broadcast = 0u64;
            let mut dispatch = Dispatch {
                txs,
                free_rx: &free_rx,
                drop_when_full: !lossless && (live || source.is_live()),
                dropped: 0,
                skips: if skip_done_payloads { (0..n).map(|_| SkipTable::new()).collect() } else { Vec::new() },
            };
            let result = (|| -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let Some(pkt) = source.next_packet()? else {
                        if !source.is_live() || source.finished() {
                            break;
                        }
                        // Idle live capture: time still passes; flows time
                        // out and every worker's watermark moves on.
                        let Some(now) = source.now() else { continue };
                        counters.publish(|s| capture.count_into(s, *queue_full, *queue_dropped + dispatch.dropped));
                        let sweep = capture.advance(now);
                        let clock = capture.clock;
                        for (w, c) in pending.iter_mut().enumerate() {
                            if let Some(t) = sweep {
                                c.items.push(Item::Sweep(t));
                            }
                            c.clock = clock;
                            // A worker still busy with earlier chunks gets
                            // this one later (full, broadcast or next idle):
                            // a small chunk per idle moment must not fill its
                            // queue and make a burst drop packets.
                            if sweep.is_some() || dispatch.keeping_up(w) {
                                dispatch.send(w, c, queue_full);
                            }
                        }
                        since_broadcast = 0;
                        continue;
                    };
                    let step = capture.step(&pkt);
                    let clock = capture.clock;
                    if let Some(t) = step.sweep {
                        for (w, c) in pending.iter_mut().enumerate() {
                            c.items.push(Item::Sweep(t));
                            c.clock = t;
                            dispatch.send(w, c, queue_full);
                        }
                        since_broadcast = 0;
                    }
                    if let Some(mut info) = step.packet {
                        let (key, hash) = flow_hash(&info);
                        let w = (hash % n as u64) as usize;
                        let skip = dispatch.skips.get_mut(w).is_some_and(|table| {
                            let opens_or_closes = info
                                .tcp
                                .is_some_and(|t| t.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0);
                            table.dispatch(&key, hash, opens_or_closes, clock)
                        });
                        let c = &mut pending[w];
                        if c.items.is_empty() {
                            c.arrival = Some(Instant::now());
                        }
                        let in_zeros = info.payload_cap as usize <= PayloadBuffer::SKIPPED_MAX;
                        if skip && in_zeros && matches!(info.proto, PROTO_TCP | PROTO_UDP) && info.payload_cap > 0 {
                            info.payload_off = 0;
                            info.payload_in = PayloadBuffer::Skipped;
                            capture.payload_skipped += 1;
                        } else if inspect && matches!(info.proto, PROTO_TCP | PROTO_UDP) && info.payload_cap > 0 {
                            let payload = info.payload(capture.buffers(pkt.data));
                            info.payload_off = c.payload.len() as u32;
                            info.payload_cap = payload.len() as u32;
                            info.payload_in = PayloadBuffer::Chunk;
                            c.payload.extend_from_slice(payload);
                        } else {
                            info.payload_cap = 0;
                        }
                        c.items.push(Item::Packet(info, clock));
                        c.clock = clock;
                        if c.items.len() >= CHUNK {
                            dispatch.send(w, c, queue_full);
                        }
                    }
                    since_broadcast += 1;
                    if since_broadcast >= BROADCAST_EVERY {
                        since_broadcast = 0;
                        for (w, c) in pending.iter_mut().enumerate() {
                            c.clock = clock;
                            dispatch.send(w, c, queue_full);
                        }
                        counters.publish(|s| capture.count_into(s, *queue_full, *queue_dropped + dispatch.dropped));
                    }
                }
                Ok(())
            })();
            // End of input (or a stop): every worker drains its flows.
            for (w, c) in pending.iter_mut().enumerate() {
                c.eof = true;
                c.clock = capture.clock;
                dispatch.send(w, c, queue_full);
            }
            dispatch.txs.clear(); // closing the queues lets the workers finish
            *queue_dropped += dispatch.dropped;
            *shard_stats = Vec::with_capacity(n);
            for (w, h) in workers.into_iter().enumerate() {
                match h.join() {
                    Ok((stats, cpu)) => {
                        shard_stats.push(stats);
                        if let Some(c) = cpu {
                            cpu_seconds.insert(format!("worker{w}"), c);
                        }
                    }
                    Err(_) => outcome = Err(Error::Internal(format!("worker {w} stopped unexpectedly"))),
                }
            }
            match merge_thread.join() {
                Ok(cpu) => {
                    if let Some(c) = cpu {
                        cpu_seconds.insert("merge".into(), c);
                    }
                }
                Err(_) => outcome = Err(Error::Internal("the merge stage stopped unexpectedly".into())),
            }
            if outcome.is_ok() {
                outcome = result;
            }
        });
        outcome?;
        self.take_error()
    }
}

/// The capture thread's ends of the worker queues.
struct Dispatch<'a> {
    txs: Vec<Sender<Chunk>>,
    free_rx: &'a Receiver<Chunk>,
    /// Live capture: drop (and count) rather than wait on a full queue.
    drop_when_full: bool,
    dropped: u64,
    /// Per worker, its done flows (empty: no payload copy is skipped).
    skips: Vec<SkipTable>,
}

impl Dispatch<'_> {
    /// Hands `chunk` to worker `w` and gives the caller an empty one. When
    /// the worker's queue is full this waits: replay never drops.
    /// Worker `w`'s queue is at most a quarter full.
    fn keeping_up(&self, w: usize) -> bool {
        self.txs.get(w).is_some_and(|tx| tx.len() <= QUEUE_CHUNKS / 4)
    }

    fn send(&mut self, w: usize, chunk: &mut Chunk, queue_full: &mut u64) {
        let mut fresh = self.free_rx.try_recv().unwrap_or_else(|_| Chunk::new());
        if let Some(t) = self.skips.get_mut(fresh.hints_from) {
            t.learn(&fresh.hints);
        }
        fresh.hints.clear();
        let mut out = std::mem::replace(chunk, fresh);
        chunk.items.clear();
        chunk.payload.clear();
        chunk.eof = false;
        chunk.arrival = None;
        chunk.clock = out.clock;
        let Some(tx) = self.txs.get(w) else { return };
        loop {
            match tx.try_send(out) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    *queue_full += 1;
                    out = back;
                    if self.drop_when_full && !out.eof {
                        self.dropped += out.items.iter().filter(|i| matches!(i, Item::Packet(..))).count() as u64;
                        out.items.clear();
                        return;
                    }
                    match tx.send_timeout(out, std::time::Duration::from_millis(50)) {
                        Ok(()) => return,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => out = back,
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                    }
                }
                // The worker is gone (it can only stop by panicking): nothing to do.
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// A worker thread: owns its shard; processes chunks in order.
fn worker(
    id: usize,
    mut shard: Shard,
    rx: Receiver<Chunk>,
    events: Sender<EventBatch>,
    free: Sender<Chunk>,
    spare: Receiver<Vec<Event>>,
    counters: &EngineCounters,
) -> (ShardStats, Option<f64>) {
    while let Ok(mut chunk) = rx.recv() {
        for item in chunk.items.iter() {
            match item {
                Item::Packet(info, clock) => {
                    let payload = info.payload(PayloadBuffers { chunk: &chunk.payload, ..Default::default() });
                    shard.packet(info, payload, *clock, chunk.arrival);
                    if let Some((deadline, room)) = shard.done_hint.take() {
                        let (key, hash) = flow_hash(info);
                        chunk.hints.push(DoneHint { key, hash, seq: shard.stats.packets, deadline, room });
                    }
                }
                Item::Sweep(t) => shard.sweep(*t, chunk.arrival),
            }
        }
        let watermark = if chunk.eof {
            shard.drain(chunk.clock);
            Micros::MAX
        } else {
            chunk.clock
        };
        counters.publish_shard(id, &shard.stats);
        let replacement = spare.try_recv().unwrap_or_default();
        let batch = EventBatch { worker: id, events: std::mem::replace(&mut shard.events, replacement), watermark };
        if events.send(batch).is_err() {
            break;
        }
        chunk.items.clear();
        chunk.payload.clear();
        chunk.hints_from = id;
        let _ = free.try_send(chunk);
    }
    (shard.stats, thread_cpu_seconds())
}
