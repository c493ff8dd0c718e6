//! `tidewatchd feedback`: an analyst's decision on an incident or a verdict
//! (false positive or confirmed), appended as one JSON line to a feedback
//! file that training reads, and, for a false positive, optionally a
//! suppress rule appended to the daemon's config (applied at the next
//! SIGHUP) so the same alert stops at once.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::Failure;

/// An analyst's decision (`--decision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Decision {
    /// The alert was wrong.
    FalsePositive,
    /// The alert was right.
    Confirmed,
}

impl Decision {
    /// The name in the feedback log (`false_positive`, `confirmed`).
    fn json_name(self) -> &'static str {
        match self {
            Decision::FalsePositive => "false_positive",
            Decision::Confirmed => "confirmed",
        }
    }
}

#[derive(clap::Args)]
pub struct FeedbackArgs {
    /// The feedback file (JSON lines), created if missing.
    #[arg(long, value_name = "PATH")]
    file: PathBuf,
    /// The incident decided on.
    #[arg(long, value_name = "ID", conflicts_with = "flow_id", required_unless_present = "flow_id")]
    incident_id: Option<u64>,
    /// The flow (verdict) decided on.
    #[arg(long, value_name = "ID")]
    flow_id: Option<u64>,
    /// `false-positive` or `confirmed`.
    #[arg(long, value_enum)]
    decision: Decision,
    /// Why, in the analyst's words.
    #[arg(long, default_value = "")]
    note: String,
    /// The daemon's JSON output holding the record: its fields are copied
    /// into the feedback (and make the suppress rule).
    #[arg(long, value_name = "JSONL")]
    from: Option<PathBuf>,
    /// The capture the record came from (a replayed pcap, or a ring file of
    /// a live capture): training (`make model FEEDBACK=...`) exports its
    /// feature rows and relabels the ones this decision is about.
    #[arg(long, value_name = "PCAP")]
    capture: Option<PathBuf>,
    /// For a false positive: append a `[[policy.suppress]]` rule for this
    /// actor to this config file (needs --from); `kill -HUP` applies it.
    #[arg(long, value_name = "CONFIG")]
    suppress_to: Option<PathBuf>,
    /// RFC 3339 time after which the suppress rule stops applying.
    #[arg(long, value_name = "TIME")]
    expires: Option<String>,
}

/// The last record in `path` for this incident or flow (an incident's
/// latest state, a flow's latest verdict).
fn find_record(path: &Path, incident_id: Option<u64>, flow_id: Option<u64>) -> Result<Value, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let wanted = |v: &Value| match (incident_id, flow_id) {
        (Some(id), _) => v["event_type"] == "incident" && v["incident_id"] == id,
        (None, Some(id)) => v["event_type"] == "verdict" && v["flow_id"] == id,
        (None, None) => false,
    };
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(wanted)
        .ok_or_else(|| Failure::usage(format!("{} holds no record of that incident or flow", path.display())))
}

/// The suppress rule that matches this record's actor, as TOML.
fn suppress_rule(record: &Value, expires: Option<&str>, note: &str) -> Result<String, Failure> {
    let s = |k: &str| record[k].as_str().map(str::to_string);
    let label = s("label").ok_or_else(|| Failure::usage("the record has no label"))?;
    let mut keys: Vec<(&str, String)> = vec![("label", format!("{label:?}"))];
    let quoted = |v: Option<String>| v.map(|v| format!("{v:?}"));
    let (src, dst, port) = if record["event_type"] == "incident" {
        let first_target = record["targets_first"][0].as_str().map(str::to_string);
        let first_port = record["ports_first"][0].as_u64();
        match record["actor"].as_str() {
            Some("target") => (None, first_target, None),
            Some("service") => (s("src_ip"), first_target, first_port),
            Some("pair") => (s("src_ip"), first_target, None),
            Some("source") | Some("domain") => (s("src_ip"), None, None),
            _ => return Err(Failure::usage("an incident of many actors cannot be suppressed by one rule")),
        }
    } else {
        (s("src_ip"), s("dst_ip"), record["dst_port"].as_u64())
    };
    if let Some(v) = quoted(src) {
        keys.push(("src", v));
    }
    if let Some(v) = quoted(dst) {
        keys.push(("dst", v));
    }
    if let Some(p) = port {
        keys.push(("port", p.to_string()));
    }
    if let Some(t) = expires {
        chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| Failure::usage(format!("--expires `{t}` is not an RFC 3339 time ({e})")))?;
        keys.push(("expires", format!("{t:?}")));
    }
    keys.push(("note", format!("{:?}", format!("false positive: {note}"))));
    let mut out = String::from("\n[[policy.suppress]]\n");
    for (k, v) in keys {
        out.push_str(&format!("{k} = {v}\n"));
    }
    Ok(out)
}

pub fn feedback(args: FeedbackArgs) -> Result<(), Failure> {
    let record = match &args.from {
        Some(p) => Some(find_record(p, args.incident_id, args.flow_id)?),
        None => None,
    };
    let now = tidewatch::sink::rfc3339_micros(tidewatch::micros_from_system_time(std::time::SystemTime::now()));
    let mut entry = json!({
        "ts": now,
        "decision": args.decision.json_name(),
        "note": args.note,
    });
    if let Some(id) = args.incident_id {
        entry["incident_id"] = id.into();
    }
    if let Some(id) = args.flow_id {
        entry["flow_id"] = id.into();
    }
    if let Some(r) = &record {
        entry["record"] = r.clone();
    }
    if let Some(c) = &args.capture {
        // Absolute, so training finds it from any directory.
        let c = std::fs::canonicalize(c)
            .map_err(|e| Failure::usage(format!("--capture {}: {e}; give the capture's path", c.display())))?;
        entry["capture"] = c.display().to_string().into();
    }
    if let Some(config) = &args.suppress_to {
        if args.decision != Decision::FalsePositive {
            return Err(Failure::usage("--suppress-to is for false positives"));
        }
        let r = record.as_ref().ok_or_else(|| Failure::usage("--suppress-to needs --from to know the actor"))?;
        let rule = suppress_rule(r, args.expires.as_deref(), &args.note)?;
        let old = std::fs::read_to_string(config)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", config.display())))?;
        let new = format!("{old}{rule}");
        // Refuse to leave a config the daemon would reject.
        let parsed: crate::config::Config = toml::from_str(&new)
            .map_err(|e| Failure::usage(format!("{} would not parse with the rule: {e}", config.display())))?;
        parsed.validate().map_err(|e| Failure::usage(format!("{} would be invalid: {e}", config.display())))?;
        std::fs::write(config, new).map_err(|e| Failure::runtime(format!("cannot write {}: {e}", config.display())))?;
        entry["suppress_rule_added_to"] = config.display().to_string().into();
        eprintln!("tidewatchd: added to {}:{rule}(send SIGHUP to the daemon to apply it)", config.display());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.file)
        .map_err(|e| Failure::usage(format!("cannot open {}: {e}", args.file.display())))?;
    writeln!(f, "{entry}").map_err(|e| Failure::runtime(format!("cannot write {}: {e}", args.file.display())))?;
    Ok(())
}
