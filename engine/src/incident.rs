//! Incidents: alert verdicts grouped into attack episodes, one per class and
//! actor, so that a 1000-port scan is one alert with a few updates rather
//! than a thousand (as Zeek's notice suppression and ntopng's host alerts
//! count attacks).
//!
//! The actor depends on the class ([`ActorKind::for_label`]): a scanner
//! (`scan`), a flood's target (`dos`; its source is named when there is only
//! one), a brute-forcer and its target service (`bruteforce`), a beaconing
//! pair (`c2`), a tunnelling client and its parent domain (`exfil`); any
//! other alert label is keyed by its source.
//!
//! Life of an incident, all in engine (capture) time:
//! - **open**: emitted with the first alert verdict of a new key, at once;
//! - **update**: every `update_interval` while new verdicts keep arriving;
//! - **closed**: once no flow of it has been seen for `quiet`.
//!
//! A `scan` incident opens only once its source has alerts on
//! `scan_min_probes` distinct (target, port) probes (default 2): one probe
//! is not a scan (the first SYNs of a spoofed flood, each from a new
//! address, look like lone probes before the target's counters rise).
//! Until then its alerts wait in a pending incident that emits nothing
//! (bounded as the open ones; counted as `unconfirmed_verdicts`, and
//! forgotten after `quiet`); at the confirming alert it opens with them
//! all, stamped with that alert's time. The earlier alerts were delivered
//! already, without an `incident_id`.
//!
//! End verdicts come late for flows that end at an idle timeout (a scan's
//! unanswered SYNs end five minutes later). A verdict for the key of an
//! incident closed less than `late_window` ago whose flow was last seen
//! before that incident went quiet belongs to it: it is counted
//! (`late_verdicts`), not reopened as a new incident.
//!
//! Sans-IO and clock-free, as the rest of the merge stage: the tracker sees
//! only verdicts, in the engine's order, and the times they carry, so what
//! it emits, and when, is the same whatever the batching or worker count.
//!
//! Memory is bounded: at most `max_incidents` open incidents; alerts of new
//! actors beyond that fold into one incident per label with actor `many`
//! (counted as `overflow_verdicts`). Each incident keeps distinct sources,
//! targets and flows exactly up to 256 each and estimates beyond
//! (HyperLogLog, 4 KiB each), and destination ports exactly (8 KiB bitmap):
//! about 30 KiB at most per incident.

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::app::AppProto;
use crate::explain::{Reason, EXPLAINED_PER_MINUTE};
use crate::sink::{Rfc3339Micros, Verdict};
use crate::source::Micros;

/// How many targets, ports and sources an incident lists by value.
pub const FIRST_FEW: usize = 5;
const EXACT_DISTINCT: usize = 256;

/// Settings of incident grouping.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IncidentConfig {
    /// Cadence of `update` records while an incident lasts.
    pub update_interval: Micros,
    /// An incident closes once none of its flows was seen for this long.
    pub quiet: Micros,
    /// How long a closed incident's key is remembered to absorb late end verdicts.
    pub late_window: Micros,
    /// Open incidents kept; beyond, new actors fold into a per-label `many` incident.
    pub max_incidents: usize,
    /// Labels that never make an incident (verdicts that are not alerts).
    pub ignore_labels: Vec<String>,
    /// Distinct (target, port) probes a `scan` source needs before its
    /// incident opens (1: at its first alert).
    pub scan_min_probes: u64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            update_interval: 60_000_000,
            quiet: 60_000_000,
            late_window: 600_000_000,
            max_incidents: 1024,
            ignore_labels: vec!["benign".to_string()],
            scan_min_probes: 2,
        }
    }
}

impl IncidentConfig {
    /// Default settings with another update cadence and quiet period.
    pub fn with_timing(update_interval: Micros, quiet: Micros) -> Self {
        Self { update_interval, quiet, ..Self::default() }
    }
}

/// Whose incident it is: what the verdicts of one episode have in common.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ActorKind {
    /// The flows' initiator (a scanner, or any other alert).
    Source,
    /// The flows' responder (a flood's target).
    Target,
    /// Initiator, responder and responder port (a brute-forcer and the service).
    Service,
    /// Initiator and responder (a beaconing pair).
    Pair,
    /// Initiator and the parent domain of its DNS queries (a tunnelling client).
    Domain,
    /// Too many incidents were open: every new actor of a label together.
    Many,
}

impl ActorKind {
    /// The actor of a class: `scan` by source, `dos` by target, `bruteforce`
    /// by service, `c2` by pair, `exfil` by domain; anything else by source.
    pub fn for_label(label: &str) -> Self {
        match label {
            "dos" => ActorKind::Target,
            "bruteforce" => ActorKind::Service,
            "c2" => ActorKind::Pair,
            "exfil" => ActorKind::Domain,
            _ => ActorKind::Source,
        }
    }

    /// Stable name used in JSON (`source`, `target`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Source => "source",
            ActorKind::Target => "target",
            ActorKind::Service => "service",
            ActorKind::Pair => "pair",
            ActorKind::Domain => "domain",
            ActorKind::Many => "many",
        }
    }
}

/// Which record of an incident this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncidentState {
    /// The first record, emitted with the incident's first alert verdict.
    Open,
    /// A progress record, every `update_interval` while new verdicts keep arriving.
    Update,
    /// The last record, once none of its flows was seen for `quiet`.
    Closed,
}

impl IncidentState {
    /// Stable name used in JSON (`open`, `update`, `closed`).
    pub fn name(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Update => "update",
            IncidentState::Closed => "closed",
        }
    }
}

