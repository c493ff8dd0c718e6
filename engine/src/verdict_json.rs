//! The JSON of a verdict (`event_type` = `verdict`), written straight into
//! a byte buffer: the one definition of its layout.
//!
//! Output threads write every verdict, so this is a hot path: field names
//! are written as the constant bytes they are (serde would scan each for
//! characters to escape), times and addresses are formatted on the stack,
//! and only what may need escaping (label, model, protocol metadata) goes
//! through serde_json. `impl Serialize for Verdict` hands these same bytes
//! to any serde_json serializer, so `serde_json::to_writer` and
//! [`Verdict::write_json`](crate::Verdict::write_json) agree byte for byte.

use std::io::Write as _;
use std::net::IpAddr;

use crate::app::AppProto;
use crate::policy::Suppressed;
use crate::sink::{Rfc3339Micros, Verdict};

/// Appends `"` + the time + `"`.
fn time(out: &mut Vec<u8>, ts: crate::Micros) {
    out.push(b'"');
    out.extend_from_slice(Rfc3339Micros(ts).write(&mut [0; 27]).as_bytes());
    out.push(b'"');
}

/// Appends an address in quotes, as its `Display` writes it (what serde
/// writes for `IpAddr` in JSON). IPv4, the usual case, without `fmt`.
fn address(out: &mut Vec<u8>, ip: &IpAddr) {
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(*octet).as_bytes());
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
    out.push(b'"');
}

/// Appends a JSON string: as it is when nothing in it needs escaping
/// (serde_json escapes only `"`, `\\` and control characters), else as
/// serde_json writes it.
fn string(out: &mut Vec<u8>, v: &str) -> serde_json::Result<()> {
    if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        via_serde(out, v)
    }
}

/// Appends an unsigned integer.
fn number(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends anything serde_json can write (strings that may need escaping,
/// floats as serde_json writes them, nested objects).
fn via_serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, v)
}

