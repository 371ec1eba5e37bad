//! Table metadata: what the engine must know to bound every person's influence.
//!
//! One TOML file per dataset, the same for every backend:
//!
//! ```toml
//! [budget]                      # the total proposed for registration (see below)
//! epsilon = 10.0
//! delta = 1e-5
//! population = 100000           # optional: at most this many people; δ < 1/population
//! # noise = "gaussian"          # optional: the default noise (laplace unless given)
//! # accounting = "zcdp"         # optional: how the budget composes (zcdp with gaussian noise)
//! # auto_bounds_epsilon = 0.1   # optional: ε of each automatic bounds estimate (below)
//!
//! [table.persons]
//! privacy_unit = "person_id"
//! max_rows_per_unit = 1         # enforced by the engine, never assumed
//! # max_groups_per_unit = 3     # optional L0 bound: groups one unit may fall into
//! # max_rows_per_group = 1      # optional L∞ bound: rows one unit may bring to one group
//!
//! [table.persons.columns]
//! person_id = { type = "int" }
//! age = { type = "int", lower = 0, upper = 100 }
//! income = { type = "float", lower = 0, upper = 500000 }
//! sex = { type = "string", public_keys = ["F", "M"] }   # public key set
//! state = { type = "string" }                           # private key set
//! # hours = { type = "int", auto_bounds = true }       # bounds estimated with DP on first use
//! ```
//!
//! **Automatic bounds.** A numeric column of a private table may say `auto_bounds = true`
//! instead of giving `lower` and `upper`: the operator allows the engine to *estimate* its
//! bounds with differential privacy the first time a query needs them (a noisy histogram of
//! the values' magnitudes, see [`crate::autobounds`]). The estimate is charged to the
//! budget (`[budget] auto_bounds_epsilon`, default 0.1) before any value is read, kept in the
//! ledger per version of the table's files, and reused for free by later queries until the
//! files change; every answer that uses it says which bounds it used.
//!
//! Everything is checked when the file is read ([`Metadata::from_toml`]), with errors that
//! name the table and column: a privacy unit that is not a column, bounds the wrong way round
//! or on a string column, a fractional bound on an integer column, a budget that is not a
//! budget. Keys this version does not know are ignored (other tools write more), so a
//! misspelled bound leaves the column *unbounded* — and an unbounded column can be counted but
//! never summed, averaged or used for a quantile: the engine refuses, it does not guess.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Result, SqlError};
pub use veil_dp::ledger::Accounting;

/// Largest contribution bound accepted (rows per privacy unit).
pub const MAX_ROWS_PER_UNIT: u64 = 1_000_000;

/// The dataset's total budget as the metadata proposes it.
///
/// The ledger never takes the total from a file a query passes: the operator registers the
/// dataset (`veil dp dataset register`, [`veil_dp::ledger::Ledger::register`]), which records
/// the SHA-256 of the metadata file and a total (this one unless the operator gives another),
/// and queries are refused for metadata that is not registered or whose bytes changed since.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct Budget {
    /// Total ε.
    pub epsilon: f64,
    /// Total δ (0 for pure DP only).
    #[serde(default)]
    pub delta: f64,
    /// An upper bound on the number of privacy units (people) in the dataset, if the operator
    /// declares one: a query's δ must then be below `1/population`.
    #[serde(default)]
    pub population: Option<u64>,
    /// The noise queries get unless they ask for another ([`Noise::Laplace`] by default).
    #[serde(default)]
    pub noise: Noise,
    /// How the budget composes once registered (`approx` or `zcdp`); unset, zCDP with
    /// Gaussian noise and approx with Laplace noise ([`Budget::accounting`]).
    #[serde(default, deserialize_with = "accounting")]
    pub accounting: Option<Accounting>,
    /// The ε each automatic bounds estimate costs (columns with `auto_bounds = true`);
    /// unset, [`DEFAULT_AUTO_BOUNDS_EPSILON`].
    #[serde(default)]
    pub auto_bounds_epsilon: Option<f64>,
}

/// The ε of an automatic bounds estimate unless the metadata gives another.
pub const DEFAULT_AUTO_BOUNDS_EPSILON: f64 = 0.1;

