//! The bounded, clamped, noise-free statistics queries the engine runs for an accepted
//! [`DpPlan`](crate::planner::DpPlan): ordinary logical plans, so the same plan runs in the
//! embedded DataFusion or, unparsed to SQL, on PostgreSQL.
//!
//! **Clamping.** Every value a sum, sum of squares or quantile reads is clamped to the
//! column's declared bounds (`CASE WHEN x < lo THEN lo WHEN x > hi THEN hi ELSE x END`).
//!
//! **Contribution bounding.** One privacy unit may bring at most `k` rows. Two plans keep
//! that guarantee:
//!
//! - *Proven bound* (the fast path): before the query, the engine asks the backend for the
//!   largest number of rows any unit has in each table (`max(count(*))` grouped by the unit,
//!   cached per file version). When no unit exceeds its bound the data already satisfies it,
//!   and the statistics are a plain aggregation. The proof releases nothing: when it holds,
//!   the bounded plan below would return exactly the same numbers.
//! - *Enforced bound* (otherwise): a per-unit hash aggregation computes each unit's row count
//!   `N` and number of groups `G`; each row of a unit is weighted by `min(1, k/N)`, and a
//!   unit that falls into more than `k` groups is dropped. A unit's total weight is then at
//!   most `k` and it touches at most `k` groups — new keys, or noisy cells of a public key
//!   set — which is what the sensitivities, the τ threshold and the noise's grid term (one
//!   grid step per cell a unit moves) assume. This is a hash join against a per-unit aggregate, not the
//!   `ROW_NUMBER() OVER (PARTITION BY unit ORDER BY random())` sort that makes naive
//!   rewrites 15–25× slower (and never a database's `random()`).
//!
//! The same reasoning lets clamping skip a side no value crosses and the NULL filter go when
//! no row lacks its unit. These facts change no released number, only how long a query takes:
//! an analyst who can time queries precisely could tell whether the data respects its declared
//! bounds (a fact about the table as a whole, not about a person). Operators who must close
//! timing channels should pad response times.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType};
use datafusion::functions::core::expr_fn::{coalesce, greatest, least};
use datafusion::functions::math::expr_fn::{floor, random};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, min, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    cast, col, lit, when, Expr, ExprFunctionExt, ExprSchemable, LogicalPlan, LogicalPlanBuilder,
};

use crate::error::Result;
use crate::planner::{Bounded, DpPlan, Measurement};

/// Number of candidate points of a DP quantile (at most; integer columns use one per value).
pub(crate) const QUANTILE_CANDIDATES: usize = 1001;

/// Names of the statistics plans' columns.
pub(crate) fn group_name(i: usize) -> String {
    format!("__g{i}")
}
/// Name of the `i`-th statistic.
pub(crate) fn stat_name(i: usize) -> String {
    format!("__s{i}")
}
/// Name of the histogram bucket column.
pub(crate) const BUCKET: &str = "__bucket";
const UNIT: &str = "__unit";
const WEIGHT_UNIT: &str = "__wunit";
const WEIGHT: &str = "__weight";
const ROWS: &str = "__n";
const RANK: &str = "__rank";
const TOTAL: &str = "__total";

fn count_star() -> Expr {
    count(lit(1i64))
}

