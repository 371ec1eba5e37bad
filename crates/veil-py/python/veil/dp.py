"""Differential privacy: SQL over files or pandas DataFrames, mechanisms, local DP.

Every release is charged to a budget **before** its noise is drawn, in a :class:`Ledger`
(a SQLite file, or PostgreSQL shared by many processes) that never lets a dataset's total —
or an analyst's own budget — be overspent; a refused query costs nothing::

    import veil.dp as dp

    ledger = dp.Ledger("budget.db")              # or dp.Ledger.temporary() in a notebook
    ledger.register("persons", METADATA)         # the operator approves metadata + budget
    data = dp.Dataset("persons", METADATA, ledger, tables={"persons": df})
    r = data.query("SELECT sex, AVG(income) AS income FROM persons GROUP BY sex",
                   epsilon=1.0)
    r.df            # a pandas DataFrame with the noisy answer
    r.accuracy      # 95% half-width of each column's noise
    data.preview("SELECT COUNT(*) FROM persons")   # cost and accuracy, nothing charged

The metadata is the TOML text ``veil dp`` uses (privacy unit, bounds, key sets, budget):
see ``docs/dp.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._native import BudgetExhausted, DpError
from ._native import dp as _dp

__all__ = [
    "Ledger",
    "Dataset",
    "Result",
    "Laplace",
    "Gaussian",
    "Accountant",
    "randomized_response",
    "estimate_fraction",
    "mean_report",
    "estimate_mean",
    "unary_report",
    "estimate_frequencies",
    "DpError",
    "BudgetExhausted",
]

#: A budget ledger: ``Ledger(path_or_postgres_url)`` or ``Ledger.temporary()``.
#: ``register``, ``set_budget``, ``remaining``, ``history`` and ``release`` (charge, then
#: add a mechanism's noise).
Ledger = _dp.Ledger
#: The Laplace mechanism: ``Laplace(sensitivity, epsilon)``; ``.cost`` is its (ε, δ).
Laplace = _dp.Laplace
#: The Gaussian mechanism: ``Gaussian(sensitivity, epsilon, delta)``; ``.cost``, ``.sigma``.
Gaussian = _dp.Gaussian
#: Composition without a limit: ``Accountant()``, ``.record(mechanism)``, ``.total(delta)``
#: (Laplace in ε; Gaussian in ρ, converted once), ``.rho``. A :class:`Ledger` limits spending.
Accountant = _dp.Accountant


def _metadata_text(metadata: Union[str, os.PathLike]) -> str:
    """The TOML text: given as text, or as the path of a ``.toml`` file."""
    if isinstance(metadata, os.PathLike) or (
        isinstance(metadata, str) and "\n" not in metadata and metadata.endswith(".toml")
    ):
        with open(metadata, "rb") as f:
            raw = f.read()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DpError(f"{metadata}: the metadata is not UTF-8 text") from None
    if not isinstance(metadata, str):
        raise DpError(f"metadata must be TOML text or a .toml path, got {type(metadata).__name__}")
    return metadata


@dataclass
class Result:
    """A noisy answer and what it cost."""

    #: The noisy rows (a pandas DataFrame).
    df: "object"
    #: The query's ε (alone, the answer is (ε, δ)-DP).
    epsilon: float
    #: The query's δ.
    delta: float
    #: What the dataset has left.
    remaining_epsilon: float
    #: δ left.
    remaining_delta: float
    #: Per aggregate column: half-width of the 95% interval of its noise (None: no closed form).
    accuracy: Dict[str, Optional[float]] = field(default_factory=dict)
    #: The noisy-count threshold applied to private group keys, if any.
    threshold: Optional[float] = None
    #: What to know about the guarantee of this answer.
    warnings: List[str] = field(default_factory=list)
    #: ``"laplace"`` or ``"gaussian"``.
    noise: str = "laplace"
    #: The query's ρ (zCDP): with Gaussian noise the ρ its (ε, δ) converts to; on a dataset
    #: under zCDP accounting, what the ledger charged.
    rho: Optional[float] = None
    #: How the dataset's budget composes: ``"approx"`` (ε and δ add up) or ``"zcdp"`` (ρ adds
    #: up and is converted once).
    accounting: str = "approx"
    #: What the ledger charged: ``{"epsilon", "delta", "rho"}``.
    charged: Dict[str, float] = field(default_factory=dict)
    #: ρ the dataset has left (zCDP accounting).
    remaining_rho: float = 0.0

    def __repr__(self) -> str:
        return (f"Result(rows={len(self.df)}, epsilon={self.epsilon}, delta={self.delta}, "
                f"remaining_epsilon={self.remaining_epsilon})\n{self.df}")


class Dataset:
    """A registered dataset, queried with DP SQL.

    ``tables`` maps each table of the metadata to a CSV or Parquet file, or to a pandas
    DataFrame (written to a private temporary CSV file for the engine, deleted with this
    object); ``postgres`` is a server URL instead. The metadata must be the very text the
    operator registered in ``ledger`` (:meth:`Ledger.register`), else the dataset is refused
    before anything can be charged.
    """

    def __init__(self, name: str, metadata: Union[str, os.PathLike], ledger: "Ledger",
                 tables: Optional[Mapping[str, object]] = None,
                 postgres: Optional[str] = None):
        text = _metadata_text(metadata)
        self._tmp: Optional[str] = None
        files: List[Tuple[str, str]] = []
        for table, source in (tables or {}).items():
            if isinstance(source, (str, os.PathLike)):
                files.append((str(table), os.fspath(source)))
            elif hasattr(source, "to_csv") and hasattr(source, "columns"):
                if self._tmp is None:
                    self._tmp = tempfile.mkdtemp(prefix="veil-dp-")
                    weakref.finalize(self, shutil.rmtree, self._tmp, True)
                path = os.path.join(self._tmp, f"{len(files)}.csv")
                source.to_csv(path, index=False)
                files.append((str(table), path))
            else:
                raise DpError(f"table {table!r}: give a file path or a pandas DataFrame, "
                              f"got {type(source).__name__}")
        self._engine = _dp.SqlEngine(text, name, ledger, files or None, postgres)
        self.name = name
        self.ledger = ledger

    def query(self, sql: str, *, epsilon: float = 1.0, delta: float = 1e-6,
              analyst: str = "analyst", max_groups_per_unit: Optional[int] = None,
              max_rows_per_group: Optional[int] = None,
              noise: Optional[str] = None) -> Result:
        """Charges ``(epsilon, δ spent)`` to the budget, then answers ``sql`` with noise.
        ``noise`` is ``"laplace"`` or ``"gaussian"`` (zCDP-accounted, needs ``delta > 0``;
        default: the metadata's). Refused queries raise :class:`DpError` and cost nothing; a
        budget that cannot pay raises :class:`BudgetExhausted`."""
        out = json.loads(self._engine.query(sql, analyst, float(epsilon), float(delta),
                                            max_groups_per_unit, max_rows_per_group, noise))
        import pandas as pd

        df = pd.DataFrame(out["rows"], columns=out["columns"])
        return Result(df=df, epsilon=out["epsilon"], delta=out["delta"],
                      remaining_epsilon=out["remaining_epsilon"],
                      remaining_delta=out["remaining_delta"],
                      accuracy=out.get("accuracy", {}), threshold=out.get("threshold"),
                      warnings=out.get("warnings", []), noise=out.get("noise", "laplace"),
                      rho=out.get("rho"), accounting=out.get("accounting", "approx"),
                      charged=out.get("charged", {}),
                      remaining_rho=out.get("remaining_rho", 0.0))

    def preview(self, sql: str, *, epsilon: float = 1.0, delta: float = 1e-6,
                analyst: str = "analyst", max_groups_per_unit: Optional[int] = None,
                max_rows_per_group: Optional[int] = None,
                noise: Optional[str] = None) -> dict:
        """What ``sql`` (or ``EXPLAIN sql``) would cost and how accurate it would be: the
        measurements, their ε share, each column's 95% half-width, the keys policy, whether
        the budgets can pay. Nothing is read and nothing is charged."""
        return json.loads(self._engine.preview(sql, analyst, float(epsilon), float(delta),
                                               max_groups_per_unit, max_rows_per_group,
                                               noise))

    explain = preview

    def remaining(self, analyst: Optional[str] = None) -> Tuple[float, float]:
        """``(ε, δ)`` left on this dataset (or on an analyst's own budget)."""
        return self.ledger.remaining(self.name, analyst)

    def __repr__(self) -> str:
        eps, delta = self.remaining()
        return f"Dataset({self.name!r}, remaining ε={eps}, δ={delta:g})"


# -- local DP ------------------------------------------------------------------------------

def randomized_response(bit: bool, epsilon: float) -> bool:
    """On the device: the bit, reported truthfully with probability e^ε/(1+e^ε)."""
    return _dp.randomized_response_report(bool(bit), float(epsilon))


def estimate_fraction(reports: Sequence[bool], epsilon: float) -> Tuple[float, float]:
    """At the collector: ``(estimate, std_error)`` of the true fraction of 1 bits."""
    return _dp.estimate_fraction([bool(b) for b in reports], float(epsilon))


def mean_report(x: float, maximum: float, epsilon: float) -> bool:
    """On the device: a value in ``[0, maximum]`` as one randomized bit."""
    return _dp.mean_report(float(x), float(maximum), float(epsilon))


def estimate_mean(reports: Sequence[bool], maximum: float, epsilon: float) -> Tuple[float, float]:
    """At the collector: ``(estimate, std_error)`` of the mean of the reported values."""
    return _dp.estimate_mean([bool(b) for b in reports], float(maximum), float(epsilon))


def unary_report(value: int, categories: int, epsilon: float) -> List[bool]:
    """On the device: a category in ``range(categories)`` as randomized unary bits."""
    return _dp.unary_report(int(value), int(categories), float(epsilon))


def estimate_frequencies(reports: Sequence[Sequence[bool]], categories: int,
                         epsilon: float) -> List[Tuple[float, float]]:
    """At the collector: ``[(estimate, std_error)]`` of each category's count."""
    return _dp.estimate_frequencies([[bool(b) for b in r] for r in reports], int(categories),
                                    float(epsilon))
