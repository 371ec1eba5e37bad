#!/usr/bin/env python3
"""Side-by-side DP SQL benchmark: SmartNoise SQL (snsql) vs Veil on the same CSV and queries.

Usage
-----
    python3 bench/dp_sql_vs_smartnoise.py                  # 100k rows, ε = 1, 10 runs
    python3 bench/dp_sql_vs_smartnoise.py --rows 1000000 --runs 5 --markdown
    python3 bench/dp_sql_vs_smartnoise.py --veil target/release/veil
    python3 bench/dp_sql_vs_smartnoise.py --python-build target/wheel   # veil.dp on a DataFrame

What it does
------------
* Installs ``smartnoise-sql`` (PyPI) in a virtualenv at ``bench/.venv`` (once).
* Writes the synthetic ``persons`` table with ``veil dp sample`` (committed generator, seeded)
  and the same metadata for both systems: Veil's TOML (budget raised so the benchmark's
  repeated queries are paid for) and SmartNoise's YAML (person_id the private id, one row per
  person, the same bounds).
* Runs every query ``--runs`` times on each system at the same total privacy cost:
  SmartNoise applies ``--epsilon`` to every measurement of a query (``AVG`` is a sum and a
  count, so it costs 2ε), Veil splits the ε it is given, so each query runs on Veil at the
  total (ε, δ) that SmartNoise's ``get_privacy_cost`` reports for it. SmartNoise runs in
  process over a pandas DataFrame loaded once; Veil with ``veil dp bench`` (one engine, the
  CSV registered once, every run charged to the ledger), or with ``--python-build DIR`` through
  the ``veil.dp`` Python package (the extension module of that cargo output directory) over
  the same pandas DataFrame, in process too: the notebook user's comparison.
* Computes the exact answers with pandas, and prints per query the median latency of each
  system, the ratio SmartNoise / Veil (higher is better for Veil), and the mean absolute
  error of each over the runs (the first numeric output column, averaged over groups).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"

# (name, SQL over table `persons`, exact answer from pandas, grouping column or None)
QUERIES = [
    ("count", "SELECT COUNT(*) AS v FROM persons", None),
    ("sum where", "SELECT SUM(age) AS v FROM persons WHERE age > 40", None),
    ("avg income", "SELECT AVG(income) AS v FROM persons", None),
    ("var age", "SELECT VAR(age) AS v FROM persons", None),
    ("group public", "SELECT sex, COUNT(*) AS v FROM persons GROUP BY sex", "sex"),
    ("group private", "SELECT state, AVG(income) AS v FROM persons GROUP BY state", "state"),
]


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def ensure_smartnoise():
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import snsql, pandas"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(py)
    sh([sys.executable, "-m", "venv", str(VENV)])
    sh([str(py), "-m", "pip", "install", "-q", "smartnoise-sql"])
    return str(py)


SN_YAML = """Collection:
  PUMS:
    persons:
      max_ids: 1
      row_privacy: False
      sample_max_ids: True
      censor_dims: True
      person_id:
        type: int
        private_id: True
      age:
        type: int
        lower: 0
        upper: 100
      income:
        type: float
        lower: 0
        upper: 500000
      sex:
        type: string
      state:
        type: string
"""

SN_RUNNER = r"""
import json, sys, time
import pandas as pd
import snsql
from snsql import Privacy
csv, meta, eps, delta, runs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
queries = json.loads(sys.stdin.read())
df = pd.read_csv(csv)
reader = snsql.from_df(df, privacy=Privacy(epsilon=eps, delta=delta), metadata=meta)
for name, sql in queries:
    q = sql.replace("FROM persons", "FROM PUMS.persons")
    cost = reader.get_privacy_cost(q)
    print(json.dumps({"name": name, "cost": list(cost)}))
    for run in range(runs):
        t = time.perf_counter()
        out = reader.execute(q)
        ms = (time.perf_counter() - t) * 1e3
        print(json.dumps({"name": name, "run": run, "ms": ms, "rows": out[1:]}, default=float))
"""


VEIL_PY_RUNNER = r"""
import json, sys, time
import pandas as pd
import veil.dp as dp
csv, meta_path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = json.loads(sys.stdin.read())
df = pd.read_csv(csv)
meta = open(meta_path).read()
ledger = dp.Ledger.temporary()
ledger.register("persons", meta, epsilon=1e9, delta=0.5)
ds = dp.Dataset("persons", meta, ledger, tables={"persons": df})
for name, sql, eps, delta in queries:
    ds.query(sql, epsilon=eps, delta=delta)      # warm-up (charged like the rest)
    for run in range(runs):
        t = time.perf_counter()
        r = ds.query(sql, epsilon=eps, delta=delta)
        ms = (time.perf_counter() - t) * 1e3
        print(json.dumps({"sql": sql, "run": run, "ms": ms, "rows": r.df.values.tolist()},
                         default=float))
