#!/usr/bin/env python3
"""What Python costs on top of Rust, and Veil's Python API beside TenSEAL's, in one run.

Usage
-----
    python3 bench/python_overhead.py                 # overhead table + TenSEAL side by side
    python3 bench/python_overhead.py --runs 50 --markdown
    python3 bench/python_overhead.py --no-tenseal    # only the overhead

Options
-------
    --build DIR     the cargo output directory holding ``deps/libveil_native.so`` (the
                    extension module), ``examples/python_overhead`` and ``veil``
                    (default: target/debug, what ``cargo test --workspace --no-run`` builds;
                    the example is built here with ``cargo build --profile test --workspace
                    --example python_overhead`` when missing, so both sides have the same
                    optimization)
    --runs R        timed runs per operation; medians are reported (default 20)
    --veil PATH     the ``veil`` binary that writes the DP data set (default: the one in --build)
    --no-tenseal    skip the TenSEAL comparison (no download)
    --no-smartnoise skip SmartNoise SQL vs veil.dp (bench/dp_sql_vs_smartnoise.py --python-build)
    --markdown      print markdown tables (for docs/benchmarks.md)

What it does
------------
On first use it makes a virtualenv at bench/.venv-python (next to this file) with numpy,
pandas and tenseal 0.3.x from PyPI, and re-runs itself there. It stages the extension module
of ``--build`` as ``veil/_native.abi3.so`` beside the package's Python sources in a temp dir
and imports it from there.

1. Overhead (issue: ≤ 10% on HE operations at N = 8192, ≤ 1 ms per DP query at 100k rows):
   the example ``python_overhead`` times each operation on ``CkksVector`` directly in Rust; the
   same operation is timed here through ``veil.he`` (numpy in and out). The DP query is
   ``SELECT sex, COUNT(*), AVG(income) … GROUP BY sex`` on 100,000 persons written by
   ``veil dp sample``, through the Rust ``Engine`` and through ``veil.dp.Dataset.query``.
   Both sides run in five alternating rounds (the medians of the rounds' medians), so that
   the machine's drift does not land on one side.
2. TenSEAL side by side (target: Veil ≥ 2× faster on every op): the operations of TenSEAL's
   getting-started tutorial with ``import tenseal as ts`` and with ``import veil.he as ts``,
   the same code, N = 8192, [60, 40, 40, 60], scale 2^40, 4096 values. TenSEAL's own thread
   pool is left at its default. Veil's decrypt includes noise flooding (TenSEAL's does not).
3. SmartNoise SQL side by side (target: veil.dp ≥ 20× faster): the queries of
   ``bench/dp_sql_vs_smartnoise.py`` over one pandas DataFrame, SmartNoise's ``from_df``
   reader vs ``veil.dp.Dataset(tables={"persons": df})``, each query at the same total cost.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv-python"
REQUIREMENTS = ["numpy==2.3.5", "pandas==2.3.3", "tenseal>=0.3,<0.4"]


def make_venv(need_tenseal: bool) -> pathlib.Path:
    """bench/.venv-python with numpy and pandas (and TenSEAL), made once; its python."""
    py = VENV / "bin" / "python"
    stamp = VENV / "installed.txt"
    wanted = " ".join(REQUIREMENTS if need_tenseal else REQUIREMENTS[:2])
    if not (py.exists() and stamp.exists() and wanted in stamp.read_text()):
        print(f"making {VENV} with {wanted} (once) …", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", *wanted.split()])
        stamp.write_text(wanted)
    return py


def ensure_venv(need_tenseal: bool):
    if os.environ.get("VEIL_BENCH_IN_VENV") == "1":
        return
    py = make_venv(need_tenseal)
    env = dict(os.environ, VEIL_BENCH_IN_VENV="1")
    os.execve(str(py), [str(py), __file__, *sys.argv[1:]], env)


def stage(build: pathlib.Path) -> pathlib.Path:
    so = build / "deps" / "libveil_native.so"
    if not so.exists():
        sys.exit(f"{so} is missing: build it with `cargo test --workspace --no-run`")
    d = pathlib.Path(tempfile.mkdtemp(prefix="veil-bench-py-"))
    shutil.copytree(REPO / "crates/veil-py/python/veil", d / "veil")
    shutil.copy(so, d / "veil" / "_native.abi3.so")
    return d


def median_us(runs, f):
    f()
    t = []
    for _ in range(runs):
        s = time.perf_counter_ns()
        f()
        t.append((time.perf_counter_ns() - s) / 1e3)
    return statistics.median(t)


def python_side(persons_csv):
    """The operations through the Python package: ``{op: callable}`` on one context."""
    import numpy as np
    import veil.dp as dp
    import veil.he as ts

    ctx = ts.context_from_preset("n8192-depth2")
    n = ctx.slots
    x = np.arange(n) / n - 0.5
    a, b = ts.ckks_vector(ctx, x), ts.ckks_vector(ctx, x)
    small = ts.ckks_vector(ctx, x[:64])
    half = ts.ckks_vector(ctx, x[: n // 2])
    m = np.array([[((i * 64 + j) % 7) / 7.0 for j in range(64)] for i in range(64)])
    data = a.serialize()
    ops = {
        "encrypt": lambda: ts.ckks_vector(ctx, x),
        "add": lambda: a + b,
        "mul": lambda: a * b,
        "mul_plain": lambda: a * x,
        "add_scalar": lambda: a + 1.5,
        "dot": lambda: a.dot(b),
        "sum": lambda: a.sum(),
        "rotate": lambda: half.rotate(1),
        "polyval": lambda: a.polyval([0.5, 0.25, 0.125]),
        "matmul_64": lambda: small.mm(m),
        "decrypt": lambda: a.decrypt(),
        "serialize": lambda: a.serialize(),
        "deserialize": lambda: ts.ckks_vector_from(ctx, data),
    }
    meta = (REPO / "crates/veil-py/tests/python/conftest.py").read_text()
    meta = meta.split('PERSONS_METADATA = """', 1)[1].split('"""', 1)[0]
    ledger = dp.Ledger.temporary()
    ledger.register("persons", meta, epsilon=1e9, delta=0.5)
    ds = dp.Dataset("persons", meta, ledger, tables={"persons": str(persons_csv)})
    sql = "SELECT sex, COUNT(*) AS n, AVG(income) AS income FROM persons GROUP BY sex"
    ops["dp_sql_query"] = lambda: ds.query(sql, epsilon=0.01)
    return ops


ROUNDS = 5


def interleaved(example, persons, runs, ops):
    """Alternating rounds, ``ROUNDS`` of each side: the Rust example (a process of its own,
    every operation) then every operation through Python, so that the machine's drift (and
    the ledger's commits, one SQLite transaction per query) affect both sides alike. Returns
    the medians of the rounds' medians, per operation, for Rust and for Python."""
    rust, py = {}, {}
    for _ in range(ROUNDS):
        proc = subprocess.run([str(example), str(runs), str(persons)], check=True,
                              capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            j = json.loads(line)
            rust.setdefault(j["op"], []).append(j["median_us"])
        for op, f in ops.items():
            py.setdefault(op, []).append(median_us(runs, f))
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}  # noqa: E731
    return med(rust), med(py)


