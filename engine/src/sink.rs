//! Sinks: where verdicts (and, for training, feature rows) leave the engine.
//!
//! Contract of both traits, in the manner of ripgrep's `Sink`: the engine
//! calls `verdict`/`incident`/`row` once per item, in order, from one thread; a sink
//! returns [`SinkControl::Stop`] to ask the engine to stop reading input
//! (open flows are still flushed, so the sink may get more items); an `Err`
//! stops the engine at once and is returned from `run`. `finish` is called
//! exactly once at the end, also after a stop, to flush buffers.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use serde::ser::SerializeMap;

use crate::app::AppMeta;
use crate::decode::Tunnels;
use crate::error::SinkError;
use crate::explain::Reason;
use crate::flow::{EndReason, FlowKey, IpProto};
use crate::incident::Incident;
use crate::inspect::PayloadSummary;
use crate::policy::Suppressed;
use crate::source::Micros;

/// What a sink wants after an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SinkControl {
    /// Keep going: the engine sends the next item.
    Continue,
    /// Stop reading input; open flows are still flushed, so more items may come.
    Stop,
}

/// When a verdict or feature row was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Trigger {
    /// After the first K packets of the flow.
    Early,
    /// When the flow ended.
    End,
    /// At the flow's first packet, because its source or destination crossed
    /// a host-context bound (many flows, ports or hosts in a short time):
    /// scans and floods are properties of hosts, seen before any flow ends.
    Host,
}

impl Trigger {
    /// The name in JSON and syslog (`early`, `end`, `host`).
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Early => "early",
            Trigger::End => "end",
            Trigger::Host => "host",
        }
    }
}

/// What a flow carried beyond its counters.
#[derive(Clone, Debug, Default)]
pub struct FlowDetail {
    /// Packets and frame bytes from the initiator, then from the responder.
    pub packets: [u64; 2],
    /// Frame bytes on the wire from the initiator, then from the responder.
    pub bytes: [u64; 2],
    /// Reassembled payload, gaps and reassembly state per direction.
    pub payload: PayloadSummary,
    /// Tunnel layers the flow's packets came through.
    pub tunnels: Option<Tunnels>,
    /// Application protocol and metadata (end rows; early rows carry what was known then).
    pub app: Option<AppMeta>,
    /// Reassembled bytes, when `InspectConfig::keep_stream_bytes` asks for them.
    pub streams: Option<Box<[Vec<u8>; 2]>>,
}

impl FlowDetail {
    /// The tunnel layers as JSON: kinds outermost first, id, outer endpoints.
    pub fn tunnels_json(&self) -> Option<serde_json::Value> {
        let t = self.tunnels.as_ref()?;
        let mut v = serde_json::json!({
            "layers": t.layers().iter().map(|k| k.name()).collect::<Vec<_>>(),
        });
        if let Some(id) = t.id {
            v["id"] = id.into();
        }
        if let Some(o) = t.outer {
            v["outer_src_ip"] = crate::decode::to_ip(&o.src, o.is_ipv6).to_string().into();
            v["outer_dst_ip"] = crate::decode::to_ip(&o.dst, o.is_ipv6).to_string().into();
        }
        Some(v)
    }
}

/// The facts of a flow at the moment of a verdict.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    /// Capture time of the packet that triggered the row.
    pub ts: Micros,
    /// Flow id: stable hash of the flow's key and start time.
    pub flow_id: u64,
    /// Capture time of the flow's first packet.
    pub flow_start: Micros,
    /// IP protocol the flow carries.
    pub proto: IpProto,
    /// Source is the flow's initiator.
    pub src_ip: IpAddr,
    /// Initiator's port (for ICMP, the message type).
    pub src_port: u16,
    /// Responder's address.
    pub dst_ip: IpAddr,
    /// Responder's port (for ICMP, the message code).
    pub dst_port: u16,
    /// Packets seen so far, both directions.
    pub packets: u64,
    /// Frame bytes on the wire, both directions.
    pub bytes: u64,
    /// What made the row: the early packet count, a hot host, or the flow's end.
    pub trigger: Trigger,
    /// Why the flow ended (`None` for early rows).
    pub end_reason: Option<EndReason>,
    /// The flow's direction-independent key (what the flow table keys it by).
    pub key: FlowKey,
    /// Per-direction counters, payload, tunnel and application metadata.
    pub detail: Arc<FlowDetail>,
}

