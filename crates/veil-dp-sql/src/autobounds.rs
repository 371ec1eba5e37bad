//! Automatic bounds: a differentially private estimate of a numeric column's range, for
//! columns whose metadata says `auto_bounds = true` instead of giving `lower` and `upper`.
//!
//! **Mechanism** (the approximate-bounds algorithm of Google's DP library, on Veil's exact
//! noise). The real line is cut into bins by powers of two: `[2^e, 2^(e+1))` for `e` from
//! `e_min` to `e_max` (the last bin open above), the same mirrored below zero, and one bin
//! around zero (`(−2^e_min, 2^e_min)`; for integers, exactly 0). Each non-NULL value falls in
//! one bin; one privacy unit brings at most `k` rows (`max_rows_per_unit`, proven or enforced
//! exactly as for a query), so adding or removing a unit moves the vector of bin counts by at
//! most `k` in L1. Every bin's count — every bin of the fixed, public list, empty or not —
//! gets discrete Laplace noise of scale `k/ε`: the histogram is ε-DP. The bounds are then the
//! outer edges of the lowest and highest bins whose noisy count reaches a threshold
//! `τ = (k/ε)·ln(B / 2β)`, which an empty bin passes with probability at most `β/B` each
//! (`B` bins, `β` = [`FAILURE`]); if no bin reaches it, the edges of the bin with the largest
//! noisy count. Choosing from noisy counts is post-processing: it costs nothing more.
//!
//! What the analyst learns is the ε-DP histogram's consequence, a pair of powers of two;
//! sparse tails (fewer than about τ rows) are clamped, which is the point: one person's
//! outlier cannot stretch a bound. A bound a power of two wider than the data costs accuracy,
//! never privacy.
//!
//! **Charging and caching.** The engine charges the estimate (ε = `[budget]
//! auto_bounds_epsilon`) before it reads a value, keeps the bounds in the ledger under the
//! table's data version, and reuses them for free — reusing a released value is
//! post-processing — until the files change. On a server table (PostgreSQL), which has no
//! versions, an estimate is kept until the operator removes it from the ledger.

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{cast, lit, when, Expr};

use crate::error::Result;
use crate::metadata::ColumnType;

/// Probability that some empty bin passes the threshold (and widens a bound needlessly).
pub const FAILURE: f64 = 1e-6;

/// The power-of-two bins of one column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bins {
    /// Smallest exponent with a bin of its own: closer to zero is the zero bin.
    pub e_min: i32,
    /// Largest exponent: its bin holds everything above `2^e_max`.
    pub e_max: i32,
}

impl Bins {
    /// Integers: zero, then `[1, 2)`, `[2, 4)`, … up to `[2^62, ∞)`. Reals: from
    /// `[2^-32, 2^-31)` (about 2·10⁻¹⁰) to `[2^62, ∞)`.
    pub(crate) fn of(kind: ColumnType) -> Self {
        match kind {
            ColumnType::Int => Self {
                e_min: 0,
                e_max: 62,
            },
            _ => Self {
                e_min: -32,
                e_max: 62,
            },
        }
    }

    /// Bins on each side of zero.
    pub(crate) fn per_side(&self) -> i64 {
        i64::from(self.e_max - self.e_min + 1)
    }

    /// Every bin index, `−per_side ..= per_side`.
    pub(crate) fn all(&self) -> impl Iterator<Item = i64> {
        let m = self.per_side();
        -m..=m
    }

    /// Number of bins.
    pub(crate) fn count(&self) -> usize {
        (2 * self.per_side() + 1) as usize
    }

    fn edge(&self, j: i64) -> f64 {
        // j ≥ 1: the lower edge of positive bin j.
        f64::from(self.e_min + (j as i32) - 1).exp2()
    }

