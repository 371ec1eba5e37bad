#!/usr/bin/env python3
"""Trains Veil's test models on scikit-learn's bundled digits data (no downloads).

Writes, next to this script:
  logreg.onnx   logistic regression            Gemm 64->10
  mlp.onnx      MLP                            Gemm 64->32, x*x, Gemm 32->10
  cnn.onnx      CryptoNets-style CNN           Conv 1->4 3x3, x*x, Flatten, Gemm 144->32,
                                               x*x, Gemm 32->10
  forest.onnx   random forest, 10 trees, depth 4 (skl2onnx TreeEnsembleClassifier)
  digits_test.csv   the 360-image test split: label, then the 64 pixels (integers 0..16)
  predictions.csv   each model's predicted class on every test image (same row order)
  accuracy.json     each model's plaintext test accuracy

Every model takes a float32 input of pixel/16 (in [0, 1]): shape [N, 64] for logreg, mlp
and forest, [N, 1, 8, 8] for cnn (N is a dynamic batch axis). The neural models output
logits [N, 10] (softmax/argmax stay with the client); the forest outputs `label` [N] and
`probabilities` [N, 10].

Run with Debian's python3 (python3-sklearn 1.2, python3-torch 1.13, python3-onnx 1.12) and
skl2onnx from PyPI:
    apt-get install -y python3-sklearn python3-torch python3-onnx python3-pip
    python3 -m pip install --break-system-packages --no-deps skl2onnx==1.14.1 onnxconverter-common==1.13.0
    python3 crates/veil-ml/models/train.py
Everything is seeded; the same package versions give byte-identical data files and the same
predictions.
"""

import json
import os
import random

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

SEED = 0
HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 13


def seed_everything():
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load():
    digits = load_digits()
    x = digits.data.astype(np.int64)  # 1797 x 64, integers 0..16
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=360, random_state=SEED, stratify=y
    )
    return x_tr, x_te, y_tr, y_te


def scaled(x):
    return (x.astype(np.float32) / np.float32(16.0)).astype(np.float32)


class Square(torch.nn.Module):
    def forward(self, x):
        # Exported as Mul(x, x).
        return x * x


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(64, 32), Square(), torch.nn.Linear(32, 10)
    )


def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, kernel_size=3, stride=1, padding=0),
        Square(),
        torch.nn.Flatten(),
        torch.nn.Linear(144, 32),
        Square(),
        torch.nn.Linear(32, 10),
    )


def train_torch(model, x, y, epochs, lr, weight_decay):
    """Full-batch Adam: deterministic on CPU."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(model(xt), yt)
        loss.backward()
        opt.step()
    return model


def export_torch(model, example, path, input_name="input"):
    model.eval()
    torch.onnx.export(
        model,
        example,
        path,
        opset_version=OPSET,
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}},
        do_constant_folding=True,
    )
    onnx.checker.check_model(onnx.load(path))


def predict_torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(dim=1).numpy()


def main():
    seed_everything()
    x_tr, x_te, y_tr, y_te = load()
    xs_tr, xs_te = scaled(x_tr), scaled(x_te)
    preds = {}
    acc = {}

    # Logistic regression (scikit-learn), exported as one Gemm through torch.
    lr = LogisticRegression(C=1.0, max_iter=5000, random_state=SEED)
    lr.fit(xs_tr, y_tr)
    lin = torch.nn.Linear(64, 10)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(lr.coef_.astype(np.float32)))
        lin.bias.copy_(torch.from_numpy(lr.intercept_.astype(np.float32)))
    export_torch(lin, torch.zeros(1, 64), os.path.join(HERE, "logreg.onnx"))
    preds["logreg"] = predict_torch(lin, xs_te)
    assert (preds["logreg"] == lr.predict(xs_te)).mean() > 0.99

    # MLP 64 -> 32 -> square -> 10.
    m = train_torch(mlp(), xs_tr, y_tr, epochs=400, lr=0.01, weight_decay=1e-4)
    export_torch(m, torch.zeros(1, 64), os.path.join(HERE, "mlp.onnx"))
    preds["mlp"] = predict_torch(m, xs_te)

    # CryptoNets-style CNN on 1x8x8 images.
    c = train_torch(cnn(), xs_tr.reshape(-1, 1, 8, 8), y_tr, epochs=400, lr=0.01, weight_decay=1e-4)
    export_torch(c, torch.zeros(1, 1, 8, 8), os.path.join(HERE, "cnn.onnx"))
    preds["cnn"] = predict_torch(c, xs_te.reshape(-1, 1, 8, 8))

    # Random forest: 10 trees of depth 4, through skl2onnx.
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    rf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=SEED)
    rf.fit(xs_tr, y_tr)
    onx = convert_sklearn(
        rf,
        initial_types=[("input", FloatTensorType([None, 64]))],
        options={id(rf): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 1},
    )
    onx.doc_string = ""
    onx.graph.name = "forest"  # skl2onnx names the graph with a random UUID
    with open(os.path.join(HERE, "forest.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    onnx.checker.check_model(onx)
    preds["forest"] = rf.predict(xs_te)

    for name, p in preds.items():
        acc[name] = round(float((p == y_te).mean()), 6)

    with open(os.path.join(HERE, "digits_test.csv"), "w") as f:
        f.write("label," + ",".join(f"p{i}" for i in range(64)) + "\n")
        for label, row in zip(y_te, x_te):
            f.write(f"{label}," + ",".join(str(int(v)) for v in row) + "\n")
    names = list(preds)
    with open(os.path.join(HERE, "predictions.csv"), "w") as f:
        f.write("label," + ",".join(names) + "\n")
        for i, label in enumerate(y_te):
            f.write(f"{label}," + ",".join(str(int(preds[n][i])) for n in names) + "\n")
    with open(os.path.join(HERE, "accuracy.json"), "w") as f:
        json.dump({"test_images": int(len(y_te)), "accuracy": acc}, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(acc, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