/// One record of an incident: its opening, an update or its closing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Incident {
    /// Unique within a run, in order of opening (from 1).
    pub incident_id: u64,
    /// Whether this record opens, updates or closes the incident.
    pub state: IncidentState,
    /// Engine time the record is for: the opening verdict's `detected_at`,
    /// or when the update or closing fell due.
    pub ts: Micros,
    /// Class of the alert verdicts grouped here (e.g. `scan`).
    pub label: Arc<str>,
    /// What the incident's verdicts have in common, chosen by its label.
    pub actor: ActorKind,
    /// The source, when there is exactly one.
    pub src_ip: Option<IpAddr>,
    /// Distinct sources (estimated beyond 256).
    pub src_count: u64,
    /// Distinct responders, and the first few.
    pub targets: u64,
    /// The first `FIRST_FEW` distinct responders, in the order seen.
    pub targets_first: Vec<IpAddr>,
    /// Distinct responder ports, and the first few.
    pub ports: u64,
    /// The first `FIRST_FEW` distinct responder ports, in the order seen.
    pub ports_first: Vec<u16>,
    /// Parent domain of a tunnelling client's queries (`exfil`).
    pub domain: Option<Arc<str>>,
    /// First packet of the first flow, last packet of the latest flow.
    pub first_seen: Micros,
    /// Last packet of the latest flow, microseconds since the Unix epoch.
    pub last_seen: Micros,
    /// Distinct flows with an alert verdict (estimated beyond 256).
    pub flows: u64,
    /// Alert verdicts grouped here.
    pub verdicts: u64,
    /// Packets and bytes of those flows as of their latest verdict (beyond
    /// 256 flows, new flows add theirs at their end verdict).
    pub packets: u64,
    /// Frame bytes of those flows, both directions, as of their latest verdict.
    pub bytes: u64,
    /// Highest model probability of `label` among the verdicts grouped here.
    pub peak_score: f32,
    /// From the first packet of the first flow to the verdict that opened it.
    pub time_to_detect_ms: u64,
    /// `name@version` of the model of the opening verdict.
    pub model: Arc<str>,
    /// The reasons of its latest explained alert ([`crate::explain`]).
    pub reasons: Option<Arc<[Reason]>>,
}

/// JSON field names are a public interface: other tools parse them.
impl serde::Serialize for Incident {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("event_type", "incident")?;
        m.serialize_entry("ts", &Rfc3339Micros(self.ts))?;
        m.serialize_entry("incident_id", &self.incident_id)?;
        m.serialize_entry("state", self.state.name())?;
        m.serialize_entry("label", &*self.label)?;
        m.serialize_entry("actor", self.actor.name())?;
        if let Some(ip) = &self.src_ip {
            m.serialize_entry("src_ip", ip)?;
        }
        m.serialize_entry("src_count", &self.src_count)?;
        m.serialize_entry("targets", &self.targets)?;
        m.serialize_entry("targets_first", &self.targets_first)?;
        m.serialize_entry("ports", &self.ports)?;
        m.serialize_entry("ports_first", &self.ports_first)?;
        if let Some(d) = &self.domain {
            m.serialize_entry("domain", &**d)?;
        }
        m.serialize_entry("first_seen", &Rfc3339Micros(self.first_seen))?;
        m.serialize_entry("last_seen", &Rfc3339Micros(self.last_seen))?;
        m.serialize_entry("flows", &self.flows)?;
        m.serialize_entry("verdicts", &self.verdicts)?;
        m.serialize_entry("packets", &self.packets)?;
        m.serialize_entry("bytes", &self.bytes)?;
        m.serialize_entry("peak_score", &self.peak_score)?;
        m.serialize_entry("time_to_detect_ms", &self.time_to_detect_ms)?;
        m.serialize_entry("model", &*self.model)?;
        if let Some(r) = &self.reasons {
            m.serialize_entry("reasons", &**r)?;
        }
        m.end()
    }
}

/// What the tracker did, for the engine's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct IncidentStats {
    /// Incidents opened.
    pub opened: u64,
    /// Update records emitted.
    pub updates: u64,
    /// Incidents closed.
    pub closed: u64,
    /// Alert verdicts grouped into an open incident (including its opener).
    pub verdicts: u64,
    /// Alert verdicts of new actors folded into a `many` incident because
    /// `max_incidents` were open.
    pub overflow_verdicts: u64,
    /// End verdicts that came after their incident had closed.
    pub late_verdicts: u64,
    /// Alert verdicts of a `scan` source that has not yet reached
    /// `scan_min_probes` probes (pending; no incident opened).
    pub unconfirmed_verdicts: u64,
    /// Incidents open now.
    pub open_now: u64,
}

/// The actor of one verdict, as a hash-map key (domains by hash: no
/// allocation per verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Actor {
    Source(IpAddr),
    Target(IpAddr),
    Service(IpAddr, IpAddr, u16),
    Pair(IpAddr, IpAddr),
    Domain(IpAddr, u64),
    Many,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    label: Arc<str>,
    actor: Actor,
}

/// Distinct values: exact up to [`EXACT_DISTINCT`], then estimated by
/// HyperLogLog (Flajolet et al. 2007; 4 096 one-byte registers, standard
/// error 1.6 %, linear counting in the small range) — a flood's millions of
/// spoofed sources in 4 KiB, never saturating.
#[derive(Clone, Debug, Default)]
struct Distinct {
    exact: FxHashSet<u64>,
    registers: Option<Box<[u8; HLL_REGISTERS]>>,
}

impl Distinct {
    /// Adds `h` (a well-mixed hash); true when it is certainly new.
    fn insert(&mut self, h: u64) -> bool {
        if let Some(r) = self.registers.as_mut() {
            hll_add(r, h);
            return false;
        }
        if !self.exact.insert(h) {
            return false;
        }
        if self.exact.len() > EXACT_DISTINCT {
            let mut r = Box::new([0u8; HLL_REGISTERS]);
            for x in self.exact.drain() {
                hll_add(&mut r, x);
            }
            self.exact = FxHashSet::default();
            self.registers = Some(r);
        }
        true
    }

    fn count(&self) -> u64 {
        let Some(r) = self.registers.as_ref() else {
            return self.exact.len() as u64;
        };
        let m = HLL_REGISTERS as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let z: f64 = r.iter().map(|&x| (-f64::from(x)).exp2()).sum();
        let mut estimate = alpha * m * m / z;
        let zeros = r.iter().filter(|&&x| x == 0).count();
        if estimate <= 2.5 * m && zeros > 0 {
            estimate = m * (m / zeros as f64).ln();
        }
        (estimate.round() as u64).max(EXACT_DISTINCT as u64 + 1)
    }

