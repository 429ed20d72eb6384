"""Which models and conv layers the recorder reads, and how: any torch nn.Module and any Keras 3 model,
recognised by isinstance (the models here are defined in this file, as a user's are in theirs),
conv layers named by their full path, grouped and depthwise kernels checked against the framework's
own convolution, and every layer the recorder cannot record refused in one line."""

from __future__ import annotations

import json
import os
import re
import sqlite3

import numpy as np
import pytest

import convexp
from convexp.errors import ModelError
from convexp.tracking.model_kernels import kernels_of
from tests.conftest import stored_kernels


def torch_or_skip():
    return pytest.importorskip("torch")


def keras_or_skip():
    pytest.importorskip("tensorflow")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


# --- PyTorch ---------------------------------------------------------------------------------


def torch_net():
    torch = torch_or_skip()
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)
            self.norm = nn.BatchNorm2d(cout)

        def forward(self, x):
            return torch.relu(self.norm(self.conv(x)))

    class Net(nn.Module):  # defined here, in the test's module: its __module__ is not torch's
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
            self.block1 = Block(4, 6)
            self.heads = nn.ModuleList([nn.Conv2d(6, 2, 1, bias=False)])
            self.fc = nn.Linear(2, 10)

        def forward(self, x):
            x = self.heads[0](self.block1(self.features(x)))
            return self.fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    return torch, Net()


def test_a_subclassed_torch_model_is_read_with_full_paths_bit_for_bit():
    torch, net = torch_net()
    found = kernels_of(net)
    assert list(found) == ["features.0", "block1.conv", "heads.0"]
    modules = dict(net.named_modules())
    for name, (kernel, bias) in found.items():
        assert kernel.tobytes() == modules[name].weight.detach().numpy().tobytes()
        assert (bias is None) == (modules[name].bias is None)
        if bias is not None:
            assert bias.tobytes() == modules[name].bias.detach().numpy().tobytes()


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_every_read_of_a_training_torch_model_is_its_weights_at_that_moment(tmp_path, memory_format):
    """The reader keeps views of the parameters' memory between reads; each read must still be the
    weights as they are then, after in-place updates and a parameter replaced, and in the (out, in,
    kh, kw) order also for channels_last weights (whose memory is laid out otherwise)."""
    from convexp.tracking.model_kernels import kernel_reader

    torch, net = torch_net()
    if memory_format == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        assert not net.block1.conv.weight.is_contiguous()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    reader = kernel_reader(net)
    modules = dict(net.named_modules())

    def expected() -> bytes:
        parts = []
        for name, _, bias in reader.layout:
            parts.append(modules[name].weight.detach().contiguous().numpy().tobytes())
            if bias is not None:
                parts.append(modules[name].bias.detach().numpy().tobytes())
        return b"".join(parts)

    for step in range(3):
        _, flat = reader()
        assert flat.dtype == np.float32 and flat.tobytes() == expected(), step
        optimizer.zero_grad()
        net(torch.randn(2, 1, 8, 8)).sum().backward()
        optimizer.step()  # in place: the same parameters, the same memory
    with torch.no_grad():
        net.block1.conv.weight = torch.nn.Parameter(net.block1.conv.weight * 2)  # a new parameter object
    modules = dict(net.named_modules())
    assert reader()[1].tobytes() == expected()


def test_wrapped_torch_models_are_named_as_the_model_they_wrap():
    torch, net = torch_net()
    expected = list(kernels_of(net))
    compiled = torch.compile(net)  # compiles on the first call, not here
    assert not isinstance(compiled, type(net))
    assert list(kernels_of(compiled)) == expected
    assert list(kernels_of(torch.nn.DataParallel(net))) == expected
    assert list(kernels_of(torch.nn.Sequential(net))) == ["0." + name for name in expected]  # a container is not a wrapper


def test_grouped_and_depthwise_torch_convs_are_recorded_with_their_real_shape_and_groups(tmp_path):
    torch = torch_or_skip()
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 16, 3, groups=8))
    db = tmp_path / "g.db"
    with convexp.track(experiment="grouped", db=str(db)) as run:
        run.log_kernels(model, step=0)
    assert stored_kernels(db, "0")[0].shape == (8, 2, 3, 3)
    assert stored_kernels(db, "1")[0].shape == (16, 1, 3, 3)
    with sqlite3.connect(db) as connection:
        spec = json.loads(connection.execute("SELECT spec FROM runs").fetchone()[0])
    assert spec["groups"] == {"0": 2, "1": 8}
    assert spec["kernel_shapes"] == {"0": [8, 2, 3, 3], "1": [16, 1, 3, 3]}


