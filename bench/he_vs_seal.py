#!/usr/bin/env python3
"""Side-by-side CKKS benchmark: Microsoft SEAL (via seal-python) vs Veil.

Usage
-----
    python3 bench/he_vs_seal.py                      # N=8192, moduli 60,40,40,60, 20 runs
    python3 bench/he_vs_seal.py --degree 16384       # moduli 60,40x7,60, 10 runs
    python3 bench/he_vs_seal.py --degree 32768       # moduli 60,40x19,60, 5 runs
    python3 bench/he_vs_seal.py --all --markdown     # all three, as markdown for docs/benchmarks.md
    python3 bench/he_vs_seal.py --veil path/to/veil --runs 50

Options
-------
    --degree N        ring degree / poly_modulus_degree (default 8192)
    --moduli LIST     coefficient-modulus prime sizes in bits, comma separated;
                      "40x7" is shorthand for seven 40s (default depends on --degree:
                      8192 -> 60,40,40,60; 16384 -> 60,40x7,60; 32768 -> 60,40x19,60)
    --scale-bits B    CKKS scale is 2^B (default 40)
    --runs R          timed runs per op; the median is reported
                      (default 20 / 10 / 5 for N = 8192 / 16384 / 32768)
    --veil PATH       the `veil` binary (default: target/release/veil in this
                      repository, built with `cargo build --release -p veil-cli`
                      if it does not exist yet)
    --all             run the three standard configurations one after another
    --markdown        print markdown tables instead of aligned text

What it does
------------
On first use the script creates a virtualenv at bench/.venv (next to this file),
installs ``seal-python`` 4.4.x (import name ``seal``) plus ``numpy`` (which
seal-python's ``CKKSEncoder.decode`` needs at run time) into it, and re-executes
itself with the venv's interpreter, so a plain ``python3 bench/he_vs_seal.py``
is all a user needs.

For each configuration it then

* runs ``RAYON_NUM_THREADS=1 veil he bench --degree N --moduli ... --scale-bits B
  --runs R --json`` and reads one JSON object per stdout line
  (``{"op", "degree", "median_us", "runs"}``, or ``{"op": "precision_log2_error",
  "value": ...}``); non-JSON lines are ignored;
* measures the same operations with SEAL (single-threaded; SEAL has no internal
  threading), timing each call with ``time.perf_counter_ns`` after one untimed
  warm-up call and reporting the median in microseconds;
* prints, for every op, the SEAL median, the Veil median and the ratio
  Veil/SEAL (lower is better for Veil).

Operations (names shared with ``veil he bench --json``)
-------------------------------------------------------
    encode               encode N/2 random reals in [-1, 1] at scale 2^B
    encrypt_pk           public-key encryption
    encrypt_sk           symmetric (secret-key) encryption
    decrypt              decryption (no decoding)
    add                  ciphertext + ciphertext
    multiply_plain       ciphertext * plaintext
    multiply+relin       ciphertext * ciphertext, then relinearize
    rescale              rescale_to_next of a (relinearized) product
    rotate_1             rotate the slot vector by one step
    keygen_relin         create relinearization keys
    keygen_galois_1step  create Galois keys for rotation step 1 only
    precision_log2_error log2 of the max abs error after one
                         multiply+relin+rescale of two vectors in [-1, 1]
                         (not a time; more negative is better)

Exit status is nonzero, with a message on stderr, when seal-python cannot be
installed, the parameters are rejected, or the veil binary cannot be built, fails
or prints no results. Progress goes to stderr; the report goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv"

#: What gets installed into the venv. numpy is needed because seal-python's
#: CKKSEncoder.decode returns a numpy array (the wheel does not depend on it).
SEAL_REQUIREMENT = "seal-python>=4.4,<4.5"
VENV_REQUIREMENTS = [SEAL_REQUIREMENT, "numpy"]

#: Set when re-executing inside the venv, to avoid an exec loop.
_REEXEC_MARKER = "VEIL_BENCH_IN_VENV"

#: Fixed seed for the input vectors, so runs are comparable.
SEED = 0x5EA1

PRECISION_OP = "precision_log2_error"

#: Timed operations, in report order.
TIMED_OPS = [
    "encode",
    "encrypt_pk",
    "encrypt_sk",
    "decrypt",
    "add",
    "multiply_plain",
    "multiply+relin",
    "rescale",
    "rotate_1",
    "keygen_relin",
    "keygen_galois_1step",
]

#: degree -> (default moduli bit sizes, default number of runs)
STANDARD_CONFIGS: Dict[int, Tuple[List[int], int]] = {
    8192: ([60, 40, 40, 60], 20),
    16384: ([60] + [40] * 7 + [60], 10),
    32768: ([60] + [40] * 19 + [60], 5),
}

Results = Dict[str, float]  # op -> median microseconds (or log2 error)


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def die(message: str, code: int = 1) -> "NoReturn":  # type: ignore[name-defined]
    """Print an error to stderr and exit with a nonzero status."""
    print(f"he_vs_seal: error: {message}", file=sys.stderr)
    sys.exit(code)


def progress(message: str) -> None:
    """Progress/diagnostic output; goes to stderr so stdout stays clean."""
    print(f"[he_vs_seal] {message}", file=sys.stderr, flush=True)


def parse_moduli(text: str) -> List[int]:
    """Parse "60,40,40,60" or "60,40x7,60" into a list of bit sizes."""
    bits: List[int] = []
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        value, _, count = item.partition("x")
        try:
            v = int(value)
            n = int(count) if count else 1
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad modulus size {item!r} in {text!r}")
        if not 1 <= v <= 60 or n < 1:
            raise argparse.ArgumentTypeError(
                f"bad modulus size {item!r}: each prime must be 1..60 bits")
        bits.extend([v] * n)
    if len(bits) < 2:
        raise argparse.ArgumentTypeError("need at least two moduli (data + special prime)")
    return bits


def compact_moduli(bits: Sequence[int]) -> str:
    """Inverse of parse_moduli: [60,40,40,40,60] -> "60,40x3,60"."""
    parts: List[str] = []
    i = 0
    while i < len(bits):
        j = i
        while j < len(bits) and bits[j] == bits[i]:
            j += 1
        run = j - i
        parts.append(str(bits[i]) if run == 1 else
                     ",".join([str(bits[i])] * run) if run == 2 else
                     f"{bits[i]}x{run}")
        i = j
    return ",".join(parts)


def format_us(value: Optional[float]) -> str:
    """Format a median in microseconds."""
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cpu_model() -> str:
    """Best-effort CPU description for the report header."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------
