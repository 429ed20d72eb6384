"""scripts/probe.py, the adversarial probe, passes: every bad input it tries against the CLI, the web
app and the tracking API ends in a clear error with the right status and an unchanged database."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("httpx", reason="the probe asks the web app through starlette's TestClient, which needs httpx")


def test_the_probe_finds_every_bad_input_refused_cleanly():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "probe.py"), "--time-limit", "300"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["cases"] >= 80, summary