def tenseal_tutorial(ts, runs):
    """The getting-started operations, the same code for both libraries."""
    import numpy as np

    t0 = time.perf_counter()
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192,
                     coeff_mod_bit_sizes=[60, 40, 40, 60])
    ctx.global_scale = 2 ** 40
    ctx.generate_galois_keys()
    x = np.random.default_rng(1).uniform(-1, 1, 4096)
    a, b = ts.ckks_vector(ctx, x), ts.ckks_vector(ctx, x)
    keygen = (time.perf_counter() - t0) * 1e6
    small = ts.ckks_vector(ctx, x[:64])
    m = np.random.default_rng(2).uniform(-1, 1, (64, 64))
    data = a.serialize()
    return {
        "context, keys, 2 encryptions": keygen,
        "encrypt": median_us(runs, lambda: ts.ckks_vector(ctx, x)),
        "add": median_us(runs, lambda: a + b),
        "mul": median_us(runs, lambda: a * b),
        "mul_plain": median_us(runs, lambda: a * x),
        "add_scalar": median_us(runs, lambda: a + 1.5),
        "dot": median_us(runs, lambda: a.dot(b)),
        "sum": median_us(runs, lambda: a.sum()),
        "polyval (deg 3)": median_us(runs, lambda: a.polyval([0.5, 0.25, 0.125, 0.0625])),
        "mm 64×64": median_us(runs, lambda: small.mm(m)),
        "decrypt": median_us(runs, lambda: a.decrypt()),
        "serialize": median_us(runs, lambda: a.serialize()),
        "deserialize": median_us(runs, lambda: ts.ckks_vector_from(ctx, data)),
    }


