"""A reproduction's seeds as a small file, so seeds trained on several machines meet in one store and one report.

``export_seeds`` writes every FINISHED seed (child run) of the reproductions experiment, with its params, tags
(machine kind, precision, library versions, fingerprint, data digests) and metrics (final values and per-epoch
histories), and no model or artifact: a few KB a seed. ``import_seeds`` recreates them as FINISHED child runs of
the importing store's reproductions experiment, under parents that carry the design they were judged under, so a
later ``cnnlab.reproduce`` there finds them by claim, seed and fingerprint and reuses them as if trained there.
Each imported run is tagged with the file it came from and the run it copies; a run already in the store (imported
before, or the very run exported) is not imported again, so importing a file twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cnnlab.claims import CELL_TAG, DESIGN_TAG, EXPERIMENT
from cnnlab.errors import UserError

FORMAT = "cnnlab-seeds"
VERSION = 1  # raise it when a field changes meaning; read_seeds_file refuses versions it does not know
IMPORTED_FROM = "cnnlab.imported_from"  # the file's name, on every run an import made
IMPORTED_RUN = "cnnlab.imported_run"  # the id of the run it copies, in the store it was trained in
# Tags that belong to one store or one live process: the importing store sets its own.
STORE_TAGS = ("mlflow.parentRunId", "mlflow.runName", "mlflow.log-model.history", "cnnlab.pid", "cnnlab.process_start")
# What reproduce looks a seed up by (claims.reproduce.run_seed), and a variance-by-source run by its cell instead
# of a seed (claims.sources): a run without them could never be reused.
LOOKUP_TAGS = ("cnnlab.claim", "cnnlab.fingerprint")
KEY_TAGS = ("cnnlab.seed", CELL_TAG)  # one of them at least


def _lookup_missing(tags: dict[str, str]) -> list[str]:
    """The tags a run lacks to be reused where it is imported (empty: none)."""
    missing = [tag for tag in LOOKUP_TAGS if tag not in tags]
    return missing + ([" or ".join(KEY_TAGS)] if not any(tag in tags for tag in KEY_TAGS) else [])


def _order(tags: dict[str, str]) -> tuple:
    """A file's runs by claim, then the reproductions' seeds in order, then the variance designs' cells."""
    seed = tags.get("cnnlab.seed")
    return (tags["cnnlab.claim"], seed is None, int(seed) if seed is not None else 0, tags.get(CELL_TAG, ""))


# Each run record of a file, field -> type: what export writes and import needs.
RUN_FIELDS = {"origin": str, "parent": str, "run_name": str, "start_time": int, "end_time": int}
RUN_FIELDS |= {"params": dict, "tags": dict, "metrics": dict, "history": dict}


class SeedsFileRefused(UserError, ValueError):
    """The seeds file cannot be written or read as asked; nothing was created."""


@dataclass
class Moved:
    path: str
    runs: int  # seeds written (export) or created (import)
    already: int = 0  # import: seeds of the file that were in the store already
    claims: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    cells: int = 0  # of ``runs``, those of a variance-by-source design (a cell of seeds, not a seed)


def checksum(parents: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """What a file's ``sha256`` holds: the hash of its parents and runs, so a damaged or edited file is told apart."""
    return hashlib.sha256(json.dumps({"parents": parents, "runs": runs}, sort_keys=True).encode()).hexdigest()


def _all_runs(client: Any, experiment_id: str, filter_string: str = "") -> list[Any]:
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def _histories(client: Any, run: Any) -> dict[str, list[list[float]]]:
    """Each metric logged per epoch (the curves the report draws) as [step, value] pairs; one value at step 0 (a
    final score) is whole in the run's metrics."""
    out = {}
    for key in run.data.metrics:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda point: point.step)
        if len(history) > 1 or (history and history[0].step != 0):
            out[key] = [[point.step, point.value] for point in history]
    return out


RUNS = {"all": "seed", "seeds": "seed", "sources": "variance-by-source run"}  # what a refusal says is missing


