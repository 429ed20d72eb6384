"""Recording from your own training loop: convexp.track, the Keras callback and the PyTorch helper.

The recorded kernels are checked against the framework's own weights, copied by the test itself
at every step, and read back from the database with plain SQL."""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import convexp
from tests.conftest import REPO, run_cli, sigint_as_a_terminal_delivers_it, stored_kernels


def stored(db, layer: str) -> dict[int, np.ndarray]:
    """step -> kernel of one layer, from the database bytes."""
    return stored_kernels(db, layer)


def test_track_records_whole_steps_with_metrics_and_kernels(tmp_path):
    db = tmp_path / "r.db"
    rng = np.random.default_rng(0)
    logged = {}
    with convexp.track(experiment="mine", db=str(db), config={"lr": 0.1, "seed": 3}) as run:
        for step in range(0, 6):
            kernel = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
            logged[step] = kernel
            run.log_kernels({"convA": (kernel, np.arange(4, dtype=np.float32))}, step=step, epoch=1)
            if step:
                run.log_metrics({"train_loss": 1.0 / step}, step=step)
                run.log_metrics({"train_loss": 2.0 / step}, step=step)  # again at the same step: replaces
        with pytest.raises(ValueError, match="step 2 is before step 5"):
            run.log_metrics({"train_loss": 0.0}, step=2)
        with pytest.raises(ValueError, match="only finite values"):
            run.log_metrics({"train_loss": float("nan")}, step=5)
    recorded = stored(db, "convA")
    assert sorted(recorded) == list(range(6))
    assert all(np.array_equal(recorded[s], logged[s]) for s in logged)
    with sqlite3.connect(db) as connection:
        status, backend, steps, spec, seed = connection.execute(
            "SELECT status, backend, steps_completed, spec, seed FROM runs"
        ).fetchone()
        losses = connection.execute("SELECT step, value FROM metrics ORDER BY step").fetchall()
    assert (status, backend, steps, seed) == ("finished", "external", 5, 3)
    assert json.loads(spec) == {
        "external": True,
        "config": {"lr": 0.1, "seed": 3},
        "dataset": "external",
        "layers": [],
        "kernel_shapes": {"convA": [4, 2, 3, 3]},
    }
    assert losses == [(s, 2.0 / s) for s in range(1, 6)]


