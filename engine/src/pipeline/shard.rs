//! A worker's share of the flow table: it owns its flows outright and turns
//! packets into ordered events (flow start, early row, end row) for the merge
//! stage. Rows carry every feature but the host context, which the merge
//! stage fills in, in one global order, so results do not depend on how
//! flows were spread over workers.

use std::time::Instant;

use std::sync::Arc;

use crate::decode::{to_ip, PacketInfo, PROTO_TCP, PROTO_UDP};
use crate::features::{self, HostFeatures, NUM_FEATURES};
use crate::flow::{EndReason, FlowConfig, FlowTable, IpProto};
use crate::flow_state::{facts, EngineFlow, FlowState};
use crate::inspect::{InspectConfig, Inspection};
use crate::reassembly::Budget;
use crate::sink::{FlowDetail, FlowRecord, Trigger};
use crate::source::Micros;

/// Order of events that share a timestamp: ends, then starts, then early rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EventClass {
    End = 0,
    Start = 1,
    Early = 2,
}

/// Where a row came from, so the merge stage can add host context.
#[derive(Clone, Debug)]
pub(crate) struct RowEvent {
    pub record: FlowRecord,
    pub row: [f32; NUM_FEATURES],
    pub initiator: [u8; 16],
    pub responder: [u8; 16],
    /// Set for end rows: did the flow's handshake fail.
    pub failed: bool,
    /// Wall time the triggering packet entered the engine (for latency).
    pub arrival: Option<Instant>,
}

#[derive(Clone, Debug)]
pub(crate) enum EventBody {
    /// A new flow, with its row as of its first packet: the merge stage
    /// classifies that row at once (`Trigger::Host`) when the flow's source
    /// or destination is hot, and drops it otherwise.
    Start {
        initiator: [u8; 16],
        responder: [u8; 16],
        responder_port: u16,
        first: RowEvent,
    },
    Row(RowEvent),
}

#[derive(Clone, Debug)]
pub(crate) struct Event {
    /// Engine clock (highest capture timestamp so far) when it happened.
    pub time: Micros,
    pub class: EventClass,
    pub flow_id: u64,
    pub body: EventBody,
}

impl Event {
    pub fn key(&self) -> (Micros, EventClass, u64) {
        (self.time, self.class, self.flow_id)
    }
}

/// Counters a shard keeps.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ShardStats {
    /// Packets handed to this shard's flow table (each joins a flow: a full
    /// table ends its oldest flow to make room).
    pub packets: u64,
    pub flows_created: u64,
    pub flows_ended: [u64; EndReason::ALL.len()],
    pub flows_peak: u64,
    /// TCP connections whose reassembly stopped at a memory cap.
    pub reassembly_abandoned: u64,
    /// Gaps skipped in reassembled streams, and their bytes.
    pub reassembly_gaps: u64,
    pub reassembly_gap_bytes: u64,
    /// TCP payload bytes delivered in order.
    pub reassembled_bytes: u64,
    /// Peak of out-of-order bytes held.
    pub reassembly_peak_buffered: u64,
    /// Flows whose application protocol was recognised by content, by protocol.
    pub app_flows: [u64; crate::app::AppProto::ALL.len()],
}

impl ShardStats {
    /// Adds this shard's counts to `s` (the `flows` stage and the flow
    /// counters are sums over shards).
    pub fn add_to(&self, s: &mut super::Stats) {
        let flows = s.stage_mut("flows");
        flows.received += self.packets;
        flows.sent += self.packets;
        s.flows_created += self.flows_created;
        s.flows_peak += self.flows_peak;
        s.reassembly.abandoned += self.reassembly_abandoned;
        s.reassembly.bytes += self.reassembled_bytes;
        s.reassembly.gaps += self.reassembly_gaps;
        s.reassembly.gap_bytes += self.reassembly_gap_bytes;
        s.reassembly.peak_buffered += self.reassembly_peak_buffered;
        for (p, n) in crate::app::AppProto::ALL.iter().zip(self.app_flows.iter()) {
            if *n > 0 {
                *s.app_flows.entry(p.name()).or_default() += n;
            }
        }
        for (a, b) in s.flows_ended.iter_mut().zip(self.flows_ended.iter()) {
            *a += b;
        }
    }
}

/// The payload stage's settings and memory of one shard.
pub(crate) struct Payloads {
    cfg: InspectConfig,
    budget: Budget,
}