"""


def veil_python(build, csv, meta, queries, runs):
    """The Veil side through veil.dp (staged from the cargo output directory ``build``)."""
    sys.path.insert(0, str(HERE))
    import python_overhead as po

    py = po.make_venv(False)
    staged = po.stage(Path(build).resolve())
    out = sh([str(py), "-c", VEIL_PY_RUNNER, str(csv), str(meta), str(runs)],
             input=json.dumps(queries), capture_output=True, text=True,
             env=dict(os.environ, PYTHONPATH=str(staged)))
    return [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]


def truth(csv):
    import csv as csvmod
    rows = list(csvmod.DictReader(open(csv)))
    for r in rows:
        r["age"] = float(r["age"])
        r["income"] = min(float(r["income"]), 500000.0)
    def mean(xs):
        return sum(xs) / len(xs)
    def var(xs):
        m = mean(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    def by(key, f):
        groups = {}
        for r in rows:
            groups.setdefault(r[key], []).append(r)
        return {k: f(v) for k, v in groups.items()}
    return {
        "count": {None: len(rows)},
        "sum where": {None: sum(r["age"] for r in rows if r["age"] > 40)},
        "avg income": {None: mean([r["income"] for r in rows])},
        "var age": {None: var([r["age"] for r in rows])},
        "group public": by("sex", len),
        "group private": by("state", lambda v: mean([r["income"] for r in v])),
    }


def errors(results, exact, grouped):
    """Mean absolute error of the value column over runs and groups (missing groups skipped),
    and the fraction of true groups released."""
    errs, released = [], []
    for rows in results:
        seen = 0
        for row in rows:
            key = row[0] if grouped else None
            value = row[-1]
            if key in exact and value is not None:
                errs.append(abs(float(value) - exact[key]))
                seen += 1
        released.append(seen / len(exact))
    return (statistics.mean(errs) if errs else float("nan")), statistics.mean(released)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--veil", default=None, help="path to the veil binary (default: build it)")
    ap.add_argument("--python-build", default=None,
                    help="time veil.dp from Python with this cargo output directory's module")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()

    py = ensure_smartnoise()
    veil = a.veil
    if veil is None and a.python_build is not None:
        veil = str(Path(a.python_build).resolve() / "veil")
        if not Path(veil).exists():
            veil = None
    if veil is None:
        sh(["cargo", "build", "--release", "-q", "-p", "veil-cli"], cwd=ROOT)
        veil = str(ROOT / "target" / "release" / "veil")

    work = Path(tempfile.mkdtemp(prefix="veil-dp-bench-"))
    sh([veil, "dp", "sample", "--rows", str(a.rows), "--seed", "1", "--dir", str(work)], stdout=subprocess.DEVNULL)
    csv = work / "persons.csv"
    meta = work / "persons.toml"
    # The benchmark's own budget: every run is charged, so give it enough.
    text = meta.read_text().replace("epsilon = 10.0", "epsilon = 1000000.0").replace("delta = 1e-5", "delta = 0.5")
    meta.write_text(text)
    sn_meta = work / "persons.yaml"
    sn_meta.write_text(SN_YAML)
    exact = truth(csv)
    queries = [(n, q) for n, q, _ in QUERIES]

    out = sh([py, "-c", SN_RUNNER, str(csv), str(sn_meta), str(a.epsilon), str(a.delta), str(a.runs)],
             input=json.dumps(queries), capture_output=True, text=True)
    lines_sn = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    sn = [r for r in lines_sn if "run" in r]
    # SmartNoise applies ε to every measurement of a query (AVG: a sum and a count), so a query
    # can cost it more than ε in total; Veil splits the ε it is given. Each query runs on Veil
    # at exactly the total (ε, δ) SmartNoise reports for it, so errors compare at equal cost.
    cost = {r["name"]: r["cost"] for r in lines_sn if "cost" in r}

    vl = []
    if a.python_build is not None:
        qs = [[n, q, float(cost[n][0]), max(float(cost[n][1]), a.delta)] for n, q in queries]
        vl = veil_python(a.python_build, csv, meta, qs, a.runs)
    for name, q in queries if a.python_build is None else []:
        eps, delta = cost[name]
        cmd = [veil, "dp", "bench", "--metadata", str(meta), "--table", f"persons={csv}",
               "--epsilon", repr(float(eps)), "--delta", repr(max(float(delta), a.delta)),
               "--runs", str(a.runs), "--json", q]
        out = sh(cmd, capture_output=True, text=True)
        vl += [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]

    lines = []
    head = f"{a.rows} rows, ε = {a.epsilon}, δ = {a.delta}, {a.runs} runs per query"
    if a.python_build is not None:
        head += ", both over one pandas DataFrame in process (veil.dp)"
    if a.markdown:
        lines.append(f"| query | total ε | SmartNoise ms | Veil ms | speed-up | SmartNoise error | Veil error | groups released (SN / Veil) |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        lines.append(head)
        lines.append(f"{'query':<14} {'ε':>5} {'SN ms':>8} {'Veil ms':>8} {'speed-up':>9} {'SN error':>12} {'Veil error':>12}  released SN/Veil")
    for name, sql, group in QUERIES:
        s_runs = [r for r in sn if r["name"] == name]
        v_runs = [r for r in vl if r["sql"] == sql]
        s_ms = statistics.median(r["ms"] for r in s_runs)
        v_ms = statistics.median(r["ms"] for r in v_runs)
        s_err, s_rel = errors([r["rows"] for r in s_runs], exact[name], group is not None)
        v_err, v_rel = errors([r["rows"] for r in v_runs], exact[name], group is not None)
        if a.markdown:
            lines.append(f"| `{sql}` | {cost[name][0]:g} | {s_ms:.1f} | {v_ms:.2f} | {s_ms / v_ms:.0f}× | {s_err:.4g} | {v_err:.4g} | {s_rel:.2f} / {v_rel:.2f} |")
        else:
            lines.append(f"{name:<14} {cost[name][0]:>5g} {s_ms:>8.1f} {v_ms:>8.2f} {s_ms / v_ms:>8.0f}× {s_err:>12.4g} {v_err:>12.4g}  {s_rel:.2f}/{v_rel:.2f}")
    if a.markdown:
        lines.insert(0, head + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
