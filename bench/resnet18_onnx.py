#!/usr/bin/env python3
"""Writes a ResNet-18-shaped network with random weights as ONNX, for the secure-inference
benchmarks (`bench/ml_vs_crypten.py --resnet`).

Usage
-----
    /usr/bin/python3 bench/resnet18_onnx.py OUT.onnx [--classes 10] [--seed 1]

The architecture is torchvision's ResNet-18 (a 7×7 stride-2 stem, 3×3 max pooling with
stride 2, four stages of two basic blocks with 64, 128, 256 and 512 channels, global average
pooling and a linear layer), written here in plain `torch.nn` so that torchvision is not
needed; the input is 3 × 32 × 32. Weights are drawn with a fixed seed (Kaiming-uniform, as
torch initialises them), batch normalisation in evaluation mode with running statistics
drawn too (means in [-0.1, 0.1], variances in [0.5, 1.5]) so that it is not an identity.
Exported with opset 13, batch axis dynamic. The file is about 45 MB: generated, not
committed. Needs torch (Debian's `python3-torch`).
"""

import argparse

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.down is None else self.down(x)
        return torch.relu(y + skip)


class ResNet18(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        layers = []
        cin = 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = ResNet18(args.classes)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.onnx.export(model, x, args.out, opset_version=13, input_names=["input"],
                      output_names=["scores"], dynamic_axes={"input": {0: "N"}, "scores": {0: "N"}})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