def test_a_torch_model_is_read_as_it_is_at_each_step_even_when_its_parameters_are_replaced(tmp_path):
    """The reader keeps flat views of the parameters between steps: an in-place update, a replaced
    Parameter and a change of dtype must all be seen, bit for bit, kernels and biases alike."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, bias=False))
    db = tmp_path / "r.db"
    expected = {}

    def copies():
        return {name: (m.weight.detach().float().numpy().copy(), None if m.bias is None else m.bias.detach().float().numpy().copy())
                for name, m in (("0", model[0]), ("2", model[2]))}  # fmt: skip

    with convexp.track(experiment="mine", db=str(db)) as run:
        run.log_kernels(model, step=0)
        expected[0] = copies()
        with torch.no_grad():
            model[0].weight.mul_(0.5)  # in place, as optimizers update
            model[0].bias.add_(1.0)
        run.log_kernels(model, step=1)
        expected[1] = copies()
        model[2].weight = torch.nn.Parameter(torch.full((8, 4, 3, 3), 0.25))  # a new Parameter object
        run.log_kernels(model, step=2)
        expected[2] = copies()
        model.double()  # new memory, another dtype: recorded as float32
        with torch.no_grad():
            model[0].weight.add_(1e-3)
        run.log_kernels(model, step=3)
        expected[3] = copies()
        other = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3))  # its layer "0" clashes with the model's
        with pytest.raises(ValueError, match="layer 0 logged twice at step 3, from two models"):
            run.log_kernels(other, step=3)
        with pytest.raises(ValueError, match=r"layer 2: kernel shape \[8, 4, 5, 5\] at step 4, \[8, 4, 3, 3\] before"):
            run.log_kernels({"2": np.zeros((8, 4, 5, 5), np.float32)}, step=4)
    for layer in ("0", "2"):
        recorded = stored(db, layer)
        assert sorted(recorded) == [0, 1, 2, 3]
        for step, kernels in expected.items():
            assert recorded[step].tobytes() == kernels[layer][0].tobytes(), (layer, step)
    with sqlite3.connect(db) as connection:
        biases = dict(connection.execute("SELECT step, bias FROM kernel_snapshots WHERE layer = '0' ORDER BY step"))
        assert connection.execute("SELECT count(*) FROM kernel_snapshots WHERE layer = '2' AND bias IS NOT NULL").fetchone() == (
            0,
        )
    assert all(biases[step] == kernels["0"][1].tobytes() for step, kernels in expected.items())


def test_leaving_by_an_exception_or_ctrl_c_keeps_the_complete_steps(tmp_path):
    for error, status in ((RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "interrupted")):
        db = tmp_path / f"{status}.db"
        with pytest.raises(type(error)):
            with convexp.track(experiment="mine", db=str(db)) as run:
                for step in range(4):
                    run.log_kernels({"c": np.full((1, 1, 3, 3), step, np.float32)}, step=step)
                    run.log_metrics({"train_loss": 1.0}, step=step)
                raise error  # step 3 may be partial: left out
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT status, steps_completed FROM runs").fetchone() == (status, 2)
        assert sorted(stored(db, "c")) == [0, 1, 2]


def test_an_unknown_model_is_refused_in_one_line(tmp_path):
    with convexp.track(experiment="mine", db=str(tmp_path / "r.db")) as run:
        with pytest.raises(TypeError, match="cannot read conv kernels from a str: pass a torch nn.Module, a Keras model"):
            run.log_kernels("model", step=0)


def test_importing_the_recording_modules_imports_no_framework():
    code = "import sys, convexp, convexp.tracking, convexp.keras, convexp.torch; convexp.track; print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def read_mnist(folder, count):
    from convexp.datasets.mnist import load

    data = load(folder)
    return data.train_images[:count], data.train_labels[:count], data.test_images[:500], data.test_labels[:500]


def keras_example():
    """examples/recording/keras_mnist_convnet.py as a module (its models; its main() is not run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "keras_mnist_convnet", REPO / "examples" / "recording" / "keras_mnist_convnet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_keras_example_with_the_callback_records_its_own_weights(mnist_dir, tmp_path):
    pytest.importorskip("tensorflow")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    from keras import layers

    import convexp.keras

    x, y, x_test, y_test = read_mnist(mnist_dir, 1024)
    x, x_test = x.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)  # channels-last, as Keras's example
    keras.utils.set_random_seed(0)
    model = keras_example().sequential()  # keras.io/examples/vision/mnist_convnet, as examples/recording has it
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

    class Copies(keras.callbacks.Callback):  # the test's own copy of the weights at every step
        def on_train_begin(self, logs=None):
            self.kernels = [[layer.kernel.numpy().copy() for layer in model.layers if isinstance(layer, layers.Conv2D)]]

        def on_train_batch_end(self, batch, logs=None):
            self.kernels.append([layer.kernel.numpy().copy() for layer in model.layers if isinstance(layer, layers.Conv2D)])

    copies = Copies()
    db = tmp_path / "keras.db"
    model.fit(
        x,
        y,
        batch_size=128,
        epochs=2,
        validation_data=(x_test, y_test),
        verbose=0,
        callbacks=[convexp.keras.KernelRecorder(experiment="keras-example", db=str(db)), copies],
    )
    names = [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]
    for index, name in enumerate(names):
        recorded = stored(db, name)
        assert sorted(recorded) == list(range(17))  # step 0 and 8 steps of each of 2 epochs
        for step, kernels in enumerate(copies.kernels):
            assert np.array_equal(recorded[step], kernels[index].transpose(3, 2, 0, 1)), (name, step)
    with sqlite3.connect(db) as connection:
        names_recorded = {n for (n,) in connection.execute("SELECT DISTINCT name FROM metrics")}
        assert connection.execute("SELECT status, framework FROM runs").fetchone() == ("finished", "keras")
    assert names_recorded == {"train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    for args in (
        ("compare", "1", "1"),
        ("filters", "1", "--layer", names[0]),
        ("plot", "filters", "1", "--layer", names[0], "--out", str(tmp_path / "f.png")),
        ("plot", "curves", "1", "--out", str(tmp_path / "c.png")),
        ("show", "1"),
        ("report", "1", "--out", str(tmp_path / "r.html")),
    ):
        result = run_cli(*args, "--db", str(db))
        assert result.returncode == 0, (args, result.stderr)
    refused = run_cli("plot", "patches", "1", "--layer", names[1], "--out", str(tmp_path / "p.png"), "--db", str(db))
    assert refused.returncode == 1 and "recorded from its own training loop" in refused.stderr


