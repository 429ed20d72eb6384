"""`convexp import`: saved weights (torch state dicts and checkpoints, safetensors, ONNX) recorded as a run whose
kernels equal, bit for bit, what the saving framework held -- written here as a user's script writes them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tests.conftest import TINY_DIGITS, one_line_error, run_cli, sha256, stored_kernels, write_experiments

torch = pytest.importorskip("torch")
nn = torch.nn

#: An asymmetric 3x3 pattern: a kernel read in the wrong layout (transposed, flipped) would not equal it.
PATTERN = np.arange(9, dtype=np.float32).reshape(3, 3) / 10 - 0.3


class Net(nn.Module):  # the user's own model, defined in their script
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2, bias=False))
        self.fc = nn.Linear(6, 10)

    def forward(self, x):
        return self.fc(self.body(self.conv1(x)).mean(dim=(2, 3)))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        net.conv1.weight[2, 0] = torch.from_numpy(PATTERN)
    return net


def _check(db, net: Net, step: int, run_id: int = 1) -> None:
    for layer, module in (("conv1", net.conv1), ("body.1", net.body[1])):
        kernel = stored_kernels(db, layer, run_id)[step]
        assert kernel.tobytes() == module.weight.detach().numpy().tobytes(), layer
    assert np.array_equal(stored_kernels(db, "conv1", run_id)[step][2, 0], PATTERN)  # in its place, as saved


def test_a_torch_state_dict_is_one_snapshot_equal_to_the_model(tmp_path):
    net = _net()
    path = tmp_path / "net.pt"
    torch.save(net.state_dict(), path)
    db = tmp_path / "r.db"
    result = run_cli("import", str(path), "-e", "saved", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert f"imported 1 file(s) as run 1 in {db}: step(s) 0; layers conv1, body.1" in result.stdout
    _check(db, net, 0)
    shown = run_cli("show", "1", "--db", str(db)).stdout
    assert "imported from 1 saved torch file(s) (convexp import): net.pt as step 0" in shown
    assert "conv1 [4, 1, 3, 3], body.1 [6, 2, 3, 3]" in shown
    assert run_cli("filters", "1", "--db", str(db)).returncode == 0
    again = run_cli("import", str(path), "-e", "saved", "--db", str(db))
    one_line_error(again, f"{path} was already imported as run 1")


def test_lightning_checkpoints_are_one_run_at_their_global_steps(tmp_path):
    """Three checkpoints as Lightning writes them (the model's state_dict beside global_step, epoch, the
    optimizer's states), given out of order: one run of three snapshots at steps 10, 20, 30."""
    nets = []
    for k in (1, 2, 3):
        net = _net(seed=k)
        nets.append(net)
        checkpoint = {
            "epoch": k - 1,
            "global_step": 10 * k,
            "pytorch-lightning_version": "2.5.0",
            "state_dict": net.state_dict(),
            "optimizer_states": [torch.optim.SGD(net.parameters(), lr=0.1).state_dict()],
            "lr_schedulers": [],
        }
        torch.save(checkpoint, tmp_path / f"epoch={k - 1}-step={10 * k}.ckpt")
    db = tmp_path / "r.db"
    files = [str(tmp_path / name) for name in ("epoch=2-step=30.ckpt", "epoch=0-step=10.ckpt", "epoch=1-step=20.ckpt")]
    result = run_cli("import", *files, "-e", "lightning", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert sorted(stored_kernels(db, "conv1")) == [10, 20, 30]
    for k, net in zip((1, 2, 3), nets):
        _check(db, net, 10 * k)


def test_a_safetensors_file_and_file_name_steps(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="pip install 'convexp[import]'")
    nets = [_net(seed=k) for k in (0, 1)]
    for k, net in enumerate(nets):
        arrays = {name: tensor.detach().numpy() for name, tensor in net.state_dict().items()}
        safetensors_numpy.save_file(arrays, str(tmp_path / f"model_{(k + 1) * 400:04d}.safetensors"))
    db = tmp_path / "r.db"
    paths = sorted(str(p) for p in tmp_path.glob("*.safetensors"))
    assert run_cli("import", *paths, "-e", "st", "--db", str(db)).returncode == 0
    assert sorted(stored_kernels(db, "conv1")) == [400, 800]  # from the numbers in the file names
    _check(db, nets[0], 400)
    _check(db, nets[1], 800)


def test_an_onnx_model_s_conv_nodes_are_its_layers(tmp_path):
    onnx = pytest.importorskip("onnx", reason="pip install 'convexp[import]'")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    kernel[2, 0] = PATTERN
    bias = rng.standard_normal(4).astype(np.float32)
    grouped = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "W1", "B1"], ["h"], name="conv1"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Conv", ["r", "W2"], ["y"], name="conv2", group=2),
        ],
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 4])],
        [numpy_helper.from_array(a, n) for a, n in ((kernel, "W1"), (bias, "B1"), (grouped, "W2"))],
    )
    path = tmp_path / "net.onnx"
    onnx.save(helper.make_model(graph), str(path))
    db = tmp_path / "r.db"
    result = run_cli("import", str(path), "-e", "onnx", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert stored_kernels(db, "conv1")[0].tobytes() == kernel.tobytes()
    assert stored_kernels(db, "conv2")[0].tobytes() == grouped.tobytes()
    with sqlite3.connect(db) as connection:
        stored_bias = connection.execute("SELECT bias FROM kernel_snapshots WHERE layer = 'conv1'").fetchone()[0]
    assert np.frombuffer(stored_bias, "<f4").tobytes() == bias.tobytes()


def test_bad_files_are_one_line_each_and_write_nothing(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(_net().state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    linear = tmp_path / "linear.pt"
    torch.save(nn.Linear(3, 2).state_dict(), linear)
    pickled = tmp_path / "pickled.pt"
    torch.save(_net(), pickled)  # the whole module, pickled
    db = tmp_path / "r.db"
    for path, needles in (
        (truncated, ["truncated.pt: not a readable torch file"]),
        (text, ["notes.pt: not a readable torch file"]),
        (linear, ["linear.pt: no conv kernel in it"]),
        (pickled, ["pickled.pt: it holds pickled Python objects", "torch.save(model.state_dict(), PATH)"]),
        (tmp_path / "missing.pt", ["missing.pt: no such file"]),
        (tmp_path / "model.h5x", ["model.h5x: no such file"]),
    ):
        one_line_error(run_cli("import", str(good), str(path), "-e", "bad", "--db", str(db)), *needles)
    assert sha256(db) is None  # not even the database was made
    other = write_experiments(tmp_path / "e.yaml", {"tiny": TINY_DIGITS})
    assert run_cli("run", str(other), "--db", str(db)).returncode == 0
    before = sha256(db)
    one_line_error(run_cli("import", str(good), "-e", "bad", "--layers", "conv9", "--db", str(db)), "no conv layer named conv9")
    one_line_error(run_cli("import", str(good), "-e", "bad", "--steps", "1,2", "--db", str(db)), "--steps gives 2 step(s) for 1")
    assert sha256(db) == before
    # a trained run and a saved model side by side: their conv1 compared
    assert run_cli("import", str(good), "-e", "saved", "--db", str(db)).returncode == 0
    compared = run_cli("compare", "1", "2", "--db", str(db))
    assert compared.returncode == 0 and "conv1" in compared.stdout, compared.stderr


def test_keras_files_are_read_as_keras_saved_them(tmp_path):
    """A .keras model (its layers by name, as a recorded Keras model's) and its .weights.h5 (the layers by the
    names Keras saved them under): Conv2D, DepthwiseConv2D and SeparableConv2D kernels in convexp's layout, equal
    bit for bit to the model's, the asymmetric pattern where it was put."""
    pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from convexp.tracking.model_kernels import kernels_of

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((9, 9, 1)),
            keras.layers.Conv2D(4, 3, name="c1"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
            keras.layers.SeparableConv2D(5, 3, name="sep"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    kernel = model.get_layer("c1").kernel.numpy()
    kernel[:, :, 0, 2] = PATTERN  # filter 2, input channel 0: (kh, kw, in, out) in Keras
    model.get_layer("c1").kernel.assign(kernel)
    expected = kernels_of(model)
    assert np.array_equal(expected["c1"][0][2, 0], PATTERN)
    model.save(tmp_path / "net.keras")
    model.save_weights(tmp_path / "net.weights.h5")
    saved_names = {"c1": "conv2d", "dw": "depthwise_conv2d", "sep/depthwise": "separable_conv2d/depthwise"}
    saved_names["sep/pointwise"] = "separable_conv2d/pointwise"
    for file, names in (("net.keras", {n: n for n in saved_names}), ("net.weights.h5", saved_names)):
        db = tmp_path / f"{file}.db"
        result = run_cli("import", str(tmp_path / file), "-e", "keras", "--db", str(db))
        assert result.returncode == 0, result.stderr
        for ours, stored_as in names.items():
            assert stored_kernels(db, stored_as)[0].tobytes() == expected[ours][0].tobytes(), (file, ours)
        with sqlite3.connect(db) as connection:
            biases = dict(connection.execute("SELECT layer, bias FROM kernel_snapshots").fetchall())
        assert np.frombuffer(biases[names["c1"]], "<f4").tobytes() == expected["c1"][1].tobytes()
        assert biases[names["sep/depthwise"]] is None and biases[names["sep/pointwise"]] is not None