# Virtualenv bootstrap
# --------------------------------------------------------------------------


def _venv_python() -> Path:
    if os.name == "nt":
        return VENV_DIR / "Scripts" / "python.exe"
    return VENV_DIR / "bin" / "python"


def _running_in_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV_DIR.resolve()
    except OSError:
        return False


_DEPS_CHECK = (
    "import importlib.metadata as m, sys\n"
    "import seal, numpy\n"
    "v = m.version('seal-python').split('.')\n"
    "sys.exit(0 if v[:2] == ['4', '4'] else 3)\n"
)


def ensure_venv_and_reexec() -> None:
    """Create bench/.venv with seal-python if needed, then re-exec inside it.

    Returns only when already running inside the venv.
    """
    if _running_in_venv():
        return
    if os.environ.get(_REEXEC_MARKER):
        die(f"re-executing inside {VENV_DIR} did not work (sys.prefix is {sys.prefix})")

    py = _venv_python()
    if not py.exists():
        progress(f"creating virtualenv {VENV_DIR}")
        proc = subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)],
                              stdout=sys.stderr)
        if proc.returncode != 0 or not py.exists():
            die(f"`{sys.executable} -m venv {VENV_DIR}` failed; on Debian/Ubuntu "
                "install the python3-venv package (and remove a half-made bench/.venv)")

    if subprocess.run([str(py), "-c", _DEPS_CHECK], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        progress(f"installing {' '.join(VENV_REQUIREMENTS)} into {VENV_DIR}")
        proc = subprocess.run(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check",
             "--quiet", *VENV_REQUIREMENTS],
            stdout=sys.stderr)
        if proc.returncode != 0:
            die(f"could not install {SEAL_REQUIREMENT} (and numpy) from PyPI into {VENV_DIR}; "
                "seal-python ships binary wheels for CPython 3.8-3.14 on x86-64/arm64 only")
        if subprocess.run([str(py), "-c", _DEPS_CHECK]).returncode != 0:
            die(f"{SEAL_REQUIREMENT} was installed but `import seal` still fails in {VENV_DIR}")

    env = dict(os.environ, **{_REEXEC_MARKER: "1"})
    argv = [str(py), str(SCRIPT), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # os.exec* does not replace the process on Windows
        sys.exit(subprocess.call(argv, env=env))
    os.execve(str(py), argv, env)


# --------------------------------------------------------------------------
# SEAL measurements
# --------------------------------------------------------------------------


def _median_us(op: Callable[[], object], runs: int) -> float:
    """Median wall time of `op()` in microseconds, after one untimed warm-up.

    The garbage collector is paused so it cannot fire inside a timed call;
    objects returned by `op` are dropped (and freed) inside the timed region,
    as a native API would free its temporaries.
    """
    op()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            op()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return statistics.median(samples) / 1000.0


def seal_versions() -> Tuple[str, str]:
    """(seal-python version, Microsoft SEAL library version or "?").

    The binding only exposes its own version; the C++ library's major.minor is
    read from the header of a serialized object (SEALHeader: magic 0xA15E,
    header size, version major, version minor, ...).
    """
    import importlib.metadata
    import struct

    import seal

    binding = getattr(seal, "__version__", None) or importlib.metadata.version("seal-python")
    library = "?"
    try:
        parms = seal.EncryptionParameters(seal.scheme_type.ckks)
        parms.set_poly_modulus_degree(1024)
        parms.set_coeff_modulus(seal.CoeffModulus.Create(1024, [27]))
        blob = parms.to_bytes()
        magic, _size, major, minor = struct.unpack_from("<HBBB", blob)
        if magic == 0xA15E:
            library = f"{major}.{minor}"
    except Exception:  # pragma: no cover - purely informational
        pass
    return binding, library


def run_seal(degree: int, moduli: Sequence[int], scale_bits: int, runs: int) -> Results:
    """Measure the SEAL CKKS ops; returns op -> median µs (+ precision)."""
    import numpy as np
    import seal

    scale = 2.0 ** scale_bits
    parms = seal.EncryptionParameters(seal.scheme_type.ckks)
    parms.set_poly_modulus_degree(degree)
    try:
        parms.set_coeff_modulus(seal.CoeffModulus.Create(degree, list(moduli)))
    except Exception as exc:
        die(f"SEAL rejected moduli {compact_moduli(moduli)} for N={degree}: {exc}")
    context = seal.SEALContext(parms)  # expands the modulus chain, 128-bit security check
    if not context.parameters_set():
        die(f"SEAL rejected N={degree}, moduli {compact_moduli(moduli)}: "
            f"{context.parameter_error_message()}")
    if len(moduli) < 3:
        die("need at least one rescaling prime (three or more moduli) for rescale")

    progress(f"SEAL N={degree} moduli={compact_moduli(moduli)}: key generation")
    keygen = seal.KeyGenerator(context)
    secret_key = keygen.secret_key()
    public_key = keygen.create_public_key()
    relin_keys = keygen.create_relin_keys()
    galois_keys = seal.GaloisKeys()
    # NB: despite the stub's parameter name `galois_elts`, seal-python treats this
    # list as rotation *steps* (SEAL's create_galois_keys(steps)): [1] -> element 3.
    keygen.create_galois_keys([1], galois_keys)

    encoder = seal.CKKSEncoder(context)
    encryptor = seal.Encryptor(context, public_key, secret_key)
    decryptor = seal.Decryptor(context, secret_key)
    evaluator = seal.Evaluator(context)

    slots = encoder.slot_count()
    rng = np.random.default_rng(SEED)
    x = rng.uniform(-1.0, 1.0, slots)
    y = rng.uniform(-1.0, 1.0, slots)
    pt_x = encoder.encode(x, scale)
    pt_y = encoder.encode(y, scale)
    ct_x = encryptor.encrypt(pt_x)
    ct_y = encryptor.encrypt(pt_y)
    product = evaluator.multiply(ct_x, ct_y)
    evaluator.relinearize_inplace(product, relin_keys)

    def multiply_relin() -> object:
        prod = evaluator.multiply(ct_x, ct_y)
        evaluator.relinearize_inplace(prod, relin_keys)
        return prod

    def keygen_galois() -> object:
        keys = seal.GaloisKeys()
        keygen.create_galois_keys([1], keys)
        return keys

    ops: List[Tuple[str, Callable[[], object]]] = [
        ("encode", lambda: encoder.encode(x, scale)),
        ("encrypt_pk", lambda: encryptor.encrypt(pt_x)),
    ]
    if hasattr(encryptor, "encrypt_symmetric"):
        ops.append(("encrypt_sk", lambda: encryptor.encrypt_symmetric(pt_x)))
    ops += [
        ("decrypt", lambda: decryptor.decrypt(ct_x)),
        ("add", lambda: evaluator.add(ct_x, ct_y)),
        ("multiply_plain", lambda: evaluator.multiply_plain(ct_x, pt_y)),
        ("multiply+relin", multiply_relin),
        ("rescale", lambda: evaluator.rescale_to_next(product)),
        ("rotate_1", lambda: evaluator.rotate_vector(ct_x, 1, galois_keys)),
        ("keygen_relin", lambda: keygen.create_relin_keys()),
        ("keygen_galois_1step", keygen_galois),
    ]

    results: Results = {}
    for name, op in ops:
        progress(f"SEAL N={degree}: {name} x{runs}")
        results[name] = _median_us(op, runs)

    # Precision: one multiply + relinearize + rescale, decrypt, decode, compare.
    rescaled = evaluator.rescale_to_next(product)
    decoded = np.asarray(encoder.decode(decryptor.decrypt(rescaled)))[:slots]
    max_err = float(np.max(np.abs(decoded - x * y)))
    results[PRECISION_OP] = math.log2(max_err) if max_err > 0 else float("-inf")
    return results


# --------------------------------------------------------------------------
# Veil measurements
# --------------------------------------------------------------------------


def resolve_veil(path: Optional[str]) -> Path:
    """Locate the veil binary, building the default one if it is missing."""
    if path:
        veil = Path(path).expanduser().resolve()
        if not veil.is_file():
            die(f"--veil {path}: no such file")
        return veil

    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or (REPO_ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = REPO_ROOT / target_dir
    veil = target_dir / "release" / ("veil.exe" if os.name == "nt" else "veil")
    if not veil.is_file():
        progress(f"{veil} not found; running `cargo build --release -p veil-cli`")
        try:
            proc = subprocess.run(["cargo", "build", "--release", "-p", "veil-cli"],
                                  cwd=REPO_ROOT, stdout=sys.stderr)
        except FileNotFoundError:
            die("cargo not found; build veil first or pass --veil PATH")
        if proc.returncode != 0:
            die(f"`cargo build --release -p veil-cli` failed (exit {proc.returncode})")
        if not veil.is_file():
            die(f"cargo build succeeded but {veil} does not exist; pass --veil PATH")
    return veil


def veil_version(veil: Path) -> str:
    """`veil --version`, or "" if that does not work."""
    try:
        proc = subprocess.run([str(veil), "--version"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = proc.stdout.strip().splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else ""


def run_veil(veil: Path, degree: int, moduli: Sequence[int], scale_bits: int,
             runs: int) -> Results:
    """Run `veil he bench ... --json` single-threaded and parse its JSON lines."""
    cmd = [str(veil), "he", "bench",
           "--degree", str(degree),
           "--moduli", ",".join(str(b) for b in moduli),
           "--scale-bits", str(scale_bits),
           "--runs", str(runs),
           "--json"]
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    progress(f"Veil N={degree}: RAYON_NUM_THREADS=1 {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    except OSError as exc:
        die(f"could not run {veil}: {exc}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        die(f"veil he bench failed (exit {proc.returncode}):\n  $ {' '.join(cmd)}\n{tail}")

    results: Results = {}
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("op"), str):
            continue
        op = record["op"]
        value = record.get("value") if op == PRECISION_OP else record.get("median_us")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if record.get("degree") not in (None, degree):
            progress(f"warning: veil reported degree {record['degree']} for {op}, "
                     f"expected {degree}")
        results[op] = float(value)
    if not results:
        die(f"veil he bench printed no JSON results:\n  $ {' '.join(cmd)}\n"
            + "\n".join(proc.stdout.strip().splitlines()[-10:]))
    return results


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


class ConfigResult:
    """Parameters and measurements for one configuration."""

    def __init__(self, degree: int, moduli: Sequence[int], scale_bits: int, runs: int,
                 seal: Results, veil: Optional[Results]):
        self.degree = degree
        self.moduli = list(moduli)
        self.scale_bits = scale_bits
        self.runs = runs
        self.seal = seal
        self.veil = veil

    def params_line(self) -> str:
        return (f"N={self.degree}, moduli {compact_moduli(self.moduli)} "
                f"({sum(self.moduli)} bits, {len(self.moduli)} primes), "
                f"scale 2^{self.scale_bits}, median of {self.runs} runs")

    def rows(self) -> List[Tuple[str, str, str, str]]:
        """(op, SEAL, Veil, Veil/SEAL) strings, canonical order then extras."""
        veil = self.veil or {}
        names = [op for op in TIMED_OPS if op in self.seal or op in veil]
        names += sorted(op for op in veil if op not in TIMED_OPS and op != PRECISION_OP)
        rows = []
        for op in names:
            s, v = self.seal.get(op), veil.get(op)
            ratio = f"{v / s:.2f}x" if s and v is not None else "-"
            rows.append((op, format_us(s), format_us(v), ratio))
        if PRECISION_OP in self.seal or PRECISION_OP in veil:
            s, v = self.seal.get(PRECISION_OP), veil.get(PRECISION_OP)
            delta = (f"{v - s:+.1f} bits"
                     if s is not None and v is not None and math.isfinite(s) and math.isfinite(v)
                     else "-")
            rows.append((PRECISION_OP,
                         "-" if s is None else f"{s:.1f}",
                         "-" if v is None else f"{v:.1f}",
                         delta))
        return rows


def header_lines(info: Dict[str, str]) -> List[Tuple[str, str]]:
    keys = ("date", "SEAL", "Veil", "threads", "host")
    return [(key, info[key]) for key in keys if info.get(key)]


FOOTNOTE = ("Times are medians in microseconds, single-threaded; Veil/SEAL < 1 means Veil is "
            "faster. precision_log2_error is log2 of the max abs error after one "
            "multiply+relin+rescale of two vectors in [-1,1] (more negative is better); its "
            "last column is Veil minus SEAL in bits.")


def render_text(results: List[ConfigResult], info: Dict[str, str], with_veil: bool) -> str:
    title = "Veil vs Microsoft SEAL - CKKS" if with_veil else "Microsoft SEAL - CKKS"
    out = [title, ""]
    width = max(len(k) for k, _ in header_lines(info))
    out += [f"{k + ':':<{width + 1}} {v}" for k, v in header_lines(info)]
    for res in results:
        out += ["", res.params_line(), ""]
        head = ("op", "SEAL (us)", "Veil (us)", "Veil/SEAL")
        rows = res.rows()
        if not with_veil:
            head, rows = head[:2], [r[:2] for r in rows]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

        def fmt(row: Sequence[str]) -> str:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
            return "  ".join(cells).rstrip()

        out.append(fmt(head))
        out.append("  ".join("-" * w for w in widths))
        out += [fmt(r) for r in rows]
    out += ["", FOOTNOTE if with_veil else
            "Times are medians in microseconds, single-threaded."]
    return "\n".join(out)


def render_markdown(results: List[ConfigResult], info: Dict[str, str], with_veil: bool) -> str:
    out = [f"- **{k}**: {v}" for k, v in header_lines(info)]
    for res in results:
        out += ["", f"### N = {res.degree}", "", res.params_line(), ""]
        if with_veil:
            out += ["| op | SEAL (µs) | Veil (µs) | Veil/SEAL |", "|---|---:|---:|---:|"]
            out += [f"| `{op}` | {s} | {v} | {r} |" for op, s, v, r in res.rows()]
        else:
            out += ["| op | SEAL (µs) |", "|---|---:|"]
            out += [f"| `{op}` | {s} |" for op, s, _v, _r in res.rows()]
    out += ["", FOOTNOTE if with_veil else "Times are medians in microseconds, single-threaded."]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="he_vs_seal.py",
        description="Benchmark Microsoft SEAL (CKKS, via seal-python) against Veil.",
        epilog="The first run creates bench/.venv and installs seal-python 4.4.x into it.")
    parser.add_argument("--degree", type=int, default=None,
                        help="poly modulus degree N (default 8192)")
    parser.add_argument("--moduli", type=parse_moduli, default=None,
                        help="prime bit sizes, e.g. 60,40,40,60 or 60,40x7,60 "
                             "(default depends on --degree)")
    parser.add_argument("--scale-bits", type=int, default=40,
                        help="CKKS scale is 2^BITS (default 40)")
    parser.add_argument("--runs", type=int, default=None,
                        help="timed runs per op (default 20/10/5 for N=8192/16384/32768)")
    parser.add_argument("--veil", metavar="PATH", default=None,
                        help="veil binary (default target/release/veil, built if missing)")
    parser.add_argument("--all", action="store_true",
                        help="run N=8192, 16384 and 32768 with their default moduli")
    parser.add_argument("--markdown", action="store_true",
                        help="print markdown tables (for docs/benchmarks.md)")
    # Hidden: measure SEAL only (no veil binary needed).
    parser.add_argument("--seal-only", action="store_true", help=argparse.SUPPRESS)
    return parser


def configurations(args: argparse.Namespace,
                   parser: argparse.ArgumentParser) -> List[Tuple[int, List[int], int]]:
    """[(degree, moduli, runs)] to run, after validating the arguments."""
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if not 1 <= args.scale_bits <= 60:
        parser.error("--scale-bits must be between 1 and 60")
    if args.all:
        if args.degree is not None or args.moduli is not None:
            parser.error("--all runs the standard configurations; drop --degree/--moduli")
        return [(n, moduli, args.runs or runs)
                for n, (moduli, runs) in STANDARD_CONFIGS.items()]

    degree = 8192 if args.degree is None else args.degree
    if degree < 1024 or degree > 32768 or degree & (degree - 1):
        parser.error("--degree must be a power of two between 1024 and 32768")
    default_moduli, default_runs = STANDARD_CONFIGS.get(degree, (None, 10))
    moduli = args.moduli or default_moduli
    if moduli is None:
        parser.error(f"no default moduli for --degree {degree}; pass --moduli")
    return [(degree, moduli, args.runs or default_runs)]


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    configs = configurations(args, parser)

    ensure_venv_and_reexec()
    # numpy's OpenBLAS starts a thread pool on import; keep the SEAL side
    # strictly single-threaded (the timed code never calls BLAS anyway).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import numpy  # noqa: F401  (needed by seal-python's decode)
        import seal  # noqa: F401
    except ImportError as exc:
        die(f"cannot import seal-python inside {sys.prefix}: {exc}; "
            f"delete {VENV_DIR} and try again")

    binding, library = seal_versions()
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "SEAL": f"seal-python {binding} (Microsoft SEAL {library})",
        "threads": ("1 (SEAL is single-threaded)" if args.seal_only else
                    "1 (SEAL is single-threaded; Veil runs with RAYON_NUM_THREADS=1)"),
        "host": f"{cpu_model()}, {os.cpu_count()} logical CPUs, "
                f"Python {platform.python_version()}",
    }

    veil: Optional[Path] = None
    if not args.seal_only:
        veil = resolve_veil(args.veil)
        version = veil_version(veil)
        info["Veil"] = f"{version} ({veil})" if version else str(veil)

    results: List[ConfigResult] = []
    for degree, moduli, runs in configs:
        # Veil first, so a broken binary is reported before the (slow) SEAL side.
        veil_results = (run_veil(veil, degree, moduli, args.scale_bits, runs)
                        if veil is not None else None)
        try:
            seal_results = run_seal(degree, moduli, args.scale_bits, runs)
        except (ValueError, RuntimeError, MemoryError) as exc:  # SEAL's C++ exceptions
            die(f"SEAL failed for N={degree}, moduli {compact_moduli(moduli)}, "
                f"scale 2^{args.scale_bits}: {exc}")
        results.append(ConfigResult(degree, moduli, args.scale_bits, runs,
                                    seal_results, veil_results))

    render = render_markdown if args.markdown else render_text
    print(render(results, info, with_veil=veil is not None))


if __name__ == "__main__":
    main()