    fn is_exact(&self) -> bool {
        self.registers.is_none()
    }
}

const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

fn hll_add(r: &mut [u8; HLL_REGISTERS], h: u64) {
    let index = (h >> (64 - HLL_BITS)) as usize;
    // The rank of the first 1 in the remaining bits (a guard bit bounds it).
    let rest = (h << HLL_BITS) | (1 << (HLL_BITS - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    if r[index] < rank {
        r[index] = rank;
    }
}

/// splitmix64's finaliser: spreads any input over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ip_hash(ip: &IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => mix(u64::from(u32::from(*a)) | 1 << 32),
        IpAddr::V6(a) => {
            let v = u128::from(*a);
            mix((v as u64) ^ mix((v >> 64) as u64))
        }
    }
}

/// The registrable parent of a DNS name, roughly: its last two labels, or
/// three when the second-level label is short under a two-letter TLD
/// (`x.example.co.uk` → `example.co.uk`). Lower-case is left to the hash.
fn parent_domain(name: &str) -> &str {
    let name = name.trim_end_matches('.');
    let mut dots = name.rmatch_indices('.').map(|(i, _)| i);
    let (Some(last), Some(second)) = (dots.next(), dots.next()) else {
        return name;
    };
    let tld = &name[last + 1..];
    let sld = &name[second + 1..last];
    if tld.len() == 2 && sld.len() <= 3 {
        if let Some(third) = dots.next() {
            return &name[third + 1..];
        }
        return name;
    }
    &name[second + 1..]
}

