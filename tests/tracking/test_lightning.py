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
        validated = [s for (s,) in connection.execute("SELECT step FROM metrics WHERE name = 'val_accuracy' ORDER BY step")]
        trained = connection.execute("SELECT count(*) FROM metrics WHERE name = 'train_loss'").fetchone()[0]
    assert {"train_loss", "val_accuracy"} <= names
    # validation runs at each epoch's end: its metric is recorded there only, not again at every step of the next
    # epoch (Lightning keeps its last value among the callback metrics); the training loss at every step
    assert validated == [steps // 2, steps] and trained == steps


def test_lightning_s_own_checkpoints_import_as_one_run_at_their_global_steps(tmp_path):
    """Three epochs' checkpoints as Lightning's ModelCheckpoint writes them (weights_only loading of the real files),
    given in any order: one run of three snapshots at their global steps, each equal to the module's weights then."""
    from tests.conftest import run_cli

    class Snapshots(pl.Callback):  # the test's own copy of the weights at each epoch's end
        def __init__(self):
            self.kernels = {}

        def on_train_epoch_end(self, trainer, module):
            self.kernels[trainer.global_step] = module.features[0].weight.detach().numpy().copy()

    torch.manual_seed(0)
    module, copies = DigitsNet(), Snapshots()
    checkpoints = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    trainer = pl.Trainer(
        max_epochs=3, callbacks=[checkpoints, copies], logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
    )  # fmt: skip
    train, test = _loaders()
    trainer.fit(module, train, test)
    files = sorted((tmp_path / "ckpt").glob("*.ckpt"), reverse=True)
    assert len(files) == 3
    db = tmp_path / "r.db"
    result = run_cli("import", *map(str, files), "-e", "lightning-checkpoints", "--db", str(db))
    assert result.returncode == 0, result.stderr
    recorded = stored_kernels(db, "features.0")
    assert sorted(recorded) == sorted(copies.kernels) == [10, 20, 30]
    for step, kernel in copies.kernels.items():
        assert recorded[step].tobytes() == kernel.tobytes()
