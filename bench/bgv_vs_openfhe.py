#!/usr/bin/env python3
"""Side-by-side BGV benchmark: OpenFHE 1.6's BGV (its Python wheel) vs Veil's, in one run.

Usage
-----
    python3 bench/bgv_vs_openfhe.py                 # N = 8192 and 16384
    python3 bench/bgv_vs_openfhe.py --degree 8192 --runs 20 --markdown

OpenFHE's wheel needs CPython 3.10: the script makes ``bench/.venv-openfhe`` with a 3.10
interpreter (``--python``, default: pyenv's 3.10.x, else ``python3.10`` on PATH), installs
``openfhe==1.6.1.0.22.4`` there and re-executes itself. Both run on one thread
(``OMP_NUM_THREADS=1``, ``RAYON_NUM_THREADS=1``).

Parameters: the same ring degree, 20-bit batching plaintext modulus, and ciphertext primes of
the same count and size (three of 52 bits at N = 8192, seven of 54 at 16384: OpenFHE's
``FIXEDMANUAL`` scaling with ``FirstModSize = ScalingModSize`` and multiplicative depth 2 / 6;
54-bit primes at 8192 fail OpenFHE's 128-bit check with its larger special primes), hybrid key switching with
one digit per prime (``NumLargeDigits`` = number of primes), ``HEStd_128_classic``. OpenFHE
picks its own special primes; Veil uses its preset's (one of 56 / 60 bits). The Veil side is the
``bfv_bench`` example with ``--scheme bgv`` (the code of ``veil he bench --scheme bgv``).
OpenFHE has no row swap for BGV through this API, so ``rotate_columns`` is not compared;
OpenFHE's ``decrypt`` includes decoding the packed plaintext, its ``multiply_plain`` uses the
plaintext's cached NTT form (Veil's lifts the plaintext each call), and key generation is not
compared (OpenFHE caches the relinearization key).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openfhe_venv import openfhe_python, python310  # noqa: E402

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent
MARKER = "VEIL_OPENFHE_BENCH_IN_VENV"
#: degree -> Veil's prime bit sizes (ciphertext primes, then the special one). OpenFHE gets the
#: same number and size of ciphertext primes; at N = 8192 its special primes are larger, so 54-bit
#: primes would exceed the 128-bit bound there and both use 52.
CHAINS = {8192: [52, 52, 52, 56], 16384: [54] * 7 + [60]}
OPS = ["encode", "encrypt_pk", "decrypt", "add", "multiply_plain", "multiply", "relinearize",
       "multiply+relin", "rotate_rows_1", "mod_switch"]


def log(msg: str) -> None:
    print(f"[bgv_vs_openfhe] {msg}", file=sys.stderr, flush=True)


def ensure_venv(interpreter: str) -> None:
    if os.environ.get(MARKER):
        return
    py = openfhe_python(interpreter, log)
    env = dict(os.environ, **{MARKER: "1", "OMP_NUM_THREADS": "1"})
    os.execve(py, [py, str(SCRIPT), *sys.argv[1:]], env)


def median_us(runs: int, f) -> float:
    f()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        f()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return statistics.median(samples)


def run_openfhe(degree: int, t: int, runs: int) -> dict:
    import openfhe as o

    primes = len(CHAINS[degree]) - 1
    p = o.CCParamsBGVRNS()
    p.SetPlaintextModulus(t)
    p.SetRingDim(degree)
    p.SetMultiplicativeDepth(primes - 1)
    p.SetScalingTechnique(o.FIXEDMANUAL)
    p.SetFirstModSize(CHAINS[degree][0])
    p.SetScalingModSize(CHAINS[degree][0])
    p.SetKeySwitchTechnique(o.HYBRID)
    p.SetNumLargeDigits(primes)
    p.SetSecurityLevel(o.HEStd_128_classic)
    p.SetBatchSize(degree)
    cc = o.GenCryptoContext(p)
    for feature in (o.PKE, o.KEYSWITCH, o.LEVELEDSHE):
        cc.Enable(feature)
    keys = cc.KeyGen()
    cc.EvalMultKeyGen(keys.secretKey)
    cc.EvalRotateKeyGen(keys.secretKey, [1])
    rng = random.Random(42)
    half = t // 2
    a = [rng.randrange(t) - half for _ in range(degree)]
    b = [rng.randrange(t) - half for _ in range(degree)]
    pa, pb = cc.MakePackedPlaintext(a), cc.MakePackedPlaintext(b)
    ca, cb = cc.Encrypt(keys.publicKey, pa), cc.Encrypt(keys.publicKey, pb)
    prod3 = cc.EvalMultNoRelin(ca, cb)
    prod = cc.EvalMult(ca, cb)
    got = cc.Decrypt(keys.secretKey, prod)
    got.SetLength(degree)
    want = [((x * y + half) % t) - half for x, y in zip(a, b)]
    if list(got.GetPackedValue()) != want:
        raise SystemExit("OpenFHE's product decrypted wrongly")
    ops = {
        "encode": lambda: cc.MakePackedPlaintext(a),
        "encrypt_pk": lambda: cc.Encrypt(keys.publicKey, pa),
        "decrypt": lambda: cc.Decrypt(keys.secretKey, ca),
        "add": lambda: cc.EvalAdd(ca, cb),
        "multiply_plain": lambda: cc.EvalMult(ca, pb),
        "multiply": lambda: cc.EvalMultNoRelin(ca, cb),
        "relinearize": lambda: cc.Relinearize(prod3),
        "multiply+relin": lambda: cc.EvalMult(ca, cb),
        "rotate_rows_1": lambda: cc.EvalRotate(ca, 1),
        "mod_switch": lambda: cc.ModReduce(ca),
    }
    # (EvalMultKeyGen is not timed: OpenFHE caches the key, a second call does no work.)
    out = {op: median_us(runs, f) for op, f in ops.items()}
    return out


def run_veil(binary: Path, degree: int, runs: int) -> dict:
    cmd = [str(binary), "--scheme", "bgv", "--degree", str(degree), "--runs", str(runs),
           "--moduli", ",".join(map(str, CHAINS[degree]))]
    proc = subprocess.run(cmd, env=dict(os.environ, RAYON_NUM_THREADS="1"),
                          capture_output=True, text=True)
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
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--python", help="a CPython 3.10 interpreter for OpenFHE's wheel")
    ap.add_argument("--veil-bench", type=Path,
                    default=REPO / "target" / "release" / "examples" / "bfv_bench")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    ensure_venv(python310(args.python))
    if not args.veil_bench.exists():
        log("building the bfv_bench example (release)")
        subprocess.run(["cargo", "build", "--release", "-p", "veil-he", "--example", "bfv_bench"],
                       cwd=REPO, check=True, stdout=sys.stderr)
    for degree in args.degree or [8192, 16384]:
        runs = args.runs or (20 if degree <= 8192 else 10)
        log(f"N = {degree}: Veil")
        v = run_veil(args.veil_bench, degree, runs)
        log(f"N = {degree}: OpenFHE")
        s = run_openfhe(degree, int(v["plain_modulus"]), runs)
        title = (f"BGV N = {degree}, t = {v['plain_modulus']}, primes {CHAINS[degree]}, 1 thread, "
                 f"median of {runs}")
        if args.markdown:
            print(f"\n**{title}**\n\n| op | OpenFHE µs | Veil µs | Veil/OpenFHE |\n|---|---:|---:|---:|")
        else:
            print(f"\n{title}\n{'op':<18}{'OpenFHE µs':>12}{'Veil µs':>12}{'ratio':>8}")
        for op in OPS:
            ratio = v[op] / s[op]
            if args.markdown:
                print(f"| {op} | {s[op]:,.1f} | {v[op]:,.1f} | {ratio:.2f} |")
            else:
                print(f"{op:<18}{s[op]:>12,.1f}{v[op]:>12,.1f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