fn f64_of(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

/// What the engine proved about the data of a query's tables (per file version), each fact
/// letting a step be skipped that would not change any number: the results, and so their
/// distribution, are the same with or without the step.
#[derive(Clone, Debug, Default)]
pub(crate) struct Facts {
    /// No unit has more rows than its bound: contributions need no bounding.
    pub proven: bool,
    /// No row lacks its unit: no NULL filter is needed.
    pub unit_never_null: bool,
    /// The smallest and largest value of columns: clamping skips a side no value crosses.
    pub ranges: Vec<(Column, (f64, f64))>,
    /// Columns without NULLs: clamped with `GREATEST`/`LEAST` (which skip NULLs, so they
    /// cannot stand in for the `CASE` where a column has some), a vectorized kernel.
    pub never_null: Vec<Column>,
}

/// `x` clamped to the column's bounds, as a float.
pub(crate) fn clamp(b: &Bounded, facts: &Facts) -> Expr {
    let x = f64_of(b.read());
    let range = facts
        .ranges
        .iter()
        .find(|(c, _)| *c == b.column)
        .map(|(_, r)| *r);
    // A NaN in the range (a column holding NaN) proves nothing: clamp both sides.
    let low = range.is_none_or(|(lo, _)| lo.is_nan() || lo < b.lower);
    let high = range.is_none_or(|(_, hi)| hi.is_nan() || hi > b.upper);
    let (lo, hi) = (lit(b.lower), lit(b.upper));
    if facts.never_null.contains(&b.column) {
        // GREATEST/LEAST skip NULLs, so they stand in for the CASE only on NULL-free columns.
        return match (low, high) {
            (false, false) => x,
            (true, false) => greatest(vec![lo, x]),
            (false, true) => least(vec![hi, x]),
            (true, true) => greatest(vec![lo, least(vec![hi, x])]),
        };
    }
    // Built from constants and a column, the CASE cannot fail to build.
    let case = match (low, high) {
        (false, false) => return x,
        (true, false) => when(x.clone().lt(lo.clone()), lo).otherwise(x),
        (false, true) => when(x.clone().gt(hi.clone()), hi).otherwise(x),
        (true, true) => when(x.clone().lt(lo.clone()), lo)
            .when(x.clone().gt(hi), lit(b.upper))
            .otherwise(x),
    };
    case.unwrap_or_else(|_| lit(b.lower))
}

/// The quantile histogram grid of a column: candidates `lower + i·step`.
pub(crate) fn grid(b: &Bounded) -> (usize, f64) {
    let range = b.upper - b.lower;
    if range <= 0.0 {
        return (1, 1.0);
    }
    if b.integer && range < (QUANTILE_CANDIDATES - 1) as f64 {
        return (range as usize + 1, 1.0);
    }
    (
        QUANTILE_CANDIDATES,
        range / (QUANTILE_CANDIDATES - 1) as f64,
    )
}

fn bucket(b: &Bounded, facts: &Facts) -> Expr {
    let (_, step) = grid(b);
    cast(
        floor((clamp(b, facts) - lit(b.lower)) / lit(step)),
        DataType::Int64,
    )
}

/// The grouping keys, aliased `__g{i}`, numbers cast to 64 bits (so every backend returns
/// them typed alike).
fn group_exprs(plan: &DpPlan) -> Result<Vec<Expr>> {
    let input = plan.aggregate.input.schema();
    plan.groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let t = g.expr.get_type(input.as_ref())?;
            let to = normalized_type(&t);
            // Text keys of any Arrow string type are normalized when read back (a cast here
            // would copy every string of the column); numbers are cast to 64 bits.
            if to == t || to == DataType::Utf8 {
                Ok(g.expr.clone().alias(group_name(i)))
            } else {
                Ok(cast(g.expr.clone(), to).alias(group_name(i)))
            }
        })
        .collect()
}

/// The type a key is returned as: strings as `Utf8`, integers as `Int64`, reals as `Float64`.
pub(crate) fn normalized_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Utf8 | DataType::Dictionary(..) => {
            DataType::Utf8
        }
        t if t.is_integer() => DataType::Int64,
        t if t.is_floating()
            || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) =>
        {
            DataType::Float64
        }
        other => other.clone(),
    }
}

/// The aggregation's input without rows that name no privacy unit (NULL): they belong to no
/// one the bound could count, so neither path uses them.
fn unit_rows(plan: &DpPlan, facts: &Facts) -> Result<LogicalPlan> {
    if facts.unit_never_null {
        return Ok(plan.aggregate.input.as_ref().clone());
    }
    Ok(
        LogicalPlanBuilder::from(plan.aggregate.input.as_ref().clone())
            .filter(Expr::Column(plan.unit.clone()).is_not_null())?
            .build()?,
    )
}

