#!/usr/bin/env python3
"""Side-by-side secure inference: CrypTen 0.4.1 (`crypten.nn.from_onnx`, 2 processes, trusted
third party) against Veil (`veil ml run --mpc`: 2 party processes and a dealer process, then
3 party processes and no dealer (`--protocol replicated`), over mutual TLS on loopback), on
the committed digits models and the 360-image test split.

Usage
-----
    python3 bench/ml_vs_crypten.py                   # logreg, mlp, cnn; batch 1 and 360
    python3 bench/ml_vs_crypten.py --models cnn --latency-images 60 --markdown
    python3 bench/ml_vs_crypten.py --veil target/release/veil

What it does
------------
* Installs CrypTen the way that works on Debian (Debian's ``python3-torch``, then
  ``pip install --no-deps crypten==0.4.1`` in ``bench/.venv-crypten``; shared with
  ``bench/mpc_vs_crypten.py``).
* CrypTen cannot import ``Mul(x, x)`` from ONNX (it only multiplies by constants there): the
  CNN's two squares are rewritten to ``Pow(x, 2)`` with the ``onnx`` package before import —
  the same function. Every other node is imported as is.
* For each model, on both systems: the **latency** of one image (batch 1, averaged over
  ``--latency-images`` images, model shared once beforehand), the **throughput** of one batch
  of all 360 images, the bytes the parties send per image, and the agreement of each
  system's predicted labels with the plaintext model (CrypTen: against onnx's reference
  operators evaluated with torch on the original file — CrypTen's own plaintext Conv path
  fails on a bias; Veil:
  its plaintext executor, which agrees with tract on all 360 images).
  Veil's figures are its own report (time of the inference phase, bytes between parties plus
  the dealer's corrections); CrypTen's are ``time.perf_counter`` around ``model(x)`` and its
  communicator's byte count, summed over both parties (the trusted third party's traffic is
  not counted by CrypTen).
* Both reveal the scores (CrypTen's ``get_plain_text``; Veil's ``--reveal scores``, to the
  client only), and the label is their argmax: Veil's default (``--reveal label``) also runs a
  secure argmax tournament, which CrypTen's figures would not include.
* Prints both, and the ratio reference / Veil (higher is better for Veil).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ROOT / "crates" / "veil-ml" / "models"
sys.path.insert(0, str(HERE))

from mpc_vs_crypten import ensure_crypten, sh, veil_binary  # noqa: E402  (shared helpers)


CRYPTEN_PROGRAM = r"""
import json, sys, time, torch
import crypten, crypten.communicator as comm
import crypten.mpc as mpc
from crypten.config import cfg

model_path, data_path, n_latency = sys.argv[1], sys.argv[2], int(sys.argv[3])
throughput = sys.argv[6] == "1"
rows = [l.split(",") for l in open(data_path).read().strip().split("\n")[1:]]
X = torch.tensor([[float(v) / 16.0 for v in r[1:]] for r in rows])
shape = json.loads(sys.argv[4])
out_dir = sys.argv[5]
cfg.mpc.provider = "TTP"

@mpc.run_multiprocess(world_size=2)
def bench():
    cfg.mpc.provider = "TTP"
    cfg.communicator.verbose = True
    crypten.init()
    rank = comm.get().get_rank()
    with open(model_path, "rb") as f:
        model = crypten.nn.from_onnx(f)
    model.eval()
    plain = json.load(open(f"{out_dir}/plain.json"))
    model.encrypt(src=0)
    model.eval()
    def run(batch):
        x = crypten.cryptensor(batch.reshape([batch.shape[0]] + shape), src=1)
        return model(x).get_plain_text().argmax(dim=1).tolist()
    run(X[:1])  # warm-up
    crypten.reset_communication_stats()
    t = time.perf_counter()
    lat_labels = []
    for i in range(n_latency):
        lat_labels += run(X[i:i + 1])
    lat = (time.perf_counter() - t) / n_latency
    lat_bytes = comm.get().get_communication_stats()["bytes"] / n_latency
    labels, thr, thr_bytes = lat_labels, lat, lat_bytes
    if throughput:
        crypten.reset_communication_stats()
        t = time.perf_counter()
        labels = run(X)
        thr = (time.perf_counter() - t) / len(rows)
        thr_bytes = comm.get().get_communication_stats()["bytes"] / len(rows)
    out = {"rank": rank, "latency_ms": lat * 1e3, "latency_bytes": lat_bytes,
           "per_image_ms": thr * 1e3, "per_image_bytes": thr_bytes,
           "agree": sum(int(a == b) for a, b in zip(labels, plain)), "n": len(labels)}
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(out, f)

bench()
"""


def crypten_model(py, name, shape, out_dir, model=None, data=None):
    """The model as CrypTen can import it (Mul(x, x) rewritten to Pow(x, 2)), and the
    plaintext labels of the images in `out_dir/plain.json`."""
    src = model or MODELS / f"{name}.onnx"
    dst = out_dir / f"{name}.crypten.onnx"
    script = r"""
