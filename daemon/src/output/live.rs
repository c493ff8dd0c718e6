//! The outputs of `run`, changeable while it runs: SIGHUP can add and
//! remove outputs and change every syslog setting without a restart.
//!
//! The engine sees one sink, [`LiveOutputs`], that hands each record to
//! every current output. A reload never touches the engine's thread: the
//! control thread opens what is new and posts a *plan* (the new list, in
//! order: each output either kept as it runs, by its key, or newly opened);
//! the sink applies it before its next record, and finishes (drains) the
//! outputs the plan left out. An output whose address and settings did not
//! change keeps its queue, thread, file and counters, so nothing is lost
//! or counted twice across a reload. Outputs taken out are kept as
//! *retired* handles: their final counts stay in the summary and in the
//! metrics, so every record stays accounted for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tidewatch::{FlowRecord, Incident, SinkControl, SinkError, Verdict, VerdictSink};

use super::queue::{OutputHandle, QueuedSink};
use super::{open_all_with, open_one, output_key, parse_output, OutputOptions, SyslogFormatter};

/// One output of a plan: kept as it runs (by key) or newly opened.
struct Slot {
    key: String,
    opened: Option<QueuedSink>,
}

#[derive(Default)]
struct Handles {
    /// The outputs of the latest plan, in order.
    current: Vec<(String, OutputHandle)>,
    /// Outputs a reload took out, with their final counts.
    retired: Vec<OutputHandle>,
}

/// What the control thread and the engine's sink share.
#[derive(Default)]
struct Shared {
    plan: Mutex<Option<Vec<Slot>>>,
    has_plan: AtomicBool,
    handles: Mutex<Handles>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain data: keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The control thread's side: plans changes, lists the outputs.
#[derive(Clone, Default)]
pub struct OutputSwitch {
    shared: Arc<Shared>,
}

/// What a reload changed in the outputs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub kept: usize,
    pub opened: Vec<String>,
    pub removed: Vec<String>,
}

/// Opens `specs` and returns the engine's sink and the control thread's switch.
pub fn open(specs: &[String], opts: &OutputOptions) -> Result<(LiveOutputs, OutputSwitch), crate::Failure> {
    let outputs = open_all_with(specs, opts)?;
    let keys: Vec<String> = specs.iter().map(|s| output_key(s, opts)).collect();
    let current = keys.iter().cloned().zip(outputs.descriptions.handles().iter().cloned()).collect();
    let shared = Arc::new(Shared::default());
    *lock(&shared.handles) = Handles { current, retired: Vec::new() };
    let sinks = keys.into_iter().zip(outputs.sinks).collect();
    Ok((LiveOutputs { sinks, shared: shared.clone() }, OutputSwitch { shared }))
}

impl OutputSwitch {
    /// Every output the engine is or was writing to: the current ones,
    /// then those a reload took out (for stats, metrics and the summary).
    pub fn handles(&self) -> Vec<OutputHandle> {
        let h = lock(&self.shared.handles);
        h.current.iter().map(|(_, h)| h.clone()).chain(h.retired.iter().cloned()).collect()
    }

    /// The current outputs only.
    pub fn current(&self) -> Vec<OutputHandle> {
        lock(&self.shared.handles).current.iter().map(|(_, h)| h.clone()).collect()
    }

    /// One line per output with its counts (for the summary); those a
    /// reload took out say so.
    pub fn summary_lines(&self) -> Vec<String> {
        let h = lock(&self.shared.handles);
        let current = h.current.iter().map(|(_, h)| h.summary());
        current.chain(h.retired.iter().map(|h| format!("{} [taken out by a reload]", h.summary()))).collect()
    }

    /// Asks every current output to reopen its file or reconnect.
    pub fn reopen(&self) {
        for (_, h) in &lock(&self.shared.handles).current {
            h.reopen();
        }
    }

