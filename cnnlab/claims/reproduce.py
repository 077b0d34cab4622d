"""reproduce(cfg): claims x seeds as child runs of one parent run, seeds added only while a verdict is open.

Each claim variant first gets ``min_seeds`` seeds; then, round by round, one more seed goes to every claim whose
verdict is still undecided, until each is decided or has ``max_seeds`` (``seeds=auto``). ``seeds=N`` trains
exactly N. A rerun of the same command reattaches the parent run, marks children its dead process left RUNNING
as KILLED and skips every (claim, seed) already FINISHED with the same fingerprint. The report (MLflow parent
artifacts, and ``report_path``) is refreshed after every round, so a long reproduction shows where it stands
(with ``workers=N``, once every worker is done; each worker prints its progress after every seed).

With ``workers=N`` the process the user started also starts N-1 copies of itself (cnnlab.processes), each on its
share of the CPUs. They share the parent run and the store, and nothing else: worker i trains seeds i, i + N, ...
of every claim, reading from the store the seeds the others finished to judge whether a verdict is still open, so
the looks stay at the same seed counts and a seed trained past a closing verdict is simply not used. When they are
all done, the first process reads every claim's seeds from the store in order and writes the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from cnnlab.allocator import pin_mmap_threshold
from cnnlab.claims import DESIGN_TAG, EXPERIMENT, kinds, timing
from cnnlab.claims.stats import Design
from cnnlab.claims.verdict import DEFAULT_TOLERANCE, NO_CLAIM, Verdict, distance_to_margin, judge
from cnnlab.config.compose import claim_names, parse_overrides
from cnnlab.config.domains import check_domains
from cnnlab.config.schema import option, without_dataset_description
from cnnlab.errors import ConfigError, UserError
from cnnlab.machine import choose_precision

log = logging.getLogger(__name__)

# reproduce's own options; every other override reaches each claim
OWN_KEYS = (
    "seeds",
    "min_seeds",
    "max_seeds",
    "claims",
    "report_path",
    "precisions",
    "verdicts",
    "design",
    "sources",
    "workers",
)
# Set for the processes workers=N starts: "i/N/pid", worker i of N started by process pid (the one the user started
# is worker 0)
WORKER_VARIABLE = "CNNLAB_REPRODUCE_WORKER"
POLL_SECONDS = 5.0  # how often a worker waiting on the others' seeds looks at the store again
# Overrides that change where runs are read from or logged, or what judges them, not how they train: any other
# override (dataset.subset, trainer.epochs, model, optimizer, precision, ...) makes a modified protocol, reported
# as such and never as a verdict on the claim.
NOT_PROTOCOL = (
    "tracking",
    "claim",
    "dataset.local_dir",
    "dataset.sources",
    "dataset.cache_dir",
    "dataset.mirror",
    "trainer.verbose",
    "trainer.allow_emulated_bf16",
)


def protocol_changes(overrides: list[str]) -> list[str]:
    """The overrides among ``overrides`` that change a claim's protocol (``NOT_PROTOCOL`` says which do not)."""
    return [
        override
        for override, (key, value) in zip(overrides, parse_overrides(overrides), strict=True)
        if not any(key == k or key.startswith(k + ".") for k in NOT_PROTOCOL)
        and (key, value) != ("trainer.precision", "float32")  # the claims' own rule, however it is asked for
    ]


def seeds_design(cfg: Any) -> tuple[int, int, bool]:
    """``(min_seeds, max_seeds, sequential)`` from reproduce's ``seeds``, ``min_seeds`` and ``max_seeds``."""
    seeds = str(cfg.seeds).strip()
    check_domains(cfg)
    if seeds == "auto":
        if cfg.max_seeds < cfg.min_seeds:
            raise ConfigError(f"max_seeds: must be >= min_seeds ({cfg.min_seeds}), got {cfg.max_seeds}")
        return cfg.min_seeds, cfg.max_seeds, True
    if not seeds.isdigit() or int(seeds) < 1:
        raise ConfigError(f"seeds: 'auto' or a whole number >= 1, got {cfg.seeds!r}")
    return int(seeds), int(seeds), False


