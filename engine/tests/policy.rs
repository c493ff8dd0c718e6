//! Operator policy on a real capture: suppressed alerts are delivered,
//! marked and counted, and make no incident; the rate limit marks an
//! incident's alerts beyond it without taking them out of the incident.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use tidewatch::policy::{Cidr, SuppressRule};
use tidewatch::{CollectSink, Engine, PacketSource, PcapFileSource, Policy, Suppressed, Verdict};

fn run(policy: Policy) -> (Vec<Verdict>, Vec<tidewatch::Incident>, tidewatch::Stats) {
    let sink = CollectSink::new();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .workers(1)
        .policy(policy)
        .sink(sink.clone())
        .build()
        .unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    (sink.take(), sink.take_incidents(), stats)
}

#[test]
fn suppressed_alerts_are_marked_counted_and_make_no_incident() {
    let (plain, plain_incidents, _) = run(Policy::default());
    let scanner = plain.iter().find(|v| &*v.label == "scan").map(|v| v.flow.src_ip).unwrap();
    // Config structs are #[non_exhaustive]: start from the default, set fields.
    let mut rule = SuppressRule::default();
    rule.src = Some(Cidr::parse(&scanner.to_string()).unwrap());
    rule.label = Some("scan".into());
    let mut policy = Policy::default();
    policy.suppress = vec![rule];
    policy.min_score = vec![("c2".into(), 0.9999)];
    let (verdicts, incidents, stats) = run(policy);
    // The same verdicts, in the same number: nothing is dropped.
    assert_eq!(verdicts.len(), plain.len());
    let by_rule: Vec<_> = verdicts.iter().filter(|v| v.suppressed == Some(Suppressed::Rule(0))).collect();
    let by_score: Vec<_> = verdicts.iter().filter(|v| v.suppressed == Some(Suppressed::MinScore)).collect();
    assert!(!by_rule.is_empty() && by_rule.iter().all(|v| v.flow.src_ip == scanner && &*v.label == "scan"));
    assert!(!by_score.is_empty() && by_score.iter().all(|v| &*v.label == "c2" && v.score < 0.9999));
    assert!(by_rule.iter().chain(by_score.iter()).all(|v| v.incident_id.is_none()));
    assert_eq!((stats.suppressed.rule, stats.suppressed.min_score), (by_rule.len() as u64, by_score.len() as u64));
    // No incident for that scanner, none for c2 below the bar; the rest as before.
    let of = |inc: &[tidewatch::Incident], label: &str| inc.iter().filter(|i| &*i.label == label).count();
    assert!(incidents.iter().all(|i| !(&*i.label == "scan" && i.src_ip == Some(scanner))));
    assert!(of(&incidents, "c2") < of(&plain_incidents, "c2"));
    assert_eq!(of(&incidents, "dos"), of(&plain_incidents, "dos"));
    let j = serde_json::to_value(by_rule[0]).unwrap();
    assert_eq!((j["suppressed"].as_str(), j["suppress_rule"].as_u64()), (Some("rule"), Some(0)));
}

#[test]
fn the_rate_limit_marks_alerts_beyond_it_and_keeps_them_in_their_incident() {
    let mut policy = Policy::default();
    policy.max_alerts_per_incident_per_minute = 3;
    let (verdicts, incidents, stats) = run(policy);
    let limited: Vec<_> = verdicts.iter().filter(|v| v.suppressed == Some(Suppressed::RateLimit)).collect();
    assert!(!limited.is_empty());
    assert_eq!(stats.suppressed.rate_limit, limited.len() as u64);
    // Every alert not suppressed otherwise names its incident, except a
    // scanner's alerts before its second probe (delivered before the
    // incident opened; those of scans that never opened are counted); the
    // incidents still count the rate-limited ones.
    let alerts: Vec<_> = verdicts.iter().filter(|v| &*v.label != "benign").collect();
    let unattached: Vec<_> = alerts.iter().filter(|v| v.incident_id.is_none()).collect();
    assert!(unattached.iter().all(|v| &*v.label == "scan"), "an alert without its incident");
    assert!(unattached.len() as u64 >= stats.incidents.unconfirmed_verdicts);
    assert!(unattached.len() * 10 < alerts.len(), "{} of {} alerts unattached", unattached.len(), alerts.len());
    for v in &limited {
        let id = v.incident_id.unwrap();
        let members = alerts.iter().filter(|a| a.incident_id == Some(id)).count() as u64;
        let closed = incidents.iter().find(|i| i.incident_id == id && i.state == tidewatch::IncidentState::Closed);
        let counted = closed.map_or(0, |c| c.verdicts);
        // (a scan also counts its alerts from before it opened)
        let before = unattached.len() as u64;
        assert!(counted > 3 && counted <= members + before, "incident {id}: {counted} counted, {members} alerts");
    }
}

/// Verdicts and incident records of the demo capture, as comparable lines.
fn lines(engine: &mut Engine) -> Vec<String> {
    let mut source = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let mut out = Vec::new();
    let drain = |engine: &mut Engine, out: &mut Vec<String>| {
        while let Some(e) = engine.poll_event() {
            out.push(match e {
                tidewatch::Event::Verdict(v) => format!("v {} {} {:?}", v.flow.flow_id, v.label, v.flow.trigger),
                tidewatch::Event::Incident(i) => format!("i {} {:?} {} {}", i.incident_id, i.state, i.label, i.flows),
                other => format!("{other:?}"),
            });
        }
    };
    while let Some(pkt) = source.next_packet().unwrap() {
        engine.process(&pkt).unwrap();
        drain(engine, &mut out);
    }
    engine.finish().unwrap();
    drain(engine, &mut out);
    out
}

/// Live settings swapped in (a SIGHUP) act as if the engine had been built
/// with them: final verdicts only when changed, and a new incident cadence.
#[test]
fn swapped_live_settings_act_as_built_ones() {
    use tidewatch::{IncidentConfig, LiveSettings};
    let model = common::repo().join("models/lab/model.onnx");
    let mut incidents = IncidentConfig::default();
    incidents.update_interval = 5_000_000;
    incidents.quiet = 10_000_000;
    let mut built = Engine::builder()
        .model(&model)
        .final_verdicts_only_if_changed(true)
        .incidents(incidents.clone())
        .build()
        .unwrap();
    let want = lines(&mut built);
    let mut swapped = Engine::builder().model(&model).build().unwrap();
    swapped.settings_swapper().swap(LiveSettings::new(true, incidents)).unwrap();
    let got = lines(&mut swapped);
    let mut plain = Engine::builder().model(&model).build().unwrap();
    let default = lines(&mut plain);
    assert!(want.iter().filter(|l| l.starts_with("i ")).count() > 10);
    assert_ne!(want, default, "the settings must change something for this test to mean anything");
    assert_eq!(got, want);
}
