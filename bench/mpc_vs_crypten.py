#!/usr/bin/env python3
"""Side-by-side MPC benchmark: CrypTen 0.4.1 (2 parties + trusted third party) vs Veil.

Usage
-----
    python3 bench/mpc_vs_crypten.py                 # 10^6 multiplications, 10^4 comparisons
    python3 bench/mpc_vs_crypten.py --mul 200000 --lt 5000 --markdown
    python3 bench/mpc_vs_crypten.py --veil path/to/veil

What it does
------------
* Installs CrypTen CPU-only the way that works on Debian (see ../shared/DEPENDENCIES.md):
  Debian's ``python3-torch`` (apt) and, in a virtualenv at ``bench/.venv-crypten`` that sees
  the system packages, ``pip install --no-deps crypten==0.4.1 'onnx<1.17'`` plus the few
  pure-Python modules CrypTen imports. PyPI's torch would pull gigabytes of CUDA wheels.
* Runs CrypTen with 2 processes (``crypten.mpc.run_multiprocess``, gloo over loopback) and its
  trusted third party as the dealer, timing one batched multiplication of ``--mul`` elements,
  ``--lt`` comparisons, ``--lt`` ReLUs and a 128 × 128 matrix product, with CrypTen's own
  communication statistics (bytes, rounds).
* Runs ``veil mpc bench --parties 2 --json --mul M --lt L`` (2 party processes and a dealer,
  mutual TLS over loopback) and reads one JSON object per line.
* Prints per operation both throughputs and the ratio Veil / CrypTen (higher is better for
  Veil), and bytes per operation per party.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-crypten"
SYSTEM_PYTHON = "/usr/bin/python3"


def sh(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def ensure_crypten():
    """Returns the interpreter that can import crypten (installing it if needed)."""
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", "import torch, crypten"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(py)
    if subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], capture_output=True).returncode != 0:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(sudo + ["apt-get", "update", "-q"], env=env)
        sh(sudo + ["apt-get", "install", "-y", "-q", "python3-torch", "python3-venv"], env=env)
    if not py.exists():
        sh([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(VENV)])
    sh([str(py), "-m", "pip", "install", "-q", "--no-deps", "crypten==0.4.1", "onnx<1.17"])
    # What crypten imports at run time beyond torch (pure Python, small).
    sh([str(py), "-m", "pip", "install", "-q", "omegaconf", "pyyaml", "protobuf<5"])
    subprocess.run(probe, check=True)
    return str(py)


CRYPTEN_PROGRAM = r"""
import json, sys, time, torch
import crypten, crypten.communicator as comm
import crypten.mpc as mpc
from crypten.config import cfg

N_MUL, N_LT = int(sys.argv[1]), int(sys.argv[2])
cfg.mpc.provider = "TTP"

cfg.communicator.verbose = True

@mpc.run_multiprocess(world_size=2)
def bench():
    cfg.mpc.provider = "TTP"
    cfg.communicator.verbose = True
    crypten.init()
    rank = comm.get().get_rank()
    out = []
    def timed(op, count, f):
        crypten.reset_communication_stats()
        t = time.perf_counter()
        f()
        secs = time.perf_counter() - t
        s = comm.get().get_communication_stats()
        out.append({"op": op, "per_sec": count / secs, "seconds": secs,
                    "bytes_per_op_per_party": s["bytes"] / count, "rounds": s["rounds"]})
    x = crypten.cryptensor(torch.rand(N_MUL) * 20 - 10, src=0)
    y = crypten.cryptensor(torch.rand(N_MUL) * 20 - 10, src=0)
    timed("mul", N_MUL, lambda: x * y)
    a = crypten.cryptensor(torch.rand(128, 128), src=0)
    timed("matmul_128", 1, lambda: a.matmul(a))
    v = crypten.cryptensor(torch.rand(N_LT) * 20 - 10, src=0)
    timed("lt", N_LT, lambda: v.lt(0))
    timed("relu", N_LT, lambda: v.relu())
    if rank == 0:
        print("CRYPTEN " + json.dumps(out), flush=True)

bench()
"""


def run_crypten(py, n_mul, n_lt):
    res = subprocess.run([py, "-c", CRYPTEN_PROGRAM, str(n_mul), str(n_lt)],
                         capture_output=True, text=True, timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith("CRYPTEN "):
            return {r["op"]: r for r in json.loads(line[len("CRYPTEN "):])}
    raise SystemExit(f"CrypTen failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def veil_binary(path):
    if path:
        return path
    exe = ROOT / "target" / "release" / "veil"
    if not exe.exists():
        sh(["cargo", "build", "--release", "-p", "veil-cli"], cwd=ROOT)
    return str(exe)


def run_veil(exe, n_mul, n_lt):
    res = subprocess.run([exe, "mpc", "bench", "--parties", "2", "--json",
                          "--mul", str(n_mul), "--lt", str(n_lt)],
                         capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        raise SystemExit(f"veil mpc bench failed:\n{res.stderr}")
    rows = [json.loads(l) for l in res.stdout.splitlines() if l.startswith("{")]
    return {r["op"]: r for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--mul", type=int, default=1_000_000)
    ap.add_argument("--lt", type=int, default=10_000)
    ap.add_argument("--veil")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    py = ensure_crypten()
    exe = veil_binary(args.veil)
    t = time.time()
    crypten_rows = run_crypten(py, args.mul, args.lt)
    veil_rows = run_veil(exe, args.mul, args.lt)
    ops = ["mul", "matmul_128", "lt", "relu"]
    if args.markdown:
        print("| op | CrypTen /s | Veil /s | Veil ÷ CrypTen | CrypTen B/op/party | Veil B/op/party | CrypTen rounds | Veil rounds |")
        print("|---|---|---|---|---|---|---|---|")
    for op in ops:
        c, v = crypten_rows.get(op), veil_rows.get(op)
        if not c or not v:
            continue
        ratio = v["per_sec"] / c["per_sec"]
        if args.markdown:
            print(f"| {op} | {c['per_sec']:.4g} | {v['per_sec']:.4g} | {ratio:.2f}× | "
                  f"{c['bytes_per_op_per_party']:.0f} | {v['bytes_per_op_per_party']:.0f} | "
                  f"{c['rounds']} | {v['rounds']} |")
        else:
            print(f"{op:<12} CrypTen {c['per_sec']:>12.4g}/s  Veil {v['per_sec']:>12.4g}/s  "
                  f"ratio {ratio:>7.2f}x  bytes/op/party {c['bytes_per_op_per_party']:.0f} vs "
                  f"{v['bytes_per_op_per_party']:.0f}  rounds {c['rounds']} vs {v['rounds']}")
    print(f"(2 parties on loopback, one run, {time.time() - t:.0f} s; mul batch {args.mul}, "
          f"comparisons {args.lt})", file=sys.stderr)


if __name__ == "__main__":
    main()