    /// Switches to `specs` with `opts`: outputs whose key is unchanged keep
    /// running; new ones are opened here (an error changes nothing); the
    /// engine's sink applies the change before its next record.
    pub fn change(&self, specs: &[String], opts: &OutputOptions) -> Result<Change, String> {
        /// Where each output of the new list comes from (a few per reload:
        /// size does not matter).
        #[allow(clippy::large_enum_variant)]
        enum From {
            Running(usize),
            Opened(QueuedSink, OutputHandle),
        }
        let addrs = specs.iter().map(|s| parse_output(s)).collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<String> = specs.iter().map(|s| output_key(s, opts)).collect();
        let mut handles = lock(&self.shared.handles);
        // Which current output each new one is (each kept at most once); the
        // others are opened first, so that if one fails nothing has changed.
        let mut kept = vec![false; handles.current.len()];
        let fmt = SyslogFormatter::new(&opts.syslog);
        let mut from = Vec::with_capacity(specs.len());
        for ((spec, addr), key) in specs.iter().zip(addrs).zip(&keys) {
            if let Some(i) = (0..kept.len()).find(|&i| !kept[i] && handles.current[i].0 == *key) {
                kept[i] = true;
                from.push(From::Running(i));
                continue;
            }
            match open_one(spec, addr, opts, Some(&fmt)) {
                Ok((sink, handle)) => from.push(From::Opened(sink, handle)),
                Err(e) => {
                    for f in from {
                        if let From::Opened(mut sink, _) = f {
                            let _ = sink.finish();
                        }
                    }
                    return Err(format!("output `{spec}`: {}", e.message));
                }
            }
        }
        // A plan not yet applied is replaced: the outputs it opened are kept
        // by this one or finished here.
        let mut unapplied: Vec<(String, QueuedSink)> = Vec::new();
        if let Some(old) = lock(&self.shared.plan).take() {
            unapplied = old.into_iter().filter_map(|s| s.opened.map(|o| (s.key, o))).collect();
        }
        let mut change = Change::default();
        let mut plan = Vec::new();
        let mut current = Vec::new();
        for ((spec, key), f) in specs.iter().zip(keys).zip(from) {
            match f {
                From::Running(i) => {
                    let sink = unapplied.iter().position(|(k, _)| *k == key).map(|j| unapplied.remove(j).1);
                    plan.push(Slot { key, opened: sink });
                    current.push(handles.current[i].clone());
                    change.kept += 1;
                }
                From::Opened(sink, handle) => {
                    plan.push(Slot { key: key.clone(), opened: Some(sink) });
                    current.push((key, handle));
                    change.opened.push(spec.clone());
                }
            }
        }
        for (_, mut sink) in unapplied {
            let _ = sink.finish();
        }
        let old = std::mem::replace(&mut handles.current, current);
        for ((_, h), keep) in old.into_iter().zip(kept) {
            if !keep {
                change.removed.push(h.spec.clone());
                handles.retired.push(h);
            }
        }
        *lock(&self.shared.plan) = Some(plan);
        self.shared.has_plan.store(true, Ordering::SeqCst);
        Ok(change)
    }
}

/// The sink the engine writes to: every current output, in order.
pub struct LiveOutputs {
    sinks: Vec<(String, QueuedSink)>,
    shared: Arc<Shared>,
}

impl LiveOutputs {
    /// Applies a posted plan: keeps, opens, and finishes what it left out.
    fn apply_plan(&mut self) {
        if !self.shared.has_plan.swap(false, Ordering::SeqCst) {
            return;
        }
        let Some(plan) = lock(&self.shared.plan).take() else { return };
        let mut old = std::mem::take(&mut self.sinks);
        for slot in plan {
            match slot.opened {
                Some(sink) => self.sinks.push((slot.key, sink)),
                None => {
                    if let Some(i) = old.iter().position(|(k, _)| *k == slot.key) {
                        self.sinks.push(old.remove(i));
                    }
                }
            }
        }
        // Taken out: drained (up to its flush timeout), its counts kept.
        for (_, mut sink) in old {
            if let Err(e) = sink.finish() {
                eprintln!("tidewatchd: output taken out by a reload ended with an error: {e}");
            }
        }
    }

