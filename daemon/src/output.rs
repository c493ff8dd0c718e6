//! Output addresses (`json:PATH`, `json:-`) turned into verdict sinks.

use std::fs::File;
use std::io::Write;

use tidewatch::JsonLinesSink;

use crate::Failure;

pub struct Outputs {
    pub sinks: Vec<JsonLinesSink<Box<dyn Write + Send>>>,
    /// Where each output goes, for the summary.
    pub descriptions: Vec<String>,
}

pub fn open_all(specs: &[String]) -> Result<Outputs, Failure> {
    let mut out = Outputs { sinks: Vec::new(), descriptions: Vec::new() };
    for spec in specs {
        let Some(path) = spec.strip_prefix("json:") else {
            return Err(Failure::usage(format!("unknown output `{spec}`: use json:PATH or json:- (stdout)")));
        };
        let writer: Box<dyn Write + Send> = if path == "-" {
            out.descriptions.push("stdout (JSON lines)".into());
            Box::new(std::io::stdout())
        } else if path.is_empty() {
            return Err(Failure::usage("output `json:` needs a path, or - for stdout"));
        } else {
            let f = File::create(path).map_err(|e| Failure::usage(format!("cannot create output file {path}: {e}")))?;
            out.descriptions.push(format!("{path} (JSON lines)"));
            Box::new(f)
        };
        out.sinks.push(JsonLinesSink::new(writer));
    }
    Ok(out)
}
