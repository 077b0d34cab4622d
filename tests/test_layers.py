"""The package's layers and its freedom from import cycles, as pyproject.toml's [tool.importlinter] declares them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    "Layers: the cnnlab console script > entry points > cli, checks > commands > train > tracking > data, models > "
    "config > leaves"
)
CYCLES = "No import cycles inside cnnlab or any of its packages"


def test_the_package_keeps_its_layers_and_has_no_import_cycles():
    """What `make lint` runs; here so that `make test` (and CI) fails on an import that climbs or closes a circle."""
    lint = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Contracts: 2 kept, 0 broken." in lint.stdout


def broken_contracts(extra_import: tuple[str, str]) -> set[str]:
    """The contracts the package breaks once ``importer`` also imports ``imported`` (inside a function or not)."""
    from importlinter import configuration
    from importlinter.adapters.building import GraphBuilder
    from importlinter.application import use_cases
    from importlinter.application.app_config import settings
    from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
    from importlinter.contracts.layers import LayersContract
    from importlinter.domain.contract import registry

    class WithOneMoreImport(GraphBuilder):
        def build(self, *args, **kwargs):
            graph = super().build(*args, **kwargs)
            importer, imported = extra_import
            graph.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
            return graph

    registry.register(LayersContract, "layers")
    registry.register(AcyclicSiblingsContract, "acyclic_siblings")
    configuration.configure()
    settings.configure(GRAPH_BUILDER=WithOneMoreImport())
    try:
        options = use_cases.read_user_options(str(ROOT / "pyproject.toml"))
        report = use_cases.create_report(options, cache_dir=None)
    finally:
        configuration.configure()
    return {contract.name for contract, check in report.get_contracts_and_checks() if not check.kept}


@pytest.mark.parametrize(
    "importer,imported,broken",
    [
        ("cnnlab.config.validation", "cnnlab.train", {LAYERS, CYCLES}),  # config climbing to train
        ("cnnlab.errors", "cnnlab.cli", {LAYERS, CYCLES}),  # a leaf climbing to the launcher
        ("cnnlab.tuning.oracles", "cnnlab.tuning.tuners", {CYCLES}),  # a circle inside one layer
        ("cnnlab.checks", "cnnlab.cli", {LAYERS}),  # the launcher and the checks stay independent
        ("cnnlab.run", "cnnlab.sweep", {LAYERS}),  # so do the entry points
    ],
)
def test_an_import_that_climbs_a_layer_or_closes_a_cycle_breaks_the_contract(importer, imported, broken):
    assert broken_contracts((importer, imported)) == broken
