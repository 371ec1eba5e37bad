#!/usr/bin/env python3
"""Side-by-side MPC benchmark: CrypTen 0.4.1 (2 parties + trusted third party) and OpenMined PSI vs Veil.

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
* Also times, on both: a chain of ``--chain`` *dependent* multiplications (one element each:
  latency per round), and one epoch of full-batch logistic regression on 2000 × 20 (the same
  algorithm on both: X·w, sigmoid, Xᵀ·(p − y), update).
* PSI: installs ``openmined.psi`` (PyPI) in the same virtualenv and times a
  ``--psi`` × ``--psi`` intersection (half the items common) in one process, against two
  ``veil psi`` processes (receiver and sender) over mutual TLS on loopback.
* Prints per operation both throughputs and the ratio Veil / reference (higher is better for
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


def ensure_openmined_psi(py):
    probe = [py, "-c", "import private_set_intersection.python"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        sh([py, "-m", "pip", "install", "-q", "openmined.psi"])
        subprocess.run(probe, check=True)


CRYPTEN_PROGRAM = r"""
import json, sys, time, torch
import crypten, crypten.communicator as comm
import crypten.mpc as mpc
from crypten.config import cfg

N_MUL, N_LT, N_CHAIN = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
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
    one = crypten.cryptensor(torch.tensor([1.0001]), src=0)
    def chain():
        z = one
        for _ in range(N_CHAIN):
            z = z * one
    timed("mul_dependent", N_CHAIN, chain)
    torch.manual_seed(1)
    X = torch.rand(2000, 20) - 0.5
    y = (X.sum(1) > 0).float()
    Xe = crypten.cryptensor(X, src=0)
    ye = crypten.cryptensor(y, src=0)
    w = crypten.cryptensor(torch.zeros(20), src=0)
    def epoch():
        p = Xe.matmul(w).sigmoid()
        g = Xe.t().matmul(p - ye) * (1.0 / 2000)
        return w - g
    timed("logreg_epoch", 1, epoch)
    if rank == 0:
        print("CRYPTEN " + json.dumps(out), flush=True)

bench()
"""


def run_crypten(py, n_mul, n_lt, n_chain):
    res = subprocess.run([py, "-c", CRYPTEN_PROGRAM, str(n_mul), str(n_lt), str(n_chain)],
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


OPENMINED_PROGRAM = r"""
import sys, time
import private_set_intersection.python as psi
n = int(sys.argv[1])
client_items = [f"id-{i}" for i in range(n)]
server_items = [f"id-{i}" for i in range(n // 2, n + n // 2)]
t = time.perf_counter()
c = psi.client.CreateWithNewKey(True)
s = psi.server.CreateWithNewKey(True)
setup = psi.ServerSetup()
setup.ParseFromString(s.CreateSetupMessage(1e-9, n, server_items, psi.DataStructure.RAW).SerializeToString())
request = psi.Request()
request.ParseFromString(c.CreateRequest(client_items).SerializeToString())
response = psi.Response()
response.ParseFromString(s.ProcessRequest(request).SerializeToString())
common = c.GetIntersection(setup, response)
print(f"OPENMINED {time.perf_counter() - t} {len(common)}")
"""


def run_openmined(py, n):
    res = subprocess.run([py, "-c", OPENMINED_PROGRAM, str(n)], capture_output=True, text=True,
                         timeout=3600)
    for line in res.stdout.splitlines():
        if line.startswith("OPENMINED "):
            _, secs, common = line.split()
            return float(secs), int(common)
    raise SystemExit(f"OpenMined PSI failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def run_veil_psi(exe, n):
    """Two `veil psi` processes over mutual TLS on loopback; returns (seconds, common)."""
    import socket
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        sh([exe, "mpc", "init", "--parties", "2", "--dir", str(d / "s"), "--base-port", str(base)],
           stdout=subprocess.DEVNULL)
        (d / "r.txt").write_text("".join(f"id-{i}\n" for i in range(n)))
        (d / "s.txt").write_text("".join(f"id-{i}\n" for i in range(n // 2, n + n // 2)))
        cfg = str(d / "s" / "parties.toml")
        t = time.perf_counter()
        sender = subprocess.Popen([exe, "psi", "--role", "sender", "--config", cfg,
                                   "--input", str(d / "s.txt"), "--cardinality-only"],
                                  stdout=subprocess.DEVNULL)
        res = subprocess.run([exe, "psi", "--role", "receiver", "--config", cfg, "--input",
                              str(d / "r.txt"), "--cardinality-only"],
                             capture_output=True, text=True, timeout=3600)
        secs = time.perf_counter() - t
        sender.wait(timeout=60)
        if res.returncode != 0:
            raise SystemExit(f"veil psi failed:\n{res.stderr}")
        return secs, res.stdout.strip()


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
    ap.add_argument("--chain", type=int, default=100, help="dependent multiplications")
    ap.add_argument("--psi", type=int, default=100_000, help="items per PSI set (0: skip)")
    ap.add_argument("--veil")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    py = ensure_crypten()
    exe = veil_binary(args.veil)
    t = time.time()
    crypten_rows = run_crypten(py, args.mul, args.lt, args.chain)
    veil_rows = run_veil(exe, args.mul, args.lt)
    ops = ["mul", "matmul_128", "lt", "relu", "mul_dependent", "logreg_epoch"]
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
    if args.psi:
        ensure_openmined_psi(py)
        om_secs, om_common = run_openmined(py, args.psi)
        v_secs, v_out = run_veil_psi(exe, args.psi)
        label = f"PSI {args.psi} × {args.psi}"
        if args.markdown:
            print(f"| {label} | {om_secs:.2f} s | {v_secs:.2f} s | {om_secs / v_secs:.2f}× | | | | |")
        else:
            print(f"{label}: OpenMined PSI {om_secs:.2f} s ({om_common} common)  Veil {v_secs:.2f} s "
                  f"({v_out})  ratio {om_secs / v_secs:.2f}x")
    print(f"(2 parties on loopback, one run, {time.time() - t:.0f} s; mul batch {args.mul}, "
          f"comparisons {args.lt})", file=sys.stderr)


if __name__ == "__main__":
    main()