    /// The interval of bin `j` as bounds: `[2^e, 2^(e+1)]` for positive bins (the last one
    /// `[2^e_max, 2^(e_max+1)]`), mirrored for negative ones, `[0, 0]` for the zero bin.
    pub(crate) fn interval(&self, j: i64) -> (f64, f64) {
        let m = self.per_side();
        if j == 0 {
            return (0.0, 0.0);
        }
        let a = j.unsigned_abs().min(m as u64) as i64;
        let (lo, hi) = (self.edge(a), self.edge(a) * 2.0);
        if j > 0 {
            (lo, hi)
        } else {
            (-hi, -lo)
        }
    }

    /// The bin of a value, as the SQL of [`Bins::expr`] computes it (for tests).
    #[cfg(test)]
    pub(crate) fn of_value(&self, x: f64) -> i64 {
        let m = self.per_side();
        let side = |y: f64| (1..=m).rev().find(|&j| y >= self.edge(j)).unwrap_or(0);
        if x >= self.edge(1) {
            side(x)
        } else if x <= -self.edge(1) {
            -side(-x)
        } else {
            0
        }
    }

    /// The bin of `x` (any numeric expression) as a 64-bit integer: a binary search of
    /// comparisons with powers of two (`CASE` expressions, which every backend runs; about
    /// eight comparisons a row).
    pub(crate) fn expr(&self, x: Expr) -> Result<Expr> {
        let x = cast(x, DataType::Float64);
        let m = self.per_side();
        let positive = self.search(x.clone(), 1, m)?;
        let negative = self.search(lit(0.0) - x.clone(), 1, m)?;
        let zero = lit(0i64);
        Ok(when(x.clone().gt_eq(lit(self.edge(1))), positive)
            .when(x.lt_eq(lit(-self.edge(1))), lit(0i64) - negative)
            .otherwise(zero)?)
    }

    /// The largest `j` in `lo..=hi` with `y ≥ edge(j)`, for `y ≥ edge(lo)`.
    fn search(&self, y: Expr, lo: i64, hi: i64) -> Result<Expr> {
        if lo == hi {
            return Ok(lit(lo));
        }
        let mid = (lo + hi + 1) / 2;
        Ok(when(
            y.clone().gt_eq(lit(self.edge(mid))),
            self.search(y.clone(), mid, hi)?,
        )
        .otherwise(self.search(y, lo, mid - 1)?)?)
    }
}

/// The noisy count a bin needs to count as holding data: `τ = scale · ln(B / 2β)`, so that
/// each of the `B` bins, if empty, passes with probability at most `β/B`
/// (`P(Lap(b) ≥ t) = e^{−t/b}/2`).
pub(crate) fn threshold(scale: f64, bins: usize) -> f64 {
    scale * (bins as f64 / (2.0 * FAILURE)).ln()
}

/// The bounds the noisy counts give: the outer edges of the lowest and highest bins at or
/// above `tau`, else those of the bin with the largest noisy count.
pub(crate) fn choose(bins: &Bins, noisy: &[(i64, f64)], tau: f64) -> (f64, f64) {
    let passing: Vec<i64> = noisy
        .iter()
        .filter(|(_, c)| *c >= tau)
        .map(|(j, _)| *j)
        .collect();
    let (low, high) = match (passing.iter().min(), passing.iter().max()) {
        (Some(l), Some(h)) => (*l, *h),
        _ => {
            let best = noisy
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(0, |(j, _)| *j);
            (best, best)
        }
    };
    (bins.interval(low).0, bins.interval(high).1)
}

/// Bounds a query used that were estimated with differential privacy (`auto_bounds`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EstimatedBounds {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// The estimated lower bound (values below are clamped to it).
    pub lower: f64,
    /// The estimated upper bound.
    pub upper: f64,
    /// The ε the estimate cost when it was made.
    pub epsilon: f64,
    /// Whether this query made (and paid for) the estimate; otherwise it was reused from the
    /// ledger for free.
    pub estimated_now: bool,
}