impl Budget {
    /// The ε of each automatic bounds estimate.
    pub fn auto_bounds_epsilon(&self) -> f64 {
        self.auto_bounds_epsilon
            .unwrap_or(DEFAULT_AUTO_BOUNDS_EPSILON)
    }

    /// How the budget composes: the one declared, else zCDP with Gaussian noise (many
    /// Gaussian queries compose in √k, not k) and basic composition with Laplace noise (a few
    /// pure-DP queries compose best by addition).
    pub fn accounting(&self) -> Accounting {
        self.accounting.unwrap_or(match self.noise {
            Noise::Gaussian => Accounting::Zcdp,
            Noise::Laplace => Accounting::Approx,
        })
    }
}

fn accounting<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Accounting>, D::Error> {
    let name: Option<String> = Option::deserialize(d)?;
    name.map(|n| n.parse().map_err(serde::de::Error::custom))
        .transpose()
}

/// The noise a query's statistics get.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Noise {
    /// Exact discrete Laplace noise: the query's ε is split over its measurements (pure DP;
    /// δ is spent only by τ-thresholding of private keys).
    #[default]
    Laplace,
    /// Exact discrete Gaussian noise, accounted in zCDP: the query's (ε, δ) is converted to
    /// ρ, split over its measurements, and each is sized by its L2 sensitivity (a person in
    /// many groups costs √groups, not groups). Needs δ > 0.
    Gaussian,
}

impl Noise {
    /// `laplace` or `gaussian`.
    pub fn name(self) -> &'static str {
        match self {
            Noise::Laplace => "laplace",
            Noise::Gaussian => "gaussian",
        }
    }
}

impl std::str::FromStr for Noise {
    type Err = crate::error::SqlError;

    fn from_str(s: &str) -> crate::error::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "laplace" => Ok(Noise::Laplace),
            "gaussian" => Ok(Noise::Gaussian),
            other => Err(crate::error::SqlError::rejected(format!(
                "noise must be laplace or gaussian, not {other:?}"
            ))),
        }
    }
}

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 64-bit integers.
    Int,
    /// Reals.
    Float,
    /// Text.
    String,
    /// Booleans.
    Bool,
}

/// What is known about one column.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Column {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Lower bound (numeric columns): values below are clamped to it.
    pub lower: Option<f64>,
    /// Upper bound (numeric columns): values above are clamped to it.
    pub upper: Option<f64>,
    /// The public set of values of a key column: grouping by it releases every listed key
    /// (no thresholding needed) and nothing else.
    pub public_keys: Option<Vec<String>>,
    /// The operator allows the engine to estimate the bounds with differential privacy
    /// (instead of declaring `lower` and `upper`), charged to the budget on first use and
    /// cached per data version ([`crate::autobounds`]).
    #[serde(default)]
    pub auto_bounds: bool,
}

impl Column {
    /// The bounds, if both are declared.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        self.lower.zip(self.upper)
    }

    /// Whether the column holds numbers.
    pub fn is_numeric(&self) -> bool {
        matches!(self.kind, ColumnType::Int | ColumnType::Float)
    }
}

/// What is known about one table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Table {
    /// A public table (`public = true`): data anyone may see — a dimension table, a list of
    /// keys. It has no privacy unit, cannot be aggregated on its own, and joins a private
    /// table on a column whose values it holds at most once each (checked before the
    /// charge), so the join never multiplies a person's rows.
    #[serde(default)]
    pub public: bool,
    /// The column that identifies a person (or whatever one protects); none for a public
    /// table.
    #[serde(default)]
    pub privacy_unit: String,
    /// How many rows one privacy unit may contribute; the engine enforces it.
    #[serde(default)]
    pub max_rows_per_unit: u64,
    /// Into how many groups of a `GROUP BY` one unit may contribute (the L0 bound, ZetaSQL's
    /// `max_groups_contributed`): a unit found in more keeps that many of its groups, chosen
    /// at random, instead of being dropped. Unset: `max_rows_per_unit`.
    #[serde(default)]
    pub max_groups_per_unit: Option<u64>,
    /// How many rows one unit may contribute to any one group (the L∞ bound). Unset:
    /// `max_rows_per_unit`.
    #[serde(default)]
    pub max_rows_per_group: Option<u64>,
    /// The columns by name.
    pub columns: BTreeMap<String, Column>,
}

