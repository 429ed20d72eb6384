"""convexp.lightning.KernelRecorder on a real LightningModule trained by a real Trainer on the digits: steps are
Lightning's global steps (gradient accumulation counted as Lightning counts it), the logged metrics recorded, and
the last snapshot equal bit for bit to the module's final weights."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tests.conftest import stored_kernels

torch = pytest.importorskip("torch")
lightning = pytest.importorskip("lightning", reason="pip install 'convexp[lightning]'")
pl = lightning.pytorch


class DigitsNet(pl.LightningModule):  # the user's module, defined in their script
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3))
        self.head = torch.nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        return self.head(torch.flatten(torch.relu(self.features(x)), 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_accuracy", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loaders():
    from convexp.datasets import load_dataset

    data = load_dataset("digits")
    train = torch.utils.data.TensorDataset(torch.from_numpy(data.train_images[:320]), torch.from_numpy(data.train_labels[:320]))
    test = torch.utils.data.TensorDataset(torch.from_numpy(data.test_images[:64]), torch.from_numpy(data.test_labels[:64]))
    return torch.utils.data.DataLoader(train, batch_size=32), torch.utils.data.DataLoader(test, batch_size=64)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_lightning_fit_is_recorded_at_its_global_steps(tmp_path, accumulate):
    import convexp.lightning

    torch.manual_seed(0)
    module = DigitsNet()
    db = tmp_path / "r.db"
    trainer = pl.Trainer(
        max_epochs=2,
        accumulate_grad_batches=accumulate,
        callbacks=[convexp.lightning.KernelRecorder("lightning-digits", str(db), quiet=True)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )
    train, test = _loaders()
    trainer.fit(module, train, test)
    steps = trainer.global_step
    assert steps == 2 * 10 // accumulate  # 10 batches an epoch
    for layer, conv in (("features.0", module.features[0]), ("features.2", module.features[2])):
        recorded = stored_kernels(db, layer)
        assert sorted(recorded) == list(range(steps + 1))  # step 0, then each optimizer step
        assert recorded[steps].tobytes() == conv.weight.detach().numpy().tobytes()
        assert not np.array_equal(recorded[0], recorded[steps])
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, framework FROM runs").fetchone() == ("finished", "torch")
        names = {n for (n,) in connection.execute("SELECT DISTINCT name FROM metrics")}
        last = connection.execute("SELECT max(step) FROM metrics WHERE name = 'val_accuracy'").fetchone()[0]
    assert {"train_loss", "val_accuracy"} <= names and last == steps