pub(crate) struct Shard {
    /// Shared by first-packet rows of flows without payload (no allocation).
    empty_detail: Arc<FlowDetail>,
    flows: FlowTable<FlowState>,
    /// The flow table's settings (deadlines and size of done hints).
    flow_cfg: FlowConfig,
    early_packets: usize,
    payloads: Payloads,
    pub events: Vec<Event>,
    pub stats: ShardStats,
    /// Stamp rows that no packet's arrival stamped with the wall time now,
    /// for the latency histogram. Only a driver that reads the wall clock
    /// (`Engine::run`) turns it on: the core itself reads no clock.
    pub stamp_rows: bool,
    /// Say when a flow's payload bytes stop being needed (a worker of
    /// `run()`, whose capture thread can then skip copying them).
    pub publish_done_hints: bool,
    /// Set by `packet`: the last packet's flow no longer needs its payload
    /// bytes; its deadline and the table's free slots (see `payload_skip`).
    pub done_hint: Option<(Micros, u64)>,
}

fn detail(flow: &EngineFlow, with_streams: bool) -> FlowDetail {
    let (f, b) = (&flow.state.stats.fwd, &flow.state.stats.bwd);
    let mut d = FlowDetail {
        packets: [u64::from(f.packets), u64::from(b.packets)],
        bytes: flow.wire_bytes_dir,
        tunnels: flow.tunnels.as_deref().copied(),
        ..FlowDetail::default()
    };
    if let Some(i) = flow.state.inspect.as_deref() {
        d.payload = i.summary(flow.key.proto, flow.handshake_seen());
        d.app = Some(i.meta().clone());
        if with_streams {
            d.streams = i.kept_streams().map(|k| Box::new(k.clone()));
        }
    } else if flow.key.proto == PROTO_TCP {
        d.payload.reassembly = Some(crate::inspect::ReassemblyState::of(false, flow.handshake_seen()));
    }
    d
}

fn record(flow: &EngineFlow, trigger: Trigger, end_reason: Option<EndReason>, detail: Arc<FlowDetail>) -> FlowRecord {
    let ((init, _), (resp, _)) = flow.endpoints();
    let (src_port, dst_port) = flow.reported_ports();
    FlowRecord {
        ts: flow.state.stats.last_ts,
        flow_id: flow.id,
        flow_start: flow.state.stats.first_ts,
        proto: IpProto::from_number(flow.key.proto),
        src_ip: to_ip(&init, flow.key.is_ipv6),
        src_port,
        dst_ip: to_ip(&resp, flow.key.is_ipv6),
        dst_port,
        packets: flow.packets(),
        bytes: flow.wire_bytes,
        trigger,
        end_reason,
        key: flow.key,
        detail,
    }
}

/// `arrival` is when the triggering packet entered the engine; without one
/// (single-threaded use) `stamp` takes the time now, when the row is made,
/// except for end-of-input rows, which no packet triggered.
fn row_event(
    flow: &EngineFlow,
    trigger: Trigger,
    reason: Option<EndReason>,
    arrival: Option<Instant>,
    stamp: bool,
) -> RowEvent {
    let ((initiator, _), (responder, _)) = flow.endpoints();
    let mut row = [0f32; NUM_FEATURES];
    features::write_row(&flow.state.stats, &facts(flow), &HostFeatures::default(), &mut row);
    let detail = Arc::new(detail(flow, trigger == Trigger::End));
    RowEvent {
        record: record(flow, trigger, reason, detail),
        row,
        initiator,
        responder,
        failed: flow.failed_handshake(),
        arrival: arrival.or_else(|| stamp.then(Instant::now)),
    }
}