impl Table {
    /// A column by name (SQL identifiers are case-insensitive).
    pub fn column(&self, name: &str) -> Option<(&str, &Column)> {
        self.columns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, c)| (n.as_str(), c))
    }
}

/// A dataset's metadata.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Metadata {
    /// The dataset's total budget.
    pub budget: Budget,
    /// The tables by name.
    #[serde(rename = "table")]
    pub tables: BTreeMap<String, Table>,
}

fn err(msg: impl Into<String>) -> SqlError {
    SqlError::Metadata(msg.into())
}

impl Metadata {
    /// Reads and checks a metadata file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| match e {
            SqlError::Metadata(m) => err(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses and checks metadata.
    pub fn from_toml(text: &str) -> Result<Self> {
        let m: Self = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// A table by name (case-insensitive).
    pub fn table(&self, name: &str) -> Option<(&str, &Table)> {
        self.tables
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, t)| (n.as_str(), t))
    }

    /// Checks everything `from_toml` checks (for metadata built in code).
    pub fn check(&self) -> Result<()> {
        let Budget {
            epsilon,
            delta,
            population,
            noise,
            accounting: _,
            auto_bounds_epsilon,
        } = self.budget;
        if let Some(e) = auto_bounds_epsilon {
            if !(e.is_finite() && e > 0.0 && e <= epsilon) {
                return Err(err(format!(
                    "[budget] auto_bounds_epsilon must be a positive number no larger than the \
                     total epsilon, not {e}"
                )));
            }
        }
        if noise == Noise::Gaussian && delta == 0.0 {
            return Err(err(
                "[budget] noise = \"gaussian\" needs a total delta above 0 (Gaussian noise is \
                 (ε, δ)-DP, never pure)",
            ));
        }
        if self.budget.accounting() == Accounting::Zcdp && delta == 0.0 {
            return Err(err(
                "[budget] accounting = \"zcdp\" needs a total delta above 0 (zCDP converts to \
                 (ε, δ)-DP with δ > 0)",
            ));
        }
        if population == Some(0) {
            return Err(err("[budget] population must be at least 1"));
        }
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(err(format!(
                "[budget] epsilon must be a positive number, not {epsilon}"
            )));
        }
        if !(0.0..1.0).contains(&delta) {
            return Err(err(format!(
                "[budget] delta must be in [0, 1), not {delta}"
            )));
        }
        if self.tables.is_empty() {
            return Err(err("no [table.NAME] section"));
        }
        for (name, t) in &self.tables {
            let at = |col: &str| format!("[table.{name}.columns] {col}");
            if t.public {
                if !t.privacy_unit.is_empty()
                    || t.max_rows_per_unit != 0
                    || t.max_groups_per_unit.is_some()
                    || t.max_rows_per_group.is_some()
                {
                    return Err(err(format!(
                        "[table.{name}] is public: it has no privacy_unit or contribution bounds"
                    )));
                }
            } else if t.privacy_unit.is_empty() {
                return Err(err(format!(
                    "[table.{name}] needs a privacy_unit (or public = true for public data)"
                )));
            }
            if !t.public && !(1..=MAX_ROWS_PER_UNIT).contains(&t.max_rows_per_unit) {
                return Err(err(format!(
                    "[table.{name}] max_rows_per_unit must be between 1 and {MAX_ROWS_PER_UNIT}, not {}",
                    t.max_rows_per_unit
                )));
            }
            for (key, v) in [
                ("max_groups_per_unit", t.max_groups_per_unit),
                ("max_rows_per_group", t.max_rows_per_group),
            ] {
                if let Some(v) = v {
                    if !(1..=MAX_ROWS_PER_UNIT).contains(&v) {
                        return Err(err(format!(
                            "[table.{name}] {key} must be between 1 and {MAX_ROWS_PER_UNIT}, not {v}"
                        )));
                    }
                }
            }
            if !t.public && t.column(&t.privacy_unit).is_none() {
                return Err(err(format!(
                    "[table.{name}] privacy_unit {:?} is not one of its columns",
                    t.privacy_unit
                )));
            }
            for (col, c) in &t.columns {
                match (c.lower, c.upper) {
                    (Some(_), None) | (None, Some(_)) => {
                        return Err(err(format!(
                            "{}: give both lower and upper, or neither",
                            at(col)
                        )))
                    }
                    (Some(lo), Some(hi)) => {
                        if !c.is_numeric() {
                            return Err(err(format!(
                                "{}: bounds on a {:?} column",
                                at(col),
                                c.kind
                            )));
                        }
                        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                            return Err(err(format!(
                                "{}: bounds must be finite with lower ≤ upper, not [{lo}, {hi}]",
                                at(col)
                            )));
                        }
                        if c.kind == ColumnType::Int && (lo.fract() != 0.0 || hi.fract() != 0.0) {
                            return Err(err(format!(
                                "{}: an int column needs integer bounds, not [{lo}, {hi}]",
                                at(col)
                            )));
                        }
                    }
                    (None, None) => {}
                }
                if c.auto_bounds {
                    if c.lower.is_some() || c.upper.is_some() {
                        return Err(err(format!(
                            "{}: declare lower and upper, or allow auto_bounds, not both",
                            at(col)
                        )));
                    }
                    if !c.is_numeric() {
                        return Err(err(format!(
                            "{}: auto_bounds on a {:?} column (only numbers have bounds)",
                            at(col),
                            c.kind
                        )));
                    }
                    if t.public {
                        return Err(err(format!(
                            "{}: auto_bounds on a public table (declare its bounds: public data \
                             needs no private estimate)",
                            at(col)
                        )));
                    }
                }
                if let Some(keys) = &c.public_keys {
                    if c.kind != ColumnType::String {
                        return Err(err(format!(
                            "{}: public_keys are for string columns",
                            at(col)
                        )));
                    }
                    let mut seen = std::collections::BTreeSet::new();
                    if let Some(dup) = keys.iter().find(|k| !seen.insert(k.as_str())) {
                        return Err(err(format!(
                            "{}: public key {dup:?} is listed twice",
                            at(col)
                        )));
                    }
                    if col.eq_ignore_ascii_case(&t.privacy_unit) {
                        return Err(err(format!(
                            "{}: the privacy unit cannot have a public key set",
                            at(col)
                        )));
                    }
                }
            }
        }
        let auto = self
            .tables
            .values()
            .any(|t| t.columns.values().any(|c| c.auto_bounds));
        if auto && self.budget.auto_bounds_epsilon() > epsilon {
            return Err(err(format!(
                "[budget] auto_bounds_epsilon ({}) exceeds the total epsilon ({epsilon}): set \
                 a smaller auto_bounds_epsilon",
                self.budget.auto_bounds_epsilon()
            )));
        }
        Ok(())
    }
}