def test_torch_conv_layers_that_are_not_2d_are_refused_by_name_unless_left_out():
    torch = torch_or_skip()
    nn = torch.nn

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv1d(1, 2, 3)
            self.body = nn.Sequential(nn.Conv2d(1, 2, 3))
            self.up = nn.ConvTranspose2d(2, 2, 2)

    mixed = Mixed()
    with pytest.raises(
        ModelError,
        match=r"^layer stem of the .*Mixed is a Conv1d: convexp records 2-D convolution kernels only \(Conv2d\); to record the others, pass layers=\['body.0'\]$",
    ):
        kernels_of(mixed)
    with pytest.raises(ModelError, match=r"layer up of the .*Mixed is a ConvTranspose2d"):
        kernels_of(mixed, layers=["body.0", "up"])
    assert list(kernels_of(mixed, layers=["body.0"])) == ["body.0"]
    with pytest.raises(ModelError, match=r"no conv layer named nope in the .*Mixed; its conv layers: body.0"):
        kernels_of(mixed, layers=["nope"])
    with pytest.raises(ModelError, match=r"is a LazyConv2d not initialised yet: run a forward pass before recording"):
        kernels_of(nn.Sequential(nn.LazyConv2d(4, 3)))
    with pytest.raises(ModelError, match=r"^the .*Linear has no 2-D conv layer \(Conv2d / Conv2D\): nothing to record$"):
        kernels_of(nn.Linear(3, 3))


def test_a_model_that_cannot_be_read_ends_the_run_failed_in_one_line(tmp_path):
    torch = torch_or_skip()
    import convexp.torch

    db = tmp_path / "r.db"
    with pytest.raises(ModelError, match="has no 2-D conv layer"):
        convexp.torch.record(torch.nn.Linear(2, 2), experiment="no-conv", db=str(db))
    with sqlite3.connect(db) as connection:
        status, message = connection.execute("SELECT status, message FROM runs").fetchone()
    assert status == "failed" and "has no 2-D conv layer" in message


# --- Keras 3 ---------------------------------------------------------------------------------


def keras_models(keras):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(4, 3, name="c1"),
            layers.Conv2D(6, 3, name="c2"),
            layers.Flatten(),
            layers.Dense(3),
        ]
    )
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, name="c1")(inputs)
    x = layers.Conv2D(6, 3, name="c2", use_bias=False)(x)
    functional = keras.Model(inputs, layers.Dense(3)(layers.Flatten()(x)))

    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = layers.Conv2D(6, 3, name="conv")

        def call(self, x):
            return self.conv(x)

    class Small(keras.Model):  # a subclass defined in the test, with a nested layer
        def __init__(self):
            super().__init__()
            self.c1 = layers.Conv2D(4, 3, name="c1")
            self.block1 = Block(name="block1")
            self.head = layers.Dense(3)

        def call(self, x):
            return self.head(layers.Flatten()(self.block1(self.c1(x))))

    subclassed = Small()
    subclassed(np.zeros((1, 8, 8, 1), np.float32))  # built by a call, as fit does
    nested = keras.Sequential([keras.Input((8, 8, 1)), sequential, layers.Dense(2)], name="outer")
    return {"sequential": sequential, "functional": functional, "subclassed": subclassed, "nested": nested}


def test_every_kind_of_keras_model_is_read_by_layer_path_bit_for_bit():
    keras = keras_or_skip()
    models = keras_models(keras)
    expected_names = {
        "sequential": ["c1", "c2"],
        "functional": ["c1", "c2"],
        "subclassed": ["c1", "block1/conv"],
        "nested": [f"{models['sequential'].name}/c1", f"{models['sequential'].name}/c2"],
    }
    for kind, model in models.items():
        found = kernels_of(model)
        assert list(found) == expected_names[kind], kind
        convs = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.Conv2D)]
        for (kernel, bias), layer in zip(found.values(), convs):
            # Keras keeps (kh, kw, in, out); convexp (out, in, kh, kw)
            assert kernel.tobytes() == np.ascontiguousarray(layer.kernel.numpy().transpose(3, 2, 0, 1)).tobytes(), kind
            assert (bias is None) == (layer.bias is None)


