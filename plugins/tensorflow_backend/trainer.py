"""The Keras/TensorFlow training loop: a tf.function train step with GradientTape, as Keras's
"writing a training loop from scratch" guide writes it, inside convexp's shared epoch loop."""

from __future__ import annotations

import io

import numpy as np

from convexp.plugin_api import SGD, AdamW, TrainingJob, TrainingObserver, run_epochs

from .keras_import import keras, tf
from .model import as_snapshot, build, conv_snapshots, load_weights, snapshot_tensors

EVAL_BATCH = 1000


def _training_loss(smoothing: float, classes: int):
    """The training loss: sparse softmax cross-entropy; with label smoothing s, -(1 - s) log p_y - s / K sum_k log p_k
    (Keras's sparse loss takes no smoothing, and its dense one would need one-hot labels)."""
    if not smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def smoothed(y, logits):
        log_probs = tf.nn.log_softmax(logits)
        true = tf.gather(log_probs, y, axis=1, batch_dims=1)
        return -tf.reduce_mean((1 - smoothing) * true + smoothing / classes * tf.reduce_sum(log_probs, axis=1))

    return smoothed


def _own_momentum(config) -> bool:
    """Whether the train step keeps SGD's velocity itself: with momentum and a schedule. Keras folds the rate into
    its velocity (m = momentum * m - rate * g), torch and convexp apply it after (v = momentum * v + g,
    w -= rate * v): the same while the rate is constant, not once it changes."""
    return isinstance(config, SGD) and config.momentum > 0 and config.schedule is not None


def make_optimizer(config):
    """keras.optimizers.SGD, Adam or AdamW with the experiment's settings. Keras's own ``weight_decay`` is decoupled,
    so sgd's and adam's L2 term is added to the gradients in the train step instead; AdamW decays the kernels only."""
    if isinstance(config, SGD):
        if _own_momentum(config):
            return keras.optimizers.SGD(learning_rate=config.learning_rate)  # the velocity is the train step's
        return keras.optimizers.SGD(learning_rate=config.learning_rate, momentum=config.momentum, nesterov=config.nesterov)
    settings = dict(learning_rate=config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon)
    if isinstance(config, AdamW):
        optimizer = keras.optimizers.AdamW(weight_decay=config.weight_decay, **settings)
        # convexp decays kernels, not biases nor batch_norm's gamma and beta
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        return optimizer
    return keras.optimizers.Adam(**settings)


def _state_variables(model, optimizer, extra: list | None = None) -> list:
    """Every variable training changes: the model's (weights and dropout seed states), the optimizer's, and the
    train step's own (``extra``: SGD's velocity when the step keeps it)."""
    return [*model.variables, *optimizer.variables, *(extra or [])]


def save_state(model, optimizer, extra: list | None = None) -> bytes:
    """The values of :func:`_state_variables`, in order, as an .npz file's bytes."""
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(v.numpy()) for v in _state_variables(model, optimizer, extra)])
    return buffer.getvalue()


def load_state(state: bytes, model, optimizer, extra: list | None = None) -> None:
    """Restore what :func:`save_state` saved into a model and optimizer built the same way."""
    variables = _state_variables(model, optimizer, extra)
    with np.load(io.BytesIO(state), allow_pickle=False) as arrays:
        if len(arrays.files) != len(variables):
            raise ValueError(f"checkpoint holds {len(arrays.files)} variables, the model and optimizer have {len(variables)}")
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"arr_{i}"])


def train(job: TrainingJob, observer: TrainingObserver) -> None:
    """Train ``job``'s network on ``job.device``, reporting to ``observer``. TensorFlow would put
    everything on a GPU it sees; the device scope keeps ``cpu`` runs on the CPU."""
    if job.device == "cuda":  # full float32 on the GPU, not TensorFloat-32 (see the torch backend)
        tf.config.experimental.enable_tensor_float_32_execution(False)
    with tf.device("/GPU:0" if job.device == "cuda" else "/CPU:0"):
        _train(job, observer)