/// A model's verdict on a flow.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The flow the verdict is about, as it was at that moment.
    pub flow: FlowRecord,
    /// The label the model chose (after alert thresholds), e.g. `benign` or `scan`.
    pub label: Arc<str>,
    /// Probability of that label, 0 to 1.
    pub score: f32,
    /// Probability of each label, in the model's label order.
    pub scores: Scores,
    /// `name@version` of the model.
    pub model: Arc<str>,
    /// Engine clock (capture time) when the verdict was produced: for an
    /// end verdict at an idle timeout, when the timeout fired, not the
    /// flow's last packet. Time to detect is measured from it.
    pub detected_at: Micros,
    /// The incident this alert belongs to ([`crate::incident`]).
    pub incident_id: Option<u64>,
    /// Set when the operator's policy suppressed this alert
    /// ([`crate::policy`]): delivered and counted, but not an alert.
    pub suppressed: Option<Suppressed>,
    /// Why it is an alert ([`crate::explain`]); `None` for benign and
    /// suppressed verdicts, or a model without benign medians.
    pub reasons: Option<Arc<[Reason]>>,
    /// The reasons are its incident's latest, not computed for this verdict
    /// (the incident's first alerts of each minute are explained).
    pub reasons_inherited: bool,
}

/// RFC 3339 UTC with microseconds, e.g. `2026-01-01T00:00:00.000000Z`.
pub fn rfc3339_micros(ts: Micros) -> String {
    Rfc3339Micros(ts).to_string()
}

/// A time written as RFC 3339 UTC with microseconds
/// (`2026-01-01T00:00:00.000000Z`) without allocating: verdicts carry three
/// of them, and formatting must not cost an allocation each. Times past
/// the end of year 9999 (which no capture gives) are written as its last
/// microsecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339Micros(pub Micros);

impl Rfc3339Micros {
    /// The last microsecond of year 9999.
    const MAX: Micros = 253_402_300_799_999_999;

    /// Writes the 27 bytes into `buf` and returns them as text.
    pub fn write(self, buf: &mut [u8; 27]) -> &str {
        let ts = self.0.min(Self::MAX);
        let (secs, micros) = (ts / 1_000_000, ts % 1_000_000);
        let (days, sod) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        let mut put = |at: usize, width: usize, mut v: u64| {
            for i in (at..at + width).rev() {
                buf[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y);
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, sod / 3600);
        put(14, 2, sod / 60 % 60);
        put(17, 2, sod % 60);
        put(20, 6, micros);
        for (at, c) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (26, b'Z')] {
            buf[at] = c;
        }
        // Only ASCII digits and separators were written.
        std::str::from_utf8(buf).unwrap_or("9999-12-31T23:59:59.999999Z")
    }
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

impl std::fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.write(&mut [0; 27]))
    }
}

impl serde::Serialize for Rfc3339Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.write(&mut [0; 27]))
    }
}

/// A model's probability for each label, in its label order. The labels
/// are shared with the model (one reference count per verdict) and up to 8
/// probabilities are held inline, so a verdict's scores cost no allocation.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    labels: Arc<[Arc<str>]>,
    values: smallvec::SmallVec<[f32; 8]>,
}

impl Scores {
    /// `values[i]` is the probability of `labels[i]`; extra values (or labels) are ignored.
    pub fn new(labels: Arc<[Arc<str>]>, values: &[f32]) -> Self {
        let n = labels.len().min(values.len());
        Self { labels, values: smallvec::SmallVec::from_slice(&values[..n]) }
    }