def torch_loop_script(db, mnist_dir, steps: int, pause: float = 0.0) -> str:
    """A plain PyTorch loop as its examples write it, with the two lines of convexp.torch added."""
    return textwrap.dedent(
        f"""
        import sys, time, torch, numpy as np
        import torch.nn.functional as F
        from torch import nn
        import convexp.torch
        from convexp.datasets.mnist import load

        data = load({str(mnist_dir)!r})
        x, y = torch.from_numpy(data.train_images[:4096]), torch.from_numpy(data.train_labels[:4096])
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 10))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        copies = [[m.weight.detach().clone().numpy() for m in model if isinstance(m, nn.Conv2d)]]
        with convexp.torch.record(model, experiment="torch-loop", db={str(db)!r}) as recorder:
            for step in range({steps}):
                index = torch.arange(step * 64, step * 64 + 64) % 4096
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x[index]), y[index])
                loss.backward()
                optimizer.step()
                recorder.step(train_loss=loss.item())
                copies.append([m.weight.detach().clone().numpy() for m in model if isinstance(m, nn.Conv2d)])
                print(step + 1, flush=True)
                time.sleep({pause})
        np.savez(sys.argv[1], *[c for step in copies for c in step])
        """
    )


def test_a_plain_torch_loop_with_the_helper_records_its_own_weights(mnist_dir, tmp_path):
    pytest.importorskip("torch")
    db = tmp_path / "torch.db"
    script = tmp_path / "loop.py"
    script.write_text(torch_loop_script(db, mnist_dir, steps=20))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "copies.npz")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "copies.npz") as copies:
        arrays = [copies[f"arr_{i}"] for i in range(len(copies.files))]
    for index, name in enumerate(("0", "3")):  # nn.Sequential names its modules by position
        recorded = stored(db, name)
        assert sorted(recorded) == list(range(21))
        for step in range(21):
            assert np.array_equal(recorded[step], arrays[2 * step + index]), (name, step)
    assert run_cli("compare", "1", "1", "--db", str(db)).returncode == 0
    assert run_cli("filters", "1", "--layer", "0", "--db", str(db)).returncode == 0


def test_killing_the_users_script_leaves_whole_steps_and_a_stale_run(mnist_dir, tmp_path):
    pytest.importorskip("torch")
    db = tmp_path / "killed.db"
    script = tmp_path / "loop.py"
    script.write_text(torch_loop_script(db, mnist_dir, steps=100000, pause=0.01))
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "c.npz")], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    for line in process.stdout:
        if int(line) >= 300:
            break
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    runs = json.loads(run_cli("runs", "--db", str(db), "-f", "json").stdout)
    assert runs[0]["status"] == "stale"
    with sqlite3.connect(db) as connection:
        (done,) = connection.execute("SELECT steps_completed FROM runs").fetchone()
        snapshot_steps = [s for (s,) in connection.execute("SELECT step FROM kernel_snapshots WHERE layer = '0' ORDER BY step")]
        loss_steps = [s for (s,) in connection.execute("SELECT step FROM metrics ORDER BY step")]
    assert done >= 250
    assert snapshot_steps == list(range(done + 1))  # every whole step, and nothing beyond what the run claims
    assert loss_steps == list(range(1, done + 1))


