#!/usr/bin/env python3
"""Encrypted ONNX inference, side by side: TenSEAL (CKKS) vs Veil.

Usage
-----
    python3 bench/ml_vs_tenseal.py                          # logreg, mlp, cnn; 360 test images
    python3 bench/ml_vs_tenseal.py --images 60 --markdown   # what docs/benchmarks.md records
    python3 bench/ml_vs_tenseal.py --models cnn --images 20

Options
-------
    --models LIST       comma separated subset of logreg,mlp,cnn (default all three)
    --images K          the first K of the 360 digits test images, used by both sides
                        (default 360; TenSEAL needs 2.5-4.5 s per CNN image on 2 cores)
    --tenseal-threads T TenSEAL's thread pool (default: os.cpu_count(), which is also
                        TenSEAL's own default)
    --veil-example PATH run this prebuilt he_digits binary instead of `cargo run --release
                        -p veil-ml --example he_digits` here (e.g. one built from a clean
                        checkout while this tree is being edited)
    --markdown          print markdown tables (for docs/benchmarks.md)

What it does
------------
On first use the script creates a virtualenv at bench/.venv-tenseal (next to this file),
installs ``tenseal`` 0.3.x, ``onnx`` and ``numpy`` into it from PyPI, and re-executes itself
with the venv's interpreter, so a plain ``python3 bench/ml_vs_tenseal.py`` is all a user needs.

The models are the committed scikit-learn-digits models in crates/veil-ml/models
(see train.py there): logreg = Gemm 64->10; mlp = Gemm 64->32, x*x, Gemm 32->10;
cnn = Conv 1->4 3x3 (8x8 -> 4x6x6), x*x, Flatten, Gemm 144->32, x*x, Gemm 32->10.
Weights are read from the ONNX files with ``onnx.numpy_helper``; the plaintext reference
is a numpy forward pass of the same weights. Test images come from digits_test.csv
(pixels / 16).

TenSEAL side (one image per query, the way its tutorials do it), following "Tutorial 4 -
Encrypted Convolution on MNIST": a CKKS context with relinearization and Galois keys; the
tutorial's chain (N = 8192, moduli [31, 26x6, 31], scale 2^26) is replaced per model by the
smallest chain that computes it correctly (see TS_PARAMS below: logreg N=8192 [60,40,60]
2^40; mlp N=8192 [50,35x3,50] 2^35; cnn N=16384 [60,40x6,60] 2^40, because this CNN's
logits, up to |168|, do not fit the tutorial chain's last 31-bit prime at scale 2^26).
  * cnn: the client sends ``ts.im2col_encoding(ctx, image, 3, 3, 1)``; the server computes
    ``conv2d_im2col(kernel, windows) + bias`` per output channel, ``pack_vectors``,
    ``square_``, ``mm(fc1^T) + b1``, ``square_``, ``mm(fc2^T) + b2``. TenSEAL's windows come
    out row-major and pack_vectors concatenates the channels, i.e. ONNX's Flatten order
    (channel, row, col); this is checked (max abs error of the decrypted logits against numpy
    on the first images) before anything is timed.
  * logreg / mlp: ``ts.ckks_vector(ctx, x)``, ``mm(W^T) + b`` (``square_`` in between for
    the MLP).
The client/server split is done through bytes, like Veil's example: the server holds a
context deserialized from the public serialization (no secret key) and the query bytes.

Measured per model (TenSEAL):
    public context  len(ctx.serialize(save_secret_key=False, save_galois_keys=True,
                    save_relin_keys=True)) - what the server needs
    query           len(enc_x.serialize()) for one image
    encrypt         encode + encrypt + serialize one image
    server          deserialize the query, evaluate up to the encrypted logits, serialize
                    the answer (the same span Veil's example times)
    decrypt         deserialize the answer, decrypt + decode
    agreement       fraction of images whose decrypted argmax equals the numpy argmax
    accuracy        fraction of images classified correctly (encrypted)
TenSEAL's thread pool is set at context creation (``n_threads``, default the CPU count);
the context does not expose it afterwards, so the report prints the value passed.

Veil side: ``cargo run --release -q -p veil-ml --example he_digits -- MODEL single|batch K``
(or ``--veil-example PATH MODEL single|batch K``)
(RAYON_NUM_THREADS is left as found, i.e. all cores unless the caller set it), which
prints one JSON line per run with the same quantities; "batch" (throughput packing) also
reports the images/s of a full batch of N/2 images.

Reported per model: server ms per image for TenSEAL, Veil single (latency packing) and the
ratio TenSEAL/Veil (speedup), query kB, public context MB, agreement, accuracy; for Veil
batch the server ms per image of that query and the full-batch images/s.

Progress goes to stderr; the report goes to stdout. Exit status is nonzero when the venv
cannot be made, TenSEAL's output disagrees with the numpy forward pass, or the Veil example
fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

SCRIPT = Path(__file__).resolve()
BENCH_DIR = SCRIPT.parent
REPO_ROOT = BENCH_DIR.parent
VENV_DIR = BENCH_DIR / ".venv-tenseal"
MODELS_DIR = REPO_ROOT / "crates" / "veil-ml" / "models"
VENV_REQUIREMENTS = ["tenseal>=0.3,<0.4", "onnx", "numpy"]
_REEXEC_MARKER = "VEIL_BENCH_IN_TENSEAL_VENV"
ALL_MODELS = ["logreg", "mlp", "cnn"]

#: TenSEAL parameters per model: (N, coefficient moduli bits, scale bits). Tutorial 4's chain
#: (N=8192, [31, 26x6, 31], 2^26) is the starting point; each model gets the smallest chain
#: that runs it correctly (TenSEAL's speed and key sizes grow with the number of primes):
#:   logreg  one mm: [60, 40, 60] at 2^40 (the tutorial chain also works, ~10x slower).
#:   mlp     mm, square, mm need three levels ([60, 40, 40, 60] fails with "scale out of
#:           bounds"); [50, 35x3, 50] at 2^35 fits N=8192's 218-bit budget.
#:   cnn     six levels; the logits reach |168| > 2^(31-26), so the tutorial chain wraps
#:           around (max error 46), and no six-level chain under 218 bits keeps both the
#:           range and the precision (25- and 24-bit scales: errors 12 and 19), hence
#:           N=16384, [60, 40x6, 60] at 2^40.
TS_PARAMS = {
    "logreg": (8192, [60, 40, 60], 40),
    "mlp": (8192, [50, 35, 35, 35, 50], 35),
    "cnn": (16384, [60, 40, 40, 40, 40, 40, 40, 60], 40),
}
#: Images checked against numpy (max abs logit error) before timing, and the tolerated
#: error relative to the largest |logit| of those images (a wrong layout gives ~100%).
CHECK_IMAGES = 5
CHECK_TOLERANCE = 0.05


def die(message: str, code: int = 1) -> "NoReturn":  # type: ignore[name-defined]
    print(f"ml_vs_tenseal: error: {message}", file=sys.stderr)
    sys.exit(code)


def progress(message: str) -> None:
    print(f"[ml_vs_tenseal] {message}", file=sys.stderr, flush=True)


def cpu_model() -> str:
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

_DEPS_CHECK = (
    "import importlib.metadata as m, sys\n"
    "import tenseal, onnx, numpy\n"
    "v = m.version('tenseal').split('.')\n"
    "sys.exit(0 if v[:2] == ['0', '3'] else 3)\n"
)


def _venv_python() -> Path:
    return VENV_DIR / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _running_in_venv() -> bool:
    try:
        return Path(sys.prefix).resolve() == VENV_DIR.resolve()
    except OSError:
        return False


def ensure_venv_and_reexec() -> None:
    """Create bench/.venv-tenseal with tenseal, onnx, numpy if needed; re-exec inside it."""
    if _running_in_venv():
        return
    if os.environ.get(_REEXEC_MARKER):
        die(f"re-executing inside {VENV_DIR} did not work (sys.prefix is {sys.prefix})")
    py = _venv_python()
    if not py.exists():
        progress(f"creating virtualenv {VENV_DIR}")
        proc = subprocess.run([sys.executable, "-m", "venv", str(VENV_DIR)], stdout=sys.stderr)
        if proc.returncode != 0 or not py.exists():
            die(f"`{sys.executable} -m venv {VENV_DIR}` failed; on Debian/Ubuntu install "
                "python3-venv (and remove a half-made bench/.venv-tenseal)")
    if subprocess.run([str(py), "-c", _DEPS_CHECK], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        progress(f"installing {' '.join(VENV_REQUIREMENTS)} into {VENV_DIR}")
        proc = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                               "--quiet", *VENV_REQUIREMENTS], stdout=sys.stderr)
        if proc.returncode != 0:
            die(f"could not install {' '.join(VENV_REQUIREMENTS)} from PyPI into {VENV_DIR} "
                "(tenseal ships wheels for x86-64 CPython up to 3.11 or so)")
        if subprocess.run([str(py), "-c", _DEPS_CHECK]).returncode != 0:
            die(f"tenseal was installed but `import tenseal` still fails in {VENV_DIR}")
    env = dict(os.environ, **{_REEXEC_MARKER: "1"})
    argv = [str(py), str(SCRIPT), *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":
        sys.exit(subprocess.call(argv, env=env))
    os.execve(str(py), argv, env)


# --------------------------------------------------------------------------
# Models and data (numpy)
# --------------------------------------------------------------------------


def load_data(k: int):
    import numpy as np
    rows = (MODELS_DIR / "digits_test.csv").read_text().strip().splitlines()[1:]
    arr = np.array([[int(v) for v in r.split(",")] for r in rows[:k]], dtype=np.int64)
    return arr[:, 1:].astype(np.float64) / 16.0, arr[:, 0]


def load_weights(model: str) -> Dict[str, "object"]:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(MODELS_DIR / f"{model}.onnx")).graph
    init = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    ops = [n.op_type for n in graph.node]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    for n in gemms:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("transB", 0) != 1 or attrs.get("alpha", 1.0) != 1.0 \
                or attrs.get("beta", 1.0) != 1.0:
            die(f"{model}.onnx: unexpected Gemm attributes {attrs}")
    w = {"fc": [(init[n.input[1]], init[n.input[2]]) for n in gemms]}  # weight [out, in]
    expected = {"logreg": ["Gemm"], "mlp": ["Gemm", "Mul", "Gemm"],
                "cnn": ["Conv", "Mul", "Flatten", "Gemm", "Mul", "Gemm"]}[model]
    if ops != expected:
        die(f"{model}.onnx: graph {ops}, expected {expected}")
    if model == "cnn":
        conv = graph.node[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
        if list(attrs.get("strides", [1, 1])) != [1, 1] or any(attrs.get("pads", [0] * 4)) \
                or attrs.get("group", 1) != 1:
            die(f"cnn.onnx: unexpected Conv attributes {attrs}")
        w["conv"] = (init[conv.input[1]], init[conv.input[2]])  # [4,1,3,3], [4]
    return w


def plain_forward(model: str, w, x):
    """numpy forward pass; x is [K, 64] in [0, 1]; returns logits [K, 10]."""
    import numpy as np
    if model == "cnn":
        kern, bias = w["conv"]
        c_out, _, kh, kw = kern.shape
        img = x.reshape(-1, 8, 8)
        oh, ow = 8 - kh + 1, 8 - kw + 1
        out = np.zeros((x.shape[0], c_out, oh, ow))
        for c in range(c_out):
            for r in range(oh):
                for s in range(ow):
                    out[:, c, r, s] = (img[:, r:r + kh, s:s + kw] * kern[c, 0]).sum(axis=(1, 2))
            out[:, c] += bias[c]
        h = (out * out).reshape(x.shape[0], -1)  # Flatten: (channel, row, col)
    else:
        h = x
    for i, (wt, b) in enumerate(w["fc"]):
        if i > 0:
            h = h * h
        h = h @ wt.T + b
    return h


# --------------------------------------------------------------------------
# TenSEAL
# --------------------------------------------------------------------------


class TenSealModel:
    def __init__(self, model: str, w, n_threads: int, degree: int, moduli: List[int],
                 scale_bits: int):
        import tenseal as ts
        self.ts = ts
        self.model = model
        t = time.perf_counter()
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, degree, coeff_mod_bit_sizes=moduli,
                         n_threads=n_threads)
        ctx.global_scale = 2 ** scale_bits
        ctx.generate_galois_keys()
        self.keygen_s = time.perf_counter() - t
        self.client = ctx
        self.public = ctx.serialize(save_public_key=True, save_secret_key=False,
                                    save_galois_keys=True, save_relin_keys=True)
        self.server = ts.context_from(self.public, n_threads=n_threads)
        if self.server.has_secret_key():
            die("TenSEAL's public context still has the secret key")
        self.fc = [(wt.T.tolist(), b.tolist()) for wt, b in w["fc"]]
        if model == "cnn":
            kern, bias = w["conv"]
            self.kernel_shape = kern.shape[2:]
            self.kernels = [kern[c, 0].tolist() for c in range(kern.shape[0])]
            self.conv_bias = [float(v) for v in bias]
            # TenSEAL's conv2d_im2col yields the windows row-major and pack_vectors
            # concatenates channels: index c*36 + r*6 + s, which is ONNX's Flatten order, so
            # fc1's columns need no permutation (checked end to end by check()).

    def encrypt(self, x) -> bytes:
        ts = self.ts
        if self.model == "cnn":
            kh, kw = self.kernel_shape
            enc, windows = ts.im2col_encoding(self.client, x.reshape(8, 8).tolist(), kh, kw, 1)
            self.windows = windows
        else:
            enc = ts.ckks_vector(self.client, x.tolist())
        return enc.serialize()

    def evaluate(self, query: bytes) -> bytes:
        ts = self.ts
        enc = ts.ckks_vector_from(self.server, query)
        if self.model == "cnn":
            chans = [enc.conv2d_im2col(k, self.windows) + b
                     for k, b in zip(self.kernels, self.conv_bias)]
            enc = ts.CKKSVector.pack_vectors(chans)
            enc.square_()
        for i, (wt, b) in enumerate(self.fc):
            if i > 0:
                enc.square_()
            enc = enc.mm(wt) + b
        return enc.serialize()

    def decrypt(self, answer: bytes):
        import numpy as np
        return np.array(self.ts.ckks_vector_from(self.client, answer).decrypt())


def run_tenseal(model: str, w, xs, labels, reference, n_threads: int) -> Dict[str, float]:
    import numpy as np
    degree, moduli, scale_bits = TS_PARAMS[model]
    progress(f"TenSEAL {model}: context (N={degree}, moduli {moduli}, scale 2^{scale_bits}, "
             f"{n_threads} threads)")
    m = TenSealModel(model, w, n_threads, degree, moduli, scale_bits)
    # Correctness check before timing (also checks the CNN's channel/window layout).
    worst = 0.0
    k = min(CHECK_IMAGES, len(xs))
    for i in range(k):
        out = m.decrypt(m.evaluate(m.encrypt(xs[i])))
        worst = max(worst, float(np.abs(out - reference[i]).max()))
    scale = float(np.abs(reference[:k]).max())
    progress(f"TenSEAL {model}: max abs logit error on {k} images = {worst:.4g} "
             f"(largest |logit| {scale:.4g})")
    if not worst <= CHECK_TOLERANCE * scale:
        die(f"TenSEAL {model}: decrypted logits differ from numpy by {worst:.4g} "
            f"(largest |logit| {scale:.4g})")
    enc_s = srv_s = dec_s = 0.0
    query_bytes = answer_bytes = 0
    agree = correct = 0
    max_err = 0.0
    t_all = time.perf_counter()
    for i, x in enumerate(xs):
        t = time.perf_counter()
        q = m.encrypt(x)
        t1 = time.perf_counter()
        a = m.evaluate(q)
        t2 = time.perf_counter()
        out = m.decrypt(a)
        t3 = time.perf_counter()
        enc_s += t1 - t
        srv_s += t2 - t1
        dec_s += t3 - t2
        query_bytes, answer_bytes = len(q), len(a)
        pred = int(np.argmax(out))
        agree += pred == int(np.argmax(reference[i]))
        correct += pred == int(labels[i])
        max_err = max(max_err, float(np.abs(out - reference[i]).max()))
        if (i + 1) % 10 == 0 or i + 1 == len(xs):
            progress(f"TenSEAL {model}: {i + 1}/{len(xs)} images, "
                     f"{(time.perf_counter() - t_all) / (i + 1):.3f} s/image")
    n = len(xs)
    return {
        "degree": degree, "moduli_bits": moduli, "scale_bits": scale_bits,
        "keygen_s": m.keygen_s, "public_bytes": len(m.public), "query_bytes": query_bytes,
        "answer_bytes": answer_bytes, "encrypt_s_per_image": enc_s / n,
        "server_s_per_image": srv_s / n, "decrypt_s_per_image": dec_s / n,
        "agreement": agree / n, "accuracy": correct / n, "max_abs_error": max_err,
    }


# --------------------------------------------------------------------------
# Veil
# --------------------------------------------------------------------------


def run_veil(model: str, packing: str, images: int,
             example: Optional[str] = None) -> Dict[str, object]:
    if example:
        cmd = [example, model, packing, str(images)]
    else:
        cmd = ["cargo", "run", "--release", "-q", "-p", "veil-ml", "--example", "he_digits",
               "--", model, packing, str(images)]
    progress(f"Veil {model} {packing}: {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        die(f"`{' '.join(cmd)}` failed with status {proc.returncode}")
    for line in reversed(proc.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    die(f"`{' '.join(cmd)}` printed no JSON line")


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def model_rows(ts_r, single, batch) -> List[List[str]]:
    def ms(v):
        return f"{v * 1e3:,.1f}" if v * 1e3 >= 10 else f"{v * 1e3:.2f}"

    def kb(v):
        return f"{v / 1e3:,.1f}"

    def mb(v):
        return f"{v / 1e6:.2f}"

    def speedup(v):
        return f"{ts_r['server_s_per_image'] / v:,.1f}x"

    rows = [["", "server ms/image", "speedup vs TenSEAL", "query kB", "public ctx MB",
             "agreement", "accuracy", "full batch images/s"]]
    rows.append(["TenSEAL", ms(ts_r["server_s_per_image"]), "1.0x", kb(ts_r["query_bytes"]),
                 mb(ts_r["public_bytes"]), f"{ts_r['agreement']:.4f}",
                 f"{ts_r['accuracy']:.4f}", "-"])
    for name, r in (("Veil single", single), ("Veil batch", batch)):
        if r is None:
            continue
        fb = r.get("full_batch_images_per_s")
        rows.append([name, ms(r["server_s_per_image"]), speedup(r["server_s_per_image"]),
                     kb(r["query_bytes"]) + (f" ({r['images']} images)"
                                             if r["packing"] == "batch" else ""),
                     mb(r["public_bytes"]), f"{r['agreement']:.4f}", f"{r['accuracy']:.4f}",
                     f"{fb:,.0f}" if fb else "-"])
    return rows


def detail_line(model, ts_r, single, batch) -> List[str]:
    parts = [f"TenSEAL N={ts_r['degree']} moduli {ts_r['moduli_bits']} scale "
             f"2^{ts_r['scale_bits']}, encrypt {ts_r['encrypt_s_per_image'] * 1e3:.2f} ms, decrypt "
             f"{ts_r['decrypt_s_per_image'] * 1e3:.2f} ms, answer "
             f"{ts_r['answer_bytes'] / 1e3:.1f} kB, keygen {ts_r['keygen_s']:.2f} s, "
             f"max |logit error| {ts_r['max_abs_error']:.3g}, plain (numpy) accuracy "
             f"{ts_r['plain_accuracy']:.4f}"]
    for name, r in (("Veil single", single), ("Veil batch", batch)):
        if r is None:
            continue
        parts.append(f"{name} N={r['degree']} moduli {r['moduli_bits']} scale 2^{r['scale_bits']}"
                     f" depth {r['depth']} galois keys {r['galois_keys']}, encrypt "
                     f"{r['encrypt_s_per_image'] * 1e3:.3f} ms, decrypt "
                     f"{r['decrypt_s_per_image'] * 1e3:.3f} ms, answer "
                     f"{r['answer_bytes'] / 1e3:.1f} kB, plain accuracy {r['plain_accuracy']:.4f}")
    return parts


def render(results, info, markdown: bool) -> str:
    out: List[str] = []
    if markdown:
        for k, v in info.items():
            out.append(f"- {k}: {v}")
    else:
        for k, v in info.items():
            out.append(f"{k + ':':<18} {v}")
    for model, ts_r, single, batch in results:
        rows = model_rows(ts_r, single, batch)
        out.append("")
        out.append(f"### {model}" if markdown else f"== {model} ==")
        out.append("")
        if markdown:
            out.append("| " + " | ".join(rows[0]) + " |")
            out.append("|" + "|".join(["---"] + ["---:"] * (len(rows[0]) - 1)) + "|")
            for r in rows[1:]:
                out.append("| " + " | ".join(r) + " |")
        else:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            for r in rows:
                out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                     for i, (c, w) in enumerate(zip(r, widths))))
        out.append("")
        for line in detail_line(model, ts_r, single, batch):
            out.append(("- " if markdown else "  ") + line)
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ml_vs_tenseal.py",
        description="Encrypted ONNX inference (digits logreg/mlp/cnn): TenSEAL vs Veil.",
        epilog="The first run creates bench/.venv-tenseal and installs tenseal, onnx, numpy.")
    p.add_argument("--models", default=",".join(ALL_MODELS),
                   help="comma separated subset of logreg,mlp,cnn (default all)")
    p.add_argument("--images", type=int, default=360,
                   help="number of test images used by both sides (default 360)")
    p.add_argument("--tenseal-threads", type=int, default=None,
                   help="TenSEAL n_threads (default os.cpu_count(), TenSEAL's own default)")
    p.add_argument("--veil-example", metavar="PATH", default=None,
                   help="a prebuilt he_digits example binary to run instead of `cargo run "
                        "--release -p veil-ml --example he_digits` in this repository")
    p.add_argument("--markdown", action="store_true", help="print markdown tables")
    return p


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in ALL_MODELS:
            parser.error(f"unknown model {m!r}; choose from {','.join(ALL_MODELS)}")
    if not 1 <= args.images <= 360:
        parser.error("--images must be between 1 and 360")
    ensure_venv_and_reexec()

    import importlib.metadata as md
    n_threads = args.tenseal_threads or multiprocessing.cpu_count()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rayon = os.environ.get("RAYON_NUM_THREADS")
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": "python3 bench/ml_vs_tenseal.py " + " ".join(sys.argv[1:]),
        "host": f"{cpu_model()}, {os.cpu_count()} logical CPUs, Python "
                f"{platform.python_version()}",
        "TenSEAL": f"tenseal {md.version('tenseal')}, onnx {md.version('onnx')}, numpy "
                   f"{md.version('numpy')}; n_threads={n_threads} (passed to ts.context; not "
                   f"readable back from the context)",
        "Veil": (f"he_digits example at {args.veil_example}" if args.veil_example else
                 f"commit {git.stdout.strip() or '?'} (working tree), he_digits example")
                + f" (release), RAYON_NUM_THREADS={rayon if rayon else 'unset (all cores)'}",
        "images": f"first {args.images} of the 360 digits test images, one query per image "
                  f"for TenSEAL and Veil single, one query for all of them for Veil batch",
    }

    load_start = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    xs_all, labels_all = load_data(args.images)
    results = []
    for model in models:
        w = load_weights(model)
        reference = plain_forward(model, w, xs_all)
        # Veil first: a broken build is reported before the slow TenSEAL side.
        single = run_veil(model, "single", args.images, args.veil_example)
        batch = run_veil(model, "batch", args.images, args.veil_example)
        ts_r = run_tenseal(model, w, xs_all, labels_all, reference, n_threads)
        plain_acc = float((reference.argmax(axis=1) == labels_all).mean())
        progress(f"{model}: numpy plaintext accuracy {plain_acc:.4f}")
        ts_r["plain_accuracy"] = plain_acc
        results.append((model, ts_r, single, batch))
        sys.stderr.write(json.dumps({"model": model, "tenseal": ts_r}) + "\n")

    info["load average"] = (f"{load_start} at start, "
                            f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at end "
                            f"(1/5/15 min; above the core count means other work was running)")
    print(render(results, info, args.markdown))


if __name__ == "__main__":
    main()
