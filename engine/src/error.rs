//! Typed errors of the library. Every message says what to do about it.

use std::path::PathBuf;

/// Errors returned by the engine's public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A capture file could not be opened at all (missing, unreadable, not a capture).
    #[error("cannot open capture {path}: {reason} (check that the file exists and is a pcap or pcapng capture)")]
    CaptureOpen {
        /// Path of the capture file as given (`-` for standard input).
        path: PathBuf,
        /// Why it could not be opened, in words.
        reason: String,
    },

    /// A network interface could not be opened for live capture.
    #[error("cannot capture on interface {name}: {reason}")]
    Interface {
        /// Name of the interface, e.g. `eth0`.
        name: String,
        /// What failed and the likely fix, in words.
        reason: String,
    },

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{reason}")]
    Runtime {
        /// What failed and what to do, in words.
        reason: String,
        /// ONNX Runtime's own error, when it gave one.
        #[source]
        source: Option<BoxError>,
    },

    /// A model file could not be loaded or does not satisfy the engine's contract.
    #[error("model {path}: {reason}")]
    Model {
        /// Path of the model file.
        path: PathBuf,
        /// What is wrong with the model, in words.
        reason: String,
        /// ONNX Runtime's own error, when it gave one.
        #[source]
        source: Option<BoxError>,
    },

    /// A model was built for another feature schema than the one this engine computes.
    #[error(
        "model {path} was trained for feature schema {model_schema} but this engine computes {engine_schema}; \
         retrain it on rows this engine exports (a FeatureSink) or use a model built for {engine_schema}"
    )]
    SchemaMismatch {
        /// Path of the model file.
        path: PathBuf,
        /// Schema the model was trained for, e.g. `tidewatch-flow v3`.
        model_schema: String,
        /// Schema this engine computes, e.g. `tidewatch-flow v4`.
        engine_schema: String,
    },

    /// A classifier given to the engine describes itself in a way the
    /// engine cannot use (schema, labels, thresholds, medians).
    #[error("classifier {model}: {reason}")]
    Classifier {
        /// The classifier's `name@version`.
        model: String,
        /// What in its description the engine cannot use, in words.
        reason: String,
    },

    /// Inference failed at run time.
    #[error("inference failed: {reason}")]
    Inference {
        /// What failed, in words.
        reason: String,
        /// The classifier's own error (e.g. ONNX Runtime's), when it gave one.
        #[source]
        source: Option<BoxError>,
    },

    /// The builder was given an inconsistent configuration.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The engine was used after [`crate::Engine::finish`] (or a `run`, which
    /// finishes): its flows are ended and its sinks finished.
    #[error("this engine has finished; build a new one with Engine::builder() for more packets")]
    Finished,

    /// A thread of the engine stopped unexpectedly (a bug, not bad input).
    #[error("internal error: {0}; please report it with the input that caused it")]
    Internal(String),

    /// A verdict or feature sink failed; the engine stopped.
    #[error("output failed: {0}")]
    Sink(#[from] SinkError),
}

/// Error raised by a [`crate::sink::VerdictSink`] or [`crate::sink::FeatureSink`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A failure described in words.
    #[error("{0}")]
    Other(String),
    /// The sink's own error type, kept whole: `Error::source` reaches it.
    #[error("{0}")]
    Custom(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl SinkError {
    /// Wraps a sink's own error, keeping it as the source.
    pub fn custom(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SinkError::Custom(Box::new(e))
    }
}

/// Another library's error, kept whole as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// An inference failure described in words, with no underlying error.
    pub fn inference(reason: impl Into<String>) -> Self {
        Error::Inference { reason: reason.into(), source: None }
    }

    /// An inference failure caused by the classifier's own error.
    pub fn inference_from(reason: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Inference { reason: reason.into(), source: Some(Box::new(source)) }
    }

    /// The error and its chain of sources, `: `-separated (for a log line).
    pub fn with_sources(&self) -> String {
        let mut out = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            let s = e.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
            next = e.source();
        }
        out
    }
}

/// Result of the engine's public API; the error defaults to `Error`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct DiskFull;
    impl std::fmt::Display for DiskFull {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("disk full")
        }
    }
    impl std::error::Error for DiskFull {}

    #[test]
    fn a_sinks_own_error_stays_reachable_as_the_source() {
        let e: Error = SinkError::custom(DiskFull).into();
        assert_eq!(e.to_string(), "output failed: disk full");
        let sink = std::error::Error::source(&e).expect("the sink error is the source");
        let own = sink.source().expect("the sink's own error is its source");
        assert!(own.downcast_ref::<DiskFull>().is_some(), "{own:?}");
    }
}
