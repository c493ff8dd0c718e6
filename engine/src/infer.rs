//! Inference: the [`Classifier`] trait and its ONNX Runtime implementation.
//!
//! ONNX Runtime is loaded at run time (ort's `load-dynamic`), never
//! downloaded at build time. `init_onnx_runtime` (feature `onnx`) finds the library, so a
//! missing or wrong one is an error that names the fix instead of a panic.

use std::path::Path;

use crate::error::{Error, Result};
use crate::features::{FEATURE_NAMES, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION};

/// ONNX metadata keys of the model contract (see `models/README.md`).
pub mod meta_keys {
    /// Name of the feature schema the model reads, e.g. `tidewatch-flow`.
    pub const SCHEMA: &str = "tidewatch.schema";
    /// Version of that feature schema, a whole number, e.g. `4`.
    pub const SCHEMA_VERSION: &str = "tidewatch.schema_version";
    /// Feature names the model reads, comma-separated, in row order.
    pub const FEATURES: &str = "tidewatch.features";
    /// Label names, comma-separated, in the order of the probability columns.
    pub const LABELS: &str = "tidewatch.labels";
    /// Name of the model, e.g. `baseline`.
    pub const MODEL_NAME: &str = "tidewatch.model_name";
    /// Version of the model, e.g. `1.0.0`.
    pub const MODEL_VERSION: &str = "tidewatch.model_version";
    /// Optional: JSON object of per-label alert thresholds, e.g. `{"scan": 0.9}`.
    pub const THRESHOLDS: &str = "tidewatch.thresholds";
    /// Optional: JSON array, the median of each feature over the benign
    /// training rows (feature order): what alerts are explained against.
    pub const BENIGN_MEDIANS: &str = "tidewatch.benign_medians";
}

/// What a model says about itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// Name of the model, e.g. `baseline`.
    pub name: String,
    /// Version of the model, e.g. `1.0.0`.
    pub version: String,
    /// Name of the feature schema the model reads, e.g. `tidewatch-flow`.
    pub schema: String,
    /// Version of that feature schema.
    pub schema_version: u32,
    /// Names of the features the model reads, in row order.
    pub features: Vec<String>,
    /// Names of the labels, in the order the model writes their probabilities.
    pub labels: Vec<String>,
    /// Alert threshold of each label, in label order (0 where none was set):
    /// a row whose best label scores below its threshold is called `benign`.
    /// Chosen on validation data to hold the false-alarm target.
    pub thresholds: Vec<f32>,
    /// Median of each feature over benign training rows, in feature order
    /// (empty when the model has none: alerts then carry no reasons).
    pub benign_medians: Vec<f32>,
}

impl ModelInfo {
    /// A model that reads the rows this engine writes (its schema and
    /// feature names), with these labels, no alert thresholds and no
    /// benign medians: the description a custom `Classifier` starts from.
    pub fn for_this_engine(name: &str, version: &str, labels: &[&str]) -> Self {
        ModelInfo {
            name: name.into(),
            version: version.into(),
            schema: SCHEMA_NAME.into(),
            schema_version: SCHEMA_VERSION,
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            thresholds: vec![0.0; labels.len()],
            benign_medians: Vec::new(),
        }
    }

    /// The label a row gets from its probabilities: the most probable one,
    /// unless it scores below its alert threshold, then `benign` (when the
    /// model has that label). Returns the label's index and probability;
    /// `None` when a probability is not finite.
    pub fn decide(&self, probabilities: &[f32]) -> Option<(usize, f32)> {
        if probabilities.iter().any(|p| !p.is_finite()) {
            return None;
        }
        let (best, score) =
            probabilities.iter().enumerate().fold((0, f32::MIN), |acc, (j, p)| if *p > acc.1 { (j, *p) } else { acc });
        let threshold = self.thresholds.get(best).copied().unwrap_or(0.0);
        if score < threshold {
            if let Some(b) = self.labels.iter().position(|l| l == "benign") {
                return Some((b, probabilities.get(b).copied().unwrap_or(0.0)));
            }
        }
        Some((best, score))
    }

