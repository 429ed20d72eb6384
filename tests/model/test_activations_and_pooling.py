"""The experiment vocabulary beyond the first (issue 30): activation functions as options and layers, average
and global average pooling. Forward passes against independent references (scipy, PyTorch's functional ops,
known values), gradients against finite differences, the same run on three backends, validation, and the
analysis that replays a recorded network."""

from __future__ import annotations

import math

import numpy as np
import pytest

from convexp.model import activations
from convexp.model.layers import ACTIVATION_NAMES, ActivationLayer, AvgPool, Conv, Dense, GlobalAvgPool
from tests.backends.test_numpy_backend import assert_gradients_match_finite_differences, numeric_grad, small_network
from tests.conftest import TINY_DIGITS, run_cli, write_experiments

X = np.linspace(-4, 4, 81)  # 0 included


def test_each_activation_is_its_formula():
    """Known values and formulas written out here, not the module's own."""
    from scipy.special import erf, expit

    expected = {
        "none": X,
        "relu": np.where(X > 0, X, 0.0),
        "leaky_relu": np.where(X > 0, X, 0.01 * X),
        "elu": np.where(X > 0, X, np.exp(X) - 1),
        "gelu": 0.5 * X * (1 + erf(X / math.sqrt(2))),
        "tanh": (np.exp(X) - np.exp(-X)) / (np.exp(X) + np.exp(-X)),
        "sigmoid": expit(X),
    }
    assert set(expected) == set(ACTIVATION_NAMES)
    for name, values in expected.items():
        np.testing.assert_allclose(activations.apply(name, X), values, rtol=1e-12, atol=1e-15, err_msg=name)
    assert activations.apply("gelu", np.array([1.0]))[0] == pytest.approx(0.8413447460685429, rel=1e-14)  # 1 * Phi(1)
    assert activations.apply("sigmoid", np.array([0.0]))[0] == 0.5