/// The aggregation input, and the weight of each row when the bound is enforced.
fn weighted(plan: &DpPlan, facts: &Facts) -> Result<(LogicalPlan, Option<Expr>)> {
    let input = unit_rows(plan, facts)?;
    if facts.proven {
        return Ok((input, None));
    }
    let weights = unit_weights(plan, facts)?;
    let joined = LogicalPlanBuilder::from(input)
        .join(
            weights,
            JoinType::Inner,
            (
                vec![plan.unit.clone()],
                vec![Column::from_name(WEIGHT_UNIT)],
            ),
            None,
        )?
        .build()?;
    Ok((joined, Some(col(Column::from_name(WEIGHT)))))
}

/// Rows per (unit, group): the first stage of the enforced bound.
fn per_unit_and_group(plan: &DpPlan, facts: &Facts) -> Result<LogicalPlan> {
    let mut keys = vec![Expr::Column(plan.unit.clone()).alias(UNIT)];
    keys.extend(group_exprs(plan)?);
    Ok(LogicalPlanBuilder::from(unit_rows(plan, facts)?)
        .aggregate(keys, vec![count_star().alias(ROWS)])?
        .alias("__per_unit_group")?
        .build()?)
}

/// `(__wunit, __weight)`: each unit's weight `min(1, k/N)`, or 0 when it falls into more than
/// `k` groups.
fn unit_weights(plan: &DpPlan, facts: &Facts) -> Result<LogicalPlan> {
    let k = plan.bound as f64;
    let per_unit = LogicalPlanBuilder::from(per_unit_and_group(plan, facts)?)
        .aggregate(
            vec![col(Column::from_name(UNIT))],
            vec![
                f64_of(sum(col(Column::from_name(ROWS)))).alias("__total"),
                f64_of(count_star()).alias("__groups"),
            ],
        )?
        .build()?;
    let total = col(Column::from_name("__total"));
    let groups = col(Column::from_name("__groups"));
    // Public keys too: a unit down-weighted over N > k public cells would move N noisy
    // values, each by a sliver, and the discrete noise's grid term counts k of them.
    let weight = when(groups.gt(lit(k)), lit(0.0))
        .when(total.clone().lt_eq(lit(k)), lit(1.0))
        .otherwise(lit(k) / total)?;
    Ok(LogicalPlanBuilder::from(per_unit)
        .project(vec![
            col(Column::from_name(UNIT)).alias(WEIGHT_UNIT),
            weight.alias(WEIGHT),
        ])?
        // A dropped unit must not even bring its keys: it leaves the joins entirely.
        .filter(col(Column::from_name(WEIGHT)).gt(lit(0.0)))?
        .alias("__unit_weights")?
        .build()?)
}

/// The statistic of one row-level measurement (`None` for distinct units and quantiles, which
/// have their own plans).
fn row_stat(m: &Measurement, w: &Option<Expr>, facts: &Facts) -> Option<Expr> {
    let weighted = |x: Expr| match w {
        Some(w) => x * w.clone(),
        None => x,
    };
    Some(match m {
        Measurement::Rows => match w {
            Some(w) => sum(w.clone()),
            None => f64_of(count_star()),
        },
        Measurement::NonNull(x) => match w {
            Some(w) => sum(when(x.clone().is_null(), lit(0.0))
                .otherwise(w.clone())
                .ok()?),
            None => f64_of(count(x.clone())),
        },
        Measurement::Sum(b) => sum(weighted(clamp(b, facts))),
        // Raw moments; the engine centers them exactly before any noise (one pass less per
        // row than summing `x − middle`).
        Measurement::CenteredSum(b) => sum(weighted(clamp(b, facts))),
        Measurement::CenteredSumSquares(b) => {
            let x = clamp(b, facts);
            sum(weighted(x.clone() * x))
        }
        Measurement::DistinctUnits | Measurement::DistinctValues(_) | Measurement::Quantile(..) => {
            return None
        }
    })
}

