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

/// Reads samples from a NumPy `.npy` file (what `numpy.save` writes): a C-ordered array of
/// shape `(n, …)` — one sample per first-axis entry, the other axes flattened — of
/// little-endian `f8`, `f4`, `i8`, `i4`, `i2`, `i1`, `u1` or `u2` values, each multiplied by
/// `scale`. Versions 1.0, 2.0 and 3.0 of the format. The file is untrusted input: the
/// header, the element count against the file's length and every value's finiteness are
/// checked; nothing panics.
pub fn samples_from_npy(bytes: &[u8], scale: f64) -> Result<Vec<Vec<f64>>> {
    let bad = |reason: String| MlError::Input {
        reason: format!(".npy file: {reason}"),
    };
    let rest = bytes
        .strip_prefix(b"\x93NUMPY".as_slice())
        .ok_or_else(|| bad("not a NumPy .npy file (no \\x93NUMPY magic)".into()))?;
    let (&major, rest) = rest.split_first().ok_or_else(|| bad("truncated".into()))?;
    let (_minor, rest) = rest.split_first().ok_or_else(|| bad("truncated".into()))?;
    let (header_len, rest) = match major {
        1 => {
            let (h, r) = rest
                .split_at_checked(2)
                .ok_or_else(|| bad("truncated".into()))?;
            (usize::from(u16::from_le_bytes([h[0], h[1]])), r)
        }
        2 | 3 => {
            let (h, r) = rest
                .split_at_checked(4)
                .ok_or_else(|| bad("truncated".into()))?;
            let n = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            (
                usize::try_from(n).map_err(|_| bad("header length".into()))?,
                r,
            )
        }
        v => return Err(bad(format!("format version {v} (1, 2 or 3 are read)"))),
    };
    let (header, data) = rest
        .split_at_checked(header_len)
        .ok_or_else(|| bad("the header runs past the end".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("the header is not text".into()))?;
    // The header is a Python dict literal: {'descr': '<f8', 'fortran_order': False, 'shape': (360, 64), }
    let value_of = |key: &str| -> Result<&str> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| bad(format!("no `{key}` in the header")))?;
        let after = &header[at + key.len() + 2..];
        let colon = after
            .find(':')
            .ok_or_else(|| bad(format!("no value for `{key}`")))?;
        Ok(after[colon + 1..].trim_start())
    };
    let descr = value_of("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("`descr` is not a string".into()))?;
    if value_of("fortran_order")?.starts_with("True") {
        return Err(bad(
            "Fortran-ordered arrays are not read: save with numpy.ascontiguousarray".into(),
        ));
    }
    let shape = value_of("shape")?;
    let shape = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("`shape` is not a tuple".into()))?;
    let dims = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("shape entry `{s}`")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let (&n, rest_dims) = dims
        .split_first()
        .ok_or_else(|| bad("a scalar, not an array of samples".into()))?;
    let per = rest_dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("the shape overflows".into()))?;
    let size = match descr {
        "<f8" | "<i8" => 8,
        "<f4" | "<i4" => 4,
        "<i2" | "<u2" => 2,
        "|i1" | "|u1" => 1,
        other => {
            return Err(bad(format!(
                "element type `{other}` (f8, f4, i8, i4, i2, u2, i1, u1, little-endian, are read)"
            )))
        }
    };
    let count = n
        .checked_mul(per)
        .and_then(|c| c.checked_mul(size).map(|b| (c, b)));
    match count {
        Some((_, b)) if b == data.len() => {}
        _ => {
            return Err(bad(format!(
                "shape {dims:?} of `{descr}` does not match the {} data bytes",
                data.len()
            )))
        }
    }
    if n == 0 || per == 0 {
        return Err(bad("no sample".into()));
    }
    let value = |c: &[u8]| -> f64 {
        match descr {
            "<f8" => f64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
            "<i8" => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64,
            "<f4" => f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))),
            "<i4" => f64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))),
            "<i2" => f64::from(i16::from_le_bytes(c.try_into().unwrap_or([0; 2]))),
            "<u2" => f64::from(u16::from_le_bytes(c.try_into().unwrap_or([0; 2]))),
            "|i1" => f64::from(c[0] as i8),
            _ => f64::from(c[0]),
        }
    };
    data.chunks_exact(per * size)
        .enumerate()
        .map(|(i, row)| {
            row.chunks_exact(size)
                .map(|c| {
                    let v = value(c) * scale;
                    if v.is_finite() {
                        Ok(v)
                    } else {
                        Err(bad(format!("sample {i}: a non-finite value")))
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::samples_from_npy;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn reads_what_numpy_writes() {
        let data: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let s = samples_from_npy(&npy("<f8", "(2, 3)", &data), 0.5).unwrap();
        assert_eq!(s, vec![vec![0.5, 1.0, 1.5], vec![2.0, 2.5, 3.0]]);
        // Images: (n, 8, 8) of u1, flattened per sample.
        let s =
            samples_from_npy(&npy("|u1", "(2, 2, 2)", &[0, 16, 8, 4, 1, 2, 3, 4]), 1.0).unwrap();
        assert_eq!(s[0], vec![0.0, 16.0, 8.0, 4.0]);
        let s = samples_from_npy(
            &npy("<i4", "(1, 2)", &[255, 255, 255, 255, 2, 0, 0, 0]),
            1.0,
        )
        .unwrap();
        assert_eq!(s, vec![vec![-1.0, 2.0]]);
    }

    #[test]
    fn malformed_files_are_errors() {
        let data = [0u8; 48];
        let good = npy("<f8", "(2, 3)", &data);
        assert!(samples_from_npy(&good, 1.0).is_ok());
        for cut in [0, 5, 8, 9, 10, 40, good.len() - 1] {
            assert!(samples_from_npy(&good[..cut], 1.0).is_err(), "cut {cut}");
        }
        assert!(samples_from_npy(&npy("<f8", "(3, 3)", &data), 1.0).is_err());
        assert!(samples_from_npy(&npy(">f8", "(2, 3)", &data), 1.0).is_err());
        assert!(samples_from_npy(&npy("<c16", "(2, 3)", &data), 1.0).is_err());
        assert!(samples_from_npy(&npy("<f8", "()", &data), 1.0).is_err());
        assert!(samples_from_npy(&npy("<f8", "(0, 3)", &[]), 1.0).is_err());
        assert!(samples_from_npy(
            &npy("<f8", "(18446744073709551615, 18446744073709551615)", &data),
            1.0
        )
        .is_err());
        let nan: Vec<u8> = f64::NAN.to_le_bytes().repeat(6);
        assert!(samples_from_npy(&npy("<f8", "(2, 3)", &nan), 1.0).is_err());
        let at = good.windows(5).position(|w| w == b"False").unwrap();
        let mut fortran = good.clone();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(samples_from_npy(&fortran, 1.0).is_err());
    }
}
