//! flowscope-peer: read one pcap with flowscope 0.22, track bidirectional
//! 5-tuple flows and compute flowscope's CICFlowMeter-compatible feature
//! vector (`CicFlowFeatures::from_flow_record(..).with_iat(..)`) for every
//! flow when it ends. Prints one JSON line on stdout:
//! {"tool":"flowscope","version":"0.22.0","packets":..,"flows":..,"seconds":..}
//!
//! Timeouts are set to Tidewatch's defaults (TCP 300 s, UDP 120 s, other
//! 60 s idle; 1 048 576 flows max) and idle sweeps run every second of
//! packet time, so flows end on idle as they do in Tidewatch. flowscope has
//! no active timeout. Per-packet events are suppressed (accounting still
//! runs), as Tidewatch emits none either.

use std::time::{Duration, Instant};

use flowscope::extract::FiveTuple;
use flowscope::pcap::PcapFlowSource;
use flowscope::{CicFlowFeatures, EventMask, FlowEvent, FlowRecord, FlowTracker, FlowTrackerConfig};

#[derive(Default)]
struct Acc {
    flows_ended: u64,
    /// Folded from every feature vector so none of the work is optimised away.
    checksum: f64,
}

impl Acc {
    fn take(&mut self, ev: FlowEvent<flowscope::extract::FiveTupleKey>) {
        if let FlowEvent::Ended { key, stats, reason, .. } = ev {
            let rec = FlowRecord::from_parts(&stats, &key, Some(reason));
            let f = CicFlowFeatures::from_flow_record(&rec).with_iat(&stats);
            self.flows_ended += 1;
            self.checksum += f.flow_duration_us as f64 * 1e-6
                + f.flow_bytes_per_sec * 1e-9
                + f.flow_iat_mean_us * 1e-6
                + f.idle_mean_us * 1e-6
                + f.active_mean_us * 1e-6
                + f.down_up_ratio
                + f.tcp_flag_counts.fwd_syn as f64;
        }
    }
}

fn main() {
    let path = match std::env::args().nth(1) {
        Some(p) => p,
        None => {
            eprintln!("usage: flowscope-peer <FILE.pcap>");
            std::process::exit(2);
        }
    };

    let mut cfg = FlowTrackerConfig::default();
    cfg.idle_timeout_tcp = Duration::from_secs(300);
    cfg.idle_timeout_udp = Duration::from_secs(120);
    cfg.idle_timeout_other = Duration::from_secs(60);
    cfg.max_flows = 1 << 20;
    cfg.auto_sweep_interval = Some(Duration::from_secs(1));
    cfg.suppress_events = EventMask::PACKET;

    let start = Instant::now();
    let src = match PcapFlowSource::open(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flowscope-peer: cannot open {path}: {e}");
            std::process::exit(2);
        }
    };
    let mut tracker = FlowTracker::<FiveTuple>::with_config(FiveTuple::bidirectional(), cfg);
    let mut acc = Acc::default();
    let mut packets = 0u64;
    let mut read_errors = 0u64;
    for view in src.views() {
        let view = match view {
            Ok(v) => v,
            Err(_) => {
                // pcap-file stops being useful after a bad record (truncated file).
                read_errors += 1;
                break;
            }
        };
        packets += 1;
        for ev in tracker.track(&view) {
            acc.take(ev);
        }
    }
    for ev in tracker.finish() {
        acc.take(ev);
    }
    let secs = start.elapsed().as_secs_f64();
    let st = tracker.stats();
    println!(
        "{{\"tool\":\"flowscope\",\"version\":\"0.22.0\",\"packets\":{packets},\"flows\":{},\"flows_ended\":{},\"flows_evicted\":{},\"packets_unmatched\":{},\"read_errors\":{read_errors},\"seconds\":{secs:.6},\"checksum\":{:.3}}}",
        st.flows_created, acc.flows_ended, st.flows_evicted, st.packets_unmatched, acc.checksum
    );
}