    /// Parses the `tidewatch.benign_medians` metadata value: one finite
    /// number per feature, or nothing.
    pub fn parse_benign_medians(features: usize, value: Option<&str>) -> std::result::Result<Vec<f32>, String> {
        let Some(v) = value else { return Ok(Vec::new()) };
        let m: Vec<f32> = serde_json::from_str(v)
            .map_err(|e| format!("metadata `{}` is not a JSON array of numbers: {e}", meta_keys::BENIGN_MEDIANS))?;
        if m.len() != features || m.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "metadata `{}` has {} values for {features} features (or a non-finite one)",
                meta_keys::BENIGN_MEDIANS,
                m.len()
            ));
        }
        Ok(m)
    }

    /// Parses the `tidewatch.thresholds` metadata value against `labels`.
    pub fn parse_thresholds(labels: &[String], json: Option<&str>) -> std::result::Result<Vec<f32>, String> {
        let mut out = vec![0.0; labels.len()];
        let Some(json) = json else { return Ok(out) };
        let map: std::collections::BTreeMap<String, f64> = serde_json::from_str(json)
            .map_err(|e| format!("metadata `{}` is not a JSON object of numbers: {e}", meta_keys::THRESHOLDS))?;
        for (label, t) in map {
            let Some(i) = labels.iter().position(|l| *l == label) else {
                return Err(format!("metadata `{}` names `{label}`, which is not a label", meta_keys::THRESHOLDS));
            };
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("metadata `{}`: threshold {t} of `{label}` is not in 0..1", meta_keys::THRESHOLDS));
            }
            out[i] = t as f32;
        }
        Ok(out)
    }

    /// Checks that a classifier's description fits this engine: the feature
    /// schema it reads is the one the engine writes, it names its labels
    /// (each once), and its thresholds and benign medians line up with them.
    /// The engine runs this on every classifier it is given, at `build` and
    /// on a swap.
    pub fn validate(&self) -> Result<()> {
        let fail = |reason: String| Err(Error::Classifier { model: self.id(), reason });
        if let Some(model_schema) = self.other_schema() {
            return fail(format!(
                "it reads feature schema {model_schema} but this engine writes {}; describe the rows it is \
                 given with tidewatch::features::{{SCHEMA_NAME, SCHEMA_VERSION, FEATURE_NAMES}}",
                crate::features::schema_id()
            ));
        }
        if self.labels.is_empty() {
            return fail("it names no label; ModelInfo::labels names each probability it writes, in order".into());
        }
        if let Some(l) = self.labels.iter().enumerate().find(|(i, l)| self.labels[..*i].contains(l)) {
            return fail(format!("label `{}` is named twice", l.1));
        }
        if self.thresholds.len() != self.labels.len() {
            return fail(format!(
                "it has {} thresholds for {} labels; give one per label (0 for none)",
                self.thresholds.len(),
                self.labels.len()
            ));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(0.0..=1.0).contains(*t)) {
            return fail(format!("threshold {t} is not between 0 and 1"));
        }
        if !self.benign_medians.is_empty()
            && (self.benign_medians.len() != NUM_FEATURES || self.benign_medians.iter().any(|m| !m.is_finite()))
        {
            return fail(format!(
                "it has {} benign medians (or a non-finite one); give none or one finite value per feature ({NUM_FEATURES})",
                self.benign_medians.len()
            ));
        }
        Ok(())
    }

    /// `None` when this model reads the rows this engine writes; otherwise
    /// its schema as shown in errors (`tidewatch-flow v3`, or with "(with
    /// other feature names)" when only the names differ).
    fn other_schema(&self) -> Option<String> {
        let same_names =
            self.features.len() == NUM_FEATURES && self.features.iter().zip(FEATURE_NAMES).all(|(a, b)| a == b);
        if self.schema == SCHEMA_NAME && self.schema_version == SCHEMA_VERSION && same_names {
            return None;
        }
        let schema = format!("{} v{}", self.schema, self.schema_version);
        Some(if same_names || self.schema_version != SCHEMA_VERSION {
            schema
        } else {
            format!("{schema} (with other feature names)")
        })
    }

    /// `name@version`, as written in each verdict's `model` field.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks that this model reads the rows this engine writes.
    pub fn check_schema(&self, path: &Path) -> Result<()> {
        if let Some(model_schema) = self.other_schema() {
            let engine_schema = crate::features::schema_id();
            return Err(Error::SchemaMismatch { path: path.to_path_buf(), model_schema, engine_schema });
        }
        if self.labels.is_empty() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                reason: format!("metadata key {} lists no label", meta_keys::LABELS),
                source: None,
            });
        }
        Ok(())
    }
}

