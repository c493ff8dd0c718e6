//! `EngineBuilder::flow_records`: every ended flow's record reaches the
//! verdict sinks (`VerdictSink::flow`), before that flow's end verdict, with
//! or without a model, the same for any worker count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use tidewatch::flow::{FlowKey, IpProto};

use tidewatch::{
    CollectSink, Engine, FlowRecord, PcapFileSource, SinkControl, SinkError, Trigger, Verdict, VerdictSink,
};

/// Records the order of flow records and end verdicts.
#[derive(Clone, Default)]
struct Order(Arc<Mutex<Vec<(u64, &'static str)>>>);

impl VerdictSink for Order {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        if v.flow.trigger == Trigger::End {
            self.0.lock().unwrap().push((v.flow.flow_id, "verdict"));
        }
        Ok(SinkControl::Continue)
    }
    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push((r.flow_id, "flow"));
        Ok(SinkControl::Continue)
    }
}

fn run(model: bool, workers: usize) -> (tidewatch::Stats, CollectSink) {
    let sink = CollectSink::new();
    let mut b = Engine::builder().flow_records(true).workers(workers).sink(sink.clone());
    if model {
        b = b.model(common::repo().join("models/lab/model.onnx"));
    }
    let mut engine = b.build().unwrap();
    let stats = engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    (stats, sink)
}

#[test]
fn every_ended_flow_has_a_record_before_its_end_verdict() {
    let (stats, sink) = run(true, 2);
    let flows = sink.take_flows();
    assert!(flows.len() > 100, "{}", flows.len());
    assert_eq!(flows.len() as u64, stats.flows_ended_total());
    assert!(flows.iter().all(|f| f.trigger == Trigger::End && f.end_reason.is_some()));
    // Each record carries its key: the same conversation, in canonical order.
    let mut keyed = 0;
    for f in flows.iter().filter(|f| matches!(f.proto, IpProto::Tcp | IpProto::Udp)) {
        let key = FlowKey::between((f.src_ip, f.src_port), (f.dst_ip, f.dst_port), f.proto.number());
        assert_eq!(f.key, key, "{}", tidewatch::sink::flow_json(f));
        assert_eq!(f.key.ip_proto(), f.proto);
        assert!(f.key.lo() <= f.key.hi() && [f.key.lo(), f.key.hi()].contains(&(f.src_ip, f.src_port)));
        keyed += 1;
    }
    assert!(keyed > 100, "{keyed}");
    let json = tidewatch::sink::flow_json(&flows[0]);
    assert_eq!(json["event_type"], "flow");
    assert_eq!(json["flow_id"], flows[0].flow_id);
    // Serialize gives that same record: one definition.
    assert_eq!(serde_json::to_value(&flows[0]).unwrap(), json);
    // The records are the same whatever the worker count, and without a model.
    let ids = |v: &[tidewatch::FlowRecord]| {
        let mut ids: Vec<_> = v.iter().map(|f| (f.flow_id, f.packets, f.bytes)).collect();
        ids.sort_unstable();
        ids
    };
    let (_, one) = run(true, 0);
    assert_eq!(ids(&one.take_flows()), ids(&flows));
    let (no_model_stats, bare) = run(false, 1);
    assert_eq!(ids(&bare.take_flows()), ids(&flows));
    assert!(bare.take().is_empty(), "no model, no verdicts");
    assert_eq!(no_model_stats.flows_ended_total(), stats.flows_ended_total());
}

#[test]
fn a_flow_record_comes_before_its_end_verdict() {
    let order = Order::default();
    let mut engine = Engine::builder()
        .model(common::repo().join("models/lab/model.onnx"))
        .flow_records(true)
        .workers(2)
        .sink(order.clone())
        .build()
        .unwrap();
    engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    let events = order.0.lock().unwrap().clone();
    let mut seen = std::collections::HashSet::new();
    let mut verdicts = 0;
    for (id, kind) in &events {
        if *kind == "flow" {
            seen.insert(*id);
        } else {
            verdicts += 1;
            assert!(seen.contains(id), "end verdict of flow {id} before its record");
        }
    }
    assert!(verdicts > 100, "{verdicts}");
}

#[test]
fn without_the_option_no_flow_reaches_the_sinks() {
    let sink = CollectSink::new();
    let mut engine =
        Engine::builder().model(common::repo().join("models/lab/model.onnx")).sink(sink.clone()).build().unwrap();
    engine.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap()).unwrap();
    assert!(sink.take_flows().is_empty());
    assert!(!sink.take().is_empty());
    // Flow records without a sink are kept for poll_event; `run`, which
    // nobody can poll during, refuses them.
    let mut polled = Engine::builder().flow_records(true).build().unwrap();
    let refused = polled.run(&mut PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap());
    assert!(matches!(refused, Err(tidewatch::Error::Config(_))), "{refused:?}");
}
