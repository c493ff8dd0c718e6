//! Inference: the [`Classifier`] trait and its ONNX Runtime implementation.
//!
//! ONNX Runtime is loaded at run time (ort's `load-dynamic`), never
//! downloaded at build time. [`init_onnx_runtime`] finds the library, so a
//! missing or wrong one is an error that names the fix instead of a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::features::{FEATURE_NAMES, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION};

/// ONNX metadata keys of the model contract (see `models/README.md`).
pub mod meta_keys {
    pub const SCHEMA: &str = "tidewatch.schema";
    pub const SCHEMA_VERSION: &str = "tidewatch.schema_version";
    pub const FEATURES: &str = "tidewatch.features";
    pub const LABELS: &str = "tidewatch.labels";
    pub const MODEL_NAME: &str = "tidewatch.model_name";
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
    pub name: String,
    pub version: String,
    pub schema: String,
    pub schema_version: u32,
    pub features: Vec<String>,
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
        let engine_schema = crate::features::schema_id();
        let same_names =
            self.features.len() == NUM_FEATURES && self.features.iter().zip(FEATURE_NAMES).all(|(a, b)| a == b);
        if self.schema != SCHEMA_NAME || self.schema_version != SCHEMA_VERSION || !same_names {
            return fail(format!(
                "it reads feature schema {} v{}{} but this engine writes {engine_schema}; describe the rows it is \
                 given with tidewatch::features::{{SCHEMA_NAME, SCHEMA_VERSION, FEATURE_NAMES}}",
                self.schema,
                self.schema_version,
                if same_names { "" } else { " (other feature names)" }
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

    /// `name@version`, as written in each verdict's `model` field.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks that this model reads the rows this engine writes.
    pub fn check_schema(&self, path: &Path) -> Result<()> {
        let engine_schema = crate::features::schema_id();
        let model_schema = format!("{} v{}", self.schema, self.schema_version);
        let same_names =
            self.features.len() == NUM_FEATURES && self.features.iter().zip(FEATURE_NAMES).all(|(a, b)| a == b);
        if self.schema != SCHEMA_NAME || self.schema_version != SCHEMA_VERSION || !same_names {
            let model_schema = if same_names || self.schema_version != SCHEMA_VERSION {
                model_schema
            } else {
                format!("{model_schema} (with other feature names)")
            };
            return Err(Error::SchemaMismatch { path: path.to_path_buf(), model_schema, engine_schema });
        }
        if self.labels.is_empty() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                reason: format!("metadata key {} lists no label", meta_keys::LABELS),
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
    fn info(&self) -> &ModelInfo;
    fn classify(&mut self, features: &[f32], rows: usize, probabilities: &mut [f32]) -> Result<()>;
}

/// The loaded ONNX Runtime. Only a success is kept: after a failed load
/// (a wrong path), a later call with the right path still loads it.
static RUNTIME: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();
/// Serialises first loads, so two threads never load two runtimes.
static RUNTIME_LOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// File name of the ONNX Runtime library that `make setup` installs.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

/// Where to look for ONNX Runtime, in order: the explicit path, the
/// `ORT_DYLIB_PATH` environment variable, then the project-local `.ort/`
/// folder (next to the executable's `target/` or in the current directory),
/// then `PREFIX/lib/tidewatch/` of an installed `PREFIX/bin/` executable.
pub fn runtime_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/tidewatchd, or target/<profile>/deps/<test>
        for up in exe.ancestors().skip(1).take(4) {
            out.push(up.join(".ort").join(ORT_LIBRARY_FILE));
        }
        // `make install`: PREFIX/bin/tidewatchd beside PREFIX/lib/tidewatch/.
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            out.push(prefix.join("lib").join("tidewatch").join(ORT_LIBRARY_FILE));
        }
    }
    out.push(PathBuf::from(".ort").join(ORT_LIBRARY_FILE));
    out
}

/// Loads ONNX Runtime once per process and returns the library's path.
/// Once loaded, later calls return that path whatever path they are given;
/// a failed load is not kept, so a later call may try another path.
pub fn init_onnx_runtime(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some((p, _)) = RUNTIME.get() {
        return Ok(p.clone());
    }
    let _first = RUNTIME_LOAD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((p, _)) = RUNTIME.get() {
        return Ok(p.clone());
    }
    let candidates = runtime_candidates(explicit);
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Runtime(format!(
            "ONNX Runtime library not found (looked for {}); install libonnxruntime.so 1.31 or newer and \
             give its path to EngineBuilder::onnx_runtime or in ORT_DYLIB_PATH",
            tried.join(", ")
        )));
    };
    let path = found.canonicalize().unwrap_or_else(|_| found.clone());
    let builder = ort::init_from(&path).map_err(|e| {
        Error::Runtime(format!(
            "cannot load ONNX Runtime from {}: {e}; give the path of libonnxruntime.so 1.31 or newer to \
             EngineBuilder::onnx_runtime or in ORT_DYLIB_PATH",
            path.display()
        ))
    })?;
    let env = builder
        .with_name("tidewatch")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::Runtime(format!("cannot start ONNX Runtime from {}: {e}", path.display())))?;
    Ok(RUNTIME.get_or_init(|| (path, env)).0.clone())
}

fn environment() -> Result<ort::environment::Environment> {
    match RUNTIME.get() {
        Some((_, env)) => Ok(env.clone()),
        None => Err(Error::Runtime("ONNX Runtime is not initialised; call init_onnx_runtime first".into())),
    }
}

