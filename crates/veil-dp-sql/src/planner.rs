//! The DP planner: reads the logical plan DataFusion's SQL front end made of the analyst's
//! query and decides, **before any data is read**, whether differential privacy can answer
//! it and how.
//!
//! A query is answerable when it has exactly one aggregation over private rows, with
//! row-level work (scans, `WHERE`, joins on the privacy unit, derived tables that keep the
//! unit) below it and only post-processing of the aggregates (projections, `HAVING`,
//! `ORDER BY`, `LIMIT`, `DISTINCT`) above it. The planner then knows
//!
//! - the **contribution bound** `k`: how many rows one privacy unit may bring into the
//!   aggregation (`max_rows_per_unit`, multiplied across a join on the unit);
//! - every aggregate as the noisy **measurements** it needs (`AVG(x)` is a clamped sum and a
//!   count; `VAR(x)` adds a clamped sum of squares; `MEDIAN(x)` is a DP quantile), each with
//!   its sensitivity, deduplicated, sharing the query's ε equally;
//! - the grouping keys, and whether each is a **public** key set (every listed key is
//!   released, absent or not, and nothing else) or **private** (a key is released only if
//!   its noisy count passes the τ threshold, so a key absent from the data never appears).
//!
//! Everything else is refused with the reason: row-level output, grouping by the privacy
//! unit, joins not on the unit, subqueries computing exact statistics over private data,
//! aggregates of unbounded columns, and plan shapes it cannot bound.
//!
//! An aggregate's argument may be an **expression** of bounded columns and constants with
//! `+`, `−`, `×`, `÷` by a constant and numeric casts (`SUM(price * qty)`,
//! `AVG(income / 1000)`): its bounds follow from the columns' declared bounds by interval
//! arithmetic, and it is computed on the *clamped* columns, in double precision (an integer
//! division truncates, as SQL's does). So it cannot fail on any row (no overflow, no division
//! by zero: nothing a row's values could reveal through an error), and one person's influence
//! is bounded by the derived bounds, whatever the data holds.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions::math::expr_fn::trunc;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    binary_expr, lit, when, Aggregate, Expr, ExprSchemable, JoinType, LogicalPlan, Operator,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use crate::bounding::{clamp, Facts};
use crate::error::{Result, SqlError};
use crate::metadata::{Column as ColumnMeta, ColumnType, Metadata};

/// A column of the aggregation's input that a measurement reads, with its declared bounds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bounded {
    /// The column in the aggregation input's schema (for an expression, a name `__e{i}` that
    /// no fact about the data is attached to).
    pub column: Column,
    /// For an expression argument: its value over the clamped columns of the aggregation's
    /// input.
    pub value: Option<Expr>,
    /// What the analyst wrote: the column's name or the expression.
    pub label: String,
    /// Declared lower bound (values below are clamped to it).
    pub lower: f64,
    /// Declared upper bound.
    pub upper: f64,
    /// Integer column (quantiles return integers).
    pub integer: bool,
    /// The table and column it is read from.
    pub origin: (String, String),
}

impl Bounded {
    /// What a measurement reads: the column, or the expression's value.
    pub fn read(&self) -> Expr {
        match &self.value {
            Some(v) => v.clone(),
            None => Expr::Column(self.column.clone()),
        }
    }

    /// Largest absolute value a clamped value can take.
    pub fn magnitude(&self) -> f64 {
        self.lower.abs().max(self.upper.abs())
    }

    /// The middle of the bounds.
    pub fn middle(&self) -> f64 {
        self.lower + (self.upper - self.lower) / 2.0
    }

    /// Largest distance of a clamped value from the middle.
    pub fn half_range(&self) -> f64 {
        (self.upper - self.lower) / 2.0
    }
}

/// One noisy quantity the query needs, per group.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Measurement {
    /// Number of rows.
    Rows,
    /// Number of rows where the column is not NULL.
    NonNull(Expr),
    /// Sum of the clamped column.
    Sum(Bounded),
    /// Sum of the clamped column's distances to the middle of its bounds (half the
    /// sensitivity of [`Measurement::Sum`] when the bounds are `[0, U]`): for means.
    CenteredSum(Bounded),
    /// Sum of the squares of those distances: for variances.
    CenteredSumSquares(Bounded),
    /// Number of distinct privacy units.
    DistinctUnits,
    /// Number of distinct non-NULL values of a column other than the unit: under bounding,
    /// `Σ over values of min(1, total weight of its rows)` (each unit adds at most its own
    /// weight of new values; exactly the distinct count when nothing is cut).
    DistinctValues(Expr),
    /// A quantile of the clamped column (exponential mechanism over a histogram).
    Quantile(Bounded, f64),
}

/// What one aggregate of the query is, in terms of measurements (indices into
/// [`DpPlan::measurements`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Output {
    /// `COUNT(*)`, `COUNT(col)` or `COUNT(DISTINCT unit)`: the measurement itself.
    Count(usize),
    /// `SUM(col)`.
    Sum(usize),
    /// `AVG(col)` = middle + centered sum / count of non-NULL values, clamped to the bounds.
    Avg {
        sum: usize,
        count: usize,
        lower: f64,
        upper: f64,
    },
    /// `VAR`/`STDDEV` (sample or population).
    Variance {
        sum: usize,
        squares: usize,
        count: usize,
        population: bool,
        sqrt: bool,
        range: f64,
    },
    /// `MIN`, `MAX`, `MEDIAN`, percentiles.
    Quantile(usize),
}

/// A grouping key of the query.
#[derive(Clone, Debug)]
pub(crate) struct GroupKey {
    /// The key's expression over the aggregation input.
    pub expr: Expr,
    /// The public key set, when the key is a column that declares one.
    pub public: Option<Vec<String>>,
}

/// A query the planner accepted, with everything the engine needs to bound, measure and
/// post-process it.
#[derive(Clone, Debug)]
pub(crate) struct DpPlan {
    /// The analyst's plan (its aggregation is replaced by the noisy results at the end).
    pub original: LogicalPlan,
    /// The aggregation node.
    pub aggregate: Aggregate,
    /// The privacy unit's column in the aggregation input.
    pub unit: Column,
    /// Rows one unit may contribute to the aggregation input.
    pub bound: u64,
    /// Groups one unit may fall into (L0), when declared or asked: a unit in more keeps that
    /// many of its groups, chosen at random.
    pub max_groups: Option<u64>,
    /// Rows one unit may bring to one group (L∞), when declared or asked.
    pub max_per_group: Option<u64>,
    /// The metadata tables read, with their privacy unit column and bound.
    pub tables: Vec<(String, String, u64)>,
    /// Public tables joined and the column each is joined on: the engine checks, before the
    /// charge, that the column holds no value twice (else the join could multiply rows).
    pub public_joins: Vec<(String, String)>,
    /// Grouping keys.
    pub groups: Vec<GroupKey>,
    /// One entry per aggregate expression of the node, in order.
    pub outputs: Vec<Output>,
    /// The deduplicated measurements.
    pub measurements: Vec<Measurement>,
    /// Index of the row count among the measurements, when keys are private (τ threshold).
    pub threshold_count: Option<usize>,
    /// The (table, column) pairs whose metadata bounds the measurements use (a column
    /// aggregated, or read by an aggregated expression): what automatic bounds must cover.
    pub bounds_read: Vec<(String, String)>,
}

