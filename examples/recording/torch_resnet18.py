"""A ResNet-18 defined in the script (the BasicBlock layout of torchvision's resnet18), recorded with a budget.

    python examples/recording/torch_resnet18.py [--width 16] [--steps 40] [--budget 0.05] [--db resnet.db]

Width 16 (torchvision's is 64) gives about 0.7 M conv weights, 2.8 MB a snapshot: a network where
recording every step costs more than a small one. With ``--budget 0.05`` convexp records every step's
kernels only while that costs at most 5% of training time, else every k-th step (step 0, the first
steps, the epoch's end and the last step always). Trains on random 28x28 one-channel batches of 32.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut = nn.Sequential()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, width: int = 16, in_channels: int = 1, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, inputs = [], width
        for index, outputs in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if index == 0 else 2
            stages.append(nn.Sequential(BasicBlock(inputs, outputs, stride), BasicBlock(outputs, outputs, 1)))
            inputs = outputs
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--budget", type=float, default=None, help="share of training time recording may take")
    parser.add_argument("--db", default="resnet18.db")
    args = parser.parse_args()

    import convexp.torch

    torch.manual_seed(0)
    model = ResNet18(args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    with convexp.torch.record(model, experiment="resnet18", db=args.db, budget=args.budget) as recorder:
        for _ in range(args.steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            recorder.step(train_loss=loss.item())
        recorder.end_epoch()


if __name__ == "__main__":
    main()
