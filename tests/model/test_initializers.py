"""Initializer formulas and draws, checked against the published formulas and scipy's distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from convexp.errors import ConvexpError, UnknownNameError
from convexp.model.initializers import INITIALIZER_NAMES, draw, explain, fans_of, get_initializer, shape_from_hwio

# A conv kernel large enough (64 x 32 x 3 x 3 = 18,432 weights) for tight statistics.
SHAPE = (64, 32, 3, 3)
FAN_IN, FAN_OUT = 3 * 3 * 32, 3 * 3 * 64


def test_conv_fans_are_receptive_field_times_channels():
    assert fans_of(SHAPE).fan_in == FAN_IN == 288
    assert fans_of(SHAPE).fan_out == FAN_OUT == 576
    assert (fans_of((1600, 10)).fan_in, fans_of((1600, 10)).fan_out) == (1600, 10)


def test_keras_shape_order_maps_to_canonical():
    assert shape_from_hwio("3,3,1,32") == (32, 1, 3, 3)
    with pytest.raises(ConvexpError, match="kh,kw,in,out"):
        shape_from_hwio("3,3,1")


@pytest.mark.parametrize(
    "name, limit",
    [
        ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he_uniform", math.sqrt(6 / FAN_IN)),
        ("lecun_uniform", math.sqrt(3 / FAN_IN)),
        ("torch_default", 1 / math.sqrt(FAN_IN)),
    ],
)
def test_uniform_initializers_have_the_published_limit(name, limit):
    e = explain(name, SHAPE)
    assert e.parameter == pytest.approx(limit, rel=1e-12)
    weights = draw(name, SHAPE, seed=1)
    assert weights.dtype == np.float32 and weights.shape == SHAPE
    assert np.abs(weights).max() <= limit
    assert weights.var() == pytest.approx(limit**2 / 3, rel=0.05)
    assert abs(weights.mean()) < 0.05 * limit
    # the uniform distribution, by a Kolmogorov-Smirnov test against scipy's U(-limit, limit)
    assert stats.kstest(weights.ravel(), stats.uniform(-limit, 2 * limit).cdf).pvalue > 1e-3


def test_glorot_uniform_for_the_keras_example_first_layer():
    e = explain("glorot_uniform", shape_from_hwio("3,3,1,32"))
    assert (e.fans.fan_in, e.fans.fan_out) == (9, 288)
    assert e.parameter == pytest.approx(math.sqrt(6 / 297))
    assert e.theory.variance == pytest.approx(2 / 297)


def test_torch_default_is_kaiming_uniform_with_a_sqrt5():
    gain = math.sqrt(2 / (1 + 5))
    bound = gain * math.sqrt(3 / FAN_IN)
    assert explain("torch_default", SHAPE).parameter == pytest.approx(bound)


@pytest.mark.parametrize(
    "name, target_variance",
    [
        ("glorot_normal", 2 / (FAN_IN + FAN_OUT)),
        ("he_normal", 2 / FAN_IN),
        ("lecun_normal", 1 / FAN_IN),
    ],
)
def test_truncated_normals_match_scipy_truncnorm(name, target_variance):
    e = explain(name, SHAPE)
    sigma = e.parameter
    reference = stats.truncnorm(-2, 2, loc=0, scale=sigma)
    assert reference.var() == pytest.approx(target_variance, rel=1e-6)
    assert e.theory.variance == pytest.approx(reference.var(), rel=1e-9)
    weights = draw(name, SHAPE, seed=2)
    assert np.abs(weights).max() <= 2 * sigma * (1 + 1e-6)
    assert weights.var() == pytest.approx(target_variance, rel=0.05)
    assert stats.kstest(weights.ravel(), reference.cdf).pvalue > 1e-3


@pytest.mark.parametrize("shape", [(16, 1, 3, 3), (64, 32, 3, 3), (200, 3, 3, 3)])
def test_orthogonal_filters_are_orthonormal(shape):
    weights = draw("orthogonal", shape, seed=3).astype(np.float64)
    matrix = weights.reshape(shape[0], -1)
    units, length = matrix.shape
    gram = matrix @ matrix.T if units <= length else matrix.T @ matrix
    np.testing.assert_allclose(gram, np.eye(min(units, length)), atol=1e-5)
    assert weights.var() == pytest.approx(explain("orthogonal", shape).theory.variance, rel=0.05)


def test_orthogonal_dense_kernel_has_orthonormal_unit_vectors():
    weights = get_initializer("orthogonal").sample((50, 10), np.random.default_rng(0)).astype(np.float64)
    np.testing.assert_allclose(weights.T @ weights, np.eye(10), atol=1e-5)


@pytest.mark.parametrize("name, value", [("zeros", 0.0), ("ones", 1.0)])
def test_constants(name, value):
    assert np.all(draw(name, SHAPE, seed=0) == value)


def test_draws_are_reproducible_from_the_seed():
    for name in INITIALIZER_NAMES:
        np.testing.assert_array_equal(draw(name, SHAPE, 7), draw(name, SHAPE, 7))
    assert not np.array_equal(draw("glorot_uniform", SHAPE, 7), draw("glorot_uniform", SHAPE, 8))


def test_unknown_initializer_suggests_the_closest():
    with pytest.raises(UnknownNameError, match="did you mean 'glorot_uniform'"):
        get_initializer("glorot_unifrom")
