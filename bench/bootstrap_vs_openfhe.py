#!/usr/bin/env python3
"""Side-by-side CKKS bootstrapping: OpenFHE 1.6's EvalBootstrap (its Python wheel) vs Veil's, in one run.

Usage
-----
    python3 bench/bootstrap_vs_openfhe.py --veil target/release/veil
    python3 bench/bootstrap_vs_openfhe.py --veil target/debug/veil --runs 3 --markdown

Both sides: N = 2^16, all 2^15 slots, values uniform in [-1, 1], one thread
(``OMP_NUM_THREADS=1``, ``RAYON_NUM_THREADS=1``), each in its own process so that its peak
memory (``ru_maxrss`` / ``VmHWM``) is its own.

OpenFHE: ``SPARSE_ENCAPSULATED`` secret, level budget [4, 4], ``FLEXIBLEAUTO`` scaling with
59-bit primes and a 60-bit first prime, hybrid key switching with 3 large digits,
``HEStd_128_classic``, and as many levels after bootstrapping as Veil keeps or, if fewer, as
many as OpenFHE's chain can keep at N = 2^16 under 128 bits. Veil: ``veil he bench --ops bootstrap --json`` (the chain of
``BootstrapConfig::secure_parameters``: 60-bit q_0, 50-bit primes, 5 special primes;
ephemeral secret of weight 32, CoeffsToSlots and SlotsToCoeffs in 4 levels each).

Timed: key generation (all the keys bootstrapping needs), one bootstrapping (median of
``--runs``), precision as -log2 of the worst and of the mean absolute error over all slots,
levels left, peak resident memory.

OpenFHE's wheel needs CPython 3.10: the script makes ``bench/.venv-openfhe`` with a 3.10
interpreter (``--python``, default pyenv's 3.10.x), installs ``openfhe==1.6.1.0.22.4`` there and
runs OpenFHE's side with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openfhe_venv import openfhe_python, python310  # noqa: E402

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent

OPENFHE_SIDE = r"""
import json, random, resource, statistics, sys, time
import openfhe as o

levels_after, runs = int(sys.argv[1]), int(sys.argv[2])
budget = [4, 4]
dist = o.SPARSE_ENCAPSULATED
p = o.CCParamsCKKSRNS()
p.SetSecretKeyDist(dist)
p.SetSecurityLevel(o.HEStd_128_classic)
p.SetRingDim(1 << 16)
p.SetNumLargeDigits(3)
p.SetKeySwitchTechnique(o.HYBRID)
p.SetScalingModSize(59)
p.SetFirstModSize(60)
p.SetScalingTechnique(o.FLEXIBLEAUTO)
# As many levels after bootstrapping as Veil keeps, or as many as fit 128 bits at N = 2^16.
while True:
    depth = levels_after + o.CryptoContext.GetBootstrapDepth(budget, dist)
    p.SetMultiplicativeDepth(depth)
    try:
        cc = o.GenCryptoContext(p)
        break
    except RuntimeError:
        if levels_after == 1:
            raise
        levels_after -= 1
for feature in (o.PKE, o.KEYSWITCH, o.LEVELEDSHE, o.ADVANCEDSHE, o.FHE):
    cc.Enable(feature)
n = cc.GetRingDimension()
slots = n // 2
cc.EvalBootstrapSetup(budget)
start = time.perf_counter()
keys = cc.KeyGen()
cc.EvalMultKeyGen(keys.secretKey)
cc.EvalBootstrapKeyGen(keys.secretKey, slots)
keygen_s = time.perf_counter() - start
rng = random.Random(42)
x = [rng.uniform(-1.0, 1.0) for _ in range(slots)]
pt = cc.MakeCKKSPackedPlaintext(x, 1, depth - 1)
pt.SetLength(slots)
ct = cc.Encrypt(keys.publicKey, pt)
times = []
out = None
for _ in range(runs):
    t = time.perf_counter()
    out = cc.EvalBootstrap(ct)
    times.append(time.perf_counter() - t)
