//! Own-loop use: an engine built without sinks keeps its events for
//! `poll_event`. Fed packet by packet with `process` and `finish`, it gives
//! the verdicts, flow records and incidents that `run` gives its sinks, each
//! kind in the same order; `poll_timeout` says when `tick` is due, time passed with
//! `tick` alone ends idle flows, and a finished engine refuses more work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use tidewatch::{
    Engine, Error, Event, FlowRecord, Incident, PacketSource, PcapFileSource, SinkControl, SinkError, Verdict,
    VerdictSink,
};

fn model() -> std::path::PathBuf {
    common::repo().join("models/lab/model.onnx")
}

fn verdict_line(v: &Verdict) -> String {
    format!("verdict {} {} {:?} {} {:?}", v.flow.flow_id, v.label, v.flow.trigger, v.score, v.incident_id)
}
fn flow_line(r: &FlowRecord) -> String {
    format!("flow {} {} {} {:?}", r.flow_id, r.packets, r.bytes, r.end_reason)
}
fn incident_line(i: &Incident) -> String {
    format!("incident {} {:?} {} {}", i.incident_id, i.state, i.label, i.flows)
}

/// Everything a sink is handed, as one ordered list of lines.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl VerdictSink for Lines {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(verdict_line(v));
        Ok(SinkControl::Continue)
    }
    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(incident_line(i));
        Ok(SinkControl::Continue)
    }
    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        self.0.lock().unwrap().push(flow_line(r));
        Ok(SinkControl::Continue)
    }
}

fn drain(engine: &mut Engine, out: &mut Vec<String>) -> usize {
    let mut n = 0;
    while let Some(e) = engine.poll_event() {
        n += 1;
        out.push(match &e {
            Event::Verdict(v) => verdict_line(v),
            Event::Flow(r) => flow_line(r),
            Event::Incident(i) => incident_line(i),
            other => panic!("an event this test does not know: {other:?}"),
        });
    }
    n
}

#[test]
fn polled_events_are_what_run_hands_its_sinks_in_the_same_order() {
    let demo = common::pcap("demo.pcap");
    let lines = Lines::default();
    let mut engine = Engine::builder().model(model()).flow_records(true).sink(lines.clone()).build().unwrap();
    let by_run = engine.run(&mut PcapFileSource::open(&[&demo]).unwrap()).unwrap();
    let by_run_lines = lines.0.lock().unwrap().clone();

    let mut engine = Engine::builder().model(model()).flow_records(true).build().unwrap();
    let mut source = PcapFileSource::open(&[&demo]).unwrap();
    let (mut polled, mut most_at_once) = (Vec::new(), 0);
    while let Some(pkt) = source.next_packet().unwrap() {
        engine.process(&pkt).unwrap();
        most_at_once = most_at_once.max(drain(&mut engine, &mut polled));
    }
    let stats = engine.finish().unwrap();
    drain(&mut engine, &mut polled);

    assert!(by_run.verdicts() > 400 && by_run.incidents.opened > 10, "{by_run:?}");
    // Each kind comes in the same order. How kinds interleave may differ:
    // `run` also sends a batch on a wall-clock deadline, the own loop only
    // when the batch is full or due in engine time.
    for kind in ["verdict ", "flow ", "incident "] {
        let of = |v: &[String]| v.iter().filter(|l| l.starts_with(kind)).cloned().collect::<Vec<_>>();
        let (a, b) = (of(&polled), of(&by_run_lines));
        assert!(!a.is_empty(), "no {kind}events");
        assert_eq!(a, b, "{kind}events differ");
    }
    assert_eq!(polled.len(), by_run_lines.len());
    assert_eq!((stats.packets, stats.verdicts()), (by_run.packets, by_run.verdicts()));
    // Drained after each packet, the queue never held more than a batch and its records.
    assert!(most_at_once <= 3 * 256, "{most_at_once} events from one packet");
    // The core read no clock: no latency or inference time was measured.
    assert_eq!((stats.latency_us.count, stats.inference_micros), (0, 0));
    assert!(by_run.latency_us.count > 0);
}

#[test]
fn poll_timeout_says_when_to_tick_and_ticks_alone_end_idle_flows() {
    let mut engine = Engine::builder().flow_records(true).build().unwrap();
    assert_eq!(engine.poll_timeout(), None, "nothing is due before the first packet");
    let mut source = PcapFileSource::open(&[common::pcap("demo.pcap")]).unwrap();
    let mut last = 0;
    while let Some(pkt) = source.next_packet().unwrap() {
        last = last.max(pkt.ts);
        engine.process(&pkt).unwrap();
    }
    let due = engine.poll_timeout().expect("a sweep is due after packets");
    assert!(due > last && due <= last + 100_000, "due {due}, last packet {last}");
    // Ticking at each due time, an hour of silence ends every flow: the
    // next due time always moves on, and no flow is left for `finish`.
    let mut records = 0;
    let mut now = due;
    while now < last + 3_600_000_000 {
        engine.tick(now).unwrap();
        while let Some(e) = engine.poll_event() {
            assert!(matches!(e, Event::Flow(_)), "{e:?}");
            records += 1;
        }
        let next = engine.poll_timeout().unwrap();
        assert!(next > now, "due time {next} did not move past {now}");
        now = next;
    }
    let stats = engine.finish().unwrap();
    assert!(records > 100, "{records}");
    assert_eq!(records, stats.flows_ended_total());
    assert!(engine.poll_event().is_none(), "finish found no flow still open");
    assert_eq!(engine.poll_timeout(), None);
}

#[test]
fn a_finished_engine_refuses_more_work() {
    let lines = Lines::default();
    let mut engine = Engine::builder().model(model()).sink(lines).build().unwrap();
    let demo = common::pcap("tiny_tcp.pcap");
    engine.run(&mut PcapFileSource::open(&[&demo]).unwrap()).unwrap();
    let again = engine.run(&mut PcapFileSource::open(&[&demo]).unwrap());
    assert!(matches!(again, Err(Error::Finished)), "{again:?}");
    let mut source = PcapFileSource::open(&[&demo]).unwrap();
    let pkt = source.next_packet().unwrap().unwrap();
    assert!(matches!(engine.process(&pkt), Err(Error::Finished)));
    assert!(matches!(engine.tick(pkt.ts), Err(Error::Finished)));
    // finish itself may be called again: it returns the same counters.
    assert_eq!(engine.finish().unwrap().packets, engine.stats().packets);
}

#[test]
fn run_without_a_sink_is_refused_because_nobody_could_poll_its_events() {
    let mut engine = Engine::builder().model(model()).build().unwrap();
    let r = engine.run(&mut PcapFileSource::open(&[common::pcap("tiny_tcp.pcap")]).unwrap());
    let Err(Error::Config(msg)) = r else { panic!("{r:?}") };
    assert!(msg.contains("poll_event"), "{msg}");
}