    /// Each label with its probability, in the model's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f32)> + '_ {
        self.labels.iter().map(|l| &**l).zip(self.values.iter().copied())
    }

    /// The probability of `label`, if the model has it.
    pub fn get(&self, label: &str) -> Option<f32> {
        self.iter().find(|(l, _)| *l == label).map(|(_, p)| p)
    }

    /// Labels scored.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No label scored.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

impl serde::Serialize for Scores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

impl Verdict {
    /// Appends this verdict's JSON object (no newline) to `out`: the bytes
    /// `serde_json::to_writer` writes, without serde's per-field work (see
    /// `verdict_json.rs`). Output threads call this for every verdict.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        crate::verdict_json::write(self, out)
    }
}

/// JSON field names are a public interface: other tools parse them. The
/// layout is defined once, by [`Verdict::write_json`]; a serde_json
/// serializer is handed those bytes (as a raw value), so both agree.
impl serde::Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut out = Vec::with_capacity(1024);
        self.write_json(&mut out).map_err(S::Error::custom)?;
        let text = String::from_utf8(out).map_err(S::Error::custom)?;
        serde_json::value::RawValue::from_string(text).map_err(S::Error::custom)?.serialize(s)
    }
}

/// Receives verdicts and incidents. See the module documentation for the contract.
pub trait VerdictSink: Send {
    /// Receives one verdict; `Stop` asks the engine to stop reading input.
    fn verdict(&mut self, verdict: &Verdict) -> Result<SinkControl, SinkError>;
    /// An incident opened, was updated or closed ([`crate::incident`]).
    /// Incidents group the alert verdicts this sink also received; a sink
    /// that only wants verdicts ignores them (the default).
    fn incident(&mut self, _incident: &Incident) -> Result<SinkControl, SinkError> {
        Ok(SinkControl::Continue)
    }
    /// A flow ended: its record, when the engine was built with
    /// [`crate::EngineBuilder::flow_records`]. Comes before that flow's end
    /// verdict. Ignored by default.
    fn flow(&mut self, _record: &FlowRecord) -> Result<SinkControl, SinkError> {
        Ok(SinkControl::Continue)
    }
    /// The engine has handed over everything it had for now (the records
    /// of one classified batch, or of one step of its input). A sink that
    /// passes records to another thread hands them over here, together:
    /// one hand-off per batch, not per record. Called often, also when
    /// nothing came since the last call. Ignored by default.
    fn end_of_batch(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Called exactly once at the end, also after a stop, to flush buffers.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A boxed sink is a sink: builders and wrappers can hold any of them.
impl<S: VerdictSink + ?Sized> VerdictSink for Box<S> {
    fn verdict(&mut self, verdict: &Verdict) -> Result<SinkControl, SinkError> {
        (**self).verdict(verdict)
    }
    fn incident(&mut self, incident: &Incident) -> Result<SinkControl, SinkError> {
        (**self).incident(incident)
    }
    fn flow(&mut self, record: &FlowRecord) -> Result<SinkControl, SinkError> {
        (**self).flow(record)
    }
    fn end_of_batch(&mut self) -> Result<(), SinkError> {
        (**self).end_of_batch()
    }
    fn finish(&mut self) -> Result<(), SinkError> {
        (**self).finish()
    }
}

/// A flow record serializes as [`flow_json`] writes it: the one definition
/// of the `flow` event that `tidewatchd flows` and live flow records use.
impl serde::Serialize for FlowRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        flow_json(self).serialize(s)
    }
}