res = cc.Decrypt(out, keys.secretKey)
res.SetLength(slots)
got = res.GetRealPackedValue()
errs = [abs(a - b) for a, b in zip(got, x)]
import math
print(json.dumps({
    "degree": n, "slots": slots, "depth": depth,
    "keygen_s": keygen_s, "median_s": statistics.median(times),
    "worst_bits": -math.log2(max(errs)), "mean_bits": -math.log2(sum(errs) / len(errs)),
    "levels_after": depth - out.GetLevel(),
    "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def log(msg: str) -> None:
    print(f"[bootstrap_vs_openfhe] {msg}", file=sys.stderr, flush=True)


def single_thread() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1")


def run_veil(binary: Path, runs: int) -> dict:
    cmd = [str(binary), "he", "bench", "--degree", "65536", "--ops", "bootstrap",
           "--runs", str(runs), "--json"]
    proc = subprocess.run(cmd, env=single_thread(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "keygen_s": row["keygen_s"], "median_s": row["median_s"],
        "worst_bits": row["precision_worst_bits"], "mean_bits": row["precision_mean_bits"],
        "levels_after": row["levels_after"], "peak_memory_bytes": row["peak_memory_bytes"],
        "depth": row["depth"], "phases_s": row["phases_s"],
    }


def run_openfhe(py: str, levels_after: int, runs: int) -> dict:
    proc = subprocess.run([py, "-c", OPENFHE_SIDE, str(levels_after), str(runs)],
                          env=single_thread(), capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"OpenFHE's side failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--veil", type=Path, default=REPO / "target" / "release" / "veil",
                    help="the veil binary (cargo build --release -p veil-cli)")
    ap.add_argument("--runs", type=int, default=1, help="timed bootstrappings per side")
    ap.add_argument("--python", help="a CPython 3.10 interpreter for OpenFHE's wheel")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if not args.veil.exists():
        raise SystemExit(f"{args.veil} not found: build it (cargo build --release -p veil-cli) or pass --veil")
    py = openfhe_python(python310(args.python), log)
    log("Veil")
    v = run_veil(args.veil, args.runs)
    log(f"OpenFHE (up to {v['levels_after']} levels after bootstrapping, as Veil)")
    s = run_openfhe(py, v["levels_after"], args.runs)
    rows = [
        ("key generation (s)", s["keygen_s"], v["keygen_s"], "time"),
        ("bootstrap (s)", s["median_s"], v["median_s"], "time"),
        ("precision, worst (bits)", s["worst_bits"], v["worst_bits"], "bits"),
        ("precision, mean (bits)", s["mean_bits"], v["mean_bits"], "bits"),
        ("levels left", s["levels_after"], v["levels_after"], "count"),
        ("peak memory (GB)", s["peak_memory_bytes"] / 1e9, (v["peak_memory_bytes"] or 0) / 1e9, "time"),
    ]
    title = (f"CKKS bootstrapping, N = 2^16, 2^15 slots, 1 thread, median of {args.runs}; "
             f"Veil phases (s): ModRaise {v['phases_s'][0]:.2f}, CtS {v['phases_s'][1]:.2f}, "
             f"EvalMod {v['phases_s'][2]:.2f}, StC {v['phases_s'][3]:.2f}")
    if args.markdown:
        print(f"\n**{title}**\n\n| | OpenFHE 1.6.1 | Veil | Veil ÷ OpenFHE |\n|---|---:|---:|---:|")
    else:
        print(f"\n{title}\n{'':<26}{'OpenFHE':>10}{'Veil':>10}{'ratio':>8}")
    for name, a, b, kind in rows:
        ratio = f"{b / a:.2f}" if kind == "time" and a else "—"
        fmt = (lambda x: f"{x:.0f}") if kind == "count" else (lambda x: f"{x:.2f}")
        if args.markdown:
            print(f"| {name} | {fmt(a)} | {fmt(b)} | {ratio} |")
        else:
            print(f"{name:<26}{fmt(a):>10}{fmt(b):>10}{ratio:>8}")


if __name__ == "__main__":
    main()
