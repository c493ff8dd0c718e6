//! Batching: rows wait here for the classifier, which scores them together
//! when the batch is full or its deadline (engine time, or wall time under
//! `run`) passes. Batch boundaries never change a verdict: rows are
//! independent, and every batch is padded the same way.

use std::time::{Duration, Instant};

use super::super::stats::StageCounts;
use super::Timings;
use crate::error::Error;
use crate::features::NUM_FEATURES;
use crate::infer::Classifier;
use crate::sink::FlowRecord;
use crate::source::Micros;

/// A row's flow record, the wall time its packet arrived (for latency) and
/// the engine clock when the row was made (`detected_at`).
pub(crate) type Pending = (FlowRecord, Option<Instant>, Micros);

pub(crate) struct Batcher {
    pub classifier: Option<Box<dyn Classifier>>,
    batch_size: usize,
    deadline: Micros,
    wall_deadline: Duration,
    /// Read the wall clock (batch wall deadline, inference time): only the
    /// threaded drivers turn it on.
    pub wall_clock: bool,
    rows: Vec<f32>,
    records: Vec<Pending>,
    probabilities: Vec<f32>,
    opened: Micros,
    opened_wall: Option<Instant>,
    /// Classifier calls.
    pub batches: u64,
    /// Wall time spent in the classifier, µs (0 without the wall clock).
    pub inference_micros: u64,
    /// Rows received, scored (sent), and lost to a failed classifier call.
    pub counts: StageCounts,
}

/// One scored batch, lent to the decide stage: the classifier (to explain
/// an alert from its own row), the rows and their probabilities.
pub(crate) struct Scored<'a> {
    pub classifier: &'a mut dyn Classifier,
    pub rows: &'a [f32],
    pub probabilities: &'a [f32],
    pub n_labels: usize,
}

impl Scored<'_> {
    /// Row `i`'s probabilities, one per label.
    pub fn probabilities(&self, i: usize) -> &[f32] {
        &self.probabilities[i * self.n_labels..(i + 1) * self.n_labels]
    }
}

impl Batcher {
    pub fn new(
        classifier: Option<Box<dyn Classifier>>,
        batch_size: usize,
        deadline: Micros,
        wall_deadline: Duration,
    ) -> Self {
        Self {
            classifier,
            batch_size,
            deadline,
            wall_deadline,
            wall_clock: false,
            rows: Vec::with_capacity(batch_size * NUM_FEATURES),
            records: Vec::with_capacity(batch_size),
            probabilities: Vec::new(),
            opened: 0,
            opened_wall: None,
            batches: 0,
            inference_micros: 0,
            counts: StageCounts::default(),
        }
    }

    /// No row waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Adds a row made at engine time `time`; true when the batch is full.
    pub fn add(&mut self, row: &[f32; NUM_FEATURES], pending: Pending, time: Micros) -> bool {
        if self.records.is_empty() {
            self.opened = time;
            self.opened_wall = self.wall_clock.then(Instant::now);
        }
        self.counts.received += 1;
        self.rows.extend_from_slice(row);
        self.records.push(pending);
        self.records.len() >= self.batch_size
    }

    /// The batch's deadline has passed at engine time `now` (or in wall time).
    pub fn due(&self, now: Micros) -> bool {
        if self.records.is_empty() {
            return false;
        }
        let wall_due = self.opened_wall.is_some_and(|t| t.elapsed() >= self.wall_deadline);
        wall_due || now.saturating_sub(self.opened) >= self.deadline
    }

    /// Wall time left before the waiting batch falls due (zero: due now);
    /// `None` when no batch waits or the wall clock is off.
    pub fn wall_remaining(&self) -> Option<Duration> {
        let opened = self.opened_wall.filter(|_| !self.records.is_empty())?;
        Some(self.wall_deadline.saturating_sub(opened.elapsed()))
    }

    /// Engine time at which the waiting batch falls due, if one waits.
    pub fn next_due(&self) -> Option<Micros> {
        (!self.records.is_empty()).then(|| self.opened.saturating_add(self.deadline))
    }

    /// Scores the waiting rows. Returns their records (to be handed back
    /// with [`Batcher::done`]) and the scored batch; `Ok(None)` when
    /// nothing waits or there is no classifier.
    pub fn score(
        &mut self,
        n_labels: usize,
        timings: &mut Timings,
    ) -> Result<Option<(Vec<Pending>, Scored<'_>)>, Error> {
        let rows = self.records.len();
        let Some(classifier) = self.classifier.as_mut() else {
            return Ok(None);
        };
        if rows == 0 {
            return Ok(None);
        }
        // Zero rows pad the batch to a multiple of 16: ONNX Runtime's
        // vectorised element-wise kernels treat the last few values of a
        // tensor in a scalar tail with other rounding, and which row lands
        // there must not depend on how rows happened to be batched.
        let padded = rows.div_ceil(16) * 16;
        self.rows.resize(padded * NUM_FEATURES, 0.0);
        self.probabilities.resize(padded * n_labels, 0.0);
        // Wall time for the statistics only: no decision depends on it.
        let started = self.wall_clock.then(Instant::now);
        let outcome = classifier.classify(&self.rows, padded, &mut self.probabilities);
        if let Some(started) = started {
            let took = started.elapsed().as_micros() as u64;
            self.inference_micros += took;
            timings.record_inference(took);
        }
        self.batches += 1;
        if let Err(e) = outcome {
            self.counts.failed += rows as u64;
            self.rows.clear();
            self.records.clear();
            return Err(e);
        }
        self.counts.sent += rows as u64;
        let records = std::mem::take(&mut self.records);
        let scored =
            Scored { classifier: classifier.as_mut(), rows: &self.rows, probabilities: &self.probabilities, n_labels };
        Ok(Some((records, scored)))
    }

    /// Takes back the records' buffer (emptied) after a scored batch, and
    /// clears the rows: an alert is explained from its own row until here.
    pub fn done(&mut self, mut records: Vec<Pending>) {
        records.clear();
        self.records = records;
        self.rows.clear();
    }
}
