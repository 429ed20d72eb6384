"""Scripts written the way people write them, recorded exactly and without changing the model: convs under a
parametrization (spectral norm, weight norm: every GAN discriminator), a TorchScript model fine-tuned, and Keras
on its torch backend. Each model is defined here, as a user's is in their script; the last snapshot is compared bit
for bit with the weights the model ends with."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convexp.torch
from tests.conftest import run_cli, stored_kernels

torch = pytest.importorskip("torch")
nn = torch.nn


class Discriminator(nn.Module):  # a GAN discriminator's shape, its convs spectrally normalised
    def __init__(self, norm):
        super().__init__()
        self.conv1 = norm(nn.Conv2d(1, 4, 3, stride=2))
        self.conv2 = norm(nn.Conv2d(4, 8, 3))
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        x = torch.nn.functional.leaky_relu(self.conv1(x), 0.2)
        x = torch.nn.functional.leaky_relu(self.conv2(x), 0.2)
        return self.head(x.mean(dim=(2, 3)))


NORMS = {
    "parametrizations.spectral_norm": lambda m: torch.nn.utils.parametrizations.spectral_norm(m),
    "parametrizations.weight_norm": lambda m: torch.nn.utils.parametrizations.weight_norm(m),
    "utils.spectral_norm (the older hook)": lambda m: torch.nn.utils.spectral_norm(m),
    "utils.weight_norm (the older hook)": lambda m: torch.nn.utils.weight_norm(m),
}


def _train(model, record, steps=4):
    """A few updates of ``model`` (on fixed data), recorded into ``record`` when given."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    data = torch.randn(steps, 8, 1, 9, 9, generator=torch.Generator().manual_seed(1))
    for x in data:
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()
        if record is not None:
            record.step(train_loss=1.0)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.nn.utils.weight_norm is deprecated in favour of parametrizations
@pytest.mark.parametrize("norm", list(NORMS))
def test_a_parametrized_conv_is_recorded_as_its_effective_kernel_and_the_model_is_unchanged(tmp_path, norm):
    torch.manual_seed(0)
    recorded_model = Discriminator(NORMS[norm])
    torch.manual_seed(0)
    plain_model = Discriminator(NORMS[norm])
    db = tmp_path / "r.db"
    with convexp.torch.record(recorded_model, experiment="gan", db=str(db), every=1) as recorder:
        _train(recorded_model, recorder)
    _train(plain_model, None)
    # recording ran no power iteration and computed no gradient: both models are the same, bit for bit
    ours, theirs = recorded_model.state_dict(), plain_model.state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # the last snapshot is the kernel the layer computes with (in eval mode: no power iteration); the older hooks
    # set .weight when the model is called, so it is called once
    recorded_model.eval()
    with torch.no_grad():
        recorded_model(torch.zeros(1, 1, 9, 9))
        for layer in ("conv1", "conv2"):
            last = stored_kernels(db, layer)
            assert sorted(last) == [0, 1, 2, 3, 4]
            assert last[4].tobytes() == getattr(recorded_model, layer).weight.detach().numpy().tobytes()


