//! `OnnxClassifier`: a model in ONNX format, run by ONNX Runtime loaded
//! at run time (feature `onnx`, on by default). The model's metadata must
//! describe it as `ModelInfo` does; a mismatch is refused at load.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{meta_keys, Classifier, ModelInfo};
use crate::error::{Error, Result};
use crate::features::NUM_FEATURES;

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
        return Err(Error::Runtime {
            reason: format!(
                "ONNX Runtime library not found (looked for {}); install libonnxruntime.so 1.31 or newer and \
                 give its path to EngineBuilder::onnx_runtime or in ORT_DYLIB_PATH",
                tried.join(", ")
            ),
            source: None,
        });
    };
    let path = found.canonicalize().unwrap_or_else(|_| found.clone());
    let builder = ort::init_from(&path).map_err(|e| Error::Runtime {
        reason: format!(
            "cannot load ONNX Runtime from {}; give the path of libonnxruntime.so 1.31 or newer to \
             EngineBuilder::onnx_runtime or in ORT_DYLIB_PATH",
            path.display()
        ),
        source: Some(Box::new(e)),
    })?;
    let env = builder.with_name("tidewatch").with_telemetry(false).build().map_err(|e| Error::Runtime {
        reason: format!("cannot start ONNX Runtime from {}", path.display()),
        source: Some(Box::new(e)),
    })?;
    Ok(RUNTIME.get_or_init(|| (path, env)).0.clone())
}

fn environment() -> Result<ort::environment::Environment> {
    match RUNTIME.get() {
        Some((_, env)) => Ok(env.clone()),
        None => Err(Error::Runtime {
            reason: "ONNX Runtime is not initialised; call init_onnx_runtime first".into(),
            source: None,
        }),
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
    let bad = |reason: String| Error::Model { path: path.to_path_buf(), reason, source: None };
    let failed = |reason: &str, e: ort::Error| Error::Model {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: Some(Box::new(e)),
    };
    let meta = session.metadata().map_err(|e| failed("cannot read metadata", e))?;
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
        let bad = |reason: String| Error::Model { path: path.to_path_buf(), reason, source: None };
        let failed = |reason: &str, e: ort::Error| Error::Model {
            path: path.to_path_buf(),
            reason: reason.into(),
            source: Some(Box::new(e)),
        };
        if !path.is_file() {
            return Err(bad("no such file (the bundled model is models/lab/model.onnx)".into()));
        }
        let env = environment()?;
        let mut builder =
            ort::session::Session::builder(&env).map_err(|e| failed("ONNX Runtime refused the session settings", e))?;
        // The engine batches rows; one intra-op thread per classifier keeps
        // inference from competing with packet processing for cores.
        builder = builder
            .with_intra_threads(1)
            .map_err(|e| bad(format!("ONNX Runtime refused the session settings: {e}")))?;
        let session = builder.commit_from_file(path).map_err(|e| failed("not a loadable ONNX model", e))?;
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
            return Err(Error::inference(format!("buffer sizes do not match {rows} rows")));
        }
        let input = ort::value::TensorRef::from_array_view(([rows, NUM_FEATURES], features))
            .map_err(|e| Error::inference_from("cannot pass the feature rows to ONNX Runtime", e))?;
        let outputs = self
            .session
            .run(ort::inputs![input])
            .map_err(|e| Error::inference_from("ONNX Runtime could not run the model", e))?;
        let value = outputs
            .get(&self.probabilities_output)
            .ok_or_else(|| Error::inference("model returned no probabilities"))?;
        let (_, probs) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| Error::inference_from("the model's probabilities are not f32 values", e))?;
        if probs.len() != probabilities.len() {
            return Err(Error::inference(format!(
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
    let failed = |reason: &str, e: ort::Error| Error::Model {
        path: path.to_path_buf(),
        reason: reason.into(),
        source: Some(Box::new(e)),
    };
    let env = environment()?;
    let session = ort::session::Session::builder(&env)
        .map_err(|e| failed("ONNX Runtime refused the session settings", e))?
        .commit_from_file(path)
        .map_err(|e| failed("not a loadable ONNX model", e))?;
    let info = read_info(&session, path)?;
    let verdict = info.check_schema(path);
    Ok((info, verdict))
}
