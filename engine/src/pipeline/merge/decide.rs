//! Deciding: a scored row becomes a verdict. The model's thresholds pick
//! the label (`ModelInfo::decide`), the operator's policy may suppress an
//! alert, an alert its incident wants explained is explained from its own
//! row, and alerts join (or open) their incident, in verdict order.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::stats::StageCounts;
use super::batch::{Pending, Scored};
use crate::error::Error;
use crate::features::NUM_FEATURES;
use crate::incident::{Incident, IncidentConfig, IncidentTracker};
use crate::infer::ModelInfo;
use crate::policy::{Policy, Suppressed, SuppressedStats};
use crate::sink::{Scores, Trigger, Verdict};

pub(crate) struct Decider {
    labels: Arc<[Arc<str>]>,
    model_id: Arc<str>,
    /// Labels, thresholds and their rule of the current model.
    model_info: Option<ModelInfo>,
    /// Index of the `benign` label: its verdicts are not alerts.
    benign: Option<usize>,
    /// Deliver an end verdict only when it differs from the early one.
    final_only_if_changed: bool,
    /// Early label of each open flow that had one (only with
    /// `final_only_if_changed`; bounded by the flow tables' capacity). By
    /// name, not index: a swapped model may order its labels differently.
    early_labels: rustc_hash::FxHashMap<u64, Arc<str>>,
    pub policy: Policy,
    pub policy_swap: Option<crossbeam_channel::Receiver<Policy>>,
    /// Replacement live settings (final verdicts, incidents), taken between batches.
    pub settings_swap: Option<crossbeam_channel::Receiver<super::super::builder::LiveSettings>>,
    explainer: crate::explain::Explainer,
    /// Alert verdicts grouped into incidents, fed in verdict order.
    pub incidents: IncidentTracker,
    pub verdicts_by_label: BTreeMap<String, u64>,
    pub verdicts_early: u64,
    pub verdicts_end: u64,
    pub verdicts_host: u64,
    /// End verdicts not delivered because they repeated the early label.
    pub verdicts_unchanged: u64,
    pub suppressed: SuppressedStats,
    /// Alerts explained (one classifier call each).
    pub explained: u64,
    /// Rows the classifier scored with NaN or infinity (each stops the engine with an error).
    pub non_finite_scores: u64,
    /// Scored rows received; verdicts sent on; unchanged end verdicts
    /// discarded; rows that failed (non-finite scores, a failed explanation).
    pub counts: StageCounts,
}

impl Decider {
    pub fn new(
        model: Option<&ModelInfo>,
        final_only_if_changed: bool,
        incidents: IncidentConfig,
        policy: Policy,
    ) -> Self {
        let mut d = Self {
            labels: Arc::new([]),
            model_id: Arc::from(""),
            model_info: None,
            benign: None,
            final_only_if_changed,
            early_labels: Default::default(),
            policy,
            policy_swap: None,
            settings_swap: None,
            explainer: Default::default(),
            incidents: IncidentTracker::new(incidents),
            verdicts_by_label: Default::default(),
            verdicts_early: 0,
            verdicts_end: 0,
            verdicts_host: 0,
            verdicts_unchanged: 0,
            suppressed: SuppressedStats::default(),
            explained: 0,
            non_finite_scores: 0,
            counts: StageCounts::default(),
        };
        if let Some(m) = model {
            d.set_model(m);
        }
        d
    }

    /// Takes a (new) model's labels, thresholds and identity.
    pub fn set_model(&mut self, info: &ModelInfo) {
        self.labels = info.labels.iter().map(|l| Arc::from(l.as_str())).collect();
        self.benign = self.labels.iter().position(|l| &**l == "benign");
        self.model_id = Arc::from(info.id().as_str());
        self.model_info = Some(info.clone());
    }

    /// Applies the latest replacement policy and live settings, if any
    /// came (between batches).
    pub fn take_swaps(&mut self) {
        if let Some(p) = self.policy_swap.as_ref().and_then(|rx| rx.try_iter().last()) {
            self.policy = p;
        }
        if let Some(s) = self.settings_swap.as_ref().and_then(|rx| rx.try_iter().last()) {
            if !s.final_verdicts_only_if_changed {
                self.early_labels = Default::default();
            }
            self.final_only_if_changed = s.final_verdicts_only_if_changed;
            self.incidents.set_config(s.incidents);
        }
    }