    /// Hands one record to every output; the first error is returned,
    /// after every output had the record.
    fn each(
        &mut self,
        mut f: impl FnMut(&mut QueuedSink) -> Result<SinkControl, SinkError>,
    ) -> Result<SinkControl, SinkError> {
        self.apply_plan();
        let mut first_err = None;
        let mut control = SinkControl::Continue;
        for (_, s) in &mut self.sinks {
            match f(s) {
                Ok(SinkControl::Stop) => control = SinkControl::Stop,
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(control),
        }
    }
}

impl VerdictSink for LiveOutputs {
    fn verdict(&mut self, v: &Verdict) -> Result<SinkControl, SinkError> {
        self.each(|s| s.verdict(v))
    }

    fn incident(&mut self, i: &Incident) -> Result<SinkControl, SinkError> {
        self.each(|s| s.incident(i))
    }

    fn flow(&mut self, r: &FlowRecord) -> Result<SinkControl, SinkError> {
        self.each(|s| s.flow(r))
    }

    fn end_of_batch(&mut self) -> Result<(), SinkError> {
        self.each(|s| s.end_of_batch().map(|()| SinkControl::Continue)).map(|_| ())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.apply_plan();
        let mut first_err = None;
        for (_, s) in &mut self.sinks {
            if let Err(e) = s.finish() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::super::syslog::tests::verdict;
    use super::*;

    fn lines(path: &std::path::Path) -> usize {
        std::fs::read_to_string(path).unwrap_or_default().lines().count()
    }

    #[test]
    fn a_change_keeps_running_outputs_opens_new_ones_and_retires_the_rest() {
        let dir = std::env::temp_dir().join(format!("tidewatch-live-outputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a.jsonl"), dir.join("b.jsonl"), dir.join("c.jsonl"));
        let spec = |p: &std::path::Path| format!("json:{}", p.display());
        let opts = OutputOptions::live();
        let Ok((mut sink, switch)) = open(&[spec(&a), spec(&b)], &opts) else { panic!("cannot open") };
        sink.verdict(&verdict("dos")).unwrap();

        let change = switch.change(&[spec(&b), spec(&c)], &opts).unwrap();
        assert_eq!((change.kept, change.opened, change.removed), (1, vec![spec(&c)], vec![spec(&a)]));
        // An output that cannot be opened changes nothing (and `a`, opened
        // again on the way, is appended to, not wiped).
        let bad = format!("json:{}/no/such/dir/x.jsonl", dir.display());
        let err = switch.change(&[spec(&a), bad.clone()], &opts).unwrap_err();
        assert!(err.contains(&bad), "{err}");
        assert_eq!(switch.current().len(), 2);

        sink.verdict(&verdict("scan")).unwrap();
        sink.finish().unwrap();
        // a: the record before the change; b: both; c: the one after.
        assert_eq!((lines(&a), lines(&b), lines(&c)), (1, 2, 1));
        let current: Vec<String> = switch.current().iter().map(|h| h.spec.clone()).collect();
        assert_eq!(current, [spec(&b), spec(&c)]);
        let all = switch.handles();
        assert_eq!(all.len(), 3, "the retired output is still listed");
        assert_eq!(all[2].counters().sent, 1);
        let summary = switch.summary_lines();
        assert!(summary[2].ends_with("[taken out by a reload]") && summary[2].contains("sent 1,"), "{summary:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_syslog_settings_reopen_syslog_outputs_only() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let syslog = format!("syslog:udp://{}", sock.local_addr().unwrap());
        let opts = OutputOptions::default();
        let Ok((mut sink, switch)) = open(&[syslog.clone(), "json:-".into()], &opts) else { panic!("cannot open") };
        let mut louder = opts.clone();
        louder.syslog.send_benign = true;
        let change = switch.change(&[syslog.clone(), "json:-".into()], &louder).unwrap();
        assert_eq!((change.kept, change.opened, change.removed), (1, vec![syslog.clone()], vec![syslog.clone()]));
        // A second change before the engine applied the first replaces it.
        let change = switch.change(std::slice::from_ref(&syslog), &louder).unwrap();
        assert_eq!((change.kept, change.removed), (1, vec!["json:-".to_string()]));
        sink.finish().unwrap();
        assert_eq!(switch.current().len(), 1);
    }
}
