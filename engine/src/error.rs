//! Typed errors of the library. Every message says what to do about it.

use std::path::PathBuf;

/// Errors returned by the engine's public API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A capture file could not be opened at all (missing, unreadable, not a capture).
    #[error("cannot open capture {path}: {reason} (check that the file exists and is a pcap or pcapng capture)")]
    CaptureOpen { path: PathBuf, reason: String },

    /// A network interface could not be opened for live capture.
    #[error("cannot capture on interface {name}: {reason}")]
    Interface { name: String, reason: String },

    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),

    /// A model file could not be loaded or does not satisfy the engine's contract.
    #[error("model {path}: {reason}")]
    Model { path: PathBuf, reason: String },

    /// A model was built for another feature schema than the one this engine computes.
    #[error(
        "model {path} was trained for feature schema {model_schema} but this engine computes {engine_schema}; \
         retrain it with `make model` or use a model built for {engine_schema}"
    )]
    SchemaMismatch { path: PathBuf, model_schema: String, engine_schema: String },

    /// Inference failed at run time.
    #[error("inference failed: {0}")]
    Inference(String),

    /// The builder was given an inconsistent configuration.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A verdict or feature sink failed; the engine stopped.
    #[error("output failed: {0}")]
    Sink(#[from] SinkError),
}

/// Error raised by a [`crate::sink::VerdictSink`] or [`crate::sink::FeatureSink`].
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
