//! What the engine tells its caller, as values: the pull side of the
//! engine, beside the push side ([`crate::sink::VerdictSink`]).
//!
//! An engine built without sinks keeps what it produces in an in-order
//! queue that [`crate::Engine::poll_event`] drains, as quinn-proto's
//! `poll_*` calls do. An engine built with sinks hands the same events to
//! them instead, and its queue stays empty.
//!
//! The queue's contract: it holds what earlier `process`, `tick` and
//! `finish` calls produced, oldest first. It has no cap of its own; it
//! stays bounded when the caller drains it after each call, because one
//! call produces at most one batch of verdicts (`batch_size`), the flow
//! records and incident records that go with them, and, at `finish` or a
//! sweep, one event per flow that ends then.

use crate::incident::Incident;
use crate::sink::{FlowRecord, Verdict};

/// One thing the engine produced, in the order it produced them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A flow classified by the model (early, at its end, or because its host was hot).
    Verdict(Verdict),
    /// An ended flow's record (with [`crate::EngineBuilder::flow_records`]).
    Flow(FlowRecord),
    /// An incident opened, updated or closed.
    Incident(Incident),
}
