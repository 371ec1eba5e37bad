//! Labelled data sets: one sample per row of a CSV file, the label first.
//!
//! The format `crates/veil-ml/models/digits_test.csv` uses: a header line, then rows of
//! `label,x0,x1,…` with an integer label and numeric features.

use crate::error::{MlError, Result};

/// Samples with their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledData {
    /// One label per sample.
    pub labels: Vec<i64>,
    /// One feature vector per sample, all of the same length.
    pub samples: Vec<Vec<f64>>,
}

impl LabelledData {
    /// Parses CSV text with a header line; every feature is multiplied by `scale` (the digits
    /// models take `pixel / 16`, so `scale = 1/16` for them).
    pub fn from_csv(text: &str, scale: f64) -> Result<Self> {
        let bad = |line: usize, what: String| MlError::Input {
            reason: format!("line {line}: {what}"),
        };
        let mut labels = Vec::new();
        let mut samples: Vec<Vec<f64>> = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split(',');
            let label = fields
                .next()
                .and_then(|f| f.trim().parse::<i64>().ok())
                .ok_or_else(|| bad(line_no, "the label is not an integer".into()))?;
            let row = fields
                .map(|f| {
                    f.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(|v| v * scale)
                        .ok_or_else(|| bad(line_no, format!("`{f}` is not a finite number")))
                })
                .collect::<Result<Vec<f64>>>()?;
            if let Some(first) = samples.first() {
                if first.len() != row.len() {
                    return Err(bad(
                        line_no,
                        format!("{} features, the first row has {}", row.len(), first.len()),
                    ));
                }
            }
            labels.push(label);
            samples.push(row);
        }
        Ok(Self { labels, samples })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