fn domain_hash(d: &str) -> u64 {
    // FNV-1a over the lower-cased bytes, then mixed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in d.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

/// An open incident.
#[derive(Debug)]
struct Open {
    id: u64,
    label: Arc<str>,
    actor: ActorKind,
    model: Arc<str>,
    domain: Option<Arc<str>>,
    first_source: IpAddr,
    sources: Distinct,
    targets: Distinct,
    targets_first: Vec<IpAddr>,
    ports: Option<Box<[u64; 1024]>>,
    port_count: u64,
    ports_first: Vec<u16>,
    flows: Distinct,
    /// Packets and bytes counted so far per flow, while flows are exact.
    flow_counts: FxHashMap<u64, (u64, u64)>,
    first_seen: Micros,
    last_seen: Micros,
    verdicts: u64,
    packets: u64,
    bytes: u64,
    peak_score: f32,
    time_to_detect_ms: u64,
    /// Time of the last record emitted, and whether verdicts came since.
    last_emitted: Micros,
    dirty: bool,
    /// The current minute (from its first alert) and its alerts, for the rate limit.
    minute_start: Micros,
    minute_alerts: u32,
    reasons: Option<Arc<[Reason]>>,
    /// Distinct (target, port) probes, counted while the incident is pending.
    probes: Distinct,
}

impl Open {
    /// An incident whose first alert is `v` (id 0 until it opens).
    fn new(v: &Verdict, actor: ActorKind, domain: Option<Arc<str>>) -> Self {
        Open {
            id: 0,
            label: v.label.clone(),
            actor,
            model: v.model.clone(),
            domain,
            first_source: v.flow.src_ip,
            sources: Distinct::default(),
            targets: Distinct::default(),
            targets_first: Vec::new(),
            ports: None,
            port_count: 0,
            ports_first: Vec::new(),
            flows: Distinct::default(),
            flow_counts: FxHashMap::default(),
            first_seen: v.flow.flow_start,
            last_seen: v.flow.ts,
            verdicts: 0,
            packets: 0,
            bytes: 0,
            peak_score: 0.0,
            time_to_detect_ms: 0,
            last_emitted: v.detected_at,
            dirty: false,
            minute_start: v.detected_at,
            minute_alerts: 0,
            reasons: None,
            probes: Distinct::default(),
        }
    }

    /// Opens it with id `id` at `v`, its first or confirming alert.
    fn open_at(&mut self, id: u64, v: &Verdict) {
        self.id = id;
        self.time_to_detect_ms = v.detected_at.saturating_sub(self.first_seen) / 1000;
        self.last_emitted = v.detected_at;
        self.dirty = false;
        self.probes = Distinct::default();
    }

    fn add(&mut self, v: &Verdict) -> Membership {
        if v.detected_at >= self.minute_start.saturating_add(60_000_000) {
            self.minute_start = v.detected_at;
            self.minute_alerts = 0;
        }
        self.minute_alerts = self.minute_alerts.saturating_add(1);
        if v.reasons.is_some() && !v.reasons_inherited {
            self.reasons = v.reasons.clone();
        }
        self.count(v);
        Membership { incident_id: self.id, alerts_this_minute: self.minute_alerts, reasons: self.reasons.clone() }
    }

    /// Whether an alert at `at` would be among the first explained this minute.
    fn wants_reasons(&self, at: Micros) -> bool {
        at >= self.minute_start.saturating_add(60_000_000) || self.minute_alerts < EXPLAINED_PER_MINUTE
    }

    fn count(&mut self, v: &Verdict) {
        let f = &v.flow;
        self.verdicts += 1;
        self.dirty = true;
        self.peak_score = self.peak_score.max(v.score);
        self.first_seen = self.first_seen.min(f.flow_start);
        self.last_seen = self.last_seen.max(f.ts);
        self.sources.insert(ip_hash(&f.src_ip));
        if self.targets.insert(ip_hash(&f.dst_ip)) && self.targets_first.len() < FIRST_FEW {
            self.targets_first.push(f.dst_ip);
        }
        let ports = self.ports.get_or_insert_with(|| Box::new([0u64; 1024]));
        let (word, bit) = (usize::from(f.dst_port) / 64, f.dst_port % 64);
        if ports[word] & (1 << bit) == 0 {
            ports[word] |= 1 << bit;
            self.port_count += 1;
            if self.ports_first.len() < FIRST_FEW {
                self.ports_first.push(f.dst_port);
            }
        }
        let was_exact = self.flows.is_exact();
        self.flows.insert(mix(f.flow_id));
        if was_exact && self.flows.is_exact() {
            let seen = self.flow_counts.entry(f.flow_id).or_insert((0, 0));
            self.packets += f.packets.saturating_sub(seen.0);
            self.bytes += f.bytes.saturating_sub(seen.1);
            *seen = (seen.0.max(f.packets), seen.1.max(f.bytes));
        } else {
            self.flow_counts = FxHashMap::default();
            if f.trigger == crate::sink::Trigger::End {
                self.packets += f.packets;
                self.bytes += f.bytes;
            }
        }
    }

    fn record(&self, state: IncidentState, ts: Micros) -> Incident {
        let src_count = self.sources.count();
        Incident {
            incident_id: self.id,
            state,
            ts,
            label: self.label.clone(),
            actor: self.actor,
            src_ip: (src_count == 1).then_some(self.first_source),
            src_count,
            targets: self.targets.count(),
            targets_first: self.targets_first.clone(),
            ports: self.port_count,
            ports_first: self.ports_first.clone(),
            domain: self.domain.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            flows: self.flows.count(),
            verdicts: self.verdicts,
            packets: self.packets,
            bytes: self.bytes,
            peak_score: self.peak_score,
            time_to_detect_ms: self.time_to_detect_ms,
            model: self.model.clone(),
            reasons: self.reasons.clone(),
        }
    }

    /// When it closes: `quiet` after its last flow was seen, but never
    /// before its last record (an incident opened by a late end verdict
    /// closes at once, after its opening).
    fn close_at(&self, cfg: &IncidentConfig) -> Micros {
        self.last_seen.saturating_add(cfg.quiet).max(self.last_emitted)
    }

    /// When this incident next needs a record: closing, or an update.
    fn due(&self, cfg: &IncidentConfig) -> Micros {
        let close = self.close_at(cfg);
        if self.dirty {
            close.min(self.last_emitted.saturating_add(cfg.update_interval))
        } else {
            close
        }
    }
}

/// A closed incident's key, remembered to absorb late verdicts.
#[derive(Clone, Debug)]
struct Closed {
    id: u64,
    last_seen: Micros,
    closed_at: Micros,
    reasons: Option<Arc<[Reason]>>,
}

/// Where an alert verdict went.
#[derive(Clone, Debug, PartialEq)]
pub struct Membership {
    /// Id of the incident the verdict joined (its `Incident::incident_id`).
    pub incident_id: u64,
    /// Alerts of this incident within the current minute, this one included
    /// (0 for a late verdict of a closed incident).
    pub alerts_this_minute: u32,
    /// The incident's latest reasons, for an alert that was not explained.
    pub reasons: Option<Arc<[Reason]>>,
}

/// Groups alert verdicts into incidents. See the module documentation.
#[derive(Debug)]
pub struct IncidentTracker {
    cfg: IncidentConfig,
    open: FxHashMap<Key, Open>,
    /// Scans short of `scan_min_probes`: counted, not emitted.
    pending: FxHashMap<Key, Open>,
    /// Pending incidents quiet by then are forgotten at the next poll after it.
    next_pending_sweep: Micros,
    closed: FxHashMap<Key, Closed>,
    next_id: u64,
    /// No record is due before this time.
    next_due: Micros,
    stats: IncidentStats,
    opened_by_label: Vec<(Arc<str>, u64)>,
}

impl IncidentTracker {
    /// A tracker with no incidents yet, grouping as `cfg` says.
    pub fn new(cfg: IncidentConfig) -> Self {
        Self {
            cfg,
            open: FxHashMap::default(),
            pending: FxHashMap::default(),
            next_pending_sweep: 0,
            closed: FxHashMap::default(),
            next_id: 1,
            next_due: Micros::MAX,
            stats: IncidentStats::default(),
            opened_by_label: Vec::new(),
        }
    }

    /// Groups from now on as `cfg` says (a live reload): open incidents
    /// keep their ids, and their next update and closing follow the new
    /// cadence from the next poll on.
    pub fn set_config(&mut self, cfg: IncidentConfig) {
        self.cfg = cfg;
        // The next poll recomputes every open incident's due time.
        self.next_due = 0;
    }

    /// Incidents opened so far, per label.
    pub fn opened_by_label(&self) -> impl Iterator<Item = (&str, u64)> {
        self.opened_by_label.iter().map(|(label, n)| (&**label, *n))
    }

    /// Counters so far, with `open_now` the incidents open now.
    pub fn stats(&self) -> IncidentStats {
        IncidentStats { open_now: self.open.len() as u64, ..self.stats }
    }

    /// The key's actor, and the parent domain it hashed (borrowed: a name
    /// is only allocated when an incident opens).
    fn actor(kind: ActorKind, v: &Verdict) -> (Actor, Option<&str>) {
        let f = &v.flow;
        match kind {
            ActorKind::Source => (Actor::Source(f.src_ip), None),
            ActorKind::Target => (Actor::Target(f.dst_ip), None),
            ActorKind::Service => (Actor::Service(f.src_ip, f.dst_ip, f.dst_port), None),
            ActorKind::Pair => (Actor::Pair(f.src_ip, f.dst_ip), None),
            ActorKind::Domain => {
                let query = f
                    .detail
                    .app
                    .as_ref()
                    .filter(|a| a.proto == AppProto::Dns)
                    .and_then(|a| a.dns.as_ref())
                    .map(|d| parent_domain(&d.query))
                    .filter(|d| !d.is_empty());
                match query {
                    Some(d) => (Actor::Domain(f.src_ip, domain_hash(d)), Some(d)),
                    None => (Actor::Source(f.src_ip), None),
                }
            }
            ActorKind::Many => (Actor::Many, None),
        }
    }

    /// Whether this alert verdict should be explained before [`observe`]:
    /// it opens an incident, or is among its incident's first
    /// [`EXPLAINED_PER_MINUTE`] alerts this minute.
    ///
    /// [`observe`]: Self::observe
    pub fn wants_reasons(&self, v: &Verdict) -> bool {
        if self.cfg.ignore_labels.iter().any(|l| **l == *v.label) {
            return false;
        }
        let (actor, _) = Self::actor(ActorKind::for_label(&v.label), v);
        let key = Key { label: v.label.clone(), actor };
        match self.open.get(&key) {
            Some(o) => o.wants_reasons(v.detected_at),
            // A late verdict of a closed incident inherits its reasons.
            None => self.closed.get(&key).is_none_or(|c| v.flow.ts >= c.last_seen.saturating_add(self.cfg.quiet)),
        }
    }

    /// Takes one alert verdict (in the engine's order). Emits into `out`
    /// whatever fell due before it, then the opening of a new incident, and
    /// says which incident it joined (`None` for an ignored label).
    pub fn observe(&mut self, v: &Verdict, out: &mut Vec<Incident>) -> Option<Membership> {
        self.poll(v.detected_at, out);
        if self.cfg.ignore_labels.iter().any(|l| **l == *v.label) {
            return None;
        }
        let kind = ActorKind::for_label(&v.label);
        let (actor, domain) = Self::actor(kind, v);
        let mut key = Key { label: v.label.clone(), actor };
        if let Some(open) = self.open.get_mut(&key) {
            let m = open.add(v);
            self.stats.verdicts += 1;
            self.next_due = self.next_due.min(open.due(&self.cfg));
            return Some(m);
        }
        if let Some(c) = self.closed.get(&key) {
            if v.flow.ts < c.last_seen.saturating_add(self.cfg.quiet) {
                self.stats.late_verdicts += 1;
                return Some(Membership { incident_id: c.id, alerts_this_minute: 0, reasons: c.reasons.clone() });
            }
            self.closed.remove(&key);
        }
        // A scan waits for its second probe (see the module documentation).
        let mut confirmed: Option<Open> = None;
        if *v.label == *"scan" && self.cfg.scan_min_probes > 1 {
            let quiet = self.cfg.quiet;
            // Gone quiet: a new episode (the sweep may not have run yet).
            let expired = self.pending.get(&key).map(|p| v.detected_at >= p.last_seen.saturating_add(quiet));
            match expired {
                Some(false) => {}
                Some(true) => {
                    self.pending.insert(key.clone(), Open::new(v, kind, None));
                }
                None if self.pending.len() < self.cfg.max_incidents => {
                    self.pending.insert(key.clone(), Open::new(v, kind, None));
                }
                None => {
                    self.stats.unconfirmed_verdicts += 1;
                    return None;
                }
            }
            let pending = self.pending.get_mut(&key)?;
            pending.add(v);
            pending.probes.insert(mix(ip_hash(&v.flow.dst_ip) ^ u64::from(v.flow.dst_port)));
            self.stats.unconfirmed_verdicts += 1;
            if pending.probes.count() < self.cfg.scan_min_probes {
                return None;
            }
            let p = self.pending.remove(&key)?;
            self.stats.unconfirmed_verdicts -= p.verdicts;
            confirmed = Some(p);
        }
        let mut kind = kind;
        if self.open.len() >= self.cfg.max_incidents {
            self.stats.overflow_verdicts += 1;
            kind = ActorKind::Many;
            key.actor = Actor::Many;
            // A confirmed scan's earlier alerts stay unconfirmed: only this one folds.
            if let Some(p) = &confirmed {
                self.stats.unconfirmed_verdicts += p.verdicts - 1;
            }
            confirmed = None;
            if let Some(open) = self.open.get_mut(&key) {
                let m = open.add(v);
                self.stats.verdicts += 1;
                self.next_due = self.next_due.min(open.due(&self.cfg));
                return Some(m);
            }
        }
        let (mut open, membership) = match confirmed {
            Some(mut p) => {
                let m = Membership {
                    incident_id: self.next_id,
                    alerts_this_minute: p.minute_alerts,
                    reasons: p.reasons.clone(),
                };
                p.open_at(self.next_id, v);
                self.stats.verdicts += p.verdicts;
                (p, m)
            }
            None => {
                let domain = domain.filter(|_| kind != ActorKind::Many).map(|d| Arc::from(d.to_ascii_lowercase()));
                let mut open = Open::new(v, kind, domain);
                open.open_at(self.next_id, v);
                let m = open.add(v);
                open.dirty = false;
                self.stats.verdicts += 1;
                (open, m)
            }
        };
        open.dirty = false;
        self.next_id += 1;
        self.stats.opened += 1;
        match self.opened_by_label.iter_mut().find(|(l, _)| *l == v.label) {
            Some(e) => e.1 += 1,
            None => self.opened_by_label.push((v.label.clone(), 1)),
        }
        out.push(open.record(IncidentState::Open, v.detected_at));
        self.next_due = self.next_due.min(open.due(&self.cfg));
        self.open.insert(key, open);
        Some(membership)
    }

    /// Emits the updates and closings due by `now` (engine time), each
    /// stamped with the time it fell due, in (time, id) order.
    pub fn poll(&mut self, now: Micros, out: &mut Vec<Incident>) {
        // Memory only: a quiet pending incident is treated as gone when its
        // actor's next alert comes, whether or not it was swept.
        if now >= self.next_pending_sweep {
            let quiet = self.cfg.quiet;
            self.pending.retain(|_, p| now < p.last_seen.saturating_add(quiet));
            self.next_pending_sweep = now.saturating_add(1_000_000);
        }
        if now < self.next_due {
            return;
        }
        let start = out.len();
        let cfg = &self.cfg;
        let mut next_due = Micros::MAX;
        let mut closing: Vec<Key> = Vec::new();
        for (key, inc) in self.open.iter_mut() {
            let close_at = inc.close_at(cfg);
            if now >= close_at {
                // An update that fell due before the close is emitted first,
                // as a poll at its time would have: the records must not
                // depend on when polls happen (nothing changes in the quiet).
                let update_at = inc.last_emitted.saturating_add(cfg.update_interval);
                if inc.dirty && update_at < close_at {
                    out.push(inc.record(IncidentState::Update, update_at));
                    inc.last_emitted = update_at;
                    inc.dirty = false;
                    self.stats.updates += 1;
                }
                out.push(inc.record(IncidentState::Closed, close_at));
                closing.push(key.clone());
                continue;
            }
            if inc.dirty {
                let update_at = inc.last_emitted.saturating_add(cfg.update_interval);
                if now >= update_at {
                    out.push(inc.record(IncidentState::Update, update_at));
                    inc.last_emitted = update_at;
                    inc.dirty = false;
                    self.stats.updates += 1;
                }
            }
            next_due = next_due.min(inc.due(cfg));
        }
        for key in closing {
            if let Some(inc) = self.open.remove(&key) {
                self.stats.closed += 1;
                let closed_at = inc.close_at(cfg);
                if self.closed.len() < cfg.max_incidents {
                    let reasons = inc.reasons.clone();
                    self.closed.insert(key, Closed { id: inc.id, last_seen: inc.last_seen, closed_at, reasons });
                }
            }
        }
        let window = cfg.late_window;
        self.closed.retain(|_, c| now < c.closed_at.saturating_add(window));
        if let Some(earliest) = self.closed.values().map(|c| c.closed_at.saturating_add(window)).min() {
            next_due = next_due.min(earliest);
        }
        self.next_due = next_due;
        out[start..].sort_by_key(|i| (i.ts, i.incident_id));
    }

    /// Closes every incident still open (end of input, shutdown), after
    /// emitting what fell due by `now`; the closings are stamped `now`.
    pub fn close_all(&mut self, now: Micros, out: &mut Vec<Incident>) {
        self.poll(now, out);
        self.pending.clear();
        let start = out.len();
        for (_, inc) in self.open.drain() {
            out.push(inc.record(IncidentState::Closed, now.max(inc.last_seen)));
            self.stats.closed += 1;
        }
        out[start..].sort_by_key(|i| (i.ts, i.incident_id));
        self.next_due = Micros::MAX;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::sink::Trigger;

    const S: Micros = 1_000_000;

    fn verdict(label: &str, src: &str, dst: &str, port: u16, flow_id: u64, ts: Micros, trigger: Trigger) -> Verdict {
        crate::sink::test_verdict(label, 0.9, src, dst, port, flow_id, ts, trigger)
    }

    #[test]
    fn a_scan_of_a_thousand_ports_is_one_incident_that_opens_updates_and_closes() {
        let mut t = IncidentTracker::new(IncidentConfig::with_timing(2 * S, 5 * S));
        let mut out = Vec::new();
        // 1000 ports over 5 s from one scanner, then silence.
        for p in 0..1000u64 {
            let ts = 100 * S + p * 5_000;
            t.observe(&verdict("scan", "10.0.0.1", "10.0.0.2", 1 + p as u16, p, ts, Trigger::Host), &mut out);
        }
        t.poll(200 * S, &mut out);
        let states: Vec<_> = out.iter().map(|i| (i.incident_id, i.state)).collect();
        assert_eq!(
            states,
            vec![
                (1, IncidentState::Open),
                (1, IncidentState::Update),
                (1, IncidentState::Update),
                (1, IncidentState::Update),
                (1, IncidentState::Closed)
            ]
        );
        let closed = out.last().unwrap();
        assert_eq!(closed.ports, 1000);
        assert_eq!(closed.ports_first, vec![1, 2, 3, 4, 5]);
        assert_eq!(closed.targets, 1);
        assert_eq!(closed.src_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(closed.verdicts, 1000);
        // 1000 distinct flows, estimated beyond 256: within 3 %.
        assert!((970..=1030).contains(&closed.flows), "{}", closed.flows);
        assert_eq!(closed.ts, closed.last_seen + 5 * S);
        // Opened by the second probe (5 ms in), with the first one counted.
        assert_eq!(out[0].ts, 100 * S + 5_000);
        assert_eq!((out[0].verdicts, out[0].ports, out[0].time_to_detect_ms), (2, 2, 6));
        assert_eq!(out[1].ts, 102 * S + 5_000);
        assert_eq!(out[2].ts, 104 * S + 5_000);
        // Due at 106 s, before the close at 110 s: emitted by the late poll too.
        assert_eq!(out[3].ts, 106 * S + 5_000);
        assert_eq!(t.stats().opened, 1);
        assert_eq!(t.stats().closed, 1);
        assert_eq!(t.stats().open_now, 0);
    }

    /// When polls happen (every 100 ms, or once long after) never changes
    /// the records: the batching of verdicts decides when the engine polls.
    #[test]
    fn records_do_not_depend_on_when_polls_happen() {
        let run = |poll_every: Option<Micros>| {
            let mut t = IncidentTracker::new(IncidentConfig::with_timing(2 * S, 5 * S));
            let mut out = Vec::new();
            for p in 0..300u64 {
                let ts = 100 * S + p * 11_000;
                if let Some(every) = poll_every {
                    let mut at = (ts / every) * every;
                    while at <= ts {
                        t.poll(at, &mut out);
                        at += every;
                    }
                }
                t.observe(&verdict("scan", "10.0.0.1", "10.0.0.2", 1 + p as u16, p, ts, Trigger::Host), &mut out);
            }
            if let Some(every) = poll_every {
                for i in 0..1000 {
                    t.poll(104 * S + i * every, &mut out);
                }
            }
            t.poll(300 * S, &mut out);
            out.iter().map(|i| (i.state, i.ts, i.verdicts)).collect::<Vec<_>>()
        };
        let late = run(None);
        assert_eq!(late, run(Some(S / 10)));
        assert_eq!(late.iter().filter(|r| r.0 == IncidentState::Update).count(), 2, "{late:?}");
    }

    #[test]
    fn a_flood_is_keyed_by_its_target_and_names_its_source_only_when_there_is_one() {
        let mut t = IncidentTracker::new(IncidentConfig::default());
        let mut out = Vec::new();
        for i in 0..300u64 {
            let src = format!("10.1.{}.{}", i / 250, i % 250 + 1);
            t.observe(&verdict("dos", &src, "10.9.9.9", 80, i, S + i, Trigger::Host), &mut out);
        }
        t.observe(&verdict("dos", "10.2.0.1", "10.9.9.8", 80, 999, S + 400, Trigger::Host), &mut out);
        t.close_all(2 * S, &mut out);
        let closed: Vec<_> = out.iter().filter(|i| i.state == IncidentState::Closed).collect();
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].actor, ActorKind::Target);
        assert_eq!(closed[0].targets_first, vec!["10.9.9.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(closed[0].src_ip, None);
        assert!((290..=310).contains(&closed[0].src_count), "{}", closed[0].src_count);
        assert_eq!(closed[1].src_ip, Some("10.2.0.1".parse().unwrap()));
        assert_eq!(closed[1].src_count, 1);
    }

    #[test]
    fn actors_follow_the_class_and_benign_makes_no_incident() {
        let mut t = IncidentTracker::new(IncidentConfig::default());
        let mut out = Vec::new();
        // Brute force: one per (source, target, service).
        t.observe(&verdict("bruteforce", "10.0.0.1", "10.0.0.2", 22, 1, S, Trigger::End), &mut out);
        t.observe(&verdict("bruteforce", "10.0.0.1", "10.0.0.2", 22, 2, S + 1, Trigger::End), &mut out);
        t.observe(&verdict("bruteforce", "10.0.0.1", "10.0.0.2", 21, 3, S + 2, Trigger::End), &mut out);
        // Beacons: one per pair.
        t.observe(&verdict("c2", "10.0.0.5", "10.0.0.6", 443, 4, S + 3, Trigger::End), &mut out);
        t.observe(&verdict("c2", "10.0.0.5", "10.0.0.6", 443, 5, S + 4, Trigger::End), &mut out);
        t.observe(&verdict("benign", "10.0.0.5", "10.0.0.6", 443, 6, S + 5, Trigger::End), &mut out);
        let opened: Vec<_> = out.iter().map(|i| (i.label.to_string(), i.actor, i.ports_first.clone())).collect();
        assert_eq!(
            opened,
            vec![
                ("bruteforce".to_string(), ActorKind::Service, vec![22]),
                ("bruteforce".to_string(), ActorKind::Service, vec![21]),
                ("c2".to_string(), ActorKind::Pair, vec![443]),
            ]
        );
        assert_eq!(t.stats().verdicts, 5);
    }

    #[test]
    fn a_lone_probe_is_no_scan_incident_until_its_source_probes_again() {
        let mut t = IncidentTracker::new(IncidentConfig::with_timing(60 * S, 10 * S));
        let mut out = Vec::new();
        // The first SYNs of a spoofed flood: each source is seen once.
        for i in 0..6u64 {
            let src = format!("203.0.113.{}", i + 1);
            assert_eq!(t.observe(&verdict("scan", &src, "10.0.0.2", 80, i, S + i, Trigger::End), &mut out), None);
        }
        // The same probe again (another flow to the same port) is still one probe.
        assert_eq!(t.observe(&verdict("scan", "203.0.113.1", "10.0.0.2", 80, 50, 2 * S, Trigger::End), &mut out), None);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!((t.stats().unconfirmed_verdicts, t.stats().opened, t.stats().verdicts), (7, 0, 0));
        // A second port: the incident opens now, holding both flows of that source.
        let m = t.observe(&verdict("scan", "203.0.113.1", "10.0.0.2", 443, 51, 3 * S, Trigger::End), &mut out);
        assert_eq!(m.map(|m| (m.incident_id, m.alerts_this_minute)), Some((1, 3)));
        assert_eq!(out.len(), 1);
        let open = &out[0];
        // (test verdicts' flows start 1 ms before their verdict's time)
        assert_eq!((open.state, open.ts, open.first_seen), (IncidentState::Open, 3 * S, S - 1_000));
        assert_eq!((open.verdicts, open.flows, open.ports, open.ports_first.clone()), (3, 3, 2, vec![80, 443]));
        assert_eq!(open.time_to_detect_ms, 2_001);
        let s = t.stats();
        assert_eq!((s.unconfirmed_verdicts, s.opened, s.verdicts), (5, 1, 3));
        // A source quiet for `quiet` starts over: its old probe does not count.
        t.observe(&verdict("scan", "203.0.113.2", "10.0.0.2", 81, 60, 20 * S, Trigger::End), &mut out);
        assert_eq!(out.iter().filter(|i| i.state == IncidentState::Open).count(), 1, "{out:?}");
        t.observe(&verdict("scan", "203.0.113.2", "10.0.0.3", 81, 61, 20 * S + 1, Trigger::End), &mut out);
        assert_eq!(out.iter().filter(|i| i.state == IncidentState::Open).count(), 2);
        assert_eq!(out.last().map(|i| (i.first_seen, i.verdicts)), Some((20 * S - 1_000, 2)));
        // With scan_min_probes 1, a lone probe opens at once.
        let mut t = IncidentTracker::new(IncidentConfig { scan_min_probes: 1, ..IncidentConfig::default() });
        let mut out = Vec::new();
        assert!(t.observe(&verdict("scan", "203.0.113.1", "10.0.0.2", 80, 1, S, Trigger::End), &mut out).is_some());
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn late_end_verdicts_of_a_closed_incident_do_not_reopen_it() {
        let mut t = IncidentTracker::new(IncidentConfig::with_timing(60 * S, 10 * S));
        let mut out = Vec::new();
        for p in 0..20u64 {
            t.observe(&verdict("scan", "10.0.0.1", "10.0.0.2", p as u16, p, 100 * S + p, Trigger::Host), &mut out);
        }
        // The unanswered SYNs end at the idle timeout, 300 s later.
        for p in 0..20u64 {
            let mut v = verdict("scan", "10.0.0.1", "10.0.0.2", p as u16, p, 100 * S + p, Trigger::End);
            v.detected_at = 400 * S + p;
            t.observe(&v, &mut out);
        }
        assert_eq!(out.iter().filter(|i| i.state == IncidentState::Open).count(), 1);
        assert_eq!(t.stats().late_verdicts, 20);
        // Late verdicts are not explained again: they inherit.
        assert!(!t.wants_reasons(&verdict("scan", "10.0.0.1", "10.0.0.2", 3, 3, 100 * S, Trigger::End)));
        // A new scan by the same source later is a new incident.
        t.observe(&verdict("scan", "10.0.0.1", "10.0.0.2", 1, 100, 500 * S, Trigger::Host), &mut out);
        t.observe(&verdict("scan", "10.0.0.1", "10.0.0.2", 2, 101, 500 * S + 1, Trigger::Host), &mut out);
        let opens: Vec<u64> = out.iter().filter(|i| i.state == IncidentState::Open).map(|i| i.incident_id).collect();
        assert_eq!(opens, vec![1, 2]);
    }

    #[test]
    fn an_incident_opened_by_a_late_verdict_closes_after_its_opening() {
        let mut t = IncidentTracker::new(IncidentConfig::with_timing(60 * S, 60 * S));
        let mut out = Vec::new();
        let mut v = verdict("exfil", "10.0.0.1", "10.0.0.53", 53, 1, 100 * S, Trigger::End);
        v.detected_at = 220 * S; // a UDP flow's idle timeout
        t.observe(&v, &mut out);
        t.poll(221 * S, &mut out);
        let got: Vec<_> = out.iter().map(|i| (i.state, i.ts)).collect();
        assert_eq!(got, vec![(IncidentState::Open, 220 * S), (IncidentState::Closed, 220 * S)]);
    }

    #[test]
    fn verdicts_learn_their_incident_and_its_alerts_per_minute() {
        let mut t = IncidentTracker::new(IncidentConfig { scan_min_probes: 1, ..IncidentConfig::default() });
        let mut out = Vec::new();
        let mut got = Vec::new();
        for (i, at) in [1u64, 2, 3, 62, 63].iter().enumerate() {
            let v = verdict("scan", "10.0.0.1", "10.0.0.2", 80, i as u64, at * S, Trigger::Host);
            got.push(t.observe(&v, &mut out).map(|m| (m.incident_id, m.alerts_this_minute)));
        }
        assert_eq!(got, vec![Some((1, 1)), Some((1, 2)), Some((1, 3)), Some((1, 1)), Some((1, 2))]);
        let v = verdict("scan", "10.0.0.1", "10.0.0.2", 80, 10, 64 * S, Trigger::Host);
        assert!(t.wants_reasons(&v), "the third alert of the minute is explained");
        t.observe(&v, &mut out);
        assert!(!t.wants_reasons(&verdict("scan", "10.0.0.1", "10.0.0.2", 80, 11, 65 * S, Trigger::Host)));
        assert!(t.wants_reasons(&verdict("scan", "10.0.0.9", "10.0.0.2", 80, 12, 65 * S, Trigger::Host)));
        assert_eq!(t.observe(&verdict("benign", "10.0.0.1", "10.0.0.2", 80, 9, 72 * S, Trigger::End), &mut out), None);
    }

    #[test]
    fn beyond_max_incidents_new_actors_fold_into_one_many_incident() {
        let cfg = IncidentConfig { max_incidents: 3, scan_min_probes: 1, ..IncidentConfig::default() };
        let mut t = IncidentTracker::new(cfg);
        let mut out = Vec::new();
        for i in 0..10u64 {
            let src = format!("10.0.0.{}", i + 1);
            t.observe(&verdict("scan", &src, "10.9.9.9", 80, i, S + i, Trigger::Host), &mut out);
        }
        let opens: Vec<ActorKind> = out.iter().map(|i| i.actor).collect();
        assert_eq!(opens, vec![ActorKind::Source, ActorKind::Source, ActorKind::Source, ActorKind::Many]);
        assert_eq!(t.stats().overflow_verdicts, 7);
        t.close_all(2 * S, &mut out);
        let many = out.iter().rfind(|i| i.actor == ActorKind::Many).unwrap();
        assert_eq!((many.src_count, many.src_ip), (7, None));
        assert_eq!(t.stats().open_now, 0);
    }

    #[test]
    fn packets_and_bytes_count_each_flow_once_as_of_its_latest_verdict() {
        let mut t = IncidentTracker::new(IncidentConfig::default());
        let mut out = Vec::new();
        let mut early = verdict("c2", "10.0.0.1", "10.0.0.2", 443, 7, S, Trigger::Early);
        early.flow.packets = 8;
        early.flow.bytes = 800;
        let mut end = verdict("c2", "10.0.0.1", "10.0.0.2", 443, 7, 2 * S, Trigger::End);
        end.flow.packets = 12;
        end.flow.bytes = 1500;
        t.observe(&early, &mut out);
        t.observe(&end, &mut out);
        t.close_all(3 * S, &mut out);
        let c = out.last().unwrap();
        assert_eq!((c.flows, c.verdicts, c.packets, c.bytes), (1, 2, 12, 1500));
    }

    #[test]
    fn parent_domains_keep_the_registrable_part() {
        assert_eq!(parent_domain("aGVsbG8.t.example.com"), "example.com");
        assert_eq!(parent_domain("x.y.example.co.uk"), "example.co.uk");
        assert_eq!(parent_domain("example.com."), "example.com");
        assert_eq!(parent_domain("localhost"), "localhost");
        assert_eq!(domain_hash("A.Example.COM"), domain_hash("a.example.com"));
    }

    #[test]
    fn distinct_counts_are_exact_then_close() {
        let mut d = Distinct::default();
        for i in 0..256u64 {
            d.insert(mix(i));
            d.insert(mix(i));
        }
        assert_eq!(d.count(), 256);
        for (upto, tolerance) in [(300u64, 0.05), (5000, 0.05), (300_000, 0.05), (2_000_000, 0.05)] {
            for i in 256..upto {
                d.insert(mix(i));
            }
            let n = d.count() as f64;
            assert!((n - upto as f64).abs() / (upto as f64) < tolerance, "{upto}: {n}");
        }
    }
}