impl Shard {
    pub fn new(cfg: FlowConfig, early_packets: usize, inspect: InspectConfig) -> Self {
        let payloads = Payloads { cfg: inspect, budget: Budget::new(inspect.reassembly) };
        Self {
            empty_detail: Arc::new(FlowDetail::default()),
            flows: FlowTable::new(cfg),
            flow_cfg: cfg,
            early_packets,
            payloads,
            events: Vec::new(),
            stats: ShardStats::default(),
            stamp_rows: false,
            publish_done_hints: false,
            done_hint: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn ended(
        events: &mut Vec<Event>,
        stats: &mut ShardStats,
        payloads: &mut Payloads,
        mut flow: EngineFlow,
        reason: EndReason,
        time: Micros,
        arrival: Option<Instant>,
        stamp_rows: bool,
    ) {
        let handshake_seen = flow.handshake_seen();
        if let Some(i) = flow.state.inspect.as_deref_mut() {
            i.finish(&mut payloads.budget, payloads.cfg.keep_stream_bytes);
            let s = i.summary(flow.key.proto, handshake_seen);
            stats.reassembly_gaps += u64::from(s.gaps[0] + s.gaps[1]);
            stats.reassembly_gap_bytes += s.gap_bytes[0] + s.gap_bytes[1];
            if flow.key.proto == PROTO_TCP {
                stats.reassembled_bytes += s.payload_bytes[0] + s.payload_bytes[1];
            }
            let proto = i.meta().proto;
            if i.meta().method == Some(crate::app::DetectMethod::Content) {
                stats.app_flows[proto.index()] += 1;
            }
        }
        let stamp = stamp_rows && reason != EndReason::EndOfInput;
        if let Some(i) = EndReason::ALL.iter().position(|r| *r == reason) {
            stats.flows_ended[i] += 1;
        }
        let body = EventBody::Row(row_event(&flow, Trigger::End, Some(reason), arrival, stamp));
        events.push(Event { time, class: EventClass::End, flow_id: flow.id, body });
    }

    /// Adds one decoded packet; `clock` is the engine clock at this packet,
    /// `payload` its captured transport payload.
    pub fn packet(&mut self, info: &PacketInfo, payload: &[u8], clock: Micros, arrival: Option<Instant>) {
        let (events, stats, payloads, stamp) = (&mut self.events, &mut self.stats, &mut self.payloads, self.stamp_rows);
        stats.packets += 1;
        let flows_before = self.flows.len();
        let update =
            self.flows.update(info, &mut |f, r| Self::ended(events, stats, payloads, f, r, clock, arrival, stamp));
        let flow = update.flow;
        if payloads.cfg.enabled && matches!(info.proto, PROTO_TCP | PROTO_UDP) {
            let needed_before = flow.state.inspect.as_deref().is_none_or(Inspection::needs_bytes);
            if flow.state.inspect.is_none() && !payload.is_empty() {
                let ((_, iport), (_, rport)) = flow.endpoints();
                let mut i = Inspection::new(info.proto, iport, rport, payloads.cfg.keep_stream_bytes);
                if info.proto == PROTO_TCP {
                    let (syn, syn_ack) = flow.handshake_seqs();
                    i.seed_handshake(syn, syn_ack);
                }
                flow.state.inspect = Some(Box::new(i));
            }
            if let Some(i) = flow.state.inspect.as_deref_mut() {
                let keep = payloads.cfg.keep_stream_bytes;
                if i.packet(update.forward, info, payload, &mut payloads.budget, keep) {
                    stats.reassembly_abandoned += 1;
                }
                stats.reassembly_peak_buffered = stats.reassembly_peak_buffered.max(payloads.budget.peak as u64);
            }
            // Tell the capture thread (see `payload_skip`): when the bytes
            // stop being needed, and now and then after, as the deadline moves.
            if self.publish_done_hints
                && !flow.is_closing()
                && flow.state.inspect.as_deref().is_some_and(|i| !i.needs_bytes())
                && (needed_before || flow.packets() % 16 == 0)
            {
                // Free slots after this packet, counting it as a new flow.
                let room = self.flow_cfg.max_flows.saturating_sub(flows_before + 1) as u64;
                self.done_hint = Some((flow.deadline(&self.flow_cfg), room));
            }
        }
        if update.created {
            stats.flows_created += 1;
            let ((initiator, _), (responder, responder_port)) = flow.endpoints();
            let mut row = [0f32; NUM_FEATURES];
            features::write_row(&flow.state.stats, &facts(flow), &HostFeatures::default(), &mut row);
            let detail =
                if flow.state.inspect.is_some() { Arc::new(detail(flow, false)) } else { self.empty_detail.clone() };
            let first = RowEvent {
                record: record(flow, Trigger::Host, None, detail),
                row,
                initiator,
                responder,
                failed: false,
                arrival,
            };
            events.push(Event {
                time: clock,
                class: EventClass::Start,
                flow_id: flow.id,
                body: EventBody::Start { initiator, responder, responder_port, first },
            });
        }
        if self.early_packets > 0 && !flow.early_sent && flow.packets() >= self.early_packets as u64 {
            flow.early_sent = true;
            let body = EventBody::Row(row_event(flow, Trigger::Early, None, arrival, self.stamp_rows));
            events.push(Event { time: clock, class: EventClass::Early, flow_id: flow.id, body });
        }
        stats.flows_peak = stats.flows_peak.max(self.flows.len() as u64);
    }

    /// Ends the flows whose timeouts passed by `now` (a sweep boundary).
    pub fn sweep(&mut self, now: Micros, arrival: Option<Instant>) {
        let (events, stats, payloads, stamp) = (&mut self.events, &mut self.stats, &mut self.payloads, self.stamp_rows);
        self.flows.expire(now, &mut |f, r| Self::ended(events, stats, payloads, f, r, now, arrival, stamp));
    }

    /// Ends every flow (end of input) at engine clock `clock`.
    pub fn drain(&mut self, clock: Micros) {
        let (events, stats, payloads) = (&mut self.events, &mut self.stats, &mut self.payloads);
        self.flows.drain(&mut |f, r| Self::ended(events, stats, payloads, f, r, clock, None, false));
    }
}