impl DpPlan {
    /// Whether some grouping key is private (needs τ-thresholding and δ > 0).
    pub fn private_keys(&self) -> bool {
        self.groups.iter().any(|g| g.public.is_none())
    }

    /// Whether an L0 or L∞ bound is set: contributions are then bounded per (unit, group)
    /// pair, not only per unit.
    pub fn per_group_bounds(&self) -> bool {
        self.max_groups.is_some() || self.max_per_group.is_some()
    }

    /// L0: how many groups one unit can move (1 without `GROUP BY`; never more than its
    /// rows).
    pub fn l0(&self) -> u64 {
        if self.groups.is_empty() {
            1
        } else {
            self.max_groups.unwrap_or(self.bound).min(self.bound)
        }
    }

    /// L∞: how many rows one unit can bring to one group.
    pub fn linf(&self) -> u64 {
        self.max_per_group.unwrap_or(self.bound).min(self.bound)
    }

    /// L1: how many rows one unit can bring in all (what a count's sensitivity is).
    pub fn l1(&self) -> u64 {
        self.l0().saturating_mul(self.linf()).min(self.bound)
    }
}

/// What the planner knows about the input of the aggregation while it walks down.
struct Source {
    unit: Column,
    /// Columns equal to the unit (the other side's unit after a join on it).
    same_as_unit: Vec<Column>,
    bound: u64,
    /// Columns described by the metadata, with the (table, column) they come from.
    columns: BTreeMap<Column, (ColumnMeta, (String, String))>,
    tables: Vec<(String, String, u64)>,
    /// The public table this source is, when it is one (it has no unit then).
    public: Option<String>,
    /// Public tables joined, with the column they are joined on (which must hold each value
    /// at most once).
    public_joins: Vec<(String, String)>,
}

impl Source {
    fn is_unit(&self, c: &Column) -> bool {
        *c == self.unit || self.same_as_unit.contains(c)
    }
}

fn reject<T>(msg: impl Into<String>) -> Result<T> {
    Err(SqlError::rejected(msg))
}

/// Refuses expressions that read private data outside the aggregation's control (in the
/// post-processing part, which only sees noisy values, this is all that is needed).
fn check_no_subquery(e: &Expr, place: &str) -> Result<()> {
    let mut found: Option<&'static str> = None;
    e.apply(|x| {
        let what = match x {
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => Some("a subquery"),
            Expr::OuterReferenceColumn(..) => Some("a correlated subquery"),
            Expr::WindowFunction(_) => Some("a window function"),
            Expr::AggregateFunction(_) => Some("an aggregate"),
            Expr::Placeholder(_) => Some("a placeholder"),
            Expr::Unnest(_) => Some("UNNEST"),
            Expr::GroupingSet(_) => Some("GROUPING SETS / ROLLUP / CUBE"),
            _ => None,
        };
        if let Some(w) = what {
            found = Some(w);
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    match found {
        Some("a subquery") | Some("a correlated subquery") => reject(format!(
            "{place} contains a subquery: subqueries over private data would compute exact \
             statistics; ask for the aggregates directly"
        )),
        Some(w) => reject(format!("{w} is not allowed in {place}")),
        None => Ok(()),
    }
}

/// Scalar functions that cannot fail whatever the row holds, on DataFusion and on
/// PostgreSQL, once their arguments are total (so that whether a query fails says nothing
/// about the data). Their arguments' casts, added by type coercion, are checked like any cast.
const TOTAL_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "floor",
    "ceil",
    "round",
    "trunc",
    "coalesce",
    "nullif",
    "concat",
    "starts_with",
    "ends_with",
    "strpos",
    "greatest",
    "least",
];

/// Largest literal an addition or subtraction may use: far from any integer overflow.
const MAX_OFFSET: f64 = 1e6;

/// Largest magnitude an integer expression may reach before `± MAX_OFFSET`: with it, no
/// 64-bit integer arithmetic of the row-level part can overflow (2^62).
const MAX_INT_MAGNITUDE: f64 = 4.611_686_018_427_388e18;

/// The value of a constant expression (no column), evaluated now, at planning, the way
/// DataFusion would fold it. A constant that cannot be evaluated (a cast of `'5x'` to a
/// number, a division by zero) is refused here: the same for every row and every dataset, so
/// saying so reveals nothing — and it would otherwise fail after the charge, or only on the
/// rows whose `CASE` branch reaches it.
fn const_value(e: &Expr) -> Result<Option<ScalarValue>> {
    if !e.column_refs().is_empty() {
        return Ok(None);
    }
    if let Expr::Literal(v, _) = e {
        return Ok(Some(v.clone()));
    }
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    match simplifier.simplify(e.clone()) {
        Ok(Expr::Literal(v, _)) => Ok(Some(v)),
        Ok(_) => reject(format!(
            "the constant expression {e} cannot be evaluated before the query runs"
        )),
        Err(err) => reject(format!("the constant expression {e} is invalid: {err}")),
    }
}

fn const_f64(e: &Expr) -> Result<Option<f64>> {
    Ok(
        const_value(e)?.and_then(|v| match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(x))) => Some(x),
            _ => None,
        }),
    )
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