    pub fn n_labels(&self) -> usize {
        self.labels.len()
    }

    /// Row `i` of a scored batch as a verdict. Incident records that fall
    /// due before it, and the one it opens or updates, are added to
    /// `incident_out` (they go out before it). `Ok(None)`: an end verdict
    /// that repeats its early label and is not delivered.
    pub fn decide(
        &mut self,
        (record, _, detected_at): Pending,
        scored: &mut Scored<'_>,
        i: usize,
        incident_out: &mut Vec<Incident>,
    ) -> Result<Option<Verdict>, Error> {
        self.counts.received += 1;
        let probs = scored.probabilities(i);
        let decided = self.model_info.as_ref().and_then(|m| m.decide(probs));
        let Some((best, score, label)) = decided.and_then(|(b, s)| Some((b, s, self.labels.get(b)?.clone()))) else {
            self.non_finite_scores += 1;
            self.counts.failed += 1;
            return Err(Error::inference(format!(
                "the model gave non-finite scores {probs:?} for flow {}; check the model",
                record.flow_id
            )));
        };
        // An end verdict that repeats the flow's early label is not
        // delivered (counted), but still counts in its incident.
        let mut deliver = true;
        if self.final_only_if_changed {
            match record.trigger {
                Trigger::Early => {
                    self.early_labels.insert(record.flow_id, label.clone());
                }
                Trigger::End => deliver = self.early_labels.remove(&record.flow_id).as_deref() != Some(&*label),
                Trigger::Host => {}
            }
        }
        let mut verdict = Verdict {
            flow: record,
            label,
            score,
            scores: Scores::new(self.labels.clone(), probs),
            model: self.model_id.clone(),
            detected_at,
            incident_id: None,
            suppressed: None,
            reasons: None,
            reasons_inherited: false,
        };
        // Closings and updates due before this verdict go first, then
        // policy; an alert it lets through joins (or opens) its incident
        // before it is delivered, and learns its id.
        self.incidents.poll(detected_at, incident_out);
        if Some(best) != self.benign {
            verdict.suppressed = self.policy.judge(&verdict);
            if verdict.suppressed.is_none() {
                let medians = self.model_info.as_ref().map_or(&[][..], |m| &m.benign_medians[..]);
                if !medians.is_empty() && self.incidents.wants_reasons(&verdict) {
                    let row = &scored.rows[i * NUM_FEATURES..(i + 1) * NUM_FEATURES];
                    let n_labels = scored.n_labels;
                    match self.explainer.explain(&mut *scored.classifier, medians, row, best, n_labels, score) {
                        Ok(r) => {
                            self.explained += 1;
                            verdict.reasons = Some(r);
                        }
                        Err(e) => {
                            self.counts.failed += 1;
                            return Err(e);
                        }
                    }
                }
                if let Some(m) = self.incidents.observe(&verdict, incident_out) {
                    verdict.incident_id = Some(m.incident_id);
                    if verdict.reasons.is_none() && m.reasons.is_some() {
                        verdict.reasons = m.reasons;
                        verdict.reasons_inherited = true;
                    }
                    let limit = self.policy.max_alerts_per_incident_per_minute;
                    if limit > 0 && m.alerts_this_minute > limit {
                        verdict.suppressed = Some(Suppressed::RateLimit);
                    }
                }
            }
        }
        if !deliver {
            self.verdicts_unchanged += 1;
            self.counts.discarded += 1;
            return Ok(None);
        }
        if let Some(s) = verdict.suppressed {
            self.suppressed.count(s);
        }
        match self.verdicts_by_label.get_mut(&*verdict.label) {
            Some(n) => *n += 1,
            None => {
                self.verdicts_by_label.insert(verdict.label.to_string(), 1);
            }
        }
        match verdict.flow.trigger {
            Trigger::Early => self.verdicts_early += 1,
            Trigger::End => self.verdicts_end += 1,
            Trigger::Host => self.verdicts_host += 1,
        }
        self.counts.sent += 1;
        Ok(Some(verdict))
    }
}
