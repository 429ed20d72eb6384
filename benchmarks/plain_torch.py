"""The Keras "Simple MNIST convnet" architecture written the way PyTorch's own examples write it.

No convexp code: this is the baseline convexp's torch and numpy backends are compared with.
nn.Module, DataLoader(shuffle=True), torch.optim.Adam(lr=1e-3), batch 128. One batch is run
before the timed epoch so that one-time start-up costs are not counted. Prints JSON on its
last line.

    python benchmarks/plain_torch.py ../shared/data/mnist [epochs] [--lean]

``--lean`` is the loop a skilled user writes for speed: no DataLoader, the data held as two
tensors and each batch one index into them (a fresh ``torch.randperm`` per epoch), torch's
own thread count (``torch.get_num_threads()``, the number of cores; convexp leaves it so too).
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


def lean_batches(x, y, batch_size=128):
    """Shuffled batches by indexing the tensors directly: what DataLoader does, without its per-sample collation."""
    order = torch.randperm(len(y))
    for start in range(0, len(y), batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def test(model, loader):
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in loader:
            correct += (model(data).argmax(1) == target).sum().item()
    return correct / len(loader.dataset)


def main():
    arguments = [a for a in sys.argv[1:] if a != "--lean"]
    lean = "--lean" in sys.argv
    folder = arguments[0]
    epochs = int(arguments[1]) if len(arguments) > 1 else 1
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
        train_epoch(model, lean_batches(x_train, y_train) if lean else train_loader, optimizer)
        seconds.append(time.perf_counter() - started)
    print(json.dumps({"epoch_seconds": seconds, "test_accuracy": test(model, test_loader), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