/// The largest magnitude an integer-typed expression can take on any row, when the types
/// and constants bound it (`None`: unbounded, e.g. any 64-bit column).
fn int_magnitude(e: &Expr, schema: &DFSchema) -> Option<f64> {
    if let Ok(Some(v)) = const_f64(e) {
        return Some(v.abs());
    }
    match e {
        Expr::Alias(a) => int_magnitude(&a.expr, schema),
        Expr::Column(_) => match e.get_type(schema).ok()? {
            DataType::Int8 | DataType::UInt8 => Some(256.0),
            DataType::Int16 | DataType::UInt16 => Some(65_536.0),
            DataType::Int32 | DataType::UInt32 => Some(4_294_967_296.0),
            _ => None,
        },
        Expr::Cast(c) => int_magnitude(&c.expr, schema),
        Expr::Negative(x) => int_magnitude(x, schema),
        Expr::BinaryExpr(b) => {
            let l = int_magnitude(&b.left, schema);
            match b.op {
                Operator::Plus | Operator::Minus => Some(l? + int_magnitude(&b.right, schema)?),
                Operator::Divide => l,
                Operator::Modulo => {
                    let r = int_magnitude(&b.right, schema);
                    match (l, r) {
                        (Some(l), Some(r)) => Some(l.min(r)),
                        (l, r) => l.or(r),
                    }
                }
                _ => None,
            }
        }
        Expr::Case(c) => {
            let mut m: f64 = 0.0;
            for (_, t) in &c.when_then_expr {
                m = m.max(int_magnitude(t, schema)?);
            }
            if let Some(x) = &c.else_expr {
                m = m.max(int_magnitude(x, schema)?);
            }
            Some(m)
        }
        Expr::ScalarFunction(f)
            if matches!(f.func.name(), "coalesce" | "nullif" | "greatest" | "least") =>
        {
            f.args
                .iter()
                .try_fold(0.0f64, |m, a| Some(m.max(int_magnitude(a, schema)?)))
        }
        _ => None,
    }
}

/// Whether a cast of any value of type `from` to type `to` succeeds, on DataFusion and on
/// PostgreSQL (text of every scalar type; exact widenings of numbers; floats of numbers).
fn cast_is_total(from: &DataType, to: &DataType) -> bool {
    if from == to || (is_text(from) && is_text(to)) {
        return true;
    }
    let scalar = from.is_numeric()
        || is_text(from)
        || matches!(
            from,
            DataType::Boolean | DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        );
    match to {
        t if is_text(t) => scalar,
        DataType::Float64 => from.is_integer() || from.is_floating(),
        DataType::Int64 => matches!(
            from,
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
        ),
        DataType::Int32 => matches!(
            from,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16
        ),
        _ => false,
    }
}

/// A `LIKE` pattern must be a constant that every backend accepts (PostgreSQL refuses one
/// ending with its escape character — on the rows that reach it).
fn check_like_pattern(
    pattern: &Expr,
    escape: Option<char>,
    refuse: &dyn Fn(String) -> Result<()>,
) -> Result<()> {
    let text = match const_value(pattern)? {
        Some(ScalarValue::Utf8(Some(s)))
        | Some(ScalarValue::LargeUtf8(Some(s)))
        | Some(ScalarValue::Utf8View(Some(s))) => s,
        Some(v) if v.is_null() => return Ok(()),
        _ => return refuse(format!("a LIKE pattern that is not a constant ({pattern})")),
    };
    let escape = escape.unwrap_or('\\');
    let trailing = text.chars().rev().take_while(|c| *c == escape).count();
    if trailing % 2 == 1 {
        return refuse(format!(
            "the LIKE pattern {text:?}, which ends with its escape character"
        ));
    }
    Ok(())
}

/// Checks a row-level expression (WHERE, GROUP BY, join conditions, derived tables): no
/// subqueries, and nothing that can **fail depending on the data** — an error that appears
/// only for some rows (division by zero, a failed cast, an overflow) would tell the analyst
/// something exact about a person, at no privacy cost.
///
/// The expression checked is the one DataFusion will execute: the plan has been through
/// DataFusion's analyzer, so every implicit cast added by type coercion is in it and is
/// checked like an explicit one. What is allowed is total on **both** backends (DataFusion
/// and PostgreSQL, whose errors differ): comparisons, boolean logic, `IS [NOT] NULL`,
/// `BETWEEN`, `IN (…)`, `LIKE` with a constant pattern, `CASE`; additions of a constant up
/// to 10^6 to floats, or to integers whose magnitude the types bound; integer division and
/// modulo by a constant ≥ 1; casts that cannot fail (to text, widening, to float); constant
/// expressions that evaluate now; and total string and rounding functions.
fn check_row_expr(e: &Expr, schema: &DFSchema, place: &str) -> Result<()> {
    check_no_subquery(e, place)?;
    check_total(e, schema, place)
}