def test_each_activation_matches_pytorch_s_functional_op():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x = torch.from_numpy(X)  # float64: PyTorch's float32 gelu loses digits in the far negative tail (1 + erf cancels)
    reference = {
        "relu": functional.relu(x),
        "leaky_relu": functional.leaky_relu(x, 0.01),
        "elu": functional.elu(x),
        "gelu": functional.gelu(x),  # exact (erf) by default
        "tanh": torch.tanh(x),
        "sigmoid": torch.sigmoid(x),
    }
    for name, values in reference.items():
        np.testing.assert_allclose(activations.apply(name, X), values.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
        single = activations.apply(name, X.astype(np.float32))
        assert single.dtype == np.float32
        np.testing.assert_allclose(single, values.numpy(), rtol=2e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_each_activation_gradient_matches_finite_differences(name):
    x = X[np.abs(X) > 1e-3].copy()  # away from relu's kink at 0
    y = activations.apply(name, x)
    dy = np.cos(x)  # any upstream gradient
    analytic = activations.gradient(name, x, y, dy)
    h = 1e-6
    numeric = (activations.apply(name, x + h) - activations.apply(name, x - h)) / (2 * h) * dy
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_a_network_of_every_new_part_has_the_gradient_of_finite_differences():
    network = small_network(
        layers=[
            Conv(type="conv", filters=3, kernel_size=3, padding="same", activation="tanh"),
            AvgPool(type="avgpool", pool_size=2),  # 9x9 -> 4x4: the last row and column dropped
            ActivationLayer(type="activation", activation="gelu"),
            Conv(type="conv", filters=4, kernel_size=2, activation="elu"),
            ActivationLayer(type="activation", activation="leaky_relu"),
            GlobalAvgPool(type="global_avgpool"),
            Dense(type="dense", units=5, activation="sigmoid"),
            Dense(type="dense", units=3, activation="linear"),
        ]
    )
    assert_gradients_match_finite_differences(network)


def test_average_pooling_is_the_window_mean_and_global_pooling_the_map_mean():
    from convexp_plugins.numpy_backend import ops

    x = np.random.default_rng(1).standard_normal((2, 5, 7, 3))
    out = ops.avgpool_forward(x, 2)
    assert out.shape == (2, 2, 3, 3)
    assert out[1, 1, 2, 0] == pytest.approx(x[1, 2:4, 4:6, 0].mean(), rel=1e-14)  # remainder row 4, column 6 dropped
    grad = ops.avgpool_backward(np.ones_like(out), x.shape, 2)
    assert grad[:, 4].sum() == 0 and grad[:, :, 6].sum() == 0 and np.all(grad[:, :4, :6] == 0.25)


def test_an_experiment_with_the_new_parts_runs_and_its_filters_are_analysed(tmp_path):
    spec = {
        **TINY_DIGITS,
        "layers": [
            {"type": "conv", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "tanh"},
            {"type": "avgpool", "pool_size": 2},
            {"type": "conv", "filters": 6, "kernel_size": 3, "activation": "gelu"},
            {"type": "activation", "activation": "sigmoid"},
            {"type": "global_avgpool"},
            {"type": "dense", "units": 10},
        ],
        "max_steps": 4,
        "snapshots": {"every": 1},
    }
    experiments = write_experiments(tmp_path / "experiments.yaml", {"vocabulary": spec})
    db = tmp_path / "r.db"
    validated = run_cli("validate", str(experiments))
    assert validated.returncode == 0, validated.stderr
    assert "avgpool1" in validated.stdout and "global_avgpool1" in validated.stdout
    ran = run_cli("run", str(experiments), "--db", str(db))
    assert ran.returncode == 0, ran.stderr
    patches = run_cli("filters", "1", "--patches", "--layer", "conv2", "--top", "2", "--format", "json", "--db", str(db))
    assert patches.returncode == 0, patches.stderr
    import json

    found = json.loads(patches.stdout)
    first = found["filters"][0]["patches"][0]
    assert first["activation"] == pytest.approx(float(activations.apply("gelu", np.array([first["response"]]))[0]), rel=1e-6)


def test_an_experiment_a_backend_cannot_build_is_refused_in_one_line(tmp_path):
    from convexp.errors import SpecError
    from convexp.experiments.grids import resolve_runs

    class Old:  # a third-party backend written before the new layers: the first vocabulary only
        from convexp.backends.features import BASE_FEATURES as features

        devices = ("cpu",)
        default_initializers = None

    experiments = write_experiments(
        tmp_path / "experiments.yaml",
        {
            "x": {
                **TINY_DIGITS,
                "backend": "old",
                "layers": [
                    {"type": "conv", "filters": 2, "activation": "tanh"},
                    {"type": "global_avgpool"},
                    {"type": "dense", "units": 10},
                ],
            }
        },
    )
    with pytest.raises(SpecError) as error:
        resolve_runs(experiments, backends={"old": Old()})
    assert str(error.value) == (
        f"{experiments}: experiment 'x': field 'layers': backend 'old' does not implement activation tanh, global_avgpool; "
        "`convexp plugins` lists what each backend implements"
    )
    # an unknown activation is a validation error naming the field, with the names there are
    bad = write_experiments(
        tmp_path / "bad.yaml",
        {
            "x": {
                **TINY_DIGITS,
                "layers": [{"type": "activation", "activation": "swish"}, {"type": "flatten"}, {"type": "dense", "units": 10}],
            }
        },
    )
    with pytest.raises(SpecError, match="field 'layers.0.activation.activation'"):
        resolve_runs(bad)


def test_weight_decay_and_adamw_updates_follow_their_formulas():
    """The numpy backend's updates against the formulas written out here: L2 adds wd * w to a kernel's gradient,
    AdamW shrinks a kernel by lr * wd of itself before the Adam step; biases are never decayed."""
    from convexp_plugins.numpy_backend.optimizers import make_updater

    from convexp.model.optimizers import SGD, Adam, AdamW

    rng = np.random.default_rng(0)
    kernel, bias = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    g_kernel, g_bias = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    lr, wd, momentum = 0.1, 0.05, 0.9

    def run(config, steps):
        params = [kernel.copy(), bias.copy()]
        updater = make_updater(config, params, [True, False])
        for _ in range(steps):
            updater.step(params, [g_kernel, g_bias])
        return params

    k, b = run(SGD(name="sgd", learning_rate=lr, weight_decay=wd), 1)
    np.testing.assert_allclose(k, kernel - lr * (g_kernel + wd * kernel), rtol=1e-6)
    np.testing.assert_allclose(b, bias - lr * g_bias, rtol=1e-6)
    k, _ = run(SGD(name="sgd", learning_rate=lr, momentum=momentum, weight_decay=wd), 2)
    v1 = g_kernel + wd * kernel
    k1 = kernel - lr * v1
    v2 = momentum * v1 + g_kernel + wd * k1
    np.testing.assert_allclose(k, k1 - lr * v2, rtol=1e-5)
    b1, b2, eps = 0.9, 0.999, 1e-7
    step = lr * math.sqrt(1 - b2) / (1 - b1)  # Adam's first step, bias-corrected
    for config, shrunk, gradient in (
        (Adam(name="adam", learning_rate=lr, weight_decay=wd), kernel, g_kernel + wd * kernel),
        (AdamW(name="adamw", learning_rate=lr, weight_decay=wd), kernel - lr * wd * kernel, g_kernel),
    ):
        k, b = run(config, 1)
        m, v = (1 - b1) * gradient, (1 - b2) * gradient**2
        np.testing.assert_allclose(k, shrunk - step * m / (np.sqrt(v) + eps), rtol=1e-5, err_msg=config.name)
        m, v = (1 - b1) * g_bias, (1 - b2) * g_bias**2
        np.testing.assert_allclose(b, bias - step * m / (np.sqrt(v) + eps), rtol=1e-5, err_msg=config.name)


def test_an_optimizer_a_backend_lacks_is_refused_in_one_line(tmp_path):
    from convexp.errors import SpecError
    from convexp.experiments.grids import resolve_runs

    class Old:
        from convexp.backends.features import BASE_FEATURES as features

        devices = ("cpu",)
        default_initializers = None

    for optimizer, lacking in (
        ({"name": "adamw", "weight_decay": 0.01}, "optimizer adamw"),
        ({"name": "sgd", "weight_decay": 0.01}, "weight_decay"),
    ):
        experiments = write_experiments(
            tmp_path / "experiments.yaml", {"x": {**TINY_DIGITS, "backend": "old", "optimizer": optimizer}}
        )
        with pytest.raises(SpecError) as error:
            resolve_runs(experiments, backends={"old": Old()})
        assert f"field 'optimizer': backend 'old' does not implement {lacking};" in str(error.value)
    assert resolve_runs(write_experiments(tmp_path / "ok.yaml", {"x": {**TINY_DIGITS, "optimizer": {"name": "adamw"}}}))


def test_a_schedule_s_rate_at_each_update_is_its_formula():
    """Rates written out by hand: warmup k / W for the first W updates, then cosine from 1 to min_factor over the
    rest, or a step down by gamma every step_size updates; the shared loop hands each update its rate."""
    from convexp.model.optimizers import SGD, Schedule, learning_rate_at

    cosine = Schedule(type="cosine", warmup_steps=2, min_factor=0.2)
    expected = [0.5, 1.0] + [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)]
    assert [cosine.factor(done, 10) for done in range(10)] == pytest.approx(expected, rel=1e-12)
    step = Schedule(type="step", step_size=3, gamma=0.5)
    assert [step.factor(done, 10) for done in range(8)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert learning_rate_at(SGD(name="sgd", learning_rate=0.2, schedule=step), 4, 10) == pytest.approx(0.1)
    assert learning_rate_at(SGD(name="sgd", learning_rate=0.2), 4, 10) == 0.2
    with pytest.raises(ValueError, match="a step schedule needs step_size"):
        Schedule(type="step")
    assert _rates(SGD(name="sgd", learning_rate=0.2, schedule=step)) == pytest.approx([0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05])


def _rates(optimizer) -> list[float]:
    """The rate the shared epoch loop sets before each of a 7-update job's updates."""
    from convexp.backends.conformance.checks import tiny_job
    from convexp.backends.trainer import run_epochs

    class Quiet:
        def on_train_start(self, kernels):
            pass

        def on_step(self, *args):
            pass

        def on_epoch_end(self, *args):
            pass

    rates: list[float] = []
    job = tiny_job(optimizer=optimizer, max_steps=7)
    run_epochs(job, Quiet(), lambda indices: (0.0, 0.0), lambda: (0.0, 0.0), lambda: {}, None, rates.append)
    return rates


def test_label_smoothing_is_pytorch_s_and_its_gradient_is_finite_differences():
    torch = pytest.importorskip("torch")
    from convexp_plugins.numpy_backend import ops

    rng = np.random.default_rng(3)
    logits, labels = rng.standard_normal((6, 10)) * 3, rng.integers(0, 10, 6)
    loss, _, grad = ops.softmax_cross_entropy(logits, labels, 0.1)
    reference = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), label_smoothing=0.1)
    assert loss == pytest.approx(float(reference), rel=1e-12)
    numeric = numeric_grad(lambda: ops.softmax_cross_entropy(logits, labels, 0.1)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_clipping_scales_every_gradient_by_the_global_norm_as_pytorch_clips():
    torch = pytest.importorskip("torch")
    from convexp.model.optimizers import clip_factor

    rng = np.random.default_rng(4)
    grads = [rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), rng.standard_normal((54, 10))]
    norm = math.sqrt(sum((g**2).sum() for g in grads))
    assert clip_factor(norm, norm * 2) == 1.0 and clip_factor(norm, norm / 4) == pytest.approx(0.25)
    tensors = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)  # torch divides by norm + 1e-6: equal to 1e-6 relative
    for t, g in zip(tensors, grads):
        np.testing.assert_allclose(g * clip_factor(norm, 1.0), t.grad.numpy(), rtol=1e-5)
