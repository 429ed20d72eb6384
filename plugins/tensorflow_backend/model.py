"""Build the experiment's network as a Keras functional model, initialised from convexp's initializer definitions."""

from __future__ import annotations

import functools

import numpy as np

from convexp.plugin_api import (
    LEAKY_SLOPE,
    ActivationLayer,
    AvgPool,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Fans,
    Flatten,
    GlobalAvgPool,
    KernelSnapshot,
    MaxPool,
    PlannedLayer,
    ReLU,
    Residual,
    dropout_seed,
    fans_of,
    flat,
    framework_seed,
    get_initializer,
)

from .keras_import import keras


def keras_initializer(name: str, canonical_shape: tuple[int, ...], seed: int, fans: Fans | None = None):
    """The keras.initializers object that draws convexp initializer ``name`` for a kernel of this shape."""
    init = get_initializer(name)
    scale = init.scale(fans or fans_of(canonical_shape))
    if init.distribution == "uniform":
        return keras.initializers.RandomUniform(-scale, scale, seed=seed)
    if init.distribution == "truncated_normal":
        return keras.initializers.TruncatedNormal(0.0, scale, seed=seed)  # re-draws beyond 2 stddev
    if init.distribution == "orthogonal":
        return keras.initializers.Orthogonal(gain=scale, seed=seed)
    return keras.initializers.Constant(scale)


def keras_activation(name: str):
    """What Keras computes convexp activation ``name`` with (see :mod:`convexp.model.activations`): its name, or a
    function where Keras's default differs (leaky_relu's slope, gelu's exact form); None for none."""
    if name == "none":
        return None
    if name == "leaky_relu":
        return functools.partial(keras.activations.leaky_relu, negative_slope=LEAKY_SLOPE)
    if name == "gelu":
        return functools.partial(keras.activations.gelu, approximate=False)
    return name


def build(job_layers: tuple[PlannedLayer, ...], kernel_initializer: str, bias_initializer: str, seed: int):
    """A Keras functional model with one named Keras layer per convexp layer, channels-last; a residual block is
    its body's layers, its shortcut conv, an Add layer named after the block and its activation.

    Initializers are seeded per layer, so a run is reproducible; Keras's own default
    (glorot_uniform kernel, zeros bias) is drawn the same way, from the same formula.
    """
    channels, height, width = job_layers[0].input_shape
    inputs = keras.Input(shape=(height, width, channels))
    x = inputs
    for p in job_layers:
        x = _apply(p, x, kernel_initializer, bias_initializer, seed)
    return keras.Model(inputs, x)


def _apply(p: PlannedLayer, x, kernel_initializer: str, bias_initializer: str, seed: int):
    """``x`` through convexp layer ``p``, built as Keras layers."""
    layer = p.layer
    if isinstance(layer, Residual):
        body = x
        for q in p.body:
            body = _apply(q, body, kernel_initializer, bias_initializer, seed)
        shortcut = x if p.shortcut is None else _apply(p.shortcut, x, kernel_initializer, bias_initializer, seed)
        added = keras.layers.Add(name=p.name)([body, shortcut])
        activation = keras_activation(layer.activation)
        return added if activation is None else keras.layers.Activation(activation, name=f"{p.name}_{layer.activation}")(added)
    inits = {}
    if p.kernel_shape is not None:
        seed_k, seed_b = framework_seed(seed, p.index, 0), framework_seed(seed, p.index, 1)
        inits = {
            "kernel_initializer": keras_initializer(kernel_initializer, p.kernel_shape, seed_k),
            "bias_initializer": keras_initializer(bias_initializer, (_units(p),), seed_b, fans_of(p.kernel_shape)),
        }
    activation = keras_activation(getattr(layer, "activation", "none"))
    if isinstance(layer, Conv):
        return keras.layers.Conv2D(
            layer.filters,
            layer.kernel_hw,
            strides=layer.stride,
            padding=layer.padding,
            dilation_rate=layer.dilation,
            groups=layer.groups,
            activation=activation,
            name=p.name,
            **inits,
        )(x)
    if isinstance(layer, Dense):
        return keras.layers.Dense(layer.units, activation=activation, name=p.name, **inits)(x)
    if isinstance(layer, MaxPool):
        return keras.layers.MaxPooling2D(layer.pool_size, name=p.name)(x)
    if isinstance(layer, AvgPool):
        return keras.layers.AveragePooling2D(layer.pool_size, name=p.name)(x)
    if isinstance(layer, GlobalAvgPool):
        return keras.layers.GlobalAveragePooling2D(name=p.name)(x)
    if isinstance(layer, ActivationLayer):
        return keras.layers.Activation(activation, name=p.name)(x)
    if isinstance(layer, ReLU):
        return keras.layers.ReLU(name=p.name)(x)
    if isinstance(layer, BatchNorm):
        return exact_batch_normalization()(momentum=layer.momentum, epsilon=layer.epsilon, name=p.name)(x)
    if isinstance(layer, Flatten):
        return keras.layers.Flatten(name=p.name)(x)
    if isinstance(layer, Dropout):
        return keras.layers.Dropout(layer.rate, seed=dropout_seed(seed, p.index), name=p.name)(x)
    raise TypeError(f"the tensorflow backend cannot build {layer!r}")  # pragma: no cover - layers.py has no other type