/// Appends the verdict's JSON object (no newline). Fails only if a nested
/// part (app metadata, reasons) fails to serialize.
pub(crate) fn write(v: &Verdict, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let f = &v.flow;
    out.extend_from_slice(b"{\"event_type\":\"verdict\",\"ts\":");
    let ts_at = out.len();
    time(out, f.ts);
    out.extend_from_slice(b",\"detected_at\":");
    if v.detected_at == f.ts {
        // Usually the same time: copy the 29 bytes just written.
        out.extend_from_within(ts_at..ts_at + 29);
    } else {
        time(out, v.detected_at);
    }
    out.extend_from_slice(b",\"flow_id\":");
    number(out, f.flow_id);
    out.extend_from_slice(b",\"flow_start\":");
    time(out, f.flow_start);
    out.extend_from_slice(b",\"proto\":");
    string(out, f.proto.name())?;
    out.extend_from_slice(b",\"src_ip\":");
    address(out, &f.src_ip);
    out.extend_from_slice(b",\"src_port\":");
    number(out, u64::from(f.src_port));
    out.extend_from_slice(b",\"dst_ip\":");
    address(out, &f.dst_ip);
    out.extend_from_slice(b",\"dst_port\":");
    number(out, u64::from(f.dst_port));
    out.extend_from_slice(b",\"label\":");
    string(out, &v.label)?;
    out.extend_from_slice(b",\"score\":");
    via_serde(out, &v.score)?;
    out.extend_from_slice(b",\"scores\":{");
    for (i, (label, p)) in v.scores.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, label)?;
        out.push(b':');
        via_serde(out, &p)?;
    }
    out.extend_from_slice(b"},\"packets\":");
    number(out, f.packets);
    out.extend_from_slice(b",\"bytes\":");
    number(out, f.bytes);
    out.extend_from_slice(b",\"model\":");
    string(out, &v.model)?;
    out.extend_from_slice(b",\"trigger\":\"");
    out.extend_from_slice(f.trigger.name().as_bytes());
    out.push(b'"');
    if let Some(id) = v.incident_id {
        out.extend_from_slice(b",\"incident_id\":");
        number(out, id);
    }
    if let Some(s) = v.suppressed {
        out.extend_from_slice(b",\"suppressed\":");
        string(out, s.name())?;
        if let Suppressed::Rule(i) = s {
            out.extend_from_slice(b",\"suppress_rule\":");
            via_serde(out, &i)?;
        }
    }
    if let Some(r) = f.end_reason {
        out.extend_from_slice(b",\"end_reason\":\"");
        out.extend_from_slice(r.name().as_bytes());
        out.push(b'"');
    }
    if let Some(r) = &v.reasons {
        out.extend_from_slice(b",\"reasons\":");
        via_serde(out, &**r)?;
        if v.reasons_inherited {
            out.extend_from_slice(b",\"reasons_inherited\":true");
        }
    }
    if let Some(app) = f.detail.app.as_ref().filter(|a| a.proto != AppProto::Unknown) {
        out.extend_from_slice(b",\"app\":");
        via_serde(out, app)?;
    }
    if let Some(t) = f.detail.tunnels_json() {
        out.extend_from_slice(b",\"tunnel\":");
        via_serde(out, &t)?;
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use crate::policy::Suppressed;
    use crate::{CollectSink, Engine, PcapFileSource};

    /// The demo's verdicts, and each again with a label that needs
    /// escaping, a suppress rule and an IPv6 source: the bytes parse back
    /// to the verdict's values, and serde's path writes the same bytes.
    #[test]
    fn the_json_says_what_the_verdict_holds_and_serde_writes_the_same() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sink = CollectSink::new();
        let mut e = Engine::builder().model(root.join("models/lab/model.onnx")).sink(sink.clone()).build().unwrap();
        e.run(&mut PcapFileSource::open(&[root.join("pcaps/demo.pcap")]).unwrap()).unwrap();
        let verdicts = sink.take();
        assert!(verdicts.len() > 500);
        let (mut with_app, mut with_reasons) = (0, 0);
        for v in verdicts {
            let mut odd = v.clone();
            odd.label = "we\"ird\\ \u{1} \u{e9}".into();
            odd.suppressed = Some(Suppressed::Rule(3));
            odd.flow.src_ip = "2001:db8::1".parse().unwrap();
            for v in [v, odd] {
                let mut buf = Vec::new();
                super::write(&v, &mut buf).unwrap();
                assert_eq!(serde_json::to_string(&v).unwrap().as_bytes(), &buf[..]);
                let j: serde_json::Value = serde_json::from_slice(&buf).unwrap();
                assert_eq!(j["event_type"], "verdict");
                assert_eq!(j["label"], &*v.label);
                assert_eq!(j["src_ip"], v.flow.src_ip.to_string());
                assert_eq!(j["dst_ip"], v.flow.dst_ip.to_string());
                assert_eq!(
                    (j["src_port"].as_u64(), j["flow_id"].as_u64()),
                    (Some(v.flow.src_port.into()), Some(v.flow.flow_id))
                );
                assert_eq!(j["score"].as_f64().unwrap() as f32, v.score);
                assert_eq!(j["scores"].as_object().unwrap().len(), v.scores.len());
                assert_eq!(j["ts"], crate::sink::rfc3339_micros(v.flow.ts));
                assert_eq!(j["detected_at"], crate::sink::rfc3339_micros(v.detected_at));
                assert_eq!(j["flow_start"], crate::sink::rfc3339_micros(v.flow.flow_start));
                assert_eq!(j["end_reason"].as_str(), v.flow.end_reason.map(|r| r.name()));
                if v.suppressed.is_some() {
                    assert_eq!((&j["suppressed"], &j["suppress_rule"]), (&"rule".into(), &3.into()));
                }
                with_app += usize::from(j.get("app").is_some());
                with_reasons += usize::from(j.get("reasons").is_some());
            }
        }
        assert!(with_app > 100 && with_reasons > 100, "{with_app} with app, {with_reasons} with reasons");
    }
}
