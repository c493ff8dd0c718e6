//! Incidents on a real capture: the demo's attack episodes become a handful
//! of incidents, each opened at once and closed once, holding every alert
//! verdict of its actor.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use tidewatch::incident::ActorKind;
use tidewatch::{CollectSink, Engine, IncidentConfig, IncidentState, PcapFileSource};

#[test]
fn the_demo_attacks_are_a_few_incidents_each_opened_once_and_closed_once() {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .workers(2)
        .incidents(IncidentConfig::with_timing(10_000_000, 30_000_000))
        .sink(sink.clone())
        .build()
        .unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    let verdicts = sink.take();
    let incidents = sink.take_incidents();
    let alerts: Vec<_> = verdicts.iter().filter(|v| &*v.label != "benign").collect();
    assert!(alerts.len() > 100, "{} alerts", alerts.len());

    // Open first, then updates, then exactly one closing; ids from 1 in order of opening.
    let mut life: BTreeMap<u64, Vec<IncidentState>> = BTreeMap::new();
    let mut last_ts: BTreeMap<u64, u64> = BTreeMap::new();
    for i in &incidents {
        life.entry(i.incident_id).or_default().push(i.state);
        let prev = last_ts.insert(i.incident_id, i.ts).unwrap_or(0);
        assert!(i.ts >= prev, "incident {} goes back in time: {i:?}", i.incident_id);
    }
    let ids: Vec<u64> = life.keys().copied().collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    for (id, states) in &life {
        assert_eq!(states.first(), Some(&IncidentState::Open), "incident {id}: {states:?}");
        assert_eq!(states.last(), Some(&IncidentState::Closed), "incident {id}: {states:?}");
        assert!(states[1..states.len() - 1].iter().all(|s| *s == IncidentState::Update), "{id}: {states:?}");
    }
    assert!(life.len() * 5 < alerts.len(), "{} incidents for {} alerts", life.len(), alerts.len());

    // The closings account for every alert verdict, except those that came
    // after their incident closed (idle-timeout ends) and a scan's lone
    // probes that never opened one, each counted apart.
    let closed: Vec<_> = incidents.iter().filter(|i| i.state == IncidentState::Closed).collect();
    let grouped: u64 = closed.iter().map(|i| i.verdicts).sum();
    let s = stats.incidents;
    assert_eq!(grouped, s.verdicts);
    assert_eq!(s.verdicts + s.late_verdicts + s.unconfirmed_verdicts, alerts.len() as u64);
    assert_eq!((s.opened, s.closed, s.open_now), (life.len() as u64, life.len() as u64, 0));

    for i in &closed {
        assert!(i.first_seen <= i.last_seen && i.flows >= 1 && i.packets >= i.flows, "{i:?}");
        assert!(i.peak_score > 0.0 && i.peak_score <= 1.0, "{i:?}");
        match i.actor {
            ActorKind::Source | ActorKind::Service | ActorKind::Pair | ActorKind::Domain => {
                assert!(i.src_ip.is_some() && i.src_count == 1, "{i:?}")
            }
            ActorKind::Target => assert_eq!(i.targets, 1, "{i:?}"),
            ActorKind::Many => {}
            other => panic!("an actor kind this test does not know: {other:?}"),
        }
    }
    // Every opening is stamped with the verdict that opened it: the
    // earliest alert of that incident's actor, or for a scan the alert of
    // its second probe, with the first ones counted in.
    for open in incidents.iter().filter(|i| i.state == IncidentState::Open) {
        let opener = alerts
            .iter()
            .find(|v| v.detected_at == open.ts && *v.label == *open.label && v.incident_id == Some(open.incident_id));
        assert!(opener.is_some(), "no alert verdict of incident {} at its opening: {open:?}", open.incident_id);
        if *open.label == *"scan" {
            assert!(open.verdicts >= 2 && open.targets * open.ports >= 2, "{open:?}");
        } else {
            assert_eq!(open.verdicts, 1);
        }
    }
    // The JSON record says what it is.
    let j = serde_json::to_value(&incidents[0]).unwrap();
    assert_eq!(j["event_type"], "incident");
    assert_eq!(j["state"], "open");
    let v = serde_json::to_value(&verdicts[0]).unwrap();
    assert_eq!(v["event_type"], "verdict");
}

/// The bundled model carries benign medians, so every alert says why: its
/// own reasons, or its incident's latest when it is not among the
/// incident's first alerts of the minute. Each reason names a feature whose
/// value differs from the benign median and that moved the score.
#[test]
fn every_alert_and_incident_carries_reasons_it_can_show() {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .workers(1)
        .sink(sink.clone())
        .build()
        .unwrap();
    assert_eq!(engine.model_info().unwrap().benign_medians.len(), tidewatch::features::NUM_FEATURES);
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    let verdicts = sink.take();
    let alerts: Vec<_> = verdicts.iter().filter(|v| &*v.label != "benign").collect();
    let own = alerts.iter().filter(|v| v.reasons.is_some() && !v.reasons_inherited).count() as u64;
    assert_eq!(own, stats.explained);
    assert!(alerts.iter().all(|v| v.reasons.is_some()), "an alert without reasons");
    assert!(verdicts.iter().filter(|v| &*v.label == "benign").all(|v| v.reasons.is_none()));
    let mut named = 0;
    for v in &alerts {
        let r = v.reasons.as_ref().unwrap();
        assert!(r.len() <= tidewatch::explain::MAX_REASONS);
        for (a, b) in r.iter().zip(r.iter().skip(1)) {
            assert!(a.effect >= b.effect, "not by effect: {r:?}");
        }
        for x in r.iter() {
            assert!(x.value != x.typical && x.effect >= tidewatch::explain::MIN_EFFECT && x.effect <= 1.0, "{x:?}");
            named += 1;
        }
    }
    assert!(named > alerts.len(), "most alerts have at least one reason: {named} for {}", alerts.len());
    let incidents = sink.take_incidents();
    assert!(incidents.iter().all(|i| i.reasons.is_some()), "an incident without reasons");
    let j = serde_json::to_value(alerts[0]).unwrap();
    assert!(j["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().all(|x| x["feature"].is_string() && x["typical"].is_number())));
}