@dataclass
class ClaimResult:
    name: str
    claim: Any
    precision: str = "float32"
    runs: list[Any] = field(default_factory=list)  # FINISHED MLflow runs, in seed order 0, 1, 2, ...
    split_sizes: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None
    skipped: int = 0
    design: Design = field(default_factory=lambda: Design(3, 10))
    modified: list[str] = field(default_factory=list)  # overrides that change the claim's protocol
    earlier_designs: list[Design] = field(default_factory=list)  # designs these same seeds were judged under
    kind: str = ""  # the machine kind this process trains on (cnnlab.claims.kinds); its seeds are ``runs``
    by_kind: dict[str, list[Any]] = field(default_factory=dict)  # every kind's seeds in the store, for the report
    precision_basis: str = ""  # why the claim runs in ``precision`` when its bf16 evidence decided it
    # with precisions=[...]: the precision a reproduction without it runs the claim in here, and why
    plain_basis: str = ""

    @property
    def tolerance(self) -> float:
        return (self.claim or {}).get("tolerance", DEFAULT_TOLERANCE)

    @property
    def error_ratio(self) -> float | None:
        return (self.claim or {}).get("error_ratio")

    def allowed(self, claimed: float) -> float:
        """``verdict.distance_to_margin`` of this claim."""
        return distance_to_margin(self.claim or {}, claimed)

    def values(self, metric: str) -> list[float]:
        """Every finished seed's value in seed order; a run that logged no value (diverged) counts as NaN."""
        return [run.data.metrics.get(metric, math.nan) for run in self.runs]

    def verdicts(self) -> list[tuple[Any, Verdict]]:
        """Each claimed number with its verdict from the seeds so far, under this reproduction's design."""
        return [
            (
                target,
                judge(
                    self.values(target["metric"]),
                    target["value"],
                    self.design,
                    self.tolerance,
                    self.split_sizes.get(target["metric"], 0),
                    self.error_ratio,
                    tuple(self.earlier_designs),
                ),
            )
            for target in (self.claim or {}).get("targets", [])
        ]

    def needs_more_seeds(self) -> bool:
        """True while a seed below min_seeds is missing, or some target is undecided and max_seeds not reached."""
        if self.unavailable:
            return False
        if len(self.runs) < self.design.min_seeds:
            return True
        if len(self.runs) >= self.design.max_seeds:
            return False
        return any(not verdict.decided and verdict.status != NO_CLAIM for _, verdict in self.verdicts())

    @property
    def label(self) -> str:
        """The claim's name, with the precision when it is not float32 (run names, figure titles)."""
        return self.name if self.precision == "float32" else f"{self.name}-{self.precision}"


# Keys added to the run schema after reproductions were recorded, with the default that keeps the old behaviour:
# at that default they are left out of the fingerprint, so adding them retrains nothing.
ADDED_AT_DEFAULT = {
    "trainer.allow_emulated_bf16": False,
    "seed_init": None,
    "seed_data_order": None,
    "seed_dropout": None,
}


