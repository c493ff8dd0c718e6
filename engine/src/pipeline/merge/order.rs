//! Ordering: the workers' event streams applied in one global order —
//! (engine time, ends before starts before early rows, flow id) — so that
//! host context, and hence every verdict, is the same whatever the number
//! of workers.
//!
//! An event is released only once every stream has reported progress past
//! its time (a watermark), so no later-arriving event can precede it.

use std::collections::VecDeque;

use super::super::shard::Event;
use super::super::stats::StageCounts;
use crate::source::Micros;

#[derive(Default)]
pub(crate) struct EventOrder {
    streams: Vec<VecDeque<Event>>,
    watermarks: Vec<Micros>,
    /// Events received from the workers, and released in order.
    pub counts: StageCounts,
}

impl EventOrder {
    /// Prepares for `n` input streams (one per worker).
    pub fn set_streams(&mut self, n: usize) {
        self.streams = (0..n).map(|_| VecDeque::new()).collect();
        self.watermarks = vec![0; n];
    }

    /// Takes a batch of events from stream `s`, which promises that every
    /// later event of its has a time of at least `watermark`.
    pub fn push(&mut self, s: usize, events: &mut Vec<Event>, watermark: Micros) {
        let Some(q) = self.streams.get_mut(s) else {
            // Not a stream of this run: a driver bug, counted, never a panic.
            self.counts.received += events.len() as u64;
            self.counts.failed += events.len() as u64;
            events.clear();
            return;
        };
        self.counts.received += events.len() as u64;
        // A batch is in time order but not in key order within a time (an
        // end-of-input drain is thousands of events at one time): sort it,
        // then each insertion walks back only over earlier same-time events.
        events.sort_unstable_by_key(Event::key);
        for e in events.drain(..) {
            let key = e.key();
            let mut at = q.len();
            while at > 0 && q[at - 1].key() > key {
                at -= 1;
            }
            q.insert(at, e);
        }
        if let Some(w) = self.watermarks.get_mut(s) {
            *w = (*w).max(watermark);
        }
    }

    /// Every stream has ended: nothing can precede what is held.
    pub fn end_all(&mut self) {
        for w in self.watermarks.iter_mut() {
            *w = Micros::MAX;
        }
    }

    /// Time before which no stream can add an event.
    pub fn limit(&self) -> Micros {
        self.watermarks.iter().copied().min().unwrap_or(0)
    }

    /// The next event in global order that no stream can precede (its time
    /// is before `limit`), if any.
    pub fn pop_ready(&mut self, limit: Micros) -> Option<Event> {
        let mut best: Option<usize> = None;
        for (i, q) in self.streams.iter().enumerate() {
            if let Some(e) = q.front() {
                if e.time < limit && best.is_none_or(|b| self.streams[b].front().is_some_and(|f| e.key() < f.key())) {
                    best = Some(i);
                }
            }
        }
        let e = self.streams[best?].pop_front()?;
        self.counts.sent += 1;
        Some(e)
    }

    /// Engine time by which held events can be released without a packet
    /// (once time moves past them); `None` when nothing is held.
    pub fn next_due(&self) -> Option<Micros> {
        self.streams.iter().filter_map(|q| q.front()).map(|e| e.time.saturating_add(1)).min()
    }
}
