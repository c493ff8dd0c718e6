//! End-to-end replay benchmark: on one capture, in one run, measures
//!   (a) the floor: a bare libpcap read loop over the file, and beside it the
//!       same loop over Tidewatch's own reader (`CaptureReader`), which
//!       replaced libpcap for files and must be at least as fast,
//!   (b) read + decode,
//!   (c) the full Tidewatch pipeline (defrag, TCP reassembly, app parsers,
//!       features, host context, inference, JSON verdicts to /dev/null) on
//!       one thread, with 1 worker and with all cores,
//!   (d) the same with payload inspection off (flow statistics only), so
//!       the cost of reassembly and parsing is the difference,
//! and prints each as packets/s and as a ratio to (a), median of --runs.
//!
//! cargo run --release -p tidewatch-benches --bin replay_bench -- FILE [--runs 5] [--json OUT]

use std::path::PathBuf;
use std::time::Instant;

use tidewatch::decode::decode;
use tidewatch::inspect::InspectConfig;
use tidewatch::{Engine, JsonLinesSink, PacketSource, PcapFileSource};
use tidewatch_benches::median;

fn floor(file: &PathBuf) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let mut cap = pcap::Capture::from_file(file).map_err(|e| e.to_string())?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Ok(p) = cap.next_packet() {
        n += 1;
        bytes += u64::from(p.header.caplen);
    }
    std::hint::black_box(bytes);
    Ok((n, start.elapsed().as_secs_f64()))
}

fn native_read(file: &std::path::Path) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let mut reader = tidewatch::source::CaptureReader::open(file)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while let Some(p) = reader.next_packet() {
        n += 1;
        bytes += p.data.len() as u64;
    }
    std::hint::black_box(bytes);
    Ok((n, start.elapsed().as_secs_f64()))
}

fn read_decode(file: &PathBuf) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let mut src = PcapFileSource::open(&[file]).map_err(|e| e.to_string())?;
    let (mut n, mut ok) = (0u64, 0u64);
    while let Some(p) = src.next_packet().map_err(|e| e.to_string())? {
        n += 1;
        if let Ok(info) = decode(&p) {
            ok += u64::from(info.src_port);
        }
    }
    std::hint::black_box(ok);
    Ok((n, start.elapsed().as_secs_f64()))
}

fn pipeline(
    file: &PathBuf,
    model: &PathBuf,
    workers: usize,
    inspect: bool,
) -> Result<(u64, f64, serde_json::Value), String> {
    let mut engine = Engine::builder()
        .model(model)
        .workers(workers)
        .inspect({
            let mut c = InspectConfig::default();
            c.enabled = inspect;
            c
        })
        .sink(JsonLinesSink::new(std::fs::File::create("/dev/null").map_err(|e| e.to_string())?))
        .build()
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let stats =
        engine.run(&mut PcapFileSource::open(&[file]).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    Ok((stats.packets, secs, stats.to_json()))
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut runs = 5usize;
    let mut json_out = None;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut model = root.join("models/lab/model.onnx");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).ok_or("--runs N")?,
            "--json" => json_out = args.next(),
            "--model" => model = args.next().map(PathBuf::from).ok_or("--model PATH")?,
            _ => file = Some(PathBuf::from(a)),
        }
    }
    let file = file.ok_or("usage: replay_bench FILE [--runs N] [--json OUT] [--model PATH]")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Warm the page cache so the first measurement is not a disk read.
    floor(&file)?;
    let mut rows: Vec<(String, u64, f64, Option<serde_json::Value>)> = Vec::new();
    let mut measure = |name: &str, f: &mut dyn FnMut() -> Result<(u64, f64, Option<serde_json::Value>), String>| {
        let mut secs = Vec::new();
        let mut packets = 0;
        let mut last = None;
        for _ in 0..runs {
            let (n, s, j) = f()?;
            packets = n;
            secs.push(s);
            last = j;
        }
        rows.push((name.to_string(), packets, median(secs), last));
        Ok::<(), String>(())
    };
    measure("(a) libpcap read loop (floor)", &mut || floor(&file).map(|(n, s)| (n, s, None)))?;
    measure("(a') Tidewatch's reader, read loop", &mut || native_read(&file).map(|(n, s)| (n, s, None)))?;
    measure("(b) read + decode", &mut || read_decode(&file).map(|(n, s)| (n, s, None)))?;
    let mut stage = |name: &str, workers: usize, inspect: bool| {
        measure(name, &mut || pipeline(&file, &model, workers, inspect).map(|(n, s, j)| (n, s, Some(j))))
    };
    stage("(c) full pipeline, 1 thread", 0, true)?;
    stage("(c) full pipeline, 1 worker", 1, true)?;
    stage(&format!("(c) full pipeline, {cores} workers (all cores)"), cores, true)?;
    stage("(d) no payload inspection, 1 thread", 0, false)?;
    stage(&format!("(d) no payload inspection, {cores} workers"), cores, false)?;
    let floor_pps = rows[0].1 as f64 / rows[0].2;
    println!("file: {} ({} packets), median of {runs} runs", file.display(), rows[0].1);
    println!("{:<44} {:>12} {:>14} {:>10}", "stage", "seconds", "packets/s", "÷ floor");
    let mut out = Vec::new();
    for (name, packets, secs, stats) in &rows {
        let pps = *packets as f64 / secs;
        println!("{name:<44} {secs:>12.3} {pps:>14.0} {:>10.2}", pps / floor_pps);
        let mut j = serde_json::json!({"stage": name, "packets": packets, "seconds": secs, "packets_per_s": pps, "ratio_to_floor": pps / floor_pps});
        if let Some(s) = stats {
            j["latency_us"] = s["latency_us"].clone();
            j["inference_us"] = s["inference_us"].clone();
            j["cpu_seconds"] = s["cpu_seconds"].clone();
            j["flows"] = s["flows"].clone();
            j["stages"] = s["stages"].clone();
            j["verdicts"] = s["verdicts"].clone();
            j["reassembly"] = s["reassembly"].clone();
            j["app_flows"] = s["app_flows"].clone();
        }
        out.push(j);
    }
    for (name, _, secs, stats) in &rows {
        if let Some(s) = stats {
            let inf = s["inference_us"].as_f64().unwrap_or(0.0) / 1e6;
            // Flows created per second per core: over the CPU every thread
            // of the run used (the flood-heavy benchmark's figure of merit).
            let cpu: f64 = s["cpu_seconds"].as_object().map_or(0.0, |m| m.values().filter_map(|v| v.as_f64()).sum());
            let flows = s["flows"].as_f64().unwrap_or(0.0);
            if cpu > 0.0 {
                println!("{name}: {flows:.0} flows, {:.0} flows created per second per core", flows / cpu);
            }
            let reassembled = s["reassembly"]["bytes"].as_f64().unwrap_or(0.0);
            println!(
                "{name}: reassembled {:.2} Gbit/s of TCP payload, inference {:.1}% of wall time, latency p50/p99/p99.9 = {}/{}/{} µs, CPU {}",
                reassembled * 8.0 / secs / 1e9,
                100.0 * inf / secs,
                s["latency_us"]["p50"],
                s["latency_us"]["p99"],
                s["latency_us"]["p999"],
                s["cpu_seconds"]
            );
        }
    }
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