def fingerprint(cfg: Any, data_hashes: dict[str, str]) -> str:
    """Same data, same protocol, same libraries -> same fingerprint.

    Left out: the seed, where runs are tracked, the ``claim`` block (the claimed number and its tolerance
    judge a run; they do not change how it trains, so changing them must not retrain anything), and what describes
    the dataset's files (its shape, pins, download: ``data_hashes`` already pin all of it).

    Every other key is in, so adding a field to the run schema (even one whose default keeps today's behaviour)
    changes every claim's fingerprint and retrains every seed, unless it is listed in ADDED_AT_DEFAULT.
    """
    from cnnlab.tracking.provenance import versions

    installed = versions()
    container = without_dataset_description(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    for key in ("seed", "tracking", "claim"):
        container.pop(key, None)
    for block in container.get("model", {}).get("blocks", []):
        block.pop("name", None)  # a layer's name changes no arithmetic
    for path, default in ADDED_AT_DEFAULT.items():
        *sections, key = path.split(".")
        node = container
        for section in sections:
            node = node.get(section, {})
        if node.get(key, default) == default:
            node.pop(key, None)
    payload = {
        "data": data_hashes,
        "config": container,
        "versions": [installed[f"version.{library}"] for library in ("cnnlab", "tensorflow", "keras")],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def design_of(cfg: Any) -> Design:
    """The reproduction's design from ``seeds``, ``min_seeds`` and ``max_seeds``."""
    min_seeds, max_seeds, sequential = seeds_design(cfg)
    return Design(min_seeds, max_seeds) if sequential else Design.fixed(max_seeds)


def never_decides(cfg: Any) -> None:
    """Refuses, before anything is trained or created, a design whose verdict could only ever be inconclusive."""
    from cnnlab.claims.stats import smallest_deciding_design

    design = design_of(cfg)
    smallest = smallest_deciding_design(design)
    if smallest is None or not cfg.get("verdicts", True):
        return
    knob = "max_seeds" if design.sequential else "seeds"
    raise ConfigError(
        f"{knob}: {design.max_seeds} seeds can never decide a verdict: the median rule needs at least {smallest} "
        f"(every one of n seeds reaching the margin happens by chance 1/2**n of the time, more than "
        f"{100 * design.alpha:g}% below {smallest}); use {knob}={smallest} or more, or seeds=auto"
    )


def check_workers(cfg: Any) -> None:
    """Refuses, before anything is created, workers that cannot each have a CPU, or workers for a design that trains
    its cells in one process."""
    from cnnlab.config.schema import option
    from cnnlab.machine import usable_cpus

    cpus = usable_cpus()
    if cfg.workers > cpus:
        raise ConfigError(
            f"workers: {cfg.workers} processes on the {cpus} CPU(s) this process may use would share cores and slow "
            f"every seed; use workers={cpus} or fewer"
        )
    if cfg.workers > 1 and option(cfg.design) != "seeds":
        raise ConfigError(f"workers: design={option(cfg.design)} trains in one process; use workers=1 with it")


def worker_slot(cfg: Any) -> tuple[int, int, int | None]:
    """``(i, N, pid)``: this process is worker i of the reproduction's N (``workers``), started by process ``pid``;
    the one the user started is worker 0, started by no worker (None)."""
    given = os.environ.get(WORKER_VARIABLE)
    if given:
        index, count, launcher = given.split("/")
        return int(index), int(count), int(launcher)
    return 0, cfg.workers, None


def use_threads(count: int) -> int:
    """Gives each of ``count`` workers its share of the CPUs as TensorFlow's threads, in this process and in those
    it starts; returns the share."""
    from cnnlab.machine import THREADS_ENV, set_threads, usable_cpus

    threads = max(1, usable_cpus() // count)
    os.environ[THREADS_ENV] = os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    try:
        set_threads(threads)
    except RuntimeError as error:  # TensorFlow's runtime already started with other threads
        raise UserError(f"workers: TensorFlow started before its threads could be set ({error})") from error
    return threads


def start_workers(count: int, overrides: list[str], tracking_uri: str) -> dict[str, Any]:
    """Starts workers 1..count-1 as copies of this command (the same overrides and config folders), after this
    process has prepared every claim's data: they read it from the cache, never download it at once."""
    from hydra.core.hydra_config import HydraConfig

    from cnnlab import processes
    from cnnlab.config.compose import searchpath_overrides

    folders = []
    if HydraConfig.initialized():  # a user's --config-dir is a config source, not an override
        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "command-line" and source.schema == "file":
                folders += ["--config-dir", source.path]
    command = [sys.executable, "-m", "cnnlab.reproduce", *folders, *searchpath_overrides(), *overrides]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1"}
    print(f"[reproduce] {count} workers of {os.environ['TF_NUM_INTRAOP_THREADS']} thread(s) each", flush=True)
    return {
        f"worker {i}": processes.start(f"worker {i}", command, {**env, WORKER_VARIABLE: f"{i}/{count}/{os.getpid()}"})
        for i in range(1, count)
    }


def others_alive(workers: dict[str, Any], launcher: int | None) -> bool:
    """Whether another process of the reproduction may still finish seeds: raises if a worker this process started
    failed, or (in a worker) if the process that started it is gone."""
    from cnnlab import processes

    for name, process in workers.items():
        code = process.poll()
        if code not in (None, 0):
            processes.drain(process)  # its last lines, which say why, before this message
            raise UserError(
                f"{name} exited with code {code} (its output above says why); the seeds already finished are kept: "
                "run the same command again to train the rest"
            )
    if launcher is not None and os.getppid() != launcher:
        raise UserError("the reproduction that started this worker has ended; this worker stops too")
    return launcher is not None or any(process.poll() is None for process in workers.values())


def override_key(override: str) -> str:
    """``+trainer.precision=bf16`` -> ``trainer.precision``."""
    return parse_overrides([override])[0][0]


def claim_overrides(overrides: list[str]) -> list[str]:
    return [o for o in overrides if override_key(o).split(".")[0] not in OWN_KEYS]


def precision_variants(cfg: Any, passthrough: list[str]) -> list[list[str]]:
    """The overrides that make each precision's variant of a claim: ``[[]]`` when ``precisions`` is not set."""
    if not cfg.precisions:
        return [[]]
    if any(override_key(o) == "trainer.precision" for o in passthrough):
        raise ValueError("give the precision either as precisions=[...] or as trainer.precision=..., not both")
    return [[f"trainer.precision={option(precision)}"] for precision in cfg.precisions]


def reproduce(
    cfg: Any, overrides: list[str], compose: Any, on_report: Any = None
) -> tuple[str, list[ClaimResult], dict[str, Any]]:
    """Runs or resumes the reproduction; ``compose(overrides)`` composes a run config (Hydra's compose API).

    ``on_report(report, results, parent_id)`` is called after every round with the refreshed report.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from cnnlab import train
    from cnnlab.data import DataError
    from cnnlab.tracking.provenance import rerun_command
    from cnnlab.tracking.runs import tracked_run
    from cnnlab.tracking.store import configure

    pin_mmap_threshold()  # every seed of every claim trains in this one process
    index, count, launcher = worker_slot(cfg)
    if count > 1:
        use_threads(count)
    passthrough = claim_overrides(overrides)
    variants = precision_variants(cfg, passthrough)
    design = design_of(cfg)
    min_seeds, max_seeds, sequential = design.min_seeds, design.max_seeds, design.sequential
    tracking_cfg = OmegaConf.merge(cfg.tracking, {"experiment": EXPERIMENT})
    experiment_id = configure(tracking_cfg)
    client = MlflowClient()
    claims = claim_names(cfg, compose, searchpath=[])  # compose() already carries the user's config folders
    identity = [claims, [min_seeds, max_seeds, sequential], passthrough]
    if cfg.precisions:
        identity.append([option(p) for p in cfg.precisions])
    if count > 1:  # its seeds run on other threads, so they are other runs: a parent of its own
        identity.append(["workers", count])
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    command = rerun_command("cnnlab.reproduce", overrides)
    seeds_text = f"{min_seeds} to {max_seeds} seeds (auto)" if sequential else f"{max_seeds} seeds"
    parent_id = open_parent(
        client, experiment_id, key, f"Reproduction of {claims} over {seeds_text}.\n\nRerun: `{command}`"
    )
    client.set_tag(parent_id, DESIGN_TAG, design_tag(design))
    workers: dict[str, Any] = {}  # the processes worker 0 starts, once the data are prepared

    results: list[ClaimResult] = []
    report: dict[str, Any] = {}
    # the parent run is opened and closed by worker 0 alone: a worker ending before it must not close it
    parent = tracked_run(experiment_id, "", {}, "", run_id=parent_id) if index == 0 else contextlib.nullcontext()
    with parent, stopping(workers):
        prepared = []
        for name in claims:
            data = None
            for variant in variants:
                run_overrides = [f"experiment={name}", *passthrough, *variant]
                claim_cfg = compose(run_overrides)
                claim_cfg.tracking.experiment = EXPERIMENT
                # auto resolves here, so the fingerprint and the report name the arithmetic the seeds really ran in
                claim_cfg.trainer.precision = choose_precision(option(claim_cfg.trainer.precision))[0]
                result = ClaimResult(
                    name=name,
                    claim=OmegaConf.to_container(claim_cfg.claim) if claim_cfg.claim is not None else None,
                    precision=option(claim_cfg.trainer.precision),
                    design=design,
                    modified=protocol_changes([*passthrough, *variant]),
                    kind=kinds.this_kind(),
                )
                results.append(result)
                try:
                    data = data or train.prepare_data(claim_cfg)  # every variant shares the claim's data
                except DataError as error:
                    result.unavailable = str(error).splitlines()[0]
                    print(f"[reproduce] {name}: data unavailable here, no verdict ({result.unavailable})", flush=True)
                    break
                result.split_sizes = split_sizes(data)
                print(f"[reproduce] {name}: data {data.arrays.provenance()}", flush=True)
                if (
                    variant == []
                    and result.claim
                    and not any(override_key(o) == "trainer.precision" for o in passthrough)
                ):  # the claim's own precision: float32, or bf16 where its evidence file shows it changes nothing
                    claim_cfg = with_evidenced_precision(result, claim_cfg, data.arrays.sha256, passthrough)
                    if result.precision != "float32":  # a run's rerun command names what it trained in
                        run_overrides = [*run_overrides, f"trainer.precision={result.precision}"]
                elif cfg.precisions and result.precision == "float32" and result.claim:
                    # each precision is measured and float32's rows are the verdict; say what a reproduction
                    # without precisions= would judge here, so the two reports do not seem to disagree
                    basis = evidenced_basis(result, claim_cfg, data.arrays.sha256, passthrough)
                    result.plain_basis = basis.why if basis else ""
                prepared.append((result, claim_cfg, run_overrides, data, fingerprint(claim_cfg, data.arrays.sha256)))
        if index == 0 and count > 1:
            workers.update(start_workers(count, overrides, mlflow.get_tracking_uri()))
        clock = timing.Clock(workers=count)
        for result, claim_cfg, _, _, print_ in prepared:
            plan = clock.plan(result, claim_cfg.trainer.epochs, print_, client, experiment_id)
            if index == 0:  # the workers' plans would only repeat it
                print(plan, flush=True)
        every = [r for r, *_ in prepared]

        def refresh_report() -> dict[str, Any]:
            for result, _, _, _, print_ in prepared:
                stored = kinds.finished_runs(
                    client, experiment_id, {"cnnlab.claim": result.name, "cnnlab.fingerprint": print_}
                )
                result.by_kind = kinds.group_by_kind(stored, max_seeds)
            report = log_report(results, parent_id, command, client)
            if on_report is not None:
                on_report(report, results, parent_id)
            return report

        if count > 1:
            alive = lambda: others_alive(workers, launcher)  # noqa: E731
            train_share(prepared, index, count, design, clock, alive, parent_id, experiment_id, client)
            if index > 0:
                return parent_id, results, {}
            while alive():
                time.sleep(1)
            for result, claim_cfg, run_overrides, data, print_ in prepared:  # every worker's seeds, in seed order
                result.runs, result.skipped = [], 0
                while result.needs_more_seeds():
                    seed = len(result.runs)
                    run_seed(
                        result,
                        claim_cfg,
                        run_overrides,
                        data,
                        seed,
                        print_,
                        parent_id,
                        experiment_id,
                        client,
                        quiet=True,
                    )
            return parent_id, results, refresh_report()
        for seed in range(max_seeds):
            trained = False
            for result, claim_cfg, run_overrides, data, print_ in prepared:
                if len(result.runs) != seed or not result.needs_more_seeds():
                    continue
                started = time.perf_counter()
                run_seed(result, claim_cfg, run_overrides, data, seed, print_, parent_id, experiment_id, client)
                trained = True
                if len(result.runs) >= design.min_seeds:
                    for target, verdict in result.verdicts():
                        print(f"[reproduce] {result.label} {target['metric']}: {verdict.status} ({verdict.why})")
                print(clock.after_seed(result, time.perf_counter() - started, every), flush=True)
            if trained or seed == 0:
                report = refresh_report()
    return parent_id, results, report


@contextlib.contextmanager
def stopping(workers: dict[str, Any]) -> Any:
    """Stops the workers this process started when it ends, however it ends."""
    from cnnlab import processes

    try:
        yield
    finally:
        processes.stop_all(workers)


def stored_prefix(client: Any, experiment_id: str, result: ClaimResult, print_: str) -> list[Any]:
    """The claim's seeds 0, 1, ... finished in the store (by any worker, or reusable from before), up to the first
    missing one: the seeds a verdict may be judged on now."""
    stored = kinds.finished_runs(
        client, experiment_id, {"cnnlab.claim": result.name, "cnnlab.fingerprint": print_}, result.kind
    )
    prefix: list[Any] = []
    for run in kinds.group_by_kind(stored, result.design.max_seeds).get(result.kind, []):  # one a seed, newest
        if kinds.seed_of(run) != len(prefix):
            break
        prefix.append(run)
    return prefix


def train_share(
    prepared: list[Any],
    index: int,
    count: int,
    design: Design,
    clock: Any,
    alive: Any,
    parent_id: str,
    experiment_id: str,
    client: Any,
) -> None:
    """Worker ``index`` of ``count``: seeds index, index + count, ... of every claim, round by round, while the
    claim's verdict on the seeds finished so far (by any worker) is open. Past ``min_seeds`` a seed waits until
    fewer than ``count`` seeds before it are unfinished, so that no worker trains far past a verdict that may be
    about to close; it stops waiting when no other process is left to finish them (``alive()``, which raises when
    a worker failed or the reproduction that started this one has ended)."""
    every = [result for result, *_ in prepared]
    for seed in range(index, design.max_seeds, count):
        for result, claim_cfg, run_overrides, data, print_ in prepared:
            result.runs = stored_prefix(client, experiment_id, result, print_)
            while seed >= design.min_seeds and seed - len(result.runs) >= count and result.needs_more_seeds():
                if not alive():
                    break  # the seeds before it are left to the final collection, which trains what is missing
                time.sleep(POLL_SECONDS)
                result.runs = stored_prefix(client, experiment_id, result, print_)
            if seed < len(result.runs) or not result.needs_more_seeds():
                continue
            alive()  # a dead worker or launcher stops this one before its next seed, not after its whole share
            started = time.perf_counter()
            run_seed(result, claim_cfg, run_overrides, data, seed, print_, parent_id, experiment_id, client)
            print(clock.after_seed(result, time.perf_counter() - started, every), flush=True)


def evidenced_basis(result: ClaimResult, claim_cfg: Any, data_hashes: dict[str, str], passthrough: list[str]) -> Any:
    """The precision ``claim.bf16_evidence`` earns the claim here, and why (cnnlab.claims.evidence); None without
    evidence. ``passthrough``: the user's overrides of the claim."""
    from cnnlab.claims.evidence import PRECISION, bf16_basis
    from cnnlab.machine import native_bf16

    if not result.claim.get("bf16_evidence"):
        return None
    fingerprints = {
        precision: fingerprint(OmegaConf.merge(claim_cfg, {"trainer": {"precision": precision}}), data_hashes)
        for precision in ("float32", PRECISION)
    }
    return bf16_basis(result.claim, result.name, fingerprints, native_bf16(), result.kind, passthrough)


def with_evidenced_precision(
    result: ClaimResult, claim_cfg: Any, data_hashes: dict[str, str], passthrough: list[str]
) -> Any:
    """``claim_cfg`` in the precision its bf16 evidence earns it here, with ``result``'s precision and the reason
    set to match."""
    basis = evidenced_basis(result, claim_cfg, data_hashes, passthrough)
    if basis is None:
        return claim_cfg
    result.precision_basis = basis.why
    print(f"[reproduce] {result.name}: runs in {basis.why}", flush=True)
    if basis.precision == result.precision:
        return claim_cfg
    result.precision = basis.precision
    return OmegaConf.merge(claim_cfg, {"trainer": {"precision": basis.precision}})


def open_parent(client: Any, experiment_id: str, key: str, description: str) -> str:
    """The parent run of this reproduction: the one a same command made before (the children whose process died
    marked KILLED), or a new one."""
    from cnnlab.tracking.runs import mark_killed, process_alive, process_tags

    parents = client.search_runs(
        [experiment_id], filter_string=f"tags.`cnnlab.reproduction` = '{key}'", order_by=["attributes.start_time DESC"]
    )
    if parents:
        parent_id = parents[0].info.run_id
        print(f"[reproduce] resuming parent run {parent_id}", flush=True)
        mark_killed(
            client,
            [experiment_id],
            f"tags.mlflow.parentRunId = '{parent_id}'",
            "process died mid-seed; the seed is trained again",
            keep=process_alive,  # another worker's seed in training
        )
        return parent_id
    run = client.create_run(experiment_id, run_name="reproduction", tags={"cnnlab.reproduction": key, **process_tags()})
    client.set_tag(run.info.run_id, "mlflow.note.content", description)
    print(f"[reproduce] new parent run {run.info.run_id}", flush=True)
    return run.info.run_id


# On a seed reused by another reproduction: that reproduction's design, so a third one counts every judgement
JUDGED_TAG = "cnnlab.judged_by."


def design_tag(design: Design) -> str:
    return json.dumps([design.min_seeds, design.max_seeds, design.sequential])


def _design(tag: str) -> Design:
    low, high, sequential = json.loads(tag)
    return Design(low, high) if sequential else Design.fixed(high)


def earlier_designs(client: Any, run: Any, parent_id: str) -> list[Design]:
    """The designs other reproductions judged this seed under: the one that trained it, and every one that
    reused it (none when it is this reproduction's own seed)."""
    designs = []
    trained_by = run.data.tags.get("mlflow.parentRunId")
    if trained_by and trained_by != parent_id:
        tag = client.get_run(trained_by).data.tags.get(DESIGN_TAG)
        designs += [_design(tag)] if tag is not None else []
    designs += [
        _design(value)
        for key, value in sorted(run.data.tags.items())
        if key.startswith(JUDGED_TAG) and key != JUDGED_TAG + parent_id
    ]
    return designs


def split_sizes(data: Any) -> dict[str, int]:
    splits = data.splits
    return {
        "test_accuracy": len(splits.test),
        "accuracy": len(splits.train),
        "val_accuracy": len(splits.validation) if splits.validation else 0,
    }


def run_seed(
    result: ClaimResult,
    claim_cfg: Any,
    run_overrides: list[str],
    data: Any,
    seed: int,
    print_: str,
    parent_id: str,
    experiment_id: str,
    client: Any,
    quiet: bool = False,
) -> None:
    """Trains one seed of one claim variant as a child run, or reuses it if FINISHED with the same fingerprint on
    this machine kind and thread count (``kinds.finished_runs``: otherwise it is another run of the seed).
    ``quiet``: a reused seed is not announced (the workers' seeds, collected at the end)."""
    from cnnlab import train

    label = result.label
    tags = {"cnnlab.claim": result.name, "cnnlab.seed": str(seed), "cnnlab.fingerprint": print_}
    done = kinds.finished_runs(client, experiment_id, tags, result.kind)
    if done:
        if not quiet:
            print(
                f"[reproduce] {label} seed {seed}: already FINISHED on {result.kind} ({done[0].info.run_id}), skipped",
                flush=True,
            )
        result.runs.append(done[0])
        result.skipped += 1
        for earlier in earlier_designs(client, done[0], parent_id):
            if earlier != result.design and earlier not in result.earlier_designs:
                result.earlier_designs.append(earlier)
        if done[0].data.tags.get("mlflow.parentRunId") != parent_id:
            client.set_tag(done[0].info.run_id, JUDGED_TAG + parent_id, design_tag(result.design))
        check_one_digest(result)
        return
    print(f"[reproduce] {label} seed {seed}: training ({claim_cfg.trainer.epochs} epochs)", flush=True)
    seed_cfg = OmegaConf.merge(claim_cfg, {"seed": seed, "tracking": {"run_name": f"{label}-s{seed}"}})
    outcome = train.train(
        seed_cfg,
        [*run_overrides, f"seed={seed}"],
        parent_run_id=parent_id,
        extra_tags={
            "cnnlab.claim": result.name,
            "cnnlab.seed": str(seed),
            "cnnlab.precision": result.precision,
            "cnnlab.fingerprint": print_,
        },
        data=data,
    )
    result.runs.append(client.get_run(outcome.run_id))
    check_one_digest(result)


class MixedData(UserError, RuntimeError):
    """The seeds of one claim were trained on different data: their spread is not seed noise."""


def check_one_digest(result: ClaimResult) -> None:
    """Refuses to pool seeds trained on different digests of one dataset (runs logged before digests: unknown)."""
    digests = {run.data.tags["data.digest"]: run for run in result.runs if "data.digest" in run.data.tags}
    if len(digests) > 1:
        listed = ", ".join(f"{digest} ({run.data.tags.get('data.source', '?')})" for digest, run in digests.items())
        raise MixedData(
            f"{result.label}: its seeds were trained on different data ({listed}); a verdict pools seeds of one "
            "dataset only. Give every seed the same files (dataset.local_dir), or start over with a new claim name"
        )


def log_report(results: list[ClaimResult], parent_id: str, command: str, client: Any) -> dict[str, Any]:
    """Logs the claims table (CSV, Markdown) and the self-contained HTML page to the parent run."""
    import mlflow

    from cnnlab.claims import report

    table = report.claims_table(results)
    pairs = report.precision_table(results)
    figures = {f"{r.label}: learning curves": report.learning_curves_figure(r, client) for r in results if r.runs}
    figures["accuracy per seed"] = report.distribution_figure(table, results)
    for result in results:
        if len(result.runs) >= result.design.min_seeds and any(
            t["value"] is not None for t in (result.claim or {}).get("targets", [])
        ):
            figures[f"{result.label}: the verdict's looks"] = report.looks_figure(result)
    header = f"Parent MLflow run {parent_id}. Command: {command}"
    markdown = report.report_markdown(table)
    precision_markdown = report.to_markdown(report.readable_pairs(pairs)) if len(pairs) else ""
    markdown += "\n\n" + kinds.kinds_markdown(results)
    mlflow.log_text(table.to_csv(index=False), "claims.csv")
    if len(pairs):
        mlflow.log_text(pairs.to_csv(index=False), "precision_pairs.csv")
    mlflow.log_text(markdown + ("\n\n" + precision_markdown if precision_markdown else ""), "report.md")
    mlflow.log_text(report.to_html(table, pairs, figures, header, kinds.kinds_html(results)), "report.html")
    return {
        "table": table,
        "pairs": pairs,
        "markdown": markdown,
        "precision_markdown": precision_markdown,
        "command": command,
    }
