"""PyTorch's official MNIST example (pytorch/examples, mnist/main.py), recorded by convexp.

The model, the loop, Adadelta and StepLR are the example's own; the lines marked ``# convexp``
are all that recording adds. MNIST is read from the four IDX files in ``--data`` (the
example's torchvision download needs the internet), normalised as the example's transform does.

    python examples/recording/torch_mnist_main.py --data DIR --db mnist.db [--epochs 14]

``--batches`` stops each epoch early, ``--crash-at`` / ``--interrupt-at`` end the run with an
error or a Ctrl-C after that many updates (the tests use them), ``--save-final`` writes the
conv weights as they end up, to compare with what was recorded.
"""

import argparse
import os
import signal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR

import convexp.torch  # convexp
from convexp.datasets.mnist import load


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def train(args, model, device, train_loader, optimizer, epoch, recorder):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        recorder.step(train_loss=loss.item())  # convexp
        if recorder.steps == args.crash_at:
            raise RuntimeError(f"a bad batch at step {recorder.steps}")
        if recorder.steps == args.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C
        if batch_idx % args.log_interval == 0:
            print(
                f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)} ({100.0 * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}"
            )
        if batch_idx + 1 == args.batches:
            break


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()  # sum up batch loss
            pred = output.argmax(dim=1, keepdim=True)  # get the index of the max log-probability
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)

    print(
        f"\nTest set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{len(test_loader.dataset)} ({100.0 * correct / len(test_loader.dataset):.0f}%)\n"
    )
    return test_loss, correct / len(test_loader.dataset)


def mnist_loaders(folder, batch_size, test_batch_size, test_examples):
    """The example's loaders, from local IDX files: Normalize((0.1307,), (0.3081,)) as its transform."""
    data = load(folder)

    def dataset(images, labels):
        images = torch.from_numpy((images - np.float32(0.1307)) / np.float32(0.3081))
        return torch.utils.data.TensorDataset(images, torch.from_numpy(labels))

    train = dataset(data.train_images, data.train_labels)
    test = dataset(data.test_images[:test_examples], data.test_labels[:test_examples])
    return (
        torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True),
        torch.utils.data.DataLoader(test, batch_size=test_batch_size),
    )


def main():
    parser = argparse.ArgumentParser(description="PyTorch MNIST Example, recorded by convexp")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--data", required=True, help="the folder of the four MNIST IDX files")
    parser.add_argument("--db", default="convexp.db")
    parser.add_argument("--batches", type=int, default=0, help="updates per epoch (0: the whole epoch)")
    parser.add_argument("--test-examples", type=int, default=10000)
    parser.add_argument("--crash-at", type=int, default=-1)
    parser.add_argument("--interrupt-at", type=int, default=-1)
    parser.add_argument("--save-final", default=None)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    train_loader, test_loader = mnist_loaders(args.data, args.batch_size, args.test_batch_size, args.test_examples)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    config = {"optimizer": "Adadelta", "lr": args.lr, "gamma": args.gamma, "seed": args.seed}  # convexp
    with convexp.torch.record(model, experiment="pytorch-mnist-example", db=args.db, config=config) as recorder:  # convexp
        for epoch in range(1, args.epochs + 1):
            train(args, model, device, train_loader, optimizer, epoch, recorder)
            test_loss, test_accuracy = test(model, device, test_loader)
            recorder.end_epoch(test_loss=test_loss, test_accuracy=test_accuracy)  # convexp
            scheduler.step()

    if args.save_final:
        np.savez(args.save_final, conv1=model.conv1.weight.detach().numpy(), conv2=model.conv2.weight.detach().numpy())


if __name__ == "__main__":
    main()