/// The JSON record of one ended flow (`event_type` = `flow`), as
/// `tidewatchd flows` and live flow records write it: per-direction
/// counters, reassembly, tunnel and application metadata. Field names are
/// a public interface.
pub fn flow_json(r: &FlowRecord) -> serde_json::Value {
    let d = &r.detail;
    let p = &d.payload;
    let mut v = serde_json::json!({
        "event_type": "flow",
        "flow_id": r.flow_id,
        "first_ts": rfc3339_micros(r.flow_start),
        "last_ts": rfc3339_micros(r.ts),
        "proto": r.proto,
        "src_ip": r.src_ip,
        "src_port": r.src_port,
        "dst_ip": r.dst_ip,
        "dst_port": r.dst_port,
        "end_reason": r.end_reason,
        "packets": r.packets,
        "bytes": r.bytes,
        "fwd_packets": d.packets[0],
        "bwd_packets": d.packets[1],
        "fwd_bytes": d.bytes[0],
        "bwd_bytes": d.bytes[1],
        "fwd_payload_bytes": p.payload_bytes[0],
        "bwd_payload_bytes": p.payload_bytes[1],
        "fwd_gaps": p.gaps[0],
        "bwd_gaps": p.gaps[1],
        "fwd_gap_bytes": p.gap_bytes[0],
        "bwd_gap_bytes": p.gap_bytes[1],
    });
    if let Some(state) = p.reassembly {
        v["reassembly"] = state.name().into();
    }
    if let Some(t) = d.tunnels_json() {
        v["tunnel"] = t;
    }
    let app = d.app.clone().unwrap_or_default();
    v["app_proto"] = app.proto.name().into();
    if let Ok(meta) = serde_json::to_value(&app) {
        v["app"] = meta;
    }
    v
}

/// Receives feature rows (for training). Same contract as [`VerdictSink`].
pub trait FeatureSink: Send {
    /// Receives one feature row: the flow and its values in schema order (`FEATURE_NAMES`).
    fn row(&mut self, flow: &FlowRecord, features: &[f32]) -> Result<SinkControl, SinkError>;
    /// Called exactly once at the end, also after a stop, to flush buffers.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Writes one JSON object per verdict or incident, one per line; each
/// says what it is in `event_type`.
pub struct JsonLinesSink<W: Write + Send> {
    out: std::io::BufWriter<W>,
    /// One verdict's line, reused.
    line: Vec<u8>,
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// A sink writing to `out`, buffered; `finish` flushes it.
    pub fn new(out: W) -> Self {
        Self { out: std::io::BufWriter::new(out), line: Vec::with_capacity(1024) }
    }
}

impl<W: Write + Send> VerdictSink for JsonLinesSink<W> {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        self.line.clear();
        v.write_json(&mut self.line).map_err(|e| SinkError::Other(e.to_string()))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(SinkControl::Continue)
    }

    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        serde_json::to_writer(&mut self.out, i).map_err(|e| SinkError::Other(e.to_string()))?;
        self.out.write_all(b"\n")?;
        Ok(SinkControl::Continue)
    }

    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        serde_json::to_writer(&mut self.out, r).map_err(|e| SinkError::Other(e.to_string()))?;
        self.out.write_all(b"\n")?;
        Ok(SinkControl::Continue)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush()?;
        Ok(())
    }
}

/// Keeps every verdict, incident and flow record in memory; for tests and small embeddings.
#[derive(Clone, Default)]
pub struct CollectSink {
    /// Verdicts received, in order; shared by clones of the sink.
    pub verdicts: Arc<std::sync::Mutex<Vec<Verdict>>>,
    /// Incident records received, in order; shared by clones of the sink.
    pub incidents: Arc<std::sync::Mutex<Vec<Incident>>>,
    /// Flow records received, in order; shared by clones of the sink.
    pub flows: Arc<std::sync::Mutex<Vec<FlowRecord>>>,
}

impl CollectSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The verdicts collected so far, removed from the sink.
    pub fn take(&self) -> Vec<Verdict> {
        match self.verdicts.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// The incident records collected so far, removed from the sink.
    pub fn take_incidents(&self) -> Vec<Incident> {
        match self.incidents.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// The flow records collected so far (with [`crate::EngineBuilder::flow_records`]), removed from the sink.
    pub fn take_flows(&self) -> Vec<FlowRecord> {
        match self.flows.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl VerdictSink for CollectSink {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        match self.verdicts.lock() {
            Ok(mut g) => g.push(v.clone()),
            Err(p) => p.into_inner().push(v.clone()),
        }
        Ok(SinkControl::Continue)
    }

    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        match self.incidents.lock() {
            Ok(mut g) => g.push(i.clone()),
            Err(p) => p.into_inner().push(i.clone()),
        }
        Ok(SinkControl::Continue)
    }

    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        match self.flows.lock() {
            Ok(mut g) => g.push(r.clone()),
            Err(p) => p.into_inner().push(r.clone()),
        }
        Ok(SinkControl::Continue)
    }
}

