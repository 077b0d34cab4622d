"""The MLflow UI as users meet it, in headless Chromium: experiments, runs, metrics, charts, the model summary.

Screenshots are kept under test-output/ui/ (git-ignored). Needs Debian's chromium (`.ci/run` installs it);
without it the test is skipped with the reason printed.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from cnnlab.train import train
from tests.conftest import LEARNING_RATE_SPACE, compose_config, make_mlflow

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "ui"

# make ui and Chromium, other programs end to end: make test-system
pytestmark = [
    pytest.mark.slow,
    pytest.mark.system,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]


@pytest.fixture
def ui(tmp_path, tiny_run_overrides):
    """A tiny run and a tiny sweep in a fresh store, served by `make ui` on a free loopback port."""
    from cnnlab.tuning.run_study import run_study

    run = train(compose_config(*tiny_run_overrides, "trainer.epochs=2"), overrides=["model=simple"])
    sweep_overrides = [
        *tiny_run_overrides,
        "trainer.validation=holdout",
        "trainer.holdout_size=60",
        "sweep.name=ui",
        f"sweep.directory={tmp_path}/sweeps",
        f"sweep.export_dir={tmp_path}/exported",
        "sweep.max_trials=2",
        "sweep.noise_seeds=0",
        "sweep.max_epochs=1",
        LEARNING_RATE_SPACE,
    ]
    study = run_study(compose_config(*sweep_overrides, config_name="sweep_config"))["study"]
    with make_mlflow("ui", f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "ui.log") as (address, _):
        yield address, run, study


def study_best(study) -> float:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_run(study.parent_run_id).data.metrics["best_val_accuracy"]


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
        # A fresh profile, as a new user's browser: nothing remembered from an earlier visit.
        page = browser.new_context(viewport={"width": 2200, "height": 900}).new_page()

        # The link `make ui` prints lands in MLflow's model-training view, with each experiment described.
        page.goto(f"{address}/#/experiments?workflowType=machine_learning")
        expect(page.get_by_text("Model registry").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Training runs of `cnnlab run dataset=mnist`").first).to_be_visible()
        expect(page.get_by_text("keras-tuner study `ui`").first).to_be_visible()
        assert page.get_by_text("Prompts", exact=True).count() == 0  # the GenAI view's sections are not offered
        page.screenshot(path=str(SCREENSHOTS / "00-experiments-training-view.png"))

        # The links cnnlab prints carry the same view. An experiment clicked in the list opens in the view the browser
        # remembers: GenAI until the user picks "Model training" once where no link forces a view (docs/runs.md).
        training = "?workflowType=machine_learning"
        page.goto(f"{address}/#/experiments")
        page.locator("text=Model training").first.click()
        page.get_by_role("link", name="cnnlab-mnist", exact=True).click()
        page.wait_for_url("**workflowType=machine_learning**", timeout=30_000)
        expect(page.get_by_text("mnist-simple-s0").first).to_be_visible(timeout=30_000)
        assert page.get_by_text("Judges", exact=True).count() == 0  # GenAI's evaluation tabs are not offered
        page.screenshot(path=str(SCREENSHOTS / "01-experiment-runs.png"))

        page.goto(f"{address}/#/experiments/{study.experiment_id}/runs{training}")
        expect(page.get_by_text("study-ui").first).to_be_visible(timeout=30_000)
        # MLflow 3's run list shows no metric until picked under Columns; the study's row then shows its best.
        page.get_by_role("button", name="Columns", exact=True).click()
        page.get_by_text("best_val_accuracy", exact=True).click()
        page.keyboard.press("Escape")
        best = f"{study_best(study):.4f}".rstrip("0")
        expect(page.get_by_text(best[: len(best) - 1]).first).to_be_visible(timeout=10_000)
        page.screenshot(path=str(SCREENSHOTS / "02-study-parent-run.png"))
        page.goto(f"{address}/#/experiments/{study.experiment_id}/runs/{study.parent_run_id}{training}")
        expect(page.get_by_text("best_val_accuracy").first).to_be_visible(timeout=30_000)  # the study's best so far
        page.screenshot(path=str(SCREENSHOTS / "02b-study-parent-best.png"), full_page=True)

        page.goto(f"{address}/#/experiments/{run.experiment_id}/runs/{run.run_id}{training}")
        expect(page.get_by_text("test_accuracy").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("cnnlab run").first).to_be_visible()  # the description says how to rerun
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
    with urllib.request.urlopen(f"{address}/ajax-api/3.0/mlflow/ui-telemetry", timeout=10) as response:
        assert json.load(response)["disable_ui_telemetry"] is True  # the UI sends nothing off the machine
    for name in (
        "00-experiments-training-view",
        "01-experiment-runs",
        "03-run-overview",
        "04-run-charts",
        "05-model-summary",
    ):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