import sys, onnx
from onnx import helper, numpy_helper
import numpy as np
m = onnx.load(sys.argv[1])
g = m.graph
# The exponent as a Constant node: CrypTen encrypts initializers (and then refuses a secret
# exponent) but leaves Constant nodes in the clear.
two = helper.make_node("Constant", [], ["veil_pow_two"], name="veil_pow_two",
                       value=numpy_helper.from_array(np.array(2.0, dtype=np.float32)))
used = False
for i, n in enumerate(list(g.node)):
    if n.op_type == "Mul" and len(n.input) == 2 and n.input[0] == n.input[1]:
        g.node[i].CopyFrom(helper.make_node("Pow", [n.input[0], "veil_pow_two"], list(n.output), name=n.name))
        used = True
if used:
    g.node.insert(0, two)
onnx.save(m, sys.argv[2])
# The plaintext labels, from the original file (torch on the few operators these models use).
import json, torch
from onnx import numpy_helper as nh
rows = [l.split(",") for l in open(sys.argv[3]).read().strip().split("\n")[1:]]
X = torch.tensor([[float(v) / 16.0 for v in r[1:]] for r in rows], dtype=torch.float64)
shape = json.loads(sys.argv[4])
orig = onnx.load(sys.argv[1]).graph
env = {t.name: torch.tensor(nh.to_array(t), dtype=torch.float64) for t in orig.initializer}
env[orig.input[0].name] = X.reshape([len(rows)] + shape)
for n in orig.node:
    a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
    i = [env[v] for v in n.input]
    if n.op_type == "Gemm":
        b = i[1].T if a.get("transB", 0) else i[1]
        y = a.get("alpha", 1.0) * i[0] @ b + (a.get("beta", 1.0) * i[2] if len(i) > 2 else 0)
    elif n.op_type == "Conv":
        p = a.get("pads", [0, 0, 0, 0])
        assert p[0] == p[2] and p[1] == p[3]
        y = torch.nn.functional.conv2d(i[0], i[1], i[2] if len(i) > 2 else None,
                                       stride=a.get("strides", [1, 1]), padding=p[:2],
                                       dilation=a.get("dilations", [1, 1]),
                                       groups=a.get("group", 1))
    elif n.op_type == "Mul":
        y = i[0] * i[1]
    elif n.op_type == "Add":
        y = i[0] + i[1]
    elif n.op_type == "MaxPool":
        p = a.get("pads", [0, 0, 0, 0])
        y = torch.nn.functional.max_pool2d(i[0], a["kernel_shape"], a.get("strides", None),
                                           padding=p[:2])
    elif n.op_type == "GlobalAveragePool":
        y = i[0].mean(dim=(2, 3), keepdim=True)
    elif n.op_type == "Relu":
        y = torch.relu(i[0])
    elif n.op_type == "Flatten":
        y = i[0].reshape(i[0].shape[0], -1)
    else:
        raise SystemExit(f"plaintext reference: operator {n.op_type} not handled")
    env[n.output[0]] = y