def _train(job: TrainingJob, observer: TrainingObserver) -> None:
    model = build(job.layers, job.kernel_initializer, job.bias_initializer, job.seed)
    if job.initial_weights is not None:
        load_weights(model, job.layers, job.initial_weights)
    optimizer = make_optimizer(job.optimizer)
    loss_fn = _training_loss(job.label_smoothing, job.layers[-1].output_shape[0])
    channels, height, width = job.layers[0].input_shape
    spec = (tf.TensorSpec([None, height, width, channels], tf.float32), tf.TensorSpec([None], tf.int64))

    snapshot_layers = [model.get_layer(name) for name in job.snapshot_layers]
    # sgd's and adam's weight decay: weight_decay * w added to each kernel's gradient (biases are not decayed)
    l2 = 0.0 if isinstance(job.optimizer, AdamW) else job.optimizer.weight_decay
    kernels = {id(layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None}
    decayed = [l2 > 0 and id(v) in kernels for v in model.trainable_weights]
    clip = job.gradient_clip_norm
    config = job.optimizer
    own = isinstance(config, SGD) and _own_momentum(config)
    momentum = config.momentum if isinstance(config, SGD) and own else 0.0
    nesterov = isinstance(config, SGD) and own and config.nesterov
    velocities = [tf.Variable(tf.zeros_like(v), trainable=False) for v in model.trainable_weights] if own else []

    @tf.function(input_signature=spec)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_weights)
        if clip is not None:  # min(1, c / ||g||), as convexp defines it (tf.clip_by_global_norm computes the same)
            grads, _ = tf.clip_by_global_norm(grads, clip)
        grads = [g + l2 * v if d else g for g, v, d in zip(grads, model.trainable_weights, decayed)]
        if velocities:  # v = momentum * v + g; the step is rate * v (Nesterov: rate * (g + momentum * v))
            for g, velocity in zip(grads, velocities):
                velocity.assign(momentum * velocity + g)
            grads = [g + momentum * v if nesterov else tf.identity(v) for g, v in zip(grads, velocities)]
        optimizer.apply_gradients(zip(grads, model.trainable_weights))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
        # The updated kernels, already in canonical layout: handing them out of the step costs far
        # less than reading the variables from Python afterwards, at the steps that are recorded.
        kernels = [snapshot_tensors(layer) for layer in snapshot_layers]
        return loss, accuracy, kernels

    @tf.function(input_signature=spec)
    def eval_step(x, y):
        logits = model(x, training=False)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.int64))
        return loss, correct

    # Trace both functions now, so that the one-time graph tracing is not part of the first epoch's time.
    optimizer.build(model.trainable_variables)
    train_step.get_concrete_function()
    eval_step.get_concrete_function()
    if job.resume_from is not None:
        load_state(job.resume_from.state, model, optimizer, velocities)

    train_x = np.ascontiguousarray(job.train_images.transpose(0, 2, 3, 1))
    test_x = np.ascontiguousarray(job.test_images.transpose(0, 2, 3, 1))
    train_y, test_y = job.train_labels, job.test_labels

    after_last_step: list = []  # the kernels the last train step handed out

    def train_batch(indices, images=None):  # images: the batch augmented (N, C, H, W), when the run augments
        x = train_x[indices] if images is None else np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        loss, accuracy, kernels = train_step(x, train_y[indices])
        after_last_step[:] = kernels
        return loss, accuracy

    def read_kernels():
        if not after_last_step:  # before the first step
            return conv_snapshots(model, job.snapshot_layers)
        return {name: as_snapshot(tensors) for name, tensors in zip(job.snapshot_layers, after_last_step)}

    def evaluate():
        total, correct = 0.0, 0
        for start in range(0, len(test_y), EVAL_BATCH):
            batch_loss, batch_correct = eval_step(test_x[start : start + EVAL_BATCH], test_y[start : start + EVAL_BATCH])
            total, correct = total + float(batch_loss), correct + int(batch_correct)
        return total / len(test_y), correct / len(test_y)

    run_epochs(
        job,
        observer,
        train_batch,
        evaluate,
        read_kernels,
        lambda: save_state(model, optimizer, velocities),
        optimizer.learning_rate.assign,  # the rate each update uses, when the run has a schedule
    )