/// Calls a closure for each verdict.
pub struct FnSink<F: FnMut(&Verdict) + Send>(pub F);

impl<F: FnMut(&Verdict) + Send> VerdictSink for FnSink<F> {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        (self.0)(v);
        Ok(SinkControl::Continue)
    }
}

/// A verdict on a one-packet TCP flow that started 1 ms before `ts`, for tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::too_many_arguments)]
pub(crate) fn test_verdict(
    label: &str,
    score: f32,
    src: &str,
    dst: &str,
    port: u16,
    flow_id: u64,
    ts: Micros,
    trigger: Trigger,
) -> Verdict {
    Verdict {
        flow: FlowRecord {
            ts,
            flow_id,
            flow_start: ts.saturating_sub(1000),
            proto: IpProto::Tcp,
            src_ip: src.parse().unwrap(),
            src_port: 40000,
            dst_ip: dst.parse().unwrap(),
            dst_port: port,
            packets: 1,
            bytes: 60,
            trigger,
            end_reason: None,
            key: FlowKey::between((src.parse().unwrap(), 40000), (dst.parse().unwrap(), port), 6),
            detail: Arc::new(FlowDetail::default()),
        },
        label: Arc::from(label),
        score,
        scores: Scores::default(),
        model: Arc::from("m@1"),
        detected_at: ts,
        incident_id: None,
        suppressed: None,
        reasons: None,
        reasons_inherited: false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// chrono's RFC 3339 text, the reference the allocation-free writer must match.
    fn chrono_text(ts: Micros) -> String {
        let dt = chrono::DateTime::from_timestamp((ts / 1_000_000) as i64, ((ts % 1_000_000) * 1000) as u32).unwrap();
        dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    #[test]
    fn rfc3339_without_allocation_matches_chrono() {
        let mut ts: Micros = 0;
        let mut checked = 0;
        // Every day boundary of leap and century years, and odd microseconds in between.
        for fixed in [0, 951_782_400_000_000, 951_868_799_999_999, 4_107_542_399_999_999, 1_767_225_600_123_456] {
            assert_eq!(Rfc3339Micros(fixed).to_string(), chrono_text(fixed));
        }
        while ts < Rfc3339Micros::MAX {
            assert_eq!(Rfc3339Micros(ts).to_string(), chrono_text(ts), "{ts}");
            ts = ts.saturating_mul(3).saturating_add(86_399_999_997) % (Rfc3339Micros::MAX + 7) + checked;
            checked += 1;
            if checked > 20_000 {
                break;
            }
        }
        assert_eq!(Rfc3339Micros(Rfc3339Micros::MAX).to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(Rfc3339Micros(u64::MAX).to_string(), "9999-12-31T23:59:59.999999Z");
        assert_eq!(serde_json::to_string(&Rfc3339Micros(0)).unwrap(), "\"1970-01-01T00:00:00.000000Z\"");
    }

    #[test]
    fn scores_pair_labels_with_values_in_order() {
        let labels: Arc<[Arc<str>]> = Arc::from([Arc::from("benign"), Arc::from("scan")]);
        let s = Scores::new(labels, &[0.25, 0.75, 9.0]);
        assert_eq!(s.iter().collect::<Vec<_>>(), [("benign", 0.25), ("scan", 0.75)]);
        assert_eq!((s.get("scan"), s.get("dos"), s.len()), (Some(0.75), None, 2));
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"benign":0.25,"scan":0.75}"#);
    }
}