scores = env[orig.output[0].name]
json.dump([int(v) for v in scores.argmax(dim=1)], open(sys.argv[5], "w"))
"""
    out_dir.mkdir()
    subprocess.run([py, "-c", script, str(src), str(dst), str(data or MODELS / "digits_test.csv"),
                    json.dumps(shape), str(out_dir / "plain.json")], check=True)
    return dst


def run_crypten(py, name, n_latency, tmp, model=None, data=None, shape=None, throughput=True):
    shape = shape or ([1, 8, 8] if name == "cnn" else [64])
    out_dir = Path(tmp) / name
    path = crypten_model(py, name, shape, out_dir, model, data)
    res = subprocess.run(
        [py, "-c", CRYPTEN_PROGRAM, str(path), str(data or MODELS / "digits_test.csv"),
         str(n_latency), json.dumps(shape), str(out_dir), "1" if throughput else "0"],
        capture_output=True, text=True, timeout=3600)
    outs = [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))]
    if len(outs) != 2:
        raise SystemExit(f"CrypTen failed on {name}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    a, b = outs
    return {
        "latency_ms": max(a["latency_ms"], b["latency_ms"]),
        "latency_bytes": a["latency_bytes"] + b["latency_bytes"],
        "per_image_ms": max(a["per_image_ms"], b["per_image_ms"]),
        "per_image_bytes": a["per_image_bytes"] + b["per_image_bytes"],
        "agree": f"{a['agree']}/{a['n']}",
    }


VEIL_LINE = re.compile(
    r"inference: ([0-9.]+) ms/image, ([0-9.]+) B/image between parties \+ ([0-9.]+) B/image "
    r"from the dealer")
AGREE = re.compile(r"agreement with the plaintext model: (\d+)/(\d+)")


def run_veil(exe, name, batch, limit, protocol, model=None, data=None, extra=()):
    cmd = [exe, "ml", "run", str(model or MODELS / f"{name}.onnx"), "--mpc", "--protocol",
           protocol, "--data", str(data or MODELS / "digits_test.csv"), "--batch", str(batch),
           "--reveal", "scores", *extra]
    if limit:
        cmd += ["--limit", str(limit)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    m = VEIL_LINE.search(out)
    agree = AGREE.search(out)
    if not m or not agree:
        raise SystemExit(f"unexpected output of {' '.join(cmd)}:\n{out}")
    return {"ms": float(m.group(1)), "bytes": float(m.group(2)) + float(m.group(3)),
            "agree": f"{agree.group(1)}/{agree.group(2)}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="logreg,mlp,cnn")
    ap.add_argument("--latency-images", type=int, default=30)
    ap.add_argument("--veil", help="path to the veil binary (default: target/release/veil)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--resnet", type=int, default=0, metavar="N",
                    help="also time a ResNet-18 (random weights, 3×32×32) on N images at batch "
                         "1 (bench/resnet18_onnx.py; Veil with --calibrate)")
    args = ap.parse_args()
    py = ensure_crypten()
    exe = veil_binary(args.veil)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            c = run_crypten(py, name, args.latency_images, tmp)
            for protocol in ("dealer", "replicated"):
                v1 = run_veil(exe, name, 1, args.latency_images, protocol)
                vn = run_veil(exe, name, 360, None, protocol)
                rows.append((f"{name}, Veil {protocol}", c, v1, vn))
        if args.resnet:
            resnet_rows(py, exe, args.resnet, tmp)
    if args.markdown:
        print("| model | batch 1: CrypTen ms | Veil ms | ratio | CrypTen B/img | Veil B/img "
              "| batch 360: CrypTen ms/img | Veil ms/img | ratio | CrypTen B/img | Veil B/img "
              "| agreement CrypTen / Veil |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, c, v1, vn in rows:
            print(f"| {name} | {c['latency_ms']:.2f} | {v1['ms']:.2f} | "
                  f"{c['latency_ms'] / v1['ms']:.2f}× | {c['latency_bytes']:.0f} | "
                  f"{v1['bytes']:.0f} | {c['per_image_ms']:.3f} | {vn['ms']:.3f} | "
                  f"{c['per_image_ms'] / vn['ms']:.2f}× | {c['per_image_bytes']:.0f} | "
                  f"{vn['bytes']:.0f} | {c['agree']} / {vn['agree']} |")
    else:
        for name, c, v1, vn in rows:
            print(f"{name}: batch 1  CrypTen {c['latency_ms']:.2f} ms ({c['latency_bytes']:.0f} B)"
                  f"  Veil {v1['ms']:.2f} ms ({v1['bytes']:.0f} B)"
                  f"  ratio {c['latency_ms'] / v1['ms']:.2f}x")
            print(f"{name}: batch 360 CrypTen {c['per_image_ms']:.3f} ms/img "
                  f"({c['per_image_bytes']:.0f} B/img)  Veil {vn['ms']:.3f} ms/img "
                  f"({vn['bytes']:.0f} B/img)  ratio {c['per_image_ms'] / vn['ms']:.2f}x  "
                  f"agreement CrypTen {c['agree']}, Veil {vn['agree']}")


def resnet_rows(py, exe, n, tmp):
    """ResNet-18 at batch 1: CrypTen, Veil dealer and Veil replicated (time, bytes)."""
    import random
    model = Path(tmp) / "resnet18.onnx"
    sh(["/usr/bin/python3", str(HERE / "resnet18_onnx.py"), str(model)], stdout=subprocess.DEVNULL)
    data = Path(tmp) / "resnet_inputs.csv"
    rng = random.Random(1)
    lines = ["label," + ",".join(f"p{i}" for i in range(3072))]
    lines += ["0," + ",".join(str(rng.randint(0, 16)) for _ in range(3072)) for _ in range(max(n, 8))]
    data.write_text("\n".join(lines) + "\n")
    c = run_crypten(py, "resnet18", n, tmp, model=model, data=data, shape=[3, 32, 32],
                    throughput=False)
    print(f"resnet18 (batch 1, {n} images): CrypTen {c['latency_ms']:.0f} ms, "
          f"{c['latency_bytes'] / 1e6:.1f} MB/image, agreement {c['agree']}")
    for protocol in ("dealer", "replicated"):
        v = run_veil(exe, "resnet18", 1, n, protocol, model=model, data=data,
                     extra=("--calibrate",))
        print(f"resnet18 (batch 1, {n} images): Veil {protocol} {v['ms']:.0f} ms, "
              f"{v['bytes'] / 1e6:.1f} MB/image, agreement {v['agree']}, "
              f"ratio {c['latency_ms'] / v['ms']:.2f}x")


if __name__ == "__main__":
    main()