/// The ledger's name for the dataset a metadata file describes: the file's stem.
pub fn dataset_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the budget composes: zCDP by default with Gaussian noise, as declared otherwise;
    /// zCDP without δ, or an unknown accounting, refused when read.
    #[test]
    fn the_accounting_is_declared_or_follows_the_noise() {
        let with = |extra: &str| {
            EXAMPLE.replace("epsilon = 10.0\n", &format!("epsilon = 10.0\n{extra}\n"))
        };
        let m = Metadata::from_toml(EXAMPLE).unwrap();
        assert_eq!(m.budget.accounting(), Accounting::Approx);
        let m = Metadata::from_toml(&with("noise = \"gaussian\"")).unwrap();
        assert_eq!(m.budget.accounting(), Accounting::Zcdp);
        let m =
            Metadata::from_toml(&with("noise = \"gaussian\"\naccounting = \"approx\"")).unwrap();
        assert_eq!(m.budget.accounting(), Accounting::Approx);
        let m = Metadata::from_toml(&with("accounting = \"zcdp\"")).unwrap();
        assert_eq!(m.budget.accounting(), Accounting::Zcdp);
        let e = Metadata::from_toml(&with("accounting = \"renyi\"")).unwrap_err();
        assert!(e.to_string().contains("zcdp"), "{e}");
        let pure = EXAMPLE.replace("delta = 1e-5", "delta = 0.0\naccounting = \"zcdp\"");
        let e = Metadata::from_toml(&pure).unwrap_err();
        assert!(e.to_string().contains("delta above 0"), "{e}");
    }

    /// The documented shape, exactly (the sample dataset's metadata).
    const EXAMPLE: &str = crate::sample::PERSONS_METADATA;

    #[test]
    fn the_documented_shape_parses() {
        let m = Metadata::from_toml(EXAMPLE).unwrap();
        assert_eq!(
            m.budget,
            Budget {
                epsilon: 10.0,
                delta: 1e-5,
                population: None,
                noise: Noise::Laplace,
                accounting: None,
                auto_bounds_epsilon: None,
            }
        );
        let (name, t) = m.table("PERSONS").unwrap();
        assert_eq!((name, t.privacy_unit.as_str()), ("persons", "person_id"));
        assert_eq!(t.max_rows_per_unit, 1);
        assert_eq!(t.column("Age").unwrap().1.bounds(), Some((0.0, 100.0)));
        assert_eq!(t.column("income").unwrap().1.kind, ColumnType::Float);
        assert_eq!(
            t.column("sex").unwrap().1.public_keys.as_deref(),
            Some(&["F".to_string(), "M".to_string()][..])
        );
        assert!(t.column("state").unwrap().1.public_keys.is_none());
        assert!(t.column("person_id").unwrap().1.bounds().is_none());
        // Keys other tools write are ignored.
        let extra = EXAMPLE.replace(
            "max_rows_per_unit = 1 ",
            "max_rows_per_unit = 1\nrow_privacy = false ",
        );
        assert!(Metadata::from_toml(&extra).is_ok());
    }

    #[test]
    fn unusable_metadata_is_refused_with_the_place_named() {
        let cases = [
            ("epsilon = 10.0", "epsilon = -1.0", "[budget] epsilon"),
            ("delta = 1e-5", "delta = 1.5", "[budget] delta"),
            (
                "privacy_unit = \"person_id\"",
                "privacy_unit = \"pid\"",
                "privacy_unit \"pid\"",
            ),
            (
                "max_rows_per_unit = 1 ",
                "max_rows_per_unit = 0 ",
                "max_rows_per_unit",
            ),
            ("lower = 0, upper = 100", "lower = 100, upper = 0", "age"),
            (
                "lower = 0, upper = 100",
                "lower = 0.5, upper = 100",
                "integer bounds",
            ),
            (
                "lower = 0, upper = 100",
                "lower = 0",
                "both lower and upper",
            ),
            (
                "state = { type = \"string\" }",
                "state = { type = \"string\", lower = 0, upper = 1 }",
                "bounds on a String column",
            ),
            (
                "max_rows_per_unit = 1 ",
                "max_rows_per_unit = 1\nmax_groups_per_unit = 0 ",
                "max_groups_per_unit",
            ),
            (
                "max_rows_per_unit = 1 ",
                "max_rows_per_unit = 1\nmax_rows_per_group = 2000000 ",
                "max_rows_per_group",
            ),
            ("[\"F\", \"M\"]", "[\"F\", \"F\"]", "listed twice"),
            (
                "max_rows_per_unit = 1 ",
                "max_rows_per_unit = 1\npublic = true ",
                "is public: it has no privacy_unit",
            ),
            (
                "privacy_unit = \"person_id\"",
                "maximum = 3",
                "needs a privacy_unit",
            ),
            ("type = \"float\"", "type = \"decimal\"", "unknown variant"),
        ];
        for (from, to, want) in cases {
            assert!(EXAMPLE.contains(from), "{from}");
            let e = Metadata::from_toml(&EXAMPLE.replacen(from, to, 1)).unwrap_err();
            assert!(e.to_string().contains(want), "{to}: {e}");
        }
        assert!(Metadata::from_toml("[budget]\nepsilon = 1.0\n").is_err());
        assert!(Metadata::from_toml("not toml [").is_err());
    }

    #[test]
    fn the_dataset_is_named_after_the_file() {
        assert_eq!(dataset_name(Path::new("data/persons.toml")), "persons");
    }
}