/// The per-group bounds (L0 groups per unit, L∞ rows per group), when the plan has them:
/// one row per kept (unit, group) pair, `__unit`, `__g*`, `__n` (its rows), the `partials`
/// (aggregates over the pair's rows) and `__weight`, the weight of each of its rows.
///
/// A unit found in more than L0 groups keeps L0 of them, ranked by `random()` (any choice
/// that depends on nothing but the unit's own rows keeps the sensitivities; a random one
/// biases no group). A pair's rows count `min(1, L∞/n)` each, and a unit whose kept rows
/// still exceed its row bound `k` is scaled by `k / total`: a unit then moves at most L0
/// groups, each by at most L∞, and at most `k` rows in all.
fn weighted_pairs(plan: &DpPlan, facts: &Facts, partials: Vec<Expr>) -> Result<LogicalPlan> {
    let unit = col(Column::from_name(UNIT));
    let mut keys = vec![Expr::Column(plan.unit.clone()).alias(UNIT)];
    keys.extend(group_exprs(plan)?);
    let mut aggs = vec![count_star().alias(ROWS)];
    aggs.extend(partials);
    let mut pairs = LogicalPlanBuilder::from(unit_rows(plan, facts)?)
        .aggregate(keys, aggs)?
        .alias("__pairs")?;
    if !plan.groups.is_empty() {
        let rank = row_number()
            .partition_by(vec![unit.clone()])
            .order_by(vec![random().sort(true, false)])
            .build()?
            .alias(RANK);
        pairs = pairs
            .window(vec![rank])?
            .filter(col(Column::from_name(RANK)).lt_eq(lit(plan.l0() as i64)))?
            .alias("__kept")?;
    }
    let pairs = pairs.build()?;
    let n = f64_of(col(Column::from_name(ROWS)));
    let linf = plan.linf() as f64;
    let kept = least(vec![n.clone(), lit(linf)]);
    let totals = LogicalPlanBuilder::from(pairs.clone())
        .aggregate(vec![unit], vec![sum(kept.clone()).alias(TOTAL)])?
        .project(vec![
            col(Column::from_name(UNIT)).alias(WEIGHT_UNIT),
            col(Column::from_name(TOTAL)),
        ])?
        .alias("__unit_totals")?
        .build()?;
    let k = plan.bound as f64;
    let total = col(Column::from_name(TOTAL));
    let scale = when(total.clone().lt_eq(lit(k)), lit(1.0)).otherwise(lit(k) / total)?;
    let mut out: Vec<Expr> = pairs
        .schema()
        .fields()
        .iter()
        .filter(|f| f.name() != RANK)
        .map(|f| col(Column::from_name(f.name())))
        .collect();
    out.push((kept / n * scale).alias(WEIGHT));
    Ok(LogicalPlanBuilder::from(pairs)
        .join(
            totals,
            JoinType::Inner,
            (
                vec![Column::from_name(UNIT)],
                vec![Column::from_name(WEIGHT_UNIT)],
            ),
            None,
        )?
        .project(out)?
        .alias("__weighted_pairs")?
        .build()?)
}

/// The partial aggregate over one pair's rows of a row-level measurement (`None`: the row
/// count `__n` is all it needs, or it has its own plan).
fn partial(m: &Measurement, facts: &Facts) -> Option<Expr> {
    Some(match m {
        Measurement::NonNull(x) => f64_of(count(x.clone())),
        Measurement::Sum(b) | Measurement::CenteredSum(b) => sum(clamp(b, facts)),
        Measurement::CenteredSumSquares(b) => {
            let x = clamp(b, facts);
            sum(x.clone() * x)
        }
        Measurement::Rows
        | Measurement::DistinctUnits
        | Measurement::DistinctValues(_)
        | Measurement::Quantile(..) => return None,
    })
}