fn check_total(e: &Expr, schema: &DFSchema, place: &str) -> Result<()> {
    let all = |es: &[&Expr]| es.iter().try_for_each(|x| check_total(x, schema, place));
    let refuse = |what: String| -> Result<()> {
        reject(format!(
            "{what} is not allowed in {place}: row-level expressions must not be able to fail \
             on some rows (that would reveal them); use comparisons, CASE, IN, LIKE, \
             TRY_CAST, or arithmetic with constants"
        ))
    };
    // A constant is evaluated now: it fails for every row or for none.
    if const_value(e)?.is_some() {
        return Ok(());
    }
    let ty = |x: &Expr| x.get_type(schema).ok();
    match e {
        Expr::Column(_) | Expr::Literal(..) => Ok(()),
        Expr::Alias(a) => check_total(&a.expr, schema, place),
        Expr::BinaryExpr(b) => {
            use Operator::*;
            match b.op {
                Eq | NotEq | Lt | LtEq | Gt | GtEq | IsDistinctFrom | IsNotDistinctFrom | And
                | Or => all(&[&b.left, &b.right]),
                LikeMatch | ILikeMatch | NotLikeMatch | NotILikeMatch => {
                    check_like_pattern(&b.right, None, &refuse)?;
                    check_total(&b.left, schema, place)
                }
                Plus | Minus => {
                    let small = |x: &Expr| {
                        const_f64(x)
                            .map(|v| v.is_some_and(|v| v.is_finite() && v.abs() <= MAX_OFFSET))
                    };
                    let other = if small(&b.right)? {
                        &b.left
                    } else if small(&b.left)? {
                        &b.right
                    } else {
                        return refuse(format!(
                            "{e} (add or subtract a constant of at most {MAX_OFFSET})"
                        ));
                    };
                    check_total(other, schema, place)?;
                    match ty(e) {
                        Some(t) if t.is_floating() => Ok(()),
                        Some(t) if t.is_integer() => match int_magnitude(other, schema) {
                            Some(m) if m <= MAX_INT_MAGNITUDE => Ok(()),
                            _ => refuse(format!(
                                "{e}, an integer sum that can overflow on some rows \
                                     (write CAST(… AS DOUBLE) {} …)",
                                b.op
                            )),
                        },
                        _ => refuse(format!("{e} (arithmetic on this type)")),
                    }
                }
                Divide | Modulo => {
                    let integer = ty(e).is_some_and(|t| t.is_integer());
                    let divisor = const_f64(&b.right)?;
                    if !integer {
                        return refuse(format!(
                            "{e}: real division can overflow or underflow on some rows; \
                             divide the aggregate instead (e.g. SUM(x) / 1000 in the SELECT \
                             list is post-processing)"
                        ));
                    }
                    if !divisor.is_some_and(|d| d >= 1.0) {
                        return refuse(format!(
                            "the operator {} in {e} (divide only by a constant ≥ 1)",
                            b.op
                        ));
                    }
                    check_total(&b.left, schema, place)
                }
                op => refuse(format!("the operator {op} in {e}")),
            }
        }
        Expr::Not(x)
        | Expr::IsNull(x)
        | Expr::IsNotNull(x)
        | Expr::IsTrue(x)
        | Expr::IsFalse(x)
        | Expr::IsUnknown(x)
        | Expr::IsNotTrue(x)
        | Expr::IsNotFalse(x)
        | Expr::IsNotUnknown(x) => check_total(x, schema, place),
        Expr::Negative(x) => {
            check_total(x, schema, place)?;
            match ty(x) {
                Some(t) if t.is_floating() => Ok(()),
                Some(t) if t.is_integer() => match int_magnitude(x, schema) {
                    Some(m) if m <= MAX_INT_MAGNITUDE => Ok(()),
                    _ => refuse(format!("{e}, a negation that can overflow on some rows")),
                },
                _ => refuse(format!("{e}")),
            }
        }
        Expr::Between(b) => all(&[&b.expr, &b.low, &b.high]),
        Expr::InList(l) => {
            check_total(&l.expr, schema, place)?;
            l.list
                .iter()
                .try_for_each(|x| check_total(x, schema, place))
        }
        Expr::Like(l) => {
            check_like_pattern(&l.pattern, l.escape_char, &refuse)?;
            check_total(&l.expr, schema, place)
        }
        Expr::Case(c) => {
            if let Some(x) = &c.expr {
                check_total(x, schema, place)?;
            }
            for (w, t) in &c.when_then_expr {
                all(&[w, t])?;
            }
            match &c.else_expr {
                Some(x) => check_total(x, schema, place),
                None => Ok(()),
            }
        }
        Expr::TryCast(c) => check_total(&c.expr, schema, place),
        Expr::Cast(c) => {
            let to = c.field.data_type();
            match ty(&c.expr) {
                Some(from) if cast_is_total(&from, to) => check_total(&c.expr, schema, place),
                Some(from) => refuse(format!(
                    "CAST({} AS {to}) from {from}, which fails on some values (an implicit \
                     cast when a comparison or CASE mixes types: compare values of the same \
                     type, or use TRY_CAST)",
                    c.expr
                )),
                None => refuse(format!("CAST to {to}")),
            }
        }
        Expr::ScalarFunction(f) => {
            let name = f.func.name().to_ascii_lowercase();
            if TOTAL_FUNCTIONS.contains(&name.as_str()) {
                f.args
                    .iter()
                    .try_for_each(|x| check_total(x, schema, place))
            } else {
                refuse(format!("the function {name}()"))
            }
        }
        other => refuse(format!("{other}")),
    }
}

/// A join of a private source with a public table, on an equality between a column of the
/// public table and an expression of the private side: each private row then meets at most
/// one public row once the engine has checked that column holds no value twice, so the bound
/// is the private side's.
fn public_join(
    left: Source,
    right: Source,
    pairs: &[(Expr, Expr)],
    right_plan: &LogicalPlan,
) -> Result<Source> {
    let (private, public, public_is_right) = match (&left.public, &right.public) {
        (Some(_), Some(_)) => return reject("the query reads no private table"),
        (None, Some(_)) => (left, right, true),
        _ => (right, left, false),
    };
    let table = public.public.clone().unwrap_or_default();
    let on_public = |e: &Expr| -> Option<Column> {
        match e {
            Expr::Column(c)
                if (public_is_right && right_plan.schema().has_column(c))
                    || (!public_is_right && !right_plan.schema().has_column(c)) =>
            {
                Some(c.clone())
            }
            _ => None,
        }
    };
    // The other side must read the private rows only (`r.a = r.b` constrains nothing).
    let private_only = |e: &Expr| {
        let refs = e.column_refs();
        !refs.is_empty()
            && refs
                .iter()
                .all(|c| right_plan.schema().has_column(c) != public_is_right)
    };
    let key = pairs
        .iter()
        .find_map(|(a, b)| match (on_public(a), on_public(b)) {
            (Some(k), _) if private_only(b) => Some(k),
            (_, Some(k)) if private_only(a) => Some(k),
            _ => None,
        });
    let Some(key) = key else {
        return reject(format!(
            "a join with the public table {table:?} must be on an equality with one of its \
             columns (e.g. ON p.region = r.region_id)"
        ));
    };
    let Some((_, (_, (_, column)))) = public.columns.iter().find(|(c, _)| **c == key) else {
        return reject(format!(
            "the public table {table:?} has no column {} in its metadata",
            key.name
        ));
    };
    let mut columns = private.columns;
    columns.extend(public.columns.clone());
    let mut public_joins = private.public_joins;
    public_joins.push((table, column.clone()));
    Ok(Source {
        columns,
        public_joins,
        ..private
    })
}