def export_seeds(
    tracking_uri: str, path: str, claims: list[str] | None, machine_kind: str | None, runs_of: str = "all"
) -> Moved:
    """Writes the FINISHED seeds of ``claims`` (all: None) trained on ``machine_kind`` (any: None) to ``path``;
    ``runs_of``: every such run (``all``), a reproduction's seeds only, or the variance designs' runs only
    (``sources``), so a claim's evidence file and its variance design can travel apart."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    where = f"{EXPERIMENT} in {tracking_uri}"
    if experiment is None:
        raise SeedsFileRefused(f"no reproduction in {tracking_uri} (no experiment {EXPERIMENT}); run cnnlab reproduce")
    runs = [
        run
        for run in _all_runs(client, experiment.experiment_id, "attributes.status = 'FINISHED'")
        if not _lookup_missing(run.data.tags)
        and "mlflow.parentRunId" in run.data.tags
        and (claims is None or run.data.tags["cnnlab.claim"] in claims)
        and (machine_kind is None or run.data.tags.get("machine.kind") == machine_kind)
        and (runs_of == "all" or (CELL_TAG in run.data.tags) == (runs_of == "sources"))
    ]
    if not runs:
        wanted = f"claims {list(claims)}" if claims is not None else "any claim"
        kind = f" on machine kind {machine_kind}" if machine_kind else ""
        raise SeedsFileRefused(f"no FINISHED {RUNS[runs_of]} of {wanted}{kind} in {where}; nothing written to {path}")
    parents: dict[str, Any] = {}
    entries = []
    origins: dict[str, str] = {}  # parent run id here -> its id where it was made; each parent read once
    for run in sorted(runs, key=lambda r: _order(r.data.tags)):
        tags = run.data.tags
        parent_id = tags["mlflow.parentRunId"]
        if parent_id not in origins:
            parent = client.get_run(parent_id)
            origins[parent_id] = parent.data.tags.get(IMPORTED_RUN, parent_id)
            parents.setdefault(
                origins[parent_id], {"run_name": parent.info.run_name, "design": parent.data.tags.get(DESIGN_TAG)}
            )
        parent_origin = origins[parent_id]
        entries.append(
            {
                "origin": tags.get(IMPORTED_RUN, run.info.run_id),
                "parent": parent_origin,
                "run_name": run.info.run_name,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                "params": dict(run.data.params),
                "tags": {k: v for k, v in tags.items() if k not in (*STORE_TAGS, IMPORTED_FROM, IMPORTED_RUN)},
                "metrics": {k: v for k, v in run.data.metrics.items() if not k.startswith("system/")},
                "history": {k: v for k, v in _histories(client, run).items() if not k.startswith("system/")},
            }
        )
    target = Path(path)
    if target.exists():
        try:
            kept = {run["origin"] for run in read_seeds_file(path)["runs"]}
        except SeedsFileRefused as error:
            raise SeedsFileRefused(f"path: {path} exists and is not a seeds file this could update ({error})") from None
        lost = kept - {entry["origin"] for entry in entries}
        if lost:
            raise SeedsFileRefused(
                f"path: {path} already holds {len(lost)} seed(s) this export does not (from another store?); "
                "export to another path, or import that file here first"
            )
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parents": parents,
        "runs": entries,
        "sha256": checksum(parents, entries),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: an interrupted export leaves the old file or none, never half.
    temporary = target.with_name(f".{target.name}.part")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, target)
    return Moved(str(target), len(entries), 0, *_names(entries), _cells(entries))


def _names(entries: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    claims = tuple(sorted({entry["tags"]["cnnlab.claim"] for entry in entries}))
    kinds = tuple(sorted({entry["tags"].get("machine.kind", "unrecorded") for entry in entries}))
    return claims, kinds


def _cells(entries: list[dict[str, Any]]) -> int:
    return sum(CELL_TAG in entry["tags"] for entry in entries)


def _counted(moved: Moved) -> str:
    seeds = f"{moved.runs - moved.cells} seed(s)"
    return seeds + (f" and {moved.cells} variance-by-source run(s)" if moved.cells else "")


def _problem(payload: Any) -> str | None:
    """What makes ``payload`` not a seeds file of a version this reads, or None."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        return f'not a cnnlab seeds file (no "format": "{FORMAT}"); make one with cnnlab seeds export'
    version = payload.get("version")
    if version != VERSION:
        return (
            f"a seeds file of version {version!r}, and this cnnlab reads version {VERSION} only; "
            "export it again with this cnnlab's version, or upgrade cnnlab"
        )
    parents, runs = payload.get("parents"), payload.get("runs")
    if not isinstance(parents, dict) or not isinstance(runs, list) or not runs:
        return "corrupt: it lists no parents or no runs"
    if payload.get("sha256") != checksum(parents, runs):
        return "corrupt: its content does not match its checksum (edited or damaged since it was exported)"
    for index, run in enumerate(runs):
        if not isinstance(run, dict):
            return f"corrupt: run {index} is not a record"
        wrong = [name for name, kind in RUN_FIELDS.items() if not isinstance(run.get(name), kind)]
        if wrong:
            return f"corrupt: run {index} lacks or mistypes {', '.join(wrong)}"
        missing = _lookup_missing(run["tags"])
        if missing or run["parent"] not in parents:
            return f"corrupt: run {index} lacks {', '.join(missing) or 'its parent'}"
    return None