/// What is kept in the ledger for one estimate.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Kept {
    pub lower: f64,
    pub upper: f64,
    pub epsilon: f64,
}

/// The ledger key of a column's estimate on one version of its table's data.
pub(crate) fn ledger_key(table: &str, column: &str, version: &str) -> String {
    format!("auto_bounds/v1/{table}/{column}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_line_with_powers_of_two() {
        let b = Bins::of(ColumnType::Int);
        assert_eq!(b.count(), 127);
        assert_eq!(b.of_value(0.0), 0);
        assert_eq!(b.of_value(1.0), 1);
        assert_eq!(b.of_value(3.0), 2);
        assert_eq!(b.of_value(4.0), 3);
        assert_eq!(b.of_value(-4.0), -3);
        assert_eq!(b.interval(3), (4.0, 8.0));
        assert_eq!(b.interval(-3), (-8.0, -4.0));
        assert_eq!(b.of_value(9.3e18), 63);
        let f = Bins::of(ColumnType::Float);
        assert_eq!(f.of_value(1e-12), 0);
        assert_eq!(f.of_value(0.75), f.of_value(0.5));
        assert_eq!(f.interval(f.of_value(0.75)), (0.5, 1.0));
        // Every value lies in its bin's interval (the zero bin holds values within 2^-32).
        for x in [0.3, 1.0, 7.9, 100.0, 123456.7, -0.001, -5e9] {
            let (lo, hi) = f.interval(f.of_value(x));
            assert!(lo <= x && x <= hi, "{x} not in [{lo}, {hi}]");
        }
    }

    /// The SQL the backends run bins every value exactly as the definition does, at the
    /// edges (exact powers of two, either sign) too.
    #[tokio::test]
    async fn the_sql_bins_values_as_defined() {
        use datafusion::arrow::array::{Array, Float64Array, Int64Array};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        use datafusion::prelude::{col, SessionContext};
        use std::sync::Arc;

        let mut xs = vec![0.0, 1e-12, -1e-12, 0.3, 1e300, -1e300, 9.3e18];
        for e in -33..=63 {
            let p = f64::from(e).exp2();
            xs.extend([p, -p, p * 1.5, -p * 1.5, p * (1.0 - f64::EPSILON)]);
        }
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "x",
                datafusion::arrow::datatypes::DataType::Float64,
                false,
            )])),
            vec![Arc::new(Float64Array::from(xs.clone()))],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_batch("v", batch).unwrap();
        for kind in [ColumnType::Float, ColumnType::Int] {
            let bins = Bins::of(kind);
            let out = ctx
                .table("v")
                .await
                .unwrap()
                .select(vec![bins.expr(col("x")).unwrap().alias("b")])
                .unwrap()
                .collect()
                .await
                .unwrap();
            let got: Vec<i64> = out
                .iter()
                .flat_map(|b| {
                    let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
                })
                .collect();
            for (x, g) in xs.iter().zip(&got) {
                assert_eq!(*g, bins.of_value(*x), "{kind:?}: bin of {x}");
            }
        }
    }

    #[test]
    fn bounds_are_the_outer_edges_of_the_bins_that_pass() {
        let b = Bins::of(ColumnType::Int);
        let noisy = vec![(-2, 3.0), (0, 50.0), (3, 200.0), (7, 120.0), (9, 30.0)];
        // τ = 100: bins 3 and 7 pass → [4, 128].
        assert_eq!(choose(&b, &noisy, 100.0), (4.0, 128.0));
        // τ = 40: bins 0..7 → [0, 128].
        assert_eq!(choose(&b, &noisy, 40.0), (0.0, 128.0));
        // Nothing passes: the largest noisy count's bin.
        assert_eq!(choose(&b, &noisy, 1000.0), (4.0, 8.0));
        // The threshold grows with the scale and the number of bins.
        assert!(threshold(10.0, 127) > 10.0 * (127.0f64).ln());
    }
}