/// Plans an analyst's query: accepts it with its measurements or says why not.
pub(crate) fn plan(query: &LogicalPlan, meta: &Metadata) -> Result<DpPlan> {
    if let LogicalPlan::Ddl(_)
    | LogicalPlan::Dml(_)
    | LogicalPlan::Copy(_)
    | LogicalPlan::Statement(_)
    | LogicalPlan::Explain(_)
    | LogicalPlan::Analyze(_)
    | LogicalPlan::DescribeTable(_) = query
    {
        return reject("only SELECT queries are answered");
    }
    let aggregate = find_aggregate(query)?;
    let source = source(&aggregate.input, meta)?;
    if let Some(t) = &source.public {
        return reject(format!(
            "the query reads only the public table {t:?}: it needs no differential privacy \
             (query the data directly) and the engine answers only private tables"
        ));
    }
    let mut groups = Vec::new();
    for g in &aggregate.group_expr {
        check_row_expr(g, aggregate.input.schema(), "GROUP BY")?;
        if g.column_refs().iter().any(|c| source.is_unit(c)) {
            return reject(format!(
                "GROUP BY {g} groups by the privacy unit ({}): that would release one \
                 group per person",
                source.unit.name
            ));
        }
        let public = match g {
            Expr::Column(c) => source
                .columns
                .get(c)
                .and_then(|(m, _)| m.public_keys.clone()),
            _ => None,
        };
        groups.push(GroupKey {
            expr: g.clone(),
            public,
        });
    }
    if aggregate.schema.fields().len() != aggregate.group_expr.len() + aggregate.aggr_expr.len() {
        return reject("a grouping key or an aggregate is listed twice; list each once");
    }
    let mut measurements = Vec::new();
    let mut add = |m: Measurement| -> usize {
        match measurements.iter().position(|x| *x == m) {
            Some(i) => i,
            None => {
                measurements.push(m);
                measurements.len() - 1
            }
        }
    };
    let mut outputs = Vec::new();
    let mut derived = Vec::new();
    let schema = aggregate.input.schema().clone();
    for e in &aggregate.aggr_expr {
        let mut args = Args {
            source: &source,
            schema: &schema,
            derived: &mut derived,
        };
        outputs.push(output(e, &mut args, &mut add)?);
    }
    // Private keys are thresholded on a noisy count: any count the query already measures
    // does (each is at most a unit's weight per group), else one more.
    let threshold_count = if groups.iter().any(|g| g.public.is_none()) {
        let existing = measurements.iter().position(|m| {
            matches!(
                m,
                Measurement::Rows | Measurement::NonNull(_) | Measurement::DistinctUnits
            )
        });
        match existing {
            Some(i) => Some(i),
            None => {
                measurements.push(Measurement::Rows);
                Some(measurements.len() - 1)
            }
        }
    } else {
        None
    };
    let mut bounds_read: Vec<(String, String)> = Vec::new();
    let mut read = |origin: &(String, String)| {
        if !origin.0.is_empty() && !bounds_read.contains(origin) {
            bounds_read.push(origin.clone());
        }
    };
    for m in &measurements {
        if let Measurement::Sum(b)
        | Measurement::CenteredSum(b)
        | Measurement::CenteredSumSquares(b)
        | Measurement::Quantile(b, _) = m
        {
            read(&b.origin);
        }
    }
    for d in &derived {
        for c in d.expr.column_refs() {
            if let Some((m, origin)) = source.columns.get(c) {
                if m.is_numeric() {
                    read(origin);
                }
            }
        }
    }
    // The per-group bounds of the tables read: the smallest declared (any choice is private;
    // the sensitivities follow it).
    let declared = |f: fn(&crate::metadata::Table) -> Option<u64>| {
        source
            .tables
            .iter()
            .filter_map(|(t, _, _)| meta.table(t).and_then(|(_, t)| f(t)))
            .min()
    };
    Ok(DpPlan {
        original: query.clone(),
        unit: source.unit,
        bound: source.bound,
        public_joins: source.public_joins,
        max_groups: declared(|t| t.max_groups_per_unit),
        max_per_group: declared(|t| t.max_rows_per_group),
        tables: source.tables,
        groups,
        outputs,
        measurements,
        threshold_count,
        bounds_read,
        aggregate,
    })
}

/// Walks down the post-processing nodes to the one aggregation.
fn find_aggregate(plan: &LogicalPlan) -> Result<Aggregate> {
    match plan {
        LogicalPlan::Aggregate(a) => Ok(a.clone()),
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Distinct(_)
        | LogicalPlan::SubqueryAlias(_) => {
            for e in plan.expressions() {
                check_no_subquery(&e, "the query's output")?;
            }
            match plan.inputs().as_slice() {
                [input] => find_aggregate(input),
                _ => reject("this query shape cannot be bounded"),
            }
        }
        LogicalPlan::TableScan(_) | LogicalPlan::Join(_) => reject(
            "row-level output (SELECT * or raw columns) would release individual records; \
             ask for aggregates (COUNT, SUM, AVG, …) instead",
        ),
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
            reject("the query reads no private table")
        }
        LogicalPlan::Window(_) => reject(
            "window functions over private rows release row-level values; ask for aggregates",
        ),
        LogicalPlan::Union(_) => {
            reject("UNION is not supported (each branch would need its own bound)")
        }
        other => reject(format!(
            "a {} node cannot be bounded",
            other
                .display()
                .to_string()
                .split(':')
                .next()
                .unwrap_or("plan")
        )),
    }
}