/// A classifier backed by an ONNX model run in ONNX Runtime.
pub struct OnnxClassifier {
    session: ort::session::Session,
    info: ModelInfo,
    probabilities_output: String,
}

/// Reads the model's metadata contract; any missing key is an error naming it.
fn read_info(session: &ort::session::Session, path: &Path) -> Result<ModelInfo> {
    let bad = |reason: String| Error::Model { path: path.to_path_buf(), reason };
    let meta = session.metadata().map_err(|e| bad(format!("cannot read metadata: {e}")))?;
    let get = |key: &str| {
        meta.custom(key).ok_or_else(|| {
            bad(format!("metadata key `{key}` is missing: this is not a Tidewatch model (one names its schema, features and labels in its metadata)"))
        })
    };
    let split = |s: String| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect::<Vec<_>>();
    let schema_version = get(meta_keys::SCHEMA_VERSION)?;
    let labels = split(get(meta_keys::LABELS)?);
    let thresholds =
        ModelInfo::parse_thresholds(&labels, meta.custom(meta_keys::THRESHOLDS).as_deref()).map_err(bad)?;
    let features = split(get(meta_keys::FEATURES)?);
    let benign_medians =
        ModelInfo::parse_benign_medians(features.len(), meta.custom(meta_keys::BENIGN_MEDIANS).as_deref())
            .map_err(bad)?;
    Ok(ModelInfo {
        name: get(meta_keys::MODEL_NAME)?,
        version: get(meta_keys::MODEL_VERSION)?,
        schema: get(meta_keys::SCHEMA)?,
        schema_version: schema_version.parse().map_err(|_| {
            bad(format!("metadata `{}` = {schema_version:?} is not a number", meta_keys::SCHEMA_VERSION))
        })?,
        features,
        labels,
        thresholds,
        benign_medians,
    })
}

impl OnnxClassifier {
    /// Loads a model, reading ONNX Runtime from `runtime` (see
    /// [`runtime_candidates`] for the search when `None`).
    pub fn load(path: &Path, runtime: Option<&Path>) -> Result<Self> {
        init_onnx_runtime(runtime)?;
        let bad = |reason: String| Error::Model { path: path.to_path_buf(), reason };
        if !path.is_file() {
            return Err(bad("no such file (the bundled model is models/lab/model.onnx)".into()));
        }
        let env = environment()?;
        let mut builder = ort::session::Session::builder(&env).map_err(|e| bad(e.to_string()))?;
        // The engine batches rows; one intra-op thread per classifier keeps
        // inference from competing with packet processing for cores.
        builder = builder.with_intra_threads(1).map_err(|e| bad(e.to_string()))?;
        let session = builder.commit_from_file(path).map_err(|e| bad(format!("not a loadable ONNX model: {e}")))?;
        let info = read_info(&session, path)?;
        info.check_schema(path)?;
        if session.inputs().len() != 1 {
            return Err(bad(format!(
                "expects {} inputs; a Tidewatch model has one float tensor [N, {NUM_FEATURES}]",
                session.inputs().len()
            )));
        }
        if let Some(shape) = session.inputs()[0].dtype().tensor_shape() {
            let dims: &[i64] = shape;
            if dims.len() != 2 || (dims[1] >= 0 && dims[1] as usize != NUM_FEATURES) {
                return Err(bad(format!("input shape {dims:?} does not take rows of {NUM_FEATURES} features")));
            }
        }
        let probabilities_output = session
            .outputs()
            .iter()
            .find(|o| o.name() == "probabilities")
            .map(|o| o.name().to_string())
            .ok_or_else(|| bad("has no output named `probabilities` (export with ZipMap off)".into()))?;
        Ok(Self { session, info, probabilities_output })
    }
}

impl Classifier for OnnxClassifier {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn classify(&mut self, features: &[f32], rows: usize, probabilities: &mut [f32]) -> Result<()> {
        let labels = self.info.labels.len();
        if features.len() != rows * NUM_FEATURES || probabilities.len() != rows * labels {
            return Err(Error::Inference(format!("buffer sizes do not match {rows} rows")));
        }
        let input = ort::value::TensorRef::from_array_view(([rows, NUM_FEATURES], features))
            .map_err(|e| Error::Inference(e.to_string()))?;
        let outputs = self.session.run(ort::inputs![input]).map_err(|e| Error::Inference(e.to_string()))?;
        let value = outputs
            .get(&self.probabilities_output)
            .ok_or_else(|| Error::Inference("model returned no probabilities".into()))?;
        let (_, probs) = value.try_extract_tensor::<f32>().map_err(|e| Error::Inference(e.to_string()))?;
        if probs.len() != probabilities.len() {
            return Err(Error::Inference(format!(
                "model returned {} probabilities for {rows} rows of {labels} labels",
                probs.len()
            )));
        }
        probabilities.copy_from_slice(probs);
        Ok(())
    }
}

/// Reads a model's metadata without the schema check, for `model info`.
pub fn inspect_model(path: &Path, runtime: Option<&Path>) -> Result<(ModelInfo, Result<()>)> {
    init_onnx_runtime(runtime)?;
    let bad = |reason: String| Error::Model { path: path.to_path_buf(), reason };
    let env = environment()?;
    let session = ort::session::Session::builder(&env)
        .map_err(|e| bad(e.to_string()))?
        .commit_from_file(path)
        .map_err(|e| bad(format!("not a loadable ONNX model: {e}")))?;
    let info = read_info(&session, path)?;
    let verdict = info.check_schema(path);
    Ok((info, verdict))
}

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
