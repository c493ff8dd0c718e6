//! The engine's per-flow state, kept by the flow table
//! ([`crate::flow::Trackable`]): the statistics that feed the feature row,
//! and payload inspection (reassembly and application parsing) from the
//! first payload byte. The flow table itself knows neither.

use crate::decode::PacketInfo;
use crate::features::{AppFeatures, FlowFacts, FlowStats};
use crate::flow::{Flow, Trackable};
use crate::inspect::Inspection;
use crate::source::Micros;

/// Statistics and payload state of one flow.
#[derive(Debug)]
pub struct FlowState {
    /// Per-direction packet, size and timing statistics that feed the feature row.
    pub stats: FlowStats,
    /// Payload state: reassembly and application parsing, from the first
    /// payload byte (boxed: most flows of a scan or flood have none).
    pub inspect: Option<Box<Inspection>>,
}

impl Trackable for FlowState {
    fn new(first: &PacketInfo) -> Self {
        FlowState { stats: FlowStats::new(first.ts), inspect: None }
    }
    #[inline]
    fn update(&mut self, p: &PacketInfo, forward: bool) {
        self.stats.update(p, forward);
    }
    fn first_ts(&self) -> Micros {
        self.stats.first_ts
    }
    fn last_ts(&self) -> Micros {
        self.stats.last_ts
    }
    fn packets(&self) -> u64 {
        self.stats.packets()
    }
}

/// A flow as the engine tracks it.
pub type EngineFlow = Flow<FlowState>;

/// What the feature row needs besides the statistics: protocol, responder
/// port, handshake outcome and application features.
pub fn facts(flow: &EngineFlow) -> FlowFacts {
    let ((_, _), (_, responder_port)) = flow.endpoints();
    FlowFacts {
        proto: flow.key.proto,
        responder_port,
        handshake_complete: flow.handshake_complete(),
        responder_reset: flow.responder_reset(),
        app: flow.state.inspect.as_deref().map(|i| AppFeatures::of(i.meta())).unwrap_or_default(),
    }
}