/// Validates the row-level part below the aggregation and tracks the unit and the bounds.
fn source(plan: &LogicalPlan, meta: &Metadata) -> Result<Source> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let name = scan.table_name.table();
            let Some((tname, table)) = meta.table(name) else {
                return reject(format!("table {name:?} has no metadata"));
            };
            if !scan.filters.is_empty() || scan.fetch.is_some() {
                return reject("a pre-filtered scan cannot be bounded");
            }
            let mut columns = BTreeMap::new();
            let mut unit = None;
            for (q, f) in scan.projected_schema.iter() {
                let c = Column::from((q, f));
                if let Some((cname, m)) = table.column(f.name()) {
                    if !table.public && cname.eq_ignore_ascii_case(&table.privacy_unit) {
                        unit = Some(c.clone());
                    }
                    columns.insert(c, (m.clone(), (tname.to_string(), cname.to_string())));
                }
            }
            if table.public {
                return Ok(Source {
                    // No column has an empty name: nothing is ever this "unit".
                    unit: Column::from_name(""),
                    same_as_unit: Vec::new(),
                    bound: 1,
                    columns,
                    tables: Vec::new(),
                    public: Some(tname.to_string()),
                    public_joins: Vec::new(),
                });
            }
            let Some(unit) = unit else {
                return reject(format!(
                    "table {tname:?} has no column {:?} (its privacy unit)",
                    table.privacy_unit
                ));
            };
            Ok(Source {
                unit,
                same_as_unit: Vec::new(),
                bound: table.max_rows_per_unit,
                columns,
                tables: vec![(
                    tname.to_string(),
                    table.privacy_unit.clone(),
                    table.max_rows_per_unit,
                )],
                public: None,
                public_joins: Vec::new(),
            })
        }
        LogicalPlan::Filter(f) => {
            check_row_expr(&f.predicate, f.input.schema(), "WHERE")?;
            source(&f.input, meta)
        }
        LogicalPlan::SubqueryAlias(a) => {
            let inner = source(&a.input, meta)?;
            let requalify = |c: &Column| Column::new(Some(a.alias.clone()), c.name.clone());
            Ok(Source {
                unit: requalify(&inner.unit),
                same_as_unit: inner.same_as_unit.iter().map(requalify).collect(),
                columns: inner
                    .columns
                    .iter()
                    .map(|(c, m)| (requalify(c), m.clone()))
                    .collect(),
                ..inner
            })
        }
        LogicalPlan::Projection(p) => {
            let inner = source(&p.input, meta)?;
            if let Some(t) = &inner.public {
                return reject(format!(
                    "a derived table over the public table {t:?} is not supported: join the \
                     table itself"
                ));
            }
            let mut columns = BTreeMap::new();
            let mut unit = None;
            let mut same_as_unit = Vec::new();
            for (i, e) in p.expr.iter().enumerate() {
                check_row_expr(e, p.input.schema(), "a derived table")?;
                let out = Column::from(p.schema.qualified_field(i));
                let bare = match unalias(e) {
                    Expr::Column(c) => Some(c),
                    _ => None,
                };
                if let Some(c) = bare {
                    if *c == inner.unit && unit.is_none() {
                        unit = Some(out.clone());
                    } else if inner.is_unit(c) {
                        same_as_unit.push(out.clone());
                    }
                    if let Some(m) = inner.columns.get(c) {
                        columns.insert(out, m.clone());
                    }
                }
            }
            let Some(unit) = unit else {
                return reject(format!(
                    "a derived table drops the privacy unit ({}): keep it in its SELECT list",
                    inner.unit.name
                ));
            };
            Ok(Source {
                unit,
                same_as_unit,
                columns,
                ..inner
            })
        }
        LogicalPlan::Join(j) => {
            if j.join_type != JoinType::Inner {
                return reject(format!(
                    "{} joins are not supported; join tables with INNER JOIN … ON their \
                     privacy units",
                    j.join_type
                ));
            }
            let left = source(&j.left, meta)?;
            let right = source(&j.right, meta)?;
            let mut pairs: Vec<(Expr, Expr)> = j.on.clone();
            let mut rest = Vec::new();
            if let Some(f) = &j.filter {
                check_row_expr(f, j.schema.as_ref(), "a join condition")?;
                for c in split_conjunction(f) {
                    match c {
                        Expr::BinaryExpr(b) if b.op == Operator::Eq => {
                            pairs.push((*b.left.clone(), *b.right.clone()))
                        }
                        other => rest.push(other.clone()),
                    }
                }
            }
            for (a, b) in &pairs {
                check_row_expr(a, j.schema.as_ref(), "a join condition")?;
                check_row_expr(b, j.schema.as_ref(), "a join condition")?;
            }
            if left.public.is_some() || right.public.is_some() {
                return public_join(left, right, &pairs, &j.right);
            }
            let lu = Expr::Column(left.unit.clone());
            let ru = Expr::Column(right.unit.clone());
            let on_unit = pairs
                .iter()
                .any(|(a, b)| (*a == lu && *b == ru) || (*a == ru && *b == lu));
            if !on_unit {
                return reject(format!(
                    "this join could multiply a person's contribution without bound: join on \
                     the privacy units ({} = {})",
                    left.unit, right.unit
                ));
            }
            let bound = left.bound.saturating_mul(right.bound);
            if bound > crate::metadata::MAX_ROWS_PER_UNIT {
                return reject(format!(
                    "the join lets one unit contribute {bound} rows, more than {}",
                    crate::metadata::MAX_ROWS_PER_UNIT
                ));
            }
            let mut columns = left.columns;
            columns.extend(right.columns);
            let mut tables = left.tables;
            tables.extend(right.tables);
            let mut same_as_unit = left.same_as_unit;
            same_as_unit.push(right.unit);
            same_as_unit.extend(right.same_as_unit);
            let mut public_joins = left.public_joins;
            public_joins.extend(right.public_joins);
            Ok(Source {
                unit: left.unit,
                same_as_unit,
                bound,
                public: None,
                public_joins,
                columns,
                tables,
            })
        }
        LogicalPlan::Aggregate(_) => reject(
            "a subquery computes exact statistics over private data; only the outermost \
             aggregation is answered (with noise)",
        ),
        LogicalPlan::Window(_) => reject("window functions over private rows are not allowed"),
        LogicalPlan::Union(_) => reject("UNION below the aggregation is not supported"),
        LogicalPlan::Limit(_) | LogicalPlan::Sort(_) | LogicalPlan::Distinct(_) => reject(
            "LIMIT, ORDER BY and DISTINCT inside a derived table are not supported (they select \
             rows in a way the engine cannot bound)",
        ),
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
            reject("the query reads no private table")
        }
        _ => reject("this query shape cannot be bounded"),
    }
}

/// The expression under any number of aliases.
pub(crate) fn unalias(mut e: &Expr) -> &Expr {
    while let Expr::Alias(a) = e {
        e = a.expr.as_ref();
    }
    e
}

fn split_conjunction(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::And => {
            let mut v = split_conjunction(&b.left);
            v.extend(split_conjunction(&b.right));
            v
        }
        other => vec![other],
    }
}

/// The column a function argument names, or a rejection.
fn column_arg<'a>(e: &'a Expr, func: &str) -> Result<&'a Column> {
    match e {
        Expr::Column(c) => Ok(c),
        Expr::Cast(c) => column_arg(&c.expr, func),
        Expr::TryCast(c) => column_arg(&c.expr, func),
        other => reject(format!(
            "{func}({other}): aggregate arguments must be a column of the table (the engine \
             knows bounds only for columns)"
        )),
    }
}

fn bounded(c: &Column, source: &Source, func: &str) -> Result<Bounded> {
    let Some((m, origin)) = source.columns.get(c) else {
        return reject(format!(
            "{func}({}): the column is not described by the metadata",
            c.name
        ));
    };
    if !m.is_numeric() {
        return reject(format!(
            "{func}({}): a {:?} column has no numeric bounds",
            c.name, m.kind
        ));
    }
    let Some((lower, upper)) = m.bounds() else {
        return reject(format!(
            "{func}({}): the column has no bounds in the metadata; {func} needs lower and \
             upper to bound one person's influence",
            c.name
        ));
    };
    Ok(Bounded {
        column: c.clone(),
        value: None,
        label: c.name.clone(),
        lower,
        upper,
        integer: m.kind == ColumnType::Int,
        origin: origin.clone(),
    })
}

fn literal_f64(e: &Expr) -> Option<f64> {
    match e {
        Expr::Literal(v, _) => match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(x))) => Some(x),
            _ => None,
        },
        Expr::Cast(c) => literal_f64(&c.expr),
        _ => None,
    }
}

/// Largest bound an expression argument may reach: beyond 2^53 a double no longer holds every
/// integer, and sums of such values lose the exactness the sensitivity analysis assumes.
const MAX_DERIVED: f64 = 9_007_199_254_740_992.0;

