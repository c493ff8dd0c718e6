//! `ParallelEngine`: packets from the caller's own loop, worker threads
//! behind it. It gives what `Engine::run` gives with the same worker count,
//! each kind of event in the same order; ticks end idle flows; a finished
//! engine refuses more packets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use tidewatch::flow::EndReason;
use tidewatch::{
    Engine, Error, Event, FlowRecord, Incident, PacketSource, ParallelEngine, PcapFileSource, SinkControl, SinkError,
    Verdict, VerdictSink,
};

fn line(e: &Event) -> String {
    match e {
        Event::Verdict(v) => {
            format!("verdict {} {} {:?} {} {:?}", v.flow.flow_id, v.label, v.flow.trigger, v.score, v.incident_id)
        }
        Event::Flow(r) => format!("flow {} {} {} {:?}", r.flow_id, r.packets, r.bytes, r.end_reason),
        Event::Incident(i) => format!("incident {} {:?} {} {}", i.incident_id, i.state, i.label, i.flows),
        other => panic!("an event this test does not know: {other:?}"),
    }
}

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl VerdictSink for Lines {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(line(&Event::Verdict(v.clone())));
        Ok(SinkControl::Continue)
    }
    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(line(&Event::Incident(i.clone())));
        Ok(SinkControl::Continue)
    }
    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(line(&Event::Flow(r.clone())));
        Ok(SinkControl::Continue)
    }
}

fn model() -> std::path::PathBuf {
    common::repo().join("models/lab/model.onnx")
}

#[test]
fn the_callers_packets_on_two_workers_give_what_run_gives() {
    let demo = common::pcap("demo.pcap");
    let lines = Lines::default();
    let mut engine =
        Engine::builder().model(model()).workers(2).flow_records(true).sink(lines.clone()).build().unwrap();
    let by_run = engine.run(&mut PcapFileSource::open(&[&demo]).unwrap()).unwrap();
    let by_run = (by_run, lines.0.lock().unwrap().clone());

    let mut engine = ParallelEngine::start(Engine::builder().model(model()).workers(2).flow_records(true)).unwrap();
    let mut source = PcapFileSource::open(&[&demo]).unwrap();
    let mut polled = Vec::new();
    while let Some(pkt) = source.next_packet().unwrap() {
        engine.process(&pkt).unwrap();
        while let Some(e) = engine.poll_event() {
            polled.push(line(&e));
        }
    }
    let stats = engine.finish().unwrap();
    while let Some(e) = engine.poll_event() {
        polled.push(line(&e));
    }
    assert_eq!(stats.workers, 2);
    assert_eq!((stats.packets, stats.verdicts(), stats.queue_dropped), (by_run.0.packets, by_run.0.verdicts(), 0));
    for kind in ["verdict ", "flow ", "incident "] {
        let of = |v: &[String]| v.iter().filter(|l| l.starts_with(kind)).cloned().collect::<Vec<_>>();
        let (a, b) = (of(&polled), of(&by_run.1));
        assert!(!a.is_empty(), "no {kind}events");
        assert_eq!(a, b, "{kind}events differ");
    }
    assert_eq!(polled.len(), by_run.1.len());
    assert!(matches!(engine.process(&source_packet()), Err(Error::Finished)));
    assert_eq!(engine.finish().unwrap().packets, stats.packets, "finish again gives the same counters");
}

fn source_packet() -> tidewatch::RawPacket<'static> {
    tidewatch::RawPacket { ts: 0, wire_len: 0, link_type: tidewatch::LinkType::ETHERNET, data: &[] }
}

#[test]
fn a_tick_ends_idle_flows_before_the_input_ends() {
    let mut engine = ParallelEngine::start(Engine::builder().workers(2).flow_records(true)).unwrap();
    let mut source = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let mut last = 0;
    while let Some(pkt) = source.next_packet().unwrap() {
        last = last.max(pkt.ts);
        engine.process(&pkt).unwrap();
    }
    engine.tick(last + 3_600_000_000).unwrap();
    let stats = engine.finish().unwrap();
    let mut flows = Vec::new();
    while let Some(e) = engine.poll_event() {
        if let Event::Flow(f) = e {
            flows.push(f);
        }
    }
    assert_eq!(flows.len() as u64, stats.flows_created);
    assert!(flows.len() > 100);
    // An hour of engine time passed before the end of input: nothing was left to end then.
    assert!(flows.iter().all(|f| f.end_reason != Some(EndReason::EndOfInput)), "a flow outlived the tick");
}