/// The statistics plans under per-group bounds ([`weighted_pairs`]): the row-level
/// statistics and distinct units from one plan (one random choice of groups), each quantile's
/// histogram from its own.
fn pair_stats_plans(plan: &DpPlan, facts: &Facts) -> Result<StatsPlans> {
    let mut partials = Vec::new();
    let mut which = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        if let Some(p) = partial(m, facts) {
            partials.push(p.alias(format!("__p{i}")));
            which.push(i);
        }
    }
    let pairs = weighted_pairs(plan, facts, partials)?;
    let w = col(Column::from_name(WEIGHT));
    let n = f64_of(col(Column::from_name(ROWS)));
    let groups: Vec<Expr> = (0..plan.groups.len())
        .map(|g| col(Column::from_name(group_name(g))))
        .collect();
    let mut aggs = Vec::new();
    let mut row_stats = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        let e = match m {
            Measurement::Rows => sum(n.clone() * w.clone()),
            Measurement::DistinctUnits => {
                let nw = n.clone() * w.clone();
                sum(when(nw.clone().gt(lit(1.0)), lit(1.0)).otherwise(nw)?)
            }
            Measurement::Quantile(..) | Measurement::DistinctValues(_) => continue,
            _ if which.contains(&i) => sum(col(Column::from_name(format!("__p{i}"))) * w.clone()),
            _ => continue,
        };
        aggs.push(f64_of(e).alias(stat_name(row_stats.len())));
        row_stats.push(i);
    }
    if aggs.is_empty() {
        aggs.push(f64_of(count_star()).alias(stat_name(0)));
        row_stats.push(usize::MAX);
    }
    let rows = LogicalPlanBuilder::from(pairs)
        .aggregate(groups.clone(), aggs)?
        .build()?;
    let mut histograms = Vec::new();
    let mut distinct_values = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        match m {
            Measurement::Quantile(b, _) => {
                histograms.push((i, weighted_cells(plan, facts, bucket(b, facts), b.read())?))
            }
            Measurement::DistinctValues(x) => distinct_values.push((
                i,
                soft_distinct(plan, weighted_cells(plan, facts, x.clone(), x.clone())?)?,
            )),
            _ => {}
        }
    }
    Ok(StatsPlans {
        rows,
        row_stats,
        distinct_units: None,
        distinct_values,
        histograms,
    })
}

/// Per group: `Σ over non-NULL cells of min(1, weight)` — the distinct count of the cells'
/// values when every row weighs 1, and moved by at most a unit's weight otherwise.
fn soft_distinct(plan: &DpPlan, cells: LogicalPlan) -> Result<LogicalPlan> {
    let groups: Vec<Expr> = (0..plan.groups.len())
        .map(|g| col(Column::from_name(group_name(g))))
        .collect();
    let w = col(Column::from_name(stat_name(0)));
    Ok(LogicalPlanBuilder::from(cells)
        .alias("__distinct_cells")?
        .filter(col(Column::from_name(BUCKET)).is_not_null())?
        .aggregate(
            groups,
            vec![f64_of(sum(least(vec![w, lit(1.0)]))).alias(stat_name(0))],
        )?
        .build()?)
}