/// An aggregate's argument that is an expression, with its derived bounds and value.
struct Derived {
    /// The analyst's expression (the same one is measured once).
    expr: Expr,
    /// Its bounds and its value over the clamped columns.
    bounded: Bounded,
}

/// What resolving an aggregate's argument needs.
struct Args<'a> {
    source: &'a Source,
    schema: &'a DFSchema,
    derived: &'a mut Vec<Derived>,
}

impl Args<'_> {
    /// The bounded column an aggregate's argument is: a declared column, or an expression's
    /// column with bounds derived from the declared ones.
    fn bounded(&mut self, e: &Expr, func: &str) -> Result<Bounded> {
        let e = unalias(e);
        if let Ok(c) = column_arg(e, func) {
            return bounded(c, self.source, func);
        }
        if let Some(d) = self.derived.iter().find(|d| d.expr == *e) {
            return Ok(d.bounded.clone());
        }
        let v = interval(e, self.source, self.schema, func)?;
        let (lower, upper) = (v.lower, v.upper);
        if !(lower.is_finite() && upper.is_finite())
            || lower.abs() > MAX_DERIVED
            || upper.abs() > MAX_DERIVED
        {
            return reject(format!(
                "{func}({e}): its bounds derived from the columns' ([{}, {}]) exceed ±2^53, \
                 where doubles stop being exact",
                show(lower),
                show(upper)
            ));
        }
        let name = format!("__e{}", self.derived.len());
        let bounded = Bounded {
            column: Column::from_name(name.clone()),
            value: Some(v.value),
            label: e.to_string(),
            lower,
            upper,
            integer: v.integer,
            // No table: no fact about the data applies to a computed value.
            origin: (String::new(), name),
        };
        self.derived.push(Derived {
            expr: e.clone(),
            bounded: bounded.clone(),
        });
        Ok(bounded)
    }
}

/// A bound as a short number (`5e305`, not 306 digits).
fn show(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e9).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// An expression of bounded columns: its value on the clamped columns and its bounds.
struct Interval {
    value: Expr,
    lower: f64,
    upper: f64,
    integer: bool,
    /// A lower bound on the magnitude of the value when it is not zero (`∞`: always zero).
    /// PostgreSQL fails a product or quotient of non-zero doubles that rounds to zero
    /// ("value out of range: underflow"), so every one must stay far above the doubles'
    /// smallest magnitudes.
    tiny: f64,
}

/// Values of a real column closer to zero than this are read as zero in an expression (a
/// change far below any noise) so that products of them cannot underflow.
const SNAP: f64 = 1e-100;

/// Smallest magnitude a non-zero product or quotient may reach (normal doubles end at 2e-308).
const MIN_NONZERO: f64 = 1e-300;

/// Interval arithmetic over an aggregate's argument: columns with declared bounds, numeric
/// constants, `+`, `−`, `×`, `÷` by a non-zero constant, negation and numeric casts.
fn interval(e: &Expr, source: &Source, schema: &DFSchema, func: &str) -> Result<Interval> {
    let refuse = |what: String| -> Result<Interval> {
        reject(format!(
            "{func}(…{what}…): an aggregate's argument may be a column or arithmetic (+, −, ×, \
             ÷ by a non-zero constant, numeric CAST) of bounded columns and constants"
        ))
    };
    if let Some(v) = const_value(e)? {
        let integer = v.data_type().is_integer();
        return match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(x))) if x.is_finite() => Ok(Interval {
                value: lit(x),
                lower: x,
                upper: x,
                integer,
                tiny: if x == 0.0 { f64::INFINITY } else { x.abs() },
            }),
            _ => refuse(format!("the constant {e}")),
        };
    }
    let sub = |x: &Expr| interval(x, source, schema, func);
    match e {
        Expr::Alias(a) => sub(&a.expr),
        Expr::Column(c) => {
            let b = bounded(c, source, func)?;
            let x = clamp(&b, &Facts::default());
            let (value, tiny) = if b.integer {
                // Clamped to its bounds, a non-zero integer is at least 1 (or its bound) away
                // from zero.
                let tiny = [b.lower, b.upper]
                    .iter()
                    .map(|v| v.abs())
                    .filter(|v| *v > 0.0)
                    .fold(1.0, f64::min);
                (x, tiny)
            } else {
                let near_zero = x.clone().gt(lit(-SNAP)).and(x.clone().lt(lit(SNAP)));
                (when(near_zero, lit(0.0)).otherwise(x)?, SNAP)
            };
            Ok(Interval {
                value,
                lower: b.lower,
                upper: b.upper,
                integer: b.integer,
                tiny,
            })
        }
        Expr::Cast(datafusion::logical_expr::Cast { expr, field })
        | Expr::TryCast(datafusion::logical_expr::TryCast { expr, field }) => {
            let to = field.data_type();
            let inner = sub(expr)?;
            // A cast to a double, or between integers, leaves the value as it is.
            if !(to.is_floating() || (to.is_integer() && inner.integer)) {
                return refuse(format!("CAST({expr} AS {to})"));
            }
            Ok(inner)
        }
        Expr::Negative(x) => {
            let v = sub(x)?;
            Ok(Interval {
                value: lit(0.0) - v.value,
                lower: -v.upper,
                upper: -v.lower,
                integer: v.integer,
                tiny: v.tiny,
            })
        }
        Expr::BinaryExpr(b) => {
            let (l, r) = (sub(&b.left)?, sub(&b.right)?);
            let integer = l.integer && r.integer;
            // A non-zero sum of doubles is a multiple of the smaller operand's last digit.
            let sum_tiny = if l.tiny.is_infinite() || r.tiny.is_infinite() {
                l.tiny.min(r.tiny)
            } else {
                l.tiny.min(r.tiny) * f64::EPSILON / 2.0
            };
            let checked = |v: Interval| -> Result<Interval> {
                let huge = v.lower.abs().max(v.upper.abs());
                if !huge.is_finite() || huge > MAX_DERIVED {
                    return reject(format!(
                        "{func}(…{e}…): its bounds derived from the columns' ([{}, {}]) exceed \
                         ±2^53, where doubles stop being exact",
                        show(v.lower),
                        show(v.upper)
                    ));
                }
                if matches!(b.op, Operator::Multiply | Operator::Divide) && v.tiny < MIN_NONZERO {
                    return reject(format!(
                        "{func}(…{e}…): this product or quotient could round to zero on some \
                         rows (a failure on PostgreSQL); scale by constants nearer to 1"
                    ));
                }
                Ok(v)
            };
            let (lower, upper) = match b.op {
                Operator::Plus => (l.lower + r.lower, l.upper + r.upper),
                Operator::Minus => (l.lower - r.upper, l.upper - r.lower),
                Operator::Multiply => {
                    let p = [
                        l.lower * r.lower,
                        l.lower * r.upper,
                        l.upper * r.lower,
                        l.upper * r.upper,
                    ];
                    (
                        p.iter().copied().fold(f64::INFINITY, f64::min),
                        p.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    )
                }
                Operator::Divide => {
                    let divisor = const_f64(&b.right)?.filter(|d| d.is_finite() && *d != 0.0);
                    let Some(d) = divisor else {
                        return refuse(format!("{e}: divide only by a non-zero constant"));
                    };
                    let (a, z) = (l.lower / d, l.upper / d);
                    let (lo, hi) = (a.min(z), a.max(z));
                    let value = l.value / lit(d);
                    let quotient = checked(Interval {
                        value,
                        lower: lo,
                        upper: hi,
                        integer,
                        tiny: l.tiny / d.abs(),
                    })?;
                    return Ok(if integer {
                        // SQL's integer division truncates toward zero (monotone: the bounds
                        // truncate too); exact below 2^53.
                        Interval {
                            value: trunc(vec![quotient.value]),
                            lower: lo.trunc(),
                            upper: hi.trunc(),
                            integer,
                            tiny: 1.0,
                        }
                    } else {
                        quotient
                    });
                }
                op => return refuse(format!("the operator {op} in {e}")),
            };
            let tiny = if b.op == Operator::Multiply {
                l.tiny * r.tiny
            } else {
                sum_tiny
            };
            checked(Interval {
                value: binary_expr(l.value, b.op, r.value),
                lower,
                upper,
                integer,
                tiny,
            })
        }
        other => {
            check_total(other, schema, "an aggregate's argument")?;
            refuse(format!("{other}"))
        }
    }
}