/// A model that turns feature rows into class probabilities.
///
/// Contract: `features` holds `rows` rows of [`NUM_FEATURES`] values each;
/// the classifier writes `rows * info().labels.len()` probabilities into
/// `probabilities`, row by row, in label order. It is called from one
/// thread at a time.
pub trait Classifier: Send {
    /// What the model says about itself: schema, features and labels.
    fn info(&self) -> &ModelInfo;
    /// Writes the label probabilities of `rows` feature rows into `probabilities`.
    fn classify(&mut self, features: &[f32], rows: usize, probabilities: &mut [f32]) -> Result<()>;
}

#[cfg(feature = "onnx")]
mod onnx;
#[cfg(feature = "onnx")]
pub use onnx::{init_onnx_runtime, inspect_model, runtime_candidates, OnnxClassifier, ORT_LIBRARY_FILE};

#[cfg(test)]
mod tests {
    use super::*;

    fn info(thresholds: &str) -> std::result::Result<ModelInfo, String> {
        let labels: Vec<String> = ["benign", "scan", "dos"].iter().map(|s| s.to_string()).collect();
        let thresholds = ModelInfo::parse_thresholds(&labels, Some(thresholds))?;
        Ok(ModelInfo {
            name: "t".into(),
            version: "1".into(),
            schema: SCHEMA_NAME.into(),
            schema_version: SCHEMA_VERSION,
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            labels,
            thresholds,
            benign_medians: Vec::new(),
        })
    }

    #[test]
    fn benign_medians_are_one_finite_number_per_feature() {
        assert_eq!(ModelInfo::parse_benign_medians(2, None), Ok(vec![]));
        assert_eq!(ModelInfo::parse_benign_medians(2, Some("[1, 2.5]")), Ok(vec![1.0, 2.5]));
        assert!(ModelInfo::parse_benign_medians(3, Some("[1, 2.5]")).unwrap_err().contains("2 values for 3"));
        assert!(ModelInfo::parse_benign_medians(1, Some("{}")).is_err());
    }

    #[test]
    fn thresholds_decide_between_the_best_label_and_benign() {
        let m = info(r#"{"scan": 0.9, "dos": 0.5}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.thresholds, vec![0.0, 0.9, 0.5]);
        assert_eq!(m.decide(&[0.2, 0.8, 0.0]), Some((0, 0.2)));
        assert_eq!(m.decide(&[0.05, 0.95, 0.0]), Some((1, 0.95)));
        assert_eq!(m.decide(&[0.4, 0.0, 0.6]), Some((2, 0.6)));
        assert_eq!(m.decide(&[0.1, f32::NAN, 0.6]), None);
        // No thresholds: the most probable label.
        assert_eq!(info("{}").map(|m| m.decide(&[0.2, 0.8, 0.0])), Ok(Some((1, 0.8))));
    }

    #[test]
    fn bad_thresholds_are_refused_naming_the_problem() {
        assert!(info(r#"{"exfil": 0.9}"#).is_err_and(|e| e.contains("`exfil`")));
        assert!(info(r#"{"scan": 1.5}"#).is_err_and(|e| e.contains("not in 0..1")));
        assert!(info("[0.5]").is_err_and(|e| e.contains("tidewatch.thresholds")));
    }
}