def read_seeds_file(path: str) -> dict[str, Any]:
    """The seeds file at ``path``, checked whole (format, version, checksum, every run's fields) before any use."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise SeedsFileRefused(f"path: cannot read {path} ({error.strerror or error})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise SeedsFileRefused(f"path: {path} is not JSON ({error.msg} at line {error.lineno}): corrupt") from None
    problem = _problem(payload)
    if problem:
        raise SeedsFileRefused(f"path: {path} is {problem}")
    return payload


def import_seeds(tracking_uri: str, path: str) -> Moved:
    """Recreates the seeds of ``path`` in the store's reproductions experiment; those already there are skipped."""
    import mlflow
    from mlflow.entities import Metric, Param
    from omegaconf import OmegaConf

    from cnnlab.tracking.store import configure

    payload = read_seeds_file(path)  # refused whole before anything is created
    name = Path(path).name
    mlflow.set_tracking_uri(tracking_uri)  # the store the caller chose, over any other MLFLOW_TRACKING_URI set before
    experiment_id = configure(OmegaConf.create({"uri": tracking_uri, "experiment": EXPERIMENT, "artifact_root": None}))
    client = mlflow.MlflowClient(tracking_uri)
    here = {}
    for run in _all_runs(client, experiment_id):
        here[run.info.run_id] = run.info.run_id
        if IMPORTED_RUN in run.data.tags:
            here[run.data.tags[IMPORTED_RUN]] = run.info.run_id
    new = [entry for entry in payload["runs"] if entry["origin"] not in here]
    created: list[str] = []
    try:
        for entry in new:
            if entry["parent"] not in here:
                parent = payload["parents"][entry["parent"]]
                tags = {IMPORTED_FROM: name, IMPORTED_RUN: entry["parent"]}
                if parent.get("design"):
                    tags[DESIGN_TAG] = parent["design"]  # the design its seeds were judged under, for the report
                run = client.create_run(experiment_id, run_name=f"imported-{parent['run_name']}", tags=tags)
                created.append(run.info.run_id)
                client.set_tag(run.info.run_id, "mlflow.note.content", f"Seeds imported from `{name}`.")
                client.set_terminated(run.info.run_id, "FINISHED")
                here[entry["parent"]] = run.info.run_id
            tags = {**entry["tags"], "mlflow.parentRunId": here[entry["parent"]], IMPORTED_FROM: name}
            tags[IMPORTED_RUN] = entry["origin"]
            run = client.create_run(
                experiment_id, start_time=entry["start_time"], tags=tags, run_name=entry["run_name"]
            )
            created.append(run.info.run_id)
            end = entry["end_time"]
            metrics = [
                Metric(key, float(value), end, 0)
                for key, value in entry["metrics"].items()
                if key not in entry["history"]
            ]
            metrics += [
                Metric(key, float(value), end, int(step))
                for key, points in entry["history"].items()
                for step, value in points
            ]
            params = [Param(key, str(value)) for key, value in entry["params"].items()]
            client.log_batch(run.info.run_id, metrics=metrics, params=params)
            client.set_terminated(run.info.run_id, "FINISHED", end_time=end)
            here[entry["origin"]] = run.info.run_id
    except BaseException:
        for run_id in created:  # all of the file or none of it: a half import would pass for a whole one
            client.delete_run(run_id)
        raise
    claims, kinds = _names(payload["runs"])
    return Moved(path, len(new), len(payload["runs"]) - len(new), claims, kinds, _cells(new))


def summary(action: str, moved: Moved, tracking_uri: str) -> str:
    """What `cnnlab seeds` prints."""
    what = f"{', '.join(moved.claims)} (machine kinds: {', '.join(moved.kinds)})"
    if action == "export":
        return f"\n  exported   {_counted(moved)} of {what}\n  to         {moved.path}\n"
    if not moved.runs:
        return (
            f"\n  nothing new: the {moved.already} seed(s) of {moved.path} are in {tracking_uri} already "
            "(imported before, or trained there)\n"
        )
    return (
        f"\n  imported   {_counted(moved)} of {what}\n  into       {tracking_uri} (experiment "
        f"cnnlab-reproductions, tagged {IMPORTED_FROM}={Path(moved.path).name})"
        + (f"\n  skipped    {moved.already} already there" if moved.already else "")
        + "\n  next       cnnlab reproduce ... reuses them as seeds trained on their machine kind, on as many "
        "TensorFlow threads (TF_NUM_INTRAOP_THREADS sets them)\n"
    )