/// One aggregate expression as measurements.
fn output(
    e: &Expr,
    args: &mut Args<'_>,
    add: &mut impl FnMut(Measurement) -> usize,
) -> Result<Output> {
    let source = args.source;
    let e = unalias(e);
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return reject(format!("{e} is not an aggregate the engine can bound"));
    };
    let name = func.name().to_ascii_lowercase();
    if params.filter.is_some() {
        return reject(format!(
            "{name}(…) FILTER (WHERE …) is not supported; use WHERE"
        ));
    }
    for a in &params.args {
        check_no_subquery(a, "an aggregate's argument")?;
    }
    let arg = |i: usize| params.args.get(i);
    // The bounded column (or expression) an aggregate's first argument is.
    let mut first_bounded = |func: &str| -> Result<Bounded> {
        match arg(0) {
            Some(a) => args.bounded(a, func),
            None => reject(format!("{func} needs a column")),
        }
    };
    let plain = |out: Output| -> Result<Output> {
        if params.distinct {
            reject(format!("{name}(DISTINCT …) is not supported"))
        } else {
            Ok(out)
        }
    };
    match name.as_str() {
        "count" => match arg(0) {
            None => Ok(Output::Count(add(Measurement::Rows))),
            Some(Expr::Literal(v, _)) if !v.is_null() && !params.distinct => {
                Ok(Output::Count(add(Measurement::Rows)))
            }
            Some(a) if !params.distinct && column_arg(a, "COUNT").is_err() => {
                let b = first_bounded("COUNT")?;
                Ok(Output::Count(add(Measurement::NonNull(b.read()))))
            }
            Some(a) => {
                let Ok(c) = column_arg(a, "COUNT") else {
                    return reject(format!(
                        "COUNT(DISTINCT {a}) is answered for a column, not an expression"
                    ));
                };
                if params.distinct {
                    if source.is_unit(c) {
                        Ok(Output::Count(add(Measurement::DistinctUnits)))
                    } else {
                        Ok(Output::Count(add(Measurement::DistinctValues(
                            Expr::Column(c.clone()),
                        ))))
                    }
                } else {
                    Ok(Output::Count(add(Measurement::NonNull(Expr::Column(
                        c.clone(),
                    )))))
                }
            }
        },
        "sum" => {
            let b = first_bounded("SUM")?;
            plain(Output::Sum(add(Measurement::Sum(b))))
        }
        "avg" | "mean" => {
            let b = first_bounded("AVG")?;
            let (lower, upper) = (b.lower, b.upper);
            let count = add(Measurement::NonNull(b.read()));
            plain(Output::Avg {
                sum: add(Measurement::CenteredSum(b)),
                count,
                lower,
                upper,
            })
        }
        "var" | "var_samp" | "var_sample" | "variance" | "var_pop" | "stddev" | "stddev_samp"
        | "stddev_pop" => {
            let up = name.to_ascii_uppercase();
            let b = first_bounded(&up)?;
            let range = b.upper - b.lower;
            let count = add(Measurement::NonNull(b.read()));
            let sum = add(Measurement::CenteredSum(b.clone()));
            plain(Output::Variance {
                squares: add(Measurement::CenteredSumSquares(b)),
                sum,
                count,
                population: name.ends_with("_pop"),
                sqrt: name.starts_with("stddev"),
                range,
            })
        }
        "min" | "max" | "median" | "approx_median" => {
            let up = name.to_ascii_uppercase();
            let b = first_bounded(&up)?;
            let q = match name.as_str() {
                "min" => 0.0,
                "max" => 1.0,
                _ => 0.5,
            };
            if params.distinct && name != "min" && name != "max" {
                return reject(format!("{up}(DISTINCT …) is not supported"));
            }
            Ok(Output::Quantile(add(Measurement::Quantile(b, q))))
        }
        "percentile_cont" | "approx_percentile_cont" | "quantile_cont" => {
            let up = name.to_ascii_uppercase();
            let target = match arg(0) {
                Some(a) if !matches!(a, Expr::Literal(..)) => a.clone(),
                _ => match params.order_by.first() {
                    Some(s) => s.expr.clone(),
                    None => return reject(format!("{up} needs a column")),
                },
            };
            let q = params
                .args
                .iter()
                .find_map(literal_f64)
                .filter(|q| (0.0..=1.0).contains(q));
            let Some(q) = q else {
                return reject(format!("{up} needs a literal percentile between 0 and 1"));
            };
            let b = args.bounded(&target, &up)?;
            plain(Output::Quantile(add(Measurement::Quantile(b, q))))
        }
        other => reject(format!(
            "aggregate {other}(…) is not supported (COUNT, SUM, AVG, VAR, STDDEV, MIN, MAX, \
             MEDIAN, PERCENTILE_CONT are)"
        )),
    }
}
