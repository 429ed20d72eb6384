"""The Keras "Simple MNIST convnet" architecture written the way PyTorch's own examples write it.

No convexp code: this is the baseline convexp's torch and numpy backends are compared with.
nn.Module, DataLoader(shuffle=True), torch.optim.Adam(lr=1e-3), batch 128. One batch is run
before the timed epoch so that one-time start-up costs are not counted. Prints JSON on its
last line.

    python benchmarks/plain_torch.py ../shared/data/mnist [epochs]
"""

import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(1600, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc(x)


def train_epoch(model, loader, optimizer):
    model.train()
    for data, target in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()


def test(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            correct += (model(data).argmax(1) == target).sum().item()
    return correct / len(loader.dataset)


def main():
    folder = sys.argv[1]
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    torch.manual_seed(0)
    x_train = torch.from_numpy(read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz")).astype("float32") / 255).unsqueeze(1)
    y_train = torch.from_numpy(read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz")).astype("int64"))
    x_test = torch.from_numpy(read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz")).astype("float32") / 255).unsqueeze(1)
    y_test = torch.from_numpy(read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")).astype("int64"))
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=128, shuffle=True)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=1000)
    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_epoch(model, [(x_train[:128], y_train[:128])], optimizer)  # warm-up batch, not timed
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        train_epoch(model, train_loader, optimizer)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"epoch_seconds": seconds, "test_accuracy": test(model, test_loader)}))


if __name__ == "__main__":
    main()
