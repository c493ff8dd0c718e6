//! Reasons for an alert: the few features that moved its score most.
//!
//! Method: occlusion against benign medians. Each feature of the alert's
//! row that differs from the median of benign training rows (carried by the
//! model, `tidewatch.benign_medians`) is set to that median, one at a time,
//! and the row is scored again; a feature's `effect` is how much the
//! alert's label lost. The features with the largest effects are the
//! reasons, each with its value and the benign median (`typical`). One
//! classifier call per explained alert (≤ 91 rows, padded to 16 as every
//! batch is), so reasons are computed for alerts only, and within an
//! incident for at most its first [`EXPLAINED_PER_MINUTE`] alerts a minute;
//! the others carry their incident's latest reasons.
//!
//! Occlusion is model-agnostic and exact for what it measures (the score
//! with one feature made ordinary), but it misses effects that need two
//! features to change together; the reasons are a pointer for an analyst,
//! not a proof.

use std::sync::Arc;

use crate::error::Result;
use crate::features::FEATURE_NAMES;
use crate::infer::Classifier;

/// Reasons given per alert at most.
pub const MAX_REASONS: usize = 3;
/// Effects smaller than this are not reasons (score points, 0–1).
pub const MIN_EFFECT: f32 = 0.01;
/// Alerts of one incident explained per minute; later ones inherit.
pub const EXPLAINED_PER_MINUTE: u32 = 3;

/// One reason: a feature, its value, the benign median, and how much the
/// alert's score drops when the feature takes the median.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Reason {
    /// Name of the feature, as in `FEATURE_NAMES`.
    pub feature: &'static str,
    /// The feature's value in the alert's row.
    pub value: f32,
    /// Median of the feature over benign training rows.
    pub typical: f32,
    /// Drop in the alert label's probability when the feature takes `typical` (0–1).
    pub effect: f32,
}

impl std::fmt::Display for Reason {
    /// `src_distinct_ports=312 (typical 1)`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={} (typical {})", self.feature, self.value, self.typical)
    }
}

/// Scratch space reused across alerts (no allocation per alert beyond the reasons).
#[derive(Default)]
pub(crate) struct Explainer {
    rows: Vec<f32>,
    probabilities: Vec<f32>,
    changed: Vec<usize>,
}

impl Explainer {
    /// The reasons `row` scored `score` for label `label` (of `n_labels`).
    pub fn explain(
        &mut self,
        classifier: &mut dyn Classifier,
        medians: &[f32],
        row: &[f32],
        label: usize,
        n_labels: usize,
        score: f32,
    ) -> Result<Arc<[Reason]>> {
        let width = row.len();
        self.changed.clear();
        self.changed.extend((0..width.min(medians.len())).filter(|&j| row[j] != medians[j]));
        if self.changed.is_empty() || n_labels == 0 {
            return Ok(Arc::from(Vec::new()));
        }
        let n = self.changed.len();
        let padded = n.div_ceil(16) * 16;
        self.rows.clear();
        self.rows.resize(padded * width, 0.0);
        for (i, &j) in self.changed.iter().enumerate() {
            let r = &mut self.rows[i * width..(i + 1) * width];
            r.copy_from_slice(row);
            r[j] = medians[j];
        }
        self.probabilities.clear();
        self.probabilities.resize(padded * n_labels, 0.0);
        classifier.classify(&self.rows, padded, &mut self.probabilities)?;
        let mut reasons: Vec<Reason> = self
            .changed
            .iter()
            .enumerate()
            .filter_map(|(i, &j)| {
                let p = self.probabilities[i * n_labels + label];
                let effect = score - p;
                (p.is_finite() && effect >= MIN_EFFECT).then(|| Reason {
                    feature: FEATURE_NAMES.get(j).copied().unwrap_or("?"),
                    value: row[j],
                    typical: medians[j],
                    effect,
                })
            })
            .collect();
        // Largest effect first; ties in feature order (deterministic).
        reasons.sort_by(|a, b| b.effect.total_cmp(&a.effect));
        reasons.truncate(MAX_REASONS);
        Ok(Arc::from(reasons))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::features::{NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION};
    use crate::infer::ModelInfo;

    /// Scores "alert" as 0.5·[feature 3 > 10] + 0.3·[feature 7 > 1] + 0.2·[feature 9 > 0].
    struct Linear(ModelInfo);

    impl Classifier for Linear {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn classify(&mut self, rows: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
            for i in 0..n {
                let r = &rows[i * NUM_FEATURES..(i + 1) * NUM_FEATURES];
                let a = 0.5 * f32::from(u8::from(r[3] > 10.0))
                    + 0.3 * f32::from(u8::from(r[7] > 1.0))
                    + 0.2 * f32::from(u8::from(r[9] > 0.0));
                out[i * 2] = 1.0 - a;
                out[i * 2 + 1] = a;
            }
            Ok(())
        }
    }

    #[test]
    fn the_features_that_made_the_alert_come_first_with_their_typical_values() {
        let mut c = Linear(ModelInfo {
            name: "l".into(),
            version: "1".into(),
            schema: SCHEMA_NAME.into(),
            schema_version: SCHEMA_VERSION,
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            labels: vec!["benign".into(), "alert".into()],
            thresholds: vec![0.0, 0.0],
            benign_medians: Vec::new(),
        });
        let medians = vec![0.0; NUM_FEATURES];
        let mut row = vec![0.0; NUM_FEATURES];
        row[3] = 312.0; // moves the score by 0.5
        row[7] = 4.0; // by 0.3
        row[9] = 1.0; // by 0.2
        row[20] = 5.0; // differs, moves nothing
        let reasons = Explainer::default().explain(&mut c, &medians, &row, 1, 2, 1.0).unwrap();
        let got: Vec<(&str, f32, f32)> = reasons.iter().map(|r| (r.feature, r.value, r.typical)).collect();
        assert_eq!(
            got,
            vec![(FEATURE_NAMES[3], 312.0, 0.0), (FEATURE_NAMES[7], 4.0, 0.0), (FEATURE_NAMES[9], 1.0, 0.0)]
        );
        let effects: Vec<f32> = reasons.iter().map(|r| (r.effect * 100.0).round() / 100.0).collect();
        assert_eq!(effects, vec![0.5, 0.3, 0.2]);
        assert_eq!(reasons[0].to_string(), format!("{}=312 (typical 0)", FEATURE_NAMES[3]));
        // A row that is all median has nothing to explain.
        assert!(Explainer::default().explain(&mut c, &medians, &medians, 1, 2, 0.0).unwrap().is_empty());
    }
}