/// Under per-group bounds: per group and value of `cell`, the weighted number of rows where
/// `counted` is not NULL (`__g*`, `__bucket`, `__s0`): (unit, group, cell) counts joined to the
/// weights of their kept (unit, group) pair.
fn weighted_cells(plan: &DpPlan, facts: &Facts, cell: Expr, counted: Expr) -> Result<LogicalPlan> {
    {
        let mut keys = vec![Expr::Column(plan.unit.clone()).alias(UNIT)];
        keys.extend(group_exprs(plan)?);
        keys.push(cell.alias(BUCKET));
        let cells = LogicalPlanBuilder::from(unit_rows(plan, facts)?)
            .aggregate(keys, vec![f64_of(count(counted)).alias("__c")])?
            .alias("__cells")?
            .build()?;
        let weights = weighted_pairs(plan, facts, Vec::new())?;
        let at = |t: &str, c: String| col(Column::new(Some(t), c));
        // Grouping keys may be NULL (a group of their own): matched NULL to NULL.
        let mut on = vec![at("__cells", UNIT.into()).eq(at("__weighted_pairs", UNIT.into()))];
        for g in 0..plan.groups.len() {
            // A 0/1 flag, not two booleans compared (which the SQL unparser writes without
            // the parentheses PostgreSQL needs).
            let key = |t: &str| -> Result<(Expr, Expr)> {
                let x = cast(at(t, group_name(g)), DataType::Utf8);
                let flag = when(x.clone().is_null(), lit(1i64)).otherwise(lit(0i64))?;
                Ok((coalesce(vec![x, lit("")]), flag))
            };
            let (lk, ln) = key("__cells")?;
            let (rk, rn) = key("__weighted_pairs")?;
            on.push(lk.eq(rk));
            on.push(ln.eq(rn));
        }
        let mut k: Vec<Expr> = (0..plan.groups.len())
            .map(|g| at("__cells", group_name(g)).alias(group_name(g)))
            .collect();
        k.push(at("__cells", BUCKET.into()).alias(BUCKET));
        Ok(LogicalPlanBuilder::from(cells)
            .join_on(weights, JoinType::Inner, on)?
            .aggregate(
                k,
                vec![f64_of(sum(
                    col(Column::from_name("__c")) * at("__weighted_pairs", WEIGHT.into())
                ))
                .alias(stat_name(0))],
            )?
            .build()?)
    }
}

/// The statistics plans of a query.
pub(crate) struct StatsPlans {
    /// Groups × row-level statistics: columns `__g*` then `__s{i}` for the measurements `i`
    /// listed in `row_stats`.
    pub rows: LogicalPlan,
    /// Which measurements `rows` computes, in column order.
    pub row_stats: Vec<usize>,
    /// Groups × distinct units (`__g*`, `__s0`), when a measurement needs it.
    pub distinct_units: Option<(usize, LogicalPlan)>,
    /// Per quantile measurement: groups × bucket × weighted rows (`__g*`, `__bucket`, `__s0`).
    pub histograms: Vec<(usize, LogicalPlan)>,
    /// Per distinct-values measurement: groups × its value (`__g*`, `__s0`).
    pub distinct_values: Vec<(usize, LogicalPlan)>,
}