def test_the_web_app_shows_a_tracked_run(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from convexp.ui import create_app

    db = tmp_path / "r.db"
    with convexp.track(experiment="mine", db=str(db)) as run:
        for step in range(3):
            run.log_kernels({"c": np.full((2, 1, 3, 3), step, np.float32)}, step=step)
            run.log_metrics({"train_loss": 1.0 + step}, step=step)
    client = TestClient(create_app(str(db)))
    try:
        for path in ("/", "/runs/1", "/api/runs", "/api/runs/1", "/api/runs/1/metrics", "/api/runs/1/layers/c/steps"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
        assert client.get("/api/runs/1/layers/c/steps").json()["steps"] == [0, 1, 2]
    finally:
        client.app.state.store.close()


def test_a_run_without_a_with_block_is_ended_by_finish_and_refuses_more_logging_by_name(tmp_path):
    db = tmp_path / "r.db"
    run = convexp.track(experiment="cells", db=str(db))  # as a notebook spreads a run over cells
    for step in range(3):
        run.log_kernels({"c": np.full((2, 1, 3, 3), step, np.float32)}, step=step)
    del run  # nothing but the user's name held it: the run must go on
    gc.collect()
    assert "convexp-writer-run-1" in {thread.name for thread in threading.enumerate()}
    run = convexp.track(experiment="cells", db=str(db))
    run.log_metrics({"train_loss": 1.0}, step=0)
    run.finish()
    run.finish()  # again: nothing
    with pytest.raises(convexp.tracking.RunEndedError, match=r"^run 2 has ended \(finished\): nothing more can be logged"):
        run.log_metrics({"train_loss": 1.0}, step=1)
    other = convexp.track(experiment="x", db=str(tmp_path / "other.db"))
    with pytest.raises(ValueError, match="a run ends finished, failed, interrupted, not 'done'"):
        other.finish("done")
    other.finish("failed", "a test")
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT id, status FROM runs ORDER BY id").fetchall() == [(1, "running"), (2, "finished")]
    (first,) = [open_run for open_run in convexp.tracking.run._open_runs if open_run.store.location == str(db)]
    first.finish()  # what interpreter exit would do
    assert sorted(stored(db, "c")) == [0, 1, 2]


def exit_script(db, ending: str) -> str:
    """A script that logs three steps without a with block and never calls finish(), then ends as said."""
    return textwrap.dedent(
        f"""
        import os, signal, sys, numpy as np, convexp
        run = convexp.track(experiment="left-open", db={str(db)!r})
        for step in range(3):
            run.log_kernels({{"c": np.full((2, 1, 3, 3), step, np.float32)}}, step=step)
            run.log_metrics({{"train_loss": 1.0 + step}}, step=step)
            run.end_step()
        child = os.fork()
        if child == 0:  # a forked worker: its logging and its exit leave the parent's run alone
            run.log_metrics({{"train_loss": 9.0}}, step=7)
            run.finish("failed", "from the child")
            sys.exit(0)
        os.waitpid(child, 0)
        {ending}
        """
    )


@pytest.mark.parametrize(
    ("ending", "status", "message", "steps"),
    [
        ("pass", "finished", "finished at interpreter exit, without finish()", 2),
        ("raise RuntimeError('boom')", "failed", "RuntimeError: boom", 2),
        ("os.kill(os.getpid(), signal.SIGINT)", "interrupted", "interrupted (Ctrl-C)", 2),
    ],
)
def test_a_run_never_finished_is_closed_at_interpreter_exit_as_the_process_ended(tmp_path, ending, status, message, steps):
    db = tmp_path / "r.db"
    script = tmp_path / "script.py"
    script.write_text(exit_script(db, ending))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=REPO, preexec_fn=sigint_as_a_terminal_delivers_it
    )
    assert (result.returncode == 0) == (status == "finished"), result.stderr
    said = f"convexp: recorded as run 1 ({status}) in {db}"
    assert said in result.stderr.splitlines()  # where the run went, said once
    assert "convexp" not in result.stderr.replace(str(script), "").replace(said, "")  # and no error of convexp's at exit
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status, message, steps_completed FROM runs").fetchone() == (status, message, steps)
        assert connection.execute("SELECT step, value FROM metrics ORDER BY step").fetchall() == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert sorted(stored(db, "c")) == [0, 1, 2]  # end_step() kept the last step, whatever the ending
