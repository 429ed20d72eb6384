"""Draw the documentation's pictures (docs/images/) from runs made here, so that none is made by hand.

    python scripts/docs_images.py --mnist ../shared/data/mnist            # every picture (about 10 minutes)
    python scripts/docs_images.py --only quickstart-evolution             # one of them

Each picture is the output of the convexp commands the docs show, run on a fresh database in a temporary
folder: the quickstart's filters during training, conv1's edge share by initializer across 5 seeds
(the ``edge-detectors`` grid, one MNIST epoch each), conv2's top patches and preferred inputs after 12
epochs of ``mnist-keras-convnet`` on tensorflow, the quickstart's learning rates and the lr-sweep's TPE trials
against what they did, and the web UI's pages (the run page, and the runs and run pages at 800 and 1,400 px,
light and dark, through the browser tests that check them, with CONVEXP_WRITE_DOCS_IMAGES=1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "docs" / "images"


def convexp(*args: str) -> None:
    """Run ``convexp ARGS`` from the repository (its experiments.yaml), failing loudly."""
    print("$ convexp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "convexp", *args], cwd=REPO, check=True)


def quickstart_evolution(db: Path, mnist: Path | None) -> None:
    convexp("run", "-e", "quickstart", "--db", str(db))
    convexp("plot", "evolution", "1", "--layer", "conv1", "--out", str(IMAGES / "quickstart-evolution.png"), "--db", str(db))


def edge_detectors(db: Path, mnist: Path | None) -> None:
    convexp("run", "-e", "edge-detectors", "--yes", "--data-dir", str(_needs(mnist)), "--db", str(db))
    out = IMAGES / "edge-detectors.png"
    convexp(
        "plot",
        "summary",
        "edge-detectors",
        "--by",
        "initializer",
        "--measure",
        "edge_share",
        "--layer",
        "conv1",
        "--out",
        str(out),
        "--db",
        str(db),
    )


def mnist_conv2(db: Path, mnist: Path | None) -> None:
    convexp(
        "run",
        "-e",
        "mnist-keras-convnet",
        "--backend",
        "tensorflow",
        "--epochs",
        "12",
        "--data-dir",
        str(_needs(mnist)),
        "--db",
        str(db),
    )
    for kind in ("patches", "maximize"):
        out = IMAGES / f"mnist-conv2-{kind}.png"
        convexp("plot", kind, "1", "--layer", "conv2", "--data-dir", str(mnist), "--out", str(out), "--db", str(db))


def lr_sweep(db: Path, mnist: Path | None) -> None:
    convexp(
        "run",
        "-e",
        "quickstart",
        "--set",
        "optimizer.learning_rate=0.0003,0.001,0.003,0.01",
        "--set",
        "seed=0,1",
        "--db",
        str(db),
    )
    out = IMAGES / "lr-sweep.png"
    convexp(
        "plot", "sweep", "quickstart", "--x", "optimizer.learning_rate", "--color", "seed", "--out", str(out), "--db", str(db)
    )


def lr_sweep_tpe(db: Path, mnist: Path | None) -> None:
    convexp("run", "-e", "lr-sweep", "--db", str(db))
    out = IMAGES / "lr-sweep-tpe.png"
    convexp(
        "plot", "sweep", "lr-sweep", "--x", "optimizer.learning_rate", "--y", "edge_share", "--layer", "conv1",
        "--out", str(out), "--db", str(db),
    )  # fmt: skip


def _browser_pictures(test_file: str, keyword: str) -> None:
    """The pictures a browser test takes, written into docs/images (CONVEXP_WRITE_DOCS_IMAGES=1)."""
    print(f"$ CONVEXP_WRITE_DOCS_IMAGES=1 python -m pytest -n 0 {test_file} -k {keyword}", flush=True)
    env = {**os.environ, "CONVEXP_WRITE_DOCS_IMAGES": "1"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", test_file, "-k", keyword], cwd=REPO, env=env, check=True)


def ui_run(db: Path, mnist: Path | None) -> None:
    _browser_pictures("tests/ui/test_ui_browser.py", "screenshot")


def ui_pages(db: Path, mnist: Path | None) -> None:
    _browser_pictures("tests/ui/test_ui_round3.py", "screenshots")


def _needs(mnist: Path | None) -> Path:
    if mnist is None:
        sys.exit("this picture trains on MNIST: give --mnist DIR (the four IDX files)")
    return mnist


PICTURES = {
    "quickstart-evolution": quickstart_evolution,
    "edge-detectors": edge_detectors,
    "mnist-conv2": mnist_conv2,
    "lr-sweep": lr_sweep,
    "lr-sweep-tpe": lr_sweep_tpe,
    "ui-run": ui_run,
    "ui-pages": ui_pages,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", type=Path, help="folder of the MNIST IDX files")
    parser.add_argument("--only", choices=sorted(PICTURES), action="append", help="draw only these (repeatable)")
    options = parser.parse_args()
    for name in options.only or PICTURES:
        with tempfile.TemporaryDirectory() as folder:
            PICTURES[name](Path(folder) / "docs.db", options.mnist)


if __name__ == "__main__":
    main()