def _all_layers(layer):
    for inner in layer._layers:
        yield inner
        yield from _all_layers(inner)


def test_grouped_and_depthwise_keras_kernels_compute_what_keras_computes():
    """The canonical kernel, convolved by torch as a grouped convolution, gives Keras's own output:
    an independent check of the transposes, and of the depthwise channel order."""
    keras = keras_or_skip()
    torch = torch_or_skip()
    layers = keras.layers
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((7, 7, 4)),
            layers.Conv2D(6, 3, groups=2, name="grouped"),
            layers.DepthwiseConv2D(3, depth_multiplier=2, name="depthwise"),
        ]
    )
    found = kernels_of(model)
    assert found["grouped"][0].shape == (6, 2, 3, 3)
    assert found["depthwise"][0].shape == (12, 1, 3, 3)
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 4)).astype(np.float32)
    keras_first = model.layers[0](x).numpy()
    keras_both = model(x).numpy()
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    kernel, bias = (torch.from_numpy(np.array(a)) for a in found["grouped"])
    first = torch.nn.functional.conv2d(tx, kernel, bias, groups=2)
    np.testing.assert_allclose(first.numpy().transpose(0, 2, 3, 1), keras_first, rtol=1e-5, atol=1e-5)
    kernel, bias = (torch.from_numpy(np.array(a)) for a in found["depthwise"])
    both = torch.nn.functional.conv2d(first, kernel, bias, groups=6)
    np.testing.assert_allclose(both.numpy().transpose(0, 2, 3, 1), keras_both, rtol=1e-4, atol=1e-5)


def test_a_keras_separable_conv_is_recorded_as_its_two_convolutions_computing_what_keras_computes():
    """SeparableConv2D = a depthwise conv (no bias) then a 1x1 conv (with the bias): the two canonical kernels,
    convolved by torch, give Keras's own output."""
    keras = keras_or_skip()
    torch = torch_or_skip()
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((7, 7, 3)), keras.layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")])
    found = kernels_of(model)
    assert list(found) == ["sep/depthwise", "sep/pointwise"]
    (dk, db), (pk, pb) = found["sep/depthwise"], found["sep/pointwise"]
    assert dk.shape == (6, 1, 3, 3) and db is None and pk.shape == (5, 6, 1, 1) and pb.shape == (5,)
    x = np.random.default_rng(0).standard_normal((2, 7, 7, 3)).astype(np.float32)
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    depthwise = torch.nn.functional.conv2d(tx, torch.from_numpy(dk), None, groups=3)
    out = torch.nn.functional.conv2d(depthwise, torch.from_numpy(pk), torch.from_numpy(pb))
    np.testing.assert_allclose(out.numpy().transpose(0, 2, 3, 1), model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_keras_conv_layers_that_are_not_recorded_are_refused_by_name():
    keras = keras_or_skip()
    layers = keras.layers
    for layer, kind in ((layers.Conv2DTranspose(2, 3, name="sep"), "a Conv2DTranspose"),):
        model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, name="plain"), layer])
        with pytest.raises(
            ModelError,
            match=rf"layer sep of the Sequential is {re.escape(kind)}.*; to record the others, pass layers=\['plain'\]",
        ):
            kernels_of(model)
        assert list(kernels_of(model, layers=["plain"])) == ["plain"]
    model = keras.Sequential([keras.Input((8,)), layers.Dense(2)])
    with pytest.raises(ModelError, match="the Sequential has no 2-D conv layer"):
        kernels_of(model)


def test_a_framework_the_script_did_not_import_is_not_imported_to_refuse_a_model(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, convexp\n"
        "from convexp.tracking.model_kernels import kernels_of\n"
        "class Net: pass\n"
        "try:\n    kernels_of(Net())\nexcept TypeError as e:\n    print(e)\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "cannot read conv kernels from a Net: pass a torch nn.Module, a Keras model, or a mapping of layer name to (out, in, kh, kw) arrays",
        "[]",
    ]
