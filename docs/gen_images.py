"""Draws the two pictures README.md and the site show, from the project's own code, on synthetic data.

    python docs/gen_images.py reproduction   # the verdict's looks, drawn by cnnlab.claims.report
    python docs/gen_images.py ui             # a one-epoch run on synthetic images, in `make ui`, by Chromium

The reproduction figure is the report's own `looks_figure` over four seeds drawn around a claim (no training).
The screenshot needs Debian's chromium (`apt-get install chromium`), as tests/test_ui.py does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT))


def reproduction() -> None:
    import numpy as np

    from cnnlab.claims import report
    from cnnlab.claims.reproduce import ClaimResult
    from cnnlab.claims.stats import Design

    claim = {"tolerance": 0.005, "targets": [{"metric": "test_accuracy", "value": 0.9757, "split": "test"}]}
    values = 0.9795 + 0.0012 * np.random.default_rng(3).standard_normal(4)
    runs = [SimpleNamespace(data=SimpleNamespace(metrics={"test_accuracy": float(v)}, tags={})) for v in values]
    result = ClaimResult(name="mnist_simple", claim=claim, runs=runs, design=Design(3, 10))
    figure = report.looks_figure(result)
    figure.savefig(IMAGES / "reproduction.png", dpi=110)


def ui() -> None:
    import numpy as np
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    from tests.conftest import IDX_NAMES, free_port, write_idx  # the tests' synthetic images

    work = Path(tempfile.mkdtemp(prefix="cnnlab-docs-ui-"))
    from tests.conftest import synthetic_arrays

    arrays = synthetic_arrays(train=600, test=200)
    (work / "idx").mkdir()
    for name, file in IDX_NAMES.items():
        write_idx(work / "idx" / file, arrays[name])
    store = f"sqlite:///{work}/mlflow.db"
    # KMNIST's files carry no pinned hashes, so synthetic images in its format train as they are
    kmnist = work / "kmnist"
    kmnist.mkdir()
    from cnnlab.data import catalog

    for name, file in catalog.KMNIST_FILES.items():
        np.savez_compressed(kmnist / file, arr_0=arrays[name])
    environment = {**os.environ, "CNNLAB_DATA": str(work / "cache")}
    environment.pop("MLFLOW_TRACKING_URI", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnlab.run",
            "dataset=kmnist",
            f"dataset.local_dir={kmnist}",
            "dataset.sources=[local]",
            "model=simple",
            "trainer.epochs=3",
            "trainer.verbose=0",
            f"tracking.uri={store}",
        ],
        check=True,
        env=environment,
        cwd=work,
    )
    port = free_port()
    server = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(ROOT), "ui", f"PORT={port}", f"TRACKING_URI={store}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{address}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_context(viewport={"width": 1500, "height": 850}).new_page()
            run = MlflowClient(store).search_runs(MlflowClient(store).search_experiments()[0].experiment_id)[0]
            where = f"{address}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics"
            page.goto(address)  # pick MLflow's model-training view once, as the docs tell a new user to
            page.locator("text=Model training").first.click()
            page.wait_for_timeout(1500)
            page.goto(where)
            page.get_by_text("kmnist-simple-s0 (accuracy)").first.wait_for(timeout=60_000)
            panel = page.locator("button:right-of(:text('MLflow Assistant')):near(:text('MLflow Assistant'), 400)")
            if panel.count():  # MLflow's chat panel, open by default, is not cnnlab's; its last button closes it
                panel.last.click(timeout=5000)
            page.wait_for_timeout(2500)  # let the charts draw
            page.screenshot(path=str(IMAGES / "mlflow-run.png"))
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    IMAGES.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or ["reproduction", "ui"]:
        {"reproduction": reproduction, "ui": ui}[name]()