def test_a_torchscript_model_fine_tuned_is_recorded_by_its_conv_paths(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2))
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            return self.fc(self.features(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    eager = Net()
    scripted = torch.jit.script(eager)  # shares the eager model's parameters
    db = tmp_path / "r.db"
    with convexp.torch.record(scripted, experiment="scripted", db=str(db)) as recorder:
        _train(scripted, recorder, steps=3)
    for layer in ("features.0", "features.2"):
        last = stored_kernels(db, layer)
        assert sorted(last) == [0, 1, 2, 3]
        assert last[3].tobytes() == eager.get_submodule(layer).weight.detach().numpy().tobytes()
        assert not np.array_equal(last[0], last[3])  # it trained
    with __import__("sqlite3").connect(db) as connection:
        spec = connection.execute("SELECT spec FROM runs").fetchone()[0]
    assert '"groups": 2' in spec or '"features.2": 2' in spec  # the grouped layer's groups are recorded


def test_a_torchscript_transposed_conv_is_refused_by_name():
    from convexp.errors import ModelError
    from convexp.tracking.model_kernels import kernels_of

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.up = nn.ConvTranspose2d(2, 1, 3)

        def forward(self, x):
            return self.up(self.conv(x))

    scripted = torch.jit.script(Up())
    with pytest.raises(ModelError, match=r"layer up of the RecursiveScriptModule is a TorchScript 2-D transposed"):
        kernels_of(scripted)
    assert list(kernels_of(scripted, layers=["conv"])) == ["conv"]


def test_keras_on_its_torch_backend_is_read_as_keras(tmp_path):
    """KERAS_BACKEND=torch: every Keras layer is a torch Module too; its kernels are read as Keras's, transposed to
    convexp's layout, and equal the layer's own."""
    pytest.importorskip("keras")
    script = textwrap.dedent(
        """
        import os, sys
        os.environ["KERAS_BACKEND"] = "torch"
        import numpy as np, keras, torch
        from convexp.tracking.model_kernels import kernels_of
        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, name="conv"), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
        assert isinstance(model, torch.nn.Module)
        (name, (kernel, bias)), = kernels_of(model).items()
        expected = np.asarray(keras.ops.convert_to_numpy(model.get_layer("conv").kernel)).transpose(3, 2, 0, 1)
        assert name == "conv" and kernel.shape == (3, 1, 3, 3) and kernel.tobytes() == expected.tobytes()
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def _keras_model(keras):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, name="conv"), keras.layers.Flatten(), keras.layers.Dense(10)]
    )


def _keras_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 64)


def _runs(db) -> list[tuple]:
    with __import__("sqlite3").connect(db) as connection:
        return connection.execute(
            "SELECT id, status, (SELECT group_concat(step) FROM (SELECT DISTINCT step FROM kernel_snapshots k "
            "WHERE k.run_id = r.id ORDER BY step)) FROM runs r ORDER BY id"
        ).fetchall()


def test_keras_steps_are_the_optimizer_s_updates_with_steps_per_execution(tmp_path):
    keras = pytest.importorskip("keras")
    import convexp.keras

    model = _keras_model(keras)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", steps_per_execution=4)
    x, y = _keras_data()
    db = tmp_path / "r.db"
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[convexp.keras.KernelRecorder("spe", str(db))])
    assert _runs(db) == [(1, "finished", "0,4,8,12,16")]  # 16 updates, a callback every 4
    last = stored_kernels(db, "conv")[16]
    assert last.tobytes() == np.asarray(model.get_layer("conv").kernel.numpy()).transpose(3, 2, 0, 1).tobytes()


def test_a_keras_callback_used_for_two_fits_records_two_runs_or_continues_one(tmp_path):
    """Freeze, fit, unfreeze, recompile, fit again: by default a run per fit, each counted from 0; with
    continue_run one run whose steps go on through the second fit's (recompiled) optimizer."""
    keras = pytest.importorskip("keras")
    import convexp.keras

    x, y = _keras_data()
    for continue_run, expected in (
        (False, [(1, "finished", "0,1,2,3,4,5,6,7,8"), (2, "finished", "0,1,2,3,4,5,6,7,8")]),
        (True, [(1, "running", ",".join(map(str, range(17))))]),
    ):
        model = _keras_model(keras)
        db = tmp_path / f"continue-{continue_run}.db"
        recorder = convexp.keras.KernelRecorder("two-fits", str(db), continue_run=continue_run)
        model.get_layer("conv").trainable = False
        model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[recorder])
        model.get_layer("conv").trainable = True
        model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")  # a new optimizer: 0 updates
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[recorder])
        if continue_run:
            recorder.run.finish()
            expected = [(1, "finished", expected[0][2])]
        assert _runs(db) == expected
        last = stored_kernels(db, "conv", run_id=len(expected))[8 if not continue_run else 16]
        assert last.tobytes() == np.asarray(model.get_layer("conv").kernel.numpy()).transpose(3, 2, 0, 1).tobytes()


def test_a_tracked_sequential_run_says_where_it_went_and_reads_like_any_run(tmp_path):
    """The end of a tracked run names it on stderr; `show` lists the layers recorded and the config (no n/a);
    `filters` and `plot` look at the model's first conv layer without --layer."""
    script = textwrap.dedent(
        f"""
        import torch, convexp.torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3), torch.nn.Flatten(),
                                    torch.nn.Linear(2 * 4 * 4, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with convexp.torch.record(model, experiment="seq", db={str(tmp_path / "r.db")!r}, config={{"lr": 0.1}}) as recorder:
            for _ in range(3):
                optimizer.zero_grad(); model(torch.randn(4, 1, 8, 8)).sum().backward(); optimizer.step()
                recorder.step(train_loss=1.0)
        assert recorder.run.run_id == 1
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"convexp: recorded as run 1 (finished) in {tmp_path / 'r.db'}"
    db = ["--db", str(tmp_path / "r.db")]
    shown = run_cli("show", "1", *db).stdout
    assert "n/a" not in shown and "None" not in shown
    assert "  layers      0 [4, 1, 3, 3], 2 [2, 4, 3, 3] (conv kernels: out, in / groups, kh, kw)" in shown
    assert "  config      lr 0.1" in shown and "from its own torch training loop" in shown
    filters = run_cli("filters", "1", *db)
    assert filters.returncode == 0 and "step 3: " in filters.stdout, filters.stderr
    drawn = run_cli("plot", "filters", "1", "--out", str(tmp_path / "f.png"), *db)
    assert drawn.returncode == 0 and (tmp_path / "f.png").exists(), drawn.stderr
    missing = run_cli("filters", "1", "--layer", "conv1", *db)
    assert missing.returncode == 1 and "layers with snapshots: 0, 2" in missing.stderr