/// Builds the statistics plans, skipping what `facts` prove unnecessary.
pub(crate) fn stats_plans(plan: &DpPlan, facts: &Facts) -> Result<StatsPlans> {
    if plan.per_group_bounds() && !facts.proven {
        return pair_stats_plans(plan, facts);
    }
    let (input, w) = weighted(plan, facts)?;
    let keys = group_exprs(plan)?;
    let mut aggs = Vec::new();
    let mut row_stats = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        if let Some(e) = row_stat(m, &w, facts) {
            aggs.push(f64_of(e).alias(stat_name(row_stats.len())));
            row_stats.push(i);
        }
    }
    if aggs.is_empty() {
        // Keep the group list even when only distinct counts or quantiles are asked.
        aggs.push(f64_of(count_star()).alias(stat_name(0)));
        row_stats.push(usize::MAX);
    }
    let rows = LogicalPlanBuilder::from(input.clone())
        .aggregate(keys.clone(), aggs)?
        .build()?;
    let mut distinct_units = None;
    let mut histograms = Vec::new();
    let mut distinct_values = Vec::new();
    for (i, m) in plan.measurements.iter().enumerate() {
        match m {
            Measurement::DistinctValues(x) => {
                let p = match &w {
                    None => LogicalPlanBuilder::from(input.clone())
                        .aggregate(
                            keys.clone(),
                            vec![f64_of(count_distinct(x.clone())).alias(stat_name(0))],
                        )?
                        .build()?,
                    Some(w) => {
                        let mut k = keys.clone();
                        k.push(x.clone().alias(BUCKET));
                        let cells = LogicalPlanBuilder::from(input.clone())
                            .aggregate(k, vec![f64_of(sum(w.clone())).alias(stat_name(0))])?
                            .build()?;
                        soft_distinct(plan, cells)?
                    }
                };
                distinct_values.push((i, p));
            }
            Measurement::DistinctUnits => {
                let p = if facts.proven {
                    LogicalPlanBuilder::from(unit_rows(plan, facts)?)
                        .aggregate(
                            keys.clone(),
                            vec![f64_of(count_distinct(Expr::Column(plan.unit.clone())))
                                .alias(stat_name(0))],
                        )?
                        .build()?
                } else {
                    // Σ over units of min(1, rows in the group × weight).
                    let groups: Vec<Expr> = (0..plan.groups.len())
                        .map(|g| col(Column::from_name(group_name(g))))
                        .collect();
                    let nw = f64_of(col(Column::from_name(ROWS))) * col(Column::from_name(WEIGHT));
                    LogicalPlanBuilder::from(per_unit_and_group(plan, facts)?)
                        .join(
                            unit_weights(plan, facts)?,
                            JoinType::Inner,
                            (
                                vec![Column::from_name(UNIT)],
                                vec![Column::from_name(WEIGHT_UNIT)],
                            ),
                            None,
                        )?
                        .aggregate(
                            groups,
                            vec![sum(when(nw.clone().gt(lit(1.0)), lit(1.0)).otherwise(nw)?)
                                .alias(stat_name(0))],
                        )?
                        .build()?
                };
                distinct_units = Some((i, p));
            }
            Measurement::Quantile(b, _) => {
                let mut k = keys.clone();
                k.push(bucket(b, facts).alias(BUCKET));
                let weight = match &w {
                    Some(w) => sum(when(b.read().is_null(), lit(0.0)).otherwise(w.clone())?),
                    None => f64_of(count(b.read())),
                };
                let p = LogicalPlanBuilder::from(input.clone())
                    .aggregate(k, vec![f64_of(weight).alias(stat_name(0))])?
                    .build()?;
                histograms.push((i, p));
            }
            _ => {}
        }
    }
    Ok(StatsPlans {
        rows,
        row_stats,
        distinct_units,
        distinct_values,
        histograms,
    })
}

/// One row over a table's scan: `__s0` the largest number of rows any (non-NULL) unit has,
/// `__s1` the number of rows whose unit is NULL (both NULL for an empty table).
pub(crate) fn rows_per_unit(scan: LogicalPlan, unit: Column) -> Result<LogicalPlan> {
    let u = col(Column::from_name(UNIT));
    let c = col(Column::from_name("__c"));
    Ok(LogicalPlanBuilder::from(scan)
        .aggregate(
            vec![Expr::Column(unit).alias(UNIT)],
            vec![count_star().alias("__c")],
        )?
        // A derived table, so that the SQL unparser keeps the two aggregations apart.
        .alias("__rows_per_unit")?
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                f64_of(max(
                    when(u.clone().is_null(), lit(0i64)).otherwise(c.clone())?
                ))
                .alias(stat_name(0)),
                f64_of(sum(when(u.is_null(), c).otherwise(lit(0i64))?)).alias(stat_name(1)),
            ],
        )?
        .build()?)
}

/// One row over a table's scan: per column the smallest and largest value and the number of
/// non-NULL values (`__s{3i}`, `__s{3i+1}`, `__s{3i+2}`), then the number of rows, as floats.
pub(crate) fn ranges(scan: LogicalPlan, columns: &[Column]) -> Result<LogicalPlan> {
    let mut aggs = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let x = f64_of(Expr::Column(c.clone()));
        aggs.push(min(x.clone()).alias(stat_name(3 * i)));
        aggs.push(max(x).alias(stat_name(3 * i + 1)));
        aggs.push(f64_of(count(Expr::Column(c.clone()))).alias(stat_name(3 * i + 2)));
    }
    aggs.push(f64_of(count_star()).alias(stat_name(3 * columns.len())));
    Ok(LogicalPlanBuilder::from(scan)
        .aggregate(Vec::<Expr>::new(), aggs)?
        .build()?)
}