def table(rows, header, markdown):
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=str(REPO / "target" / "debug"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--no-tenseal", action="store_true")
    ap.add_argument("--no-smartnoise", action="store_true")
    ap.add_argument("--veil", default=None,
                    help="the veil binary for `veil dp sample` (default: the one in --build)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    ensure_venv(not args.no_tenseal)
    build = pathlib.Path(args.build).resolve()
    sys.path.insert(0, str(stage(build)))

    work = pathlib.Path(tempfile.mkdtemp(prefix="veil-bench-dp-"))
    veil_bin = pathlib.Path(args.veil).resolve() if args.veil else build / "veil"
    subprocess.check_call([str(veil_bin), "dp", "sample", "--dir", str(work),
                           "--rows", "100000"], stdout=subprocess.DEVNULL)
    persons = work / "persons.csv"
    example = build / "examples" / "python_overhead"
    if not example.exists():
        # The same profile as the module's: `debug` is the test build's directory.
        profile = "test" if build.name == "debug" else build.name
        subprocess.check_call(["cargo", "build", "--profile", profile, "-p", "veil-py",
                               "--example", "python_overhead"], cwd=REPO,
                              env=dict(os.environ, CARGO_TARGET_DIR=str(build.parent)))
    rust, py = interleaved(example, persons, args.runs, python_side(persons))
    rows = []
    for op, r in rust.items():
        p = py[op]
        rows.append([op, f"{r:,.1f}", f"{p:,.1f}", f"{p - r:+,.1f}", f"{(p / r - 1) * 100:+.1f}%"])
    print(f"Python over Rust, N = 8192, median of {ROUNDS} alternating rounds of "
          f"{args.runs} runs ({build.name} build)\n")
    table(rows, ["op", "Rust µs", "Python µs", "overhead µs", "overhead"], args.markdown)

    if not args.no_tenseal:
        import tenseal
        import veil.he

        t = tenseal_tutorial(tenseal, args.runs)
        v = tenseal_tutorial(veil.he, args.runs)
        rows = [[op, f"{t[op]:,.1f}", f"{v[op]:,.1f}", f"{t[op] / v[op]:.1f}×"] for op in t]
        print(f"TenSEAL {tenseal.__version__ if hasattr(tenseal, '__version__') else '0.3'} "
              f"vs veil.he, the same tutorial code, median of {args.runs}\n")
        table(rows, ["op", "TenSEAL µs", "veil.he µs", "Veil faster by"], args.markdown)

    if not args.no_smartnoise:
        # SmartNoise SQL over a pandas DataFrame vs veil.dp over the same DataFrame, both in
        # process, each query at SmartNoise's total privacy cost (bench/dp_sql_vs_smartnoise.py
        # installs smartnoise-sql in a virtualenv of its own: its pins differ from ours).
        print("\nSmartNoise SQL vs veil.dp on the same pandas DataFrame (100,000 rows)\n",
              flush=True)
        cmd = [sys.executable, str(HERE / "dp_sql_vs_smartnoise.py"), "--python-build",
               str(build), "--veil", str(veil_bin), "--runs", str(min(args.runs, 10))]
        subprocess.check_call(cmd + (["--markdown"] if args.markdown else []))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