def _units(p: PlannedLayer) -> int:
    shape = p.kernel_shape
    if shape is None:
        raise ValueError(f"{p.name} has no kernel")
    return shape[0] if len(shape) == 4 else shape[1]


def load_weights(model, job_layers: tuple[PlannedLayer, ...], weights) -> None:
    """Set conv and dense weights from canonical arrays (conv kernels go to Keras's (kh, kw, in, out))."""
    for p in flat(job_layers):
        if p.kernel_shape is None:
            continue
        kernel = weights[p.name].kernel
        layer = model.get_layer(p.name)
        layer.kernel.assign(kernel.transpose(2, 3, 1, 0) if kernel.ndim == 4 else kernel)
        layer.bias.assign(weights[p.name].bias)


@functools.cache
def exact_batch_normalization() -> type:
    """keras.layers.BatchNormalization (channels last) whose training step sums in float64.

    Keras's layer is convexp's batch_norm, momentum and all, but TensorFlow's float32 sums over the batch and
    every position (tens of thousands of values) in the statistics and in their gradients lose digits: on
    cross-backend-vocabulary its conv1 kernel drifted 2.7e-4 from the float64 computation in 20 steps, where
    torch's float32 stays within 1e-7. This layer normalises a batch in float64 and hands float32 back; its
    variables, moving averages and inference path are Keras's."""
    from keras import ops

    class ExactBatchNormalization(keras.layers.BatchNormalization):
        def call(self, inputs, training=None, mask=None):
            if not training or not self.trainable:
                return super().call(inputs, training=training, mask=mask)
            x = ops.cast(inputs, "float64")
            mean, variance = ops.moments(x, axes=list(range(len(inputs.shape) - 1)))
            keep = self.momentum
            self.moving_mean.assign(self.moving_mean * keep + ops.cast(mean, self.moving_mean.dtype) * (1.0 - keep))
            self.moving_variance.assign(
                self.moving_variance * keep + ops.cast(variance, self.moving_variance.dtype) * (1.0 - keep)
            )
            scale = ops.cast(self.gamma, "float64") * ops.rsqrt(variance + self.epsilon)
            return ops.cast((x - mean) * scale + ops.cast(self.beta, "float64"), inputs.dtype)

    return ExactBatchNormalization


def snapshot_tensors(layer) -> tuple:
    """What a snapshot of a Keras layer holds, as tensors: a conv's (kernel in canonical (out, in, kh, kw) layout,
    bias); a BatchNormalization's (its (4, C) rows: gamma, beta, moving mean, moving variance,)."""
    import tensorflow as tf

    if isinstance(layer, keras.layers.BatchNormalization):
        rows = (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance)
        return (tf.stack([tf.convert_to_tensor(row) for row in rows]),)
    return tf.transpose(layer.kernel, (3, 2, 0, 1)), tf.identity(layer.bias)


def as_snapshot(tensors: tuple) -> KernelSnapshot:
    """A :class:`KernelSnapshot` of :func:`snapshot_tensors`' tensors."""
    return KernelSnapshot(np.ascontiguousarray(tensors[0].numpy()), tensors[1].numpy() if len(tensors) > 1 else None)


def conv_snapshots(model, names: tuple[str, ...]) -> dict[str, KernelSnapshot]:
    """Copies of the named layers: conv kernels in canonical (out, in, kh, kw) layout and biases, batch_norm's rows."""
    return {name: as_snapshot(snapshot_tensors(model.get_layer(name))) for name in names}
