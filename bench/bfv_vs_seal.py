#!/usr/bin/env python3
"""Side-by-side BFV (or BGV) benchmark: Microsoft SEAL (via seal-python) vs Veil, in one run.

Usage
-----
    python3 bench/bfv_vs_seal.py                    # N = 8192 and 16384, Veil's preset chains
    python3 bench/bfv_vs_seal.py --degree 8192 --runs 20 --markdown
    python3 bench/bfv_vs_seal.py --scheme bgv            # SEAL's BGV vs Veil's BGV
    python3 bench/bfv_vs_seal.py --veil-bench target/release/examples/bfv_bench

Both libraries get the same parameters: the ring degree, the same prime bit sizes
(``CoeffModulus.Create(N, bits)``, the last prime special), and a 20-bit batching plaintext
modulus (``PlainModulus.Batching(N, 20)``). Both run on one thread (``RAYON_NUM_THREADS=1``
for Veil; SEAL has no internal threading). Each op is timed after one warm-up call and the
median of ``--runs`` calls is reported in microseconds, with the ratio Veil/SEAL (below 1:
Veil is faster). The fresh and after-one-product noise budgets of both are printed too.

On first use the script makes ``bench/.venv`` (shared with he_vs_seal.py) with seal-python and
numpy, and re-executes itself there. The Veil side is the ``bfv_bench`` example of veil-he
(``cargo build --release -p veil-he --example bfv_bench``, built if missing); it runs the same
code as ``veil he bench --scheme bfv``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO = BENCH_DIR.parent
VENV = BENCH_DIR / ".venv"
REQUIREMENTS = ["seal-python>=4.4,<4.5", "numpy"]
MARKER = "VEIL_BFV_BENCH_IN_VENV"

#: degree -> prime bit sizes (Veil's BfvPreset chains: ciphertext primes, then the special one)
CHAINS = {
    4096: [36, 36, 37],
    8192: [54, 54, 54, 56],
    16384: [54] * 7 + [60],
    32768: [55] * 15 + [56],
}

OPS = [
    "encode", "decode", "encrypt_pk", "encrypt_sk", "decrypt", "noise_budget", "add",
    "multiply_plain", "multiply", "relinearize", "multiply+relin", "rotate_rows_1",
    "rotate_columns", "mod_switch", "keygen_relin",
]


def log(msg: str) -> None:
    print(f"[bfv_vs_seal] {msg}", file=sys.stderr, flush=True)


def ensure_venv() -> None:
    if sys.prefix == str(VENV) or os.environ.get(MARKER):
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, stdout=sys.stderr)
    if subprocess.run([str(py), "-c", "import seal, numpy"], capture_output=True).returncode:
        log(f"installing {' '.join(REQUIREMENTS)}")
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
                       check=True, stdout=sys.stderr)
    os.execve(str(py), [str(py), str(SCRIPT), *sys.argv[1:]], dict(os.environ, **{MARKER: "1"}))


def median_us(runs: int, f) -> float:
    f()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        f()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def run_seal(scheme: str, degree: int, bits: list, runs: int) -> dict:
    import numpy as np
    import seal

    parms = seal.EncryptionParameters(getattr(seal.scheme_type, scheme))
    parms.set_poly_modulus_degree(degree)
    parms.set_coeff_modulus(seal.CoeffModulus.Create(degree, bits))
    parms.set_plain_modulus(seal.PlainModulus.Batching(degree, 20))
    ctx = seal.SEALContext(parms)
    keygen = seal.KeyGenerator(ctx)
    sk = keygen.secret_key()
    pk = keygen.create_public_key()
    rlk = keygen.create_relin_keys()
    gk = seal.GaloisKeys()
    keygen.create_galois_keys([1, 0], gk)  # rotate_rows by 1; step 0 is the column swap
    encoder = seal.BatchEncoder(ctx)
    encryptor = seal.Encryptor(ctx, pk, sk)
    decryptor = seal.Decryptor(ctx, sk)
    ev = seal.Evaluator(ctx)
    t = parms.plain_modulus().value()
    rng = random.Random(42)
    a = np.array([rng.randrange(t) for _ in range(degree)], dtype=np.uint64)
    b = np.array([rng.randrange(t) for _ in range(degree)], dtype=np.uint64)
    pa, pb = encoder.encode(a), encoder.encode(b)
    ca, cb = encryptor.encrypt(pa), encryptor.encrypt(pb)
    prod3 = ev.multiply(ca, cb)
    prod = ev.relinearize(prod3, rlk)
    # decode gives signed values in (−t/2, t/2]
    got = np.array([int(x) % t for x in encoder.decode(decryptor.decrypt(prod))], dtype=object)
    want = (a.astype(object) * b.astype(object)) % t
    if not (got == want).all():
        raise SystemExit("SEAL's product decrypted wrongly")
    ops = {
        "encode": lambda: encoder.encode(a),
        "decode": lambda: encoder.decode(pa),
        "encrypt_pk": lambda: encryptor.encrypt(pa),
        "encrypt_sk": lambda: encryptor.encrypt_symmetric(pa),
        "decrypt": lambda: decryptor.decrypt(ca),
        "noise_budget": lambda: decryptor.invariant_noise_budget(ca),
        "add": lambda: ev.add(ca, cb),
        "multiply_plain": lambda: ev.multiply_plain(ca, pb),
        "multiply": lambda: ev.multiply(ca, cb),
        "relinearize": lambda: ev.relinearize(prod3, rlk),
        "multiply+relin": lambda: ev.relinearize(ev.multiply(ca, cb), rlk),
        "rotate_rows_1": lambda: ev.rotate_rows(ca, 1, gk),
        "rotate_columns": lambda: ev.rotate_columns(ca, gk),
        "mod_switch": lambda: ev.mod_switch_to_next(ca),
        "keygen_relin": lambda: keygen.create_relin_keys(),
    }
    out = {op: median_us(min(runs, 10) if op == "keygen_relin" else runs, f)
           for op, f in ops.items()}
    out["noise_budget_fresh"] = decryptor.invariant_noise_budget(ca)
    out["noise_budget_after_multiply"] = decryptor.invariant_noise_budget(prod)
    out["plain_modulus"] = t
    return out


def run_veil(scheme: str, binary: Path, degree: int, bits: list, runs: int) -> dict:
    cmd = [str(binary), "--scheme", scheme, "--degree", str(degree), "--runs", str(runs),
           "--moduli", ",".join(map(str, bits))]
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    out = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        out[row["op"]] = row.get("median_us", row.get("value"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--degree", type=int, action="append", choices=sorted(CHAINS))
    ap.add_argument("--runs", type=int, default=0, help="timed runs per op (default 20 / 10)")
    ap.add_argument("--scheme", choices=["bfv", "bgv"], default="bfv")
    ap.add_argument("--veil-bench", type=Path,
                    default=REPO / "target" / "release" / "examples" / "bfv_bench")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    ensure_venv()
    if not args.veil_bench.exists():
        log("building the bfv_bench example (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "veil-he", "--example", "bfv_bench"],
                       cwd=REPO, check=True, stdout=sys.stderr)
    import seal  # noqa: F401  (fails early if the venv is broken)
    for degree in args.degree or [8192, 16384]:
        runs = args.runs or (20 if degree <= 8192 else 10)
        bits = CHAINS[degree]
        log(f"N = {degree}, primes {bits}, {runs} runs: SEAL")
        s = run_seal(args.scheme, degree, bits, runs)
        log(f"N = {degree}: Veil")
        v = run_veil(args.scheme, args.veil_bench, degree, bits, runs)
        if s["plain_modulus"] != v["plain_modulus"]:
            log(f"note: plaintext moduli differ (SEAL {s['plain_modulus']}, Veil {v['plain_modulus']})")
        title = (f"{args.scheme.upper()} N = {degree}, primes {bits}, t = {v['plain_modulus']} (20 bits), "
                 f"1 thread, median of {runs}")
        if args.markdown:
            print(f"\n**{title}**\n\n| op | SEAL µs | Veil µs | Veil/SEAL |\n|---|---:|---:|---:|")
        else:
            print(f"\n{title}\n{'op':<18}{'SEAL µs':>12}{'Veil µs':>12}{'Veil/SEAL':>11}")
        for op in OPS:
            ratio = v[op] / s[op]
            if args.markdown:
                print(f"| {op} | {s[op]:,.1f} | {v[op]:,.1f} | {ratio:.2f} |")
            else:
                print(f"{op:<18}{s[op]:>12,.1f}{v[op]:>12,.1f}{ratio:>11.2f}")
        for key in ("noise_budget_fresh", "noise_budget_after_multiply"):
            line = f"{key}: SEAL {s[key]} bits, Veil {v[key]} bits"
            print(f"\n{line}" if args.markdown else line)


if __name__ == "__main__":
    main()
