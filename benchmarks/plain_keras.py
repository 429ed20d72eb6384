"""The Keras "Simple MNIST convnet" example (keras.io/examples/vision/mnist_convnet), as Keras writes it.

No convexp code: this is the baseline convexp's tensorflow backend is compared with. Reads MNIST
from the IDX files in the folder given as the first argument; prints seconds per epoch and test
accuracy as JSON on the last line. One batch is fitted before the timed epochs, so that the
one-time tracing (and, with XLA, compiling) of Keras's train function is not counted.

    python benchmarks/plain_keras.py ../shared/data/mnist [epochs] [--jit-compile]

``--jit-compile`` compiles the train function with XLA (``model.compile(jit_compile=True)``);
without it the script keeps Keras's default, which on the TensorFlow backend here is no XLA.
"""

import gzip
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


arguments = [a for a in sys.argv[1:] if a != "--jit-compile"]
jit_compile = "--jit-compile" in sys.argv
folder = arguments[0]
epochs = int(arguments[1]) if len(arguments) > 1 else 1
x_train = read_idx(os.path.join(folder, "train-images-idx3-ubyte.gz"))
y_train = read_idx(os.path.join(folder, "train-labels-idx1-ubyte.gz"))
x_test = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))
y_test = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"))

num_classes = 10
input_shape = (28, 28, 1)
x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential(
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
model.compile(
    loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], **({"jit_compile": True} if jit_compile else {})
)


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds.append(time.perf_counter() - self.started)


seconds = []
model.fit(x_train[:128], y_train[:128], batch_size=128, epochs=1, verbose=0)  # warm-up: traces the train function
model.fit(x_train, y_train, batch_size=128, epochs=epochs, verbose=0, callbacks=[EpochTimer()])
score = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"epoch_seconds": seconds, "test_loss": score[0], "test_accuracy": score[1]}))
