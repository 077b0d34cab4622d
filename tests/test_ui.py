"""The MLflow UI as users meet it, in headless Chromium: experiments, runs, metrics, charts, the model summary.

Screenshots are kept under test-output/ui/ (git-ignored). Needs Debian's chromium (`.ci/run` installs it);
without it the test is skipped with the reason printed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cnnlab.train import train
from tests.conftest import compose_config, free_port

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "ui"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]


@pytest.fixture
def ui(tmp_path, tiny_run_overrides):
    """A tiny run and a tiny sweep in a fresh store, served by `mlflow ui` on a free loopback port."""
    from cnnlab.tuning.run import run_sweep

    run = train(compose_config(*tiny_run_overrides, "trainer.epochs=2"), overrides=["model=simple"])
    sweep_overrides = [
        *tiny_run_overrides,
        "trainer.validation=holdout",
        "trainer.holdout_size=60",
        "sweep.name=ui",
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
        "sweep.max_trials=2",
        "sweep.max_epochs=1",
        "sweep.space=[{key: optimizer.learning_rate, type: float, min: 1.0e-4, max: 1.0e-2, sampling: log}]",
    ]
    study = run_sweep(compose_config(*sweep_overrides, config_name="sweep_config"))["study"]
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{address}/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("mlflow ui did not answer within 60 s")
    yield address, run, study
    server.terminate()
    server.wait(timeout=20)


def test_browse_experiment_run_charts_and_summary(ui):
    from playwright.sync_api import expect, sync_playwright

    address, run, study = ui
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        page.goto(f"{address}/#/experiments/{run.experiment_id}/runs")
        expect(page.get_by_text("mnist-simple-s0").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "01-experiment-runs.png"))

        page.goto(f"{address}/#/experiments/{study.experiment_id}/runs")
        expect(page.get_by_text("study-ui").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "02-study-parent-run.png"))

        page.goto(f"{address}/#/experiments/{run.experiment_id}/runs/{run.run_id}")
        expect(page.get_by_text("test_accuracy").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("python -m cnnlab.run").first).to_be_visible()  # the description says how to rerun
        page.screenshot(path=str(SCREENSHOTS / "03-run-overview.png"), full_page=True)

        page.goto(f"{address}/#/experiments/{run.experiment_id}/runs/{run.run_id}/model-metrics")
        expect(page.get_by_text("mnist-simple-s0 (accuracy)").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("mnist-simple-s0 (loss)").first).to_be_visible()
        page.wait_for_timeout(1500)  # let the charts draw
        page.screenshot(path=str(SCREENSHOTS / "04-run-charts.png"), full_page=True)

        page.goto(f"{address}/#/experiments/{run.experiment_id}/runs/{run.run_id}/artifacts/model_summary.txt")
        expect(page.get_by_text("203,434").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "05-model-summary.png"))
        browser.close()
    for name in ("01-experiment-runs", "03-run-overview", "04-run-charts", "05-model-summary"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
