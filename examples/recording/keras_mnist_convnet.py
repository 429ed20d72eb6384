"""Keras's "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet), recorded by convexp.

The network, its compile and fit settings are the example's; ``--model`` builds the same network
as the example's Sequential, as a functional model, or as a ``keras.Model`` subclass. The lines
marked ``# convexp`` are all that recording adds. MNIST is read from the four IDX files in
``--data`` (the example's ``keras.datasets.mnist.load_data()`` needs the internet).

    python examples/recording/keras_mnist_convnet.py --data DIR --db mnist.db [--model subclassed]

``--examples`` trains on fewer images, ``--crash-at`` / ``--interrupt-at`` end ``fit`` with an
error or a Ctrl-C after that many updates (the tests use them), ``--save-final`` writes the conv
kernels as they end up, to compare with what was recorded.
"""

import argparse
import os
import signal

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

import convexp.keras  # noqa: E402  # convexp
from convexp.datasets.mnist import load  # noqa: E402

num_classes = 10
input_shape = (28, 28, 1)


def sequential():
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )


def functional():
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(32, kernel_size=(3, 3), activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Conv2D(64, kernel_size=(3, 3), activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


class ConvNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv1 = layers.Conv2D(32, kernel_size=(3, 3), activation="relu")
        self.pool1 = layers.MaxPooling2D(pool_size=(2, 2))
        self.conv2 = layers.Conv2D(64, kernel_size=(3, 3), activation="relu")
        self.pool2 = layers.MaxPooling2D(pool_size=(2, 2))
        self.flatten = layers.Flatten()
        self.dropout = layers.Dropout(0.5)
        self.dense = layers.Dense(num_classes, activation="softmax")

    def call(self, x, training=False):
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        return self.dense(self.dropout(self.flatten(x), training=training))


MODELS = {"sequential": sequential, "functional": functional, "subclassed": ConvNet}


class EndAt(keras.callbacks.Callback):
    """For the tests: an error or a Ctrl-C after the given number of updates."""

    def __init__(self, crash_at, interrupt_at):
        super().__init__()
        self.steps, self.crash_at, self.interrupt_at = 0, crash_at, interrupt_at

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.crash_at:
            raise RuntimeError(f"a bad batch at step {self.steps}")
        if self.steps == self.interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C


def main():
    parser = argparse.ArgumentParser(description="Keras's simple MNIST convnet, recorded by convexp")
    parser.add_argument("--data", required=True, help="the folder of the four MNIST IDX files")
    parser.add_argument("--db", default="convexp.db")
    parser.add_argument("--model", choices=sorted(MODELS), default="sequential")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--crash-at", type=int, default=-1)
    parser.add_argument("--interrupt-at", type=int, default=-1)
    parser.add_argument("--save-final", default=None)
    args = parser.parse_args()

    data = load(args.data)  # pixels in [0, 1], (N, 1, 28, 28): the example's scaling, channels last below
    x_train = data.train_images[: args.examples].transpose(0, 2, 3, 1)
    y_train = keras.utils.to_categorical(data.train_labels[: args.examples], num_classes)

    keras.utils.set_random_seed(0)
    model = MODELS[args.model]()
    batch_size = 128
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    recorder = convexp.keras.KernelRecorder(experiment=f"keras-mnist-convnet-{args.model}", db=args.db)  # convexp
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=args.epochs,
        validation_split=0.1,
        verbose=0,
        callbacks=[recorder, EndAt(args.crash_at, args.interrupt_at)],  # convexp: the recorder
    )

    if args.save_final:
        convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
        np.savez(args.save_final, **{layer.name: layer.kernel.numpy() for layer in convs})


if __name__ == "__main__":
    main()
