"""verify(run_id): retrain a logged run from what MLflow holds and compare the new histories with the logged ones.

"Every run can be rerun" becomes a checked fact: the run's config.yaml (its resolved config, seed included), its
data hashes and its library versions are all MLflow holds, and all this uses. Before any training, the data found
here must hash to what the run logged and the libraries must be the versions it ran with; otherwise the answer is
"refused", naming what differs, since a difference would prove nothing. The rerun is logged as its own run in
``cnnlab-verifications``, tagged with the run it verifies.

Bit for bit holds on one machine kind only: the same seed through another kind's kernels (another vector width,
native bfloat16, a oneDNN cap) is another run. A run recorded on another kind (tags ``machine.kind``,
``machine.isa_cap``) is still retrained, but compared statistically: its final metric's difference against the
claim's tolerance and the logged run's test-split sampling error, and said to be no bit-for-bit check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from cnnlab.errors import UserError

log = logging.getLogger(__name__)

EXPERIMENT = "cnnlab-verifications"
HISTORIES = ("loss", "accuracy", "val_loss", "val_accuracy")
# What changes the numbers a run produces; the MLflow and Python versions do not enter training.
VERSION_TAGS = ("version.cnnlab", "version.tensorflow", "version.keras")
# What a rerun on another machine kind is compared by: a final score whose test-split sampling error is known.
STATISTICAL_METRIC = "test_accuracy"


class VerificationRefused(UserError, ValueError):
    """The run cannot be verified here: it is missing, or its data or library versions differ."""


@dataclass
class Verification:
    run_id: str
    rerun_id: str
    outcome: str  # "identical", "within <x> from epoch <k>", or a statistical reading across machine kinds
    max_difference: float
    first_epoch_differing: int | None
    compared: dict[str, int]  # metric -> epochs compared
    bit_for_bit: bool = True  # false: recorded on another machine kind, compared statistically instead
    note: str = ""  # why it was compared as it was, when that needs saying


def machine_difference(tags: dict[str, str]) -> str | None:
    """Why a run with these tags cannot be compared bit for bit here (another machine kind, oneDNN cap or number of
    intra-op threads), or None.

    A run recorded before machines were tagged has neither tag: None, and the caller says so."""
    return "; ".join(machine_differences(tags).values()) or None


def machine_differences(tags: dict[str, str]) -> dict[str, str]:
    """Each machine tag (kind, oneDNN cap, intra-op threads) the run logged that differs here, with both values in
    words; a tag it did not log is no difference."""
    from cnnlab import machine

    here = machine.tags()
    keys = ("machine.kind", "machine.isa_cap", "machine.threads")
    return {
        key: f"{key} {tags[key]} logged, {here[key]} here" for key in keys if key in tags and tags[key] != here[key]
    }


def statistical_reading(
    cfg: Any, logged: dict[str, float], rerun: dict[str, float], test_size: int
) -> tuple[str, float]:
    """The final metric's rerun-minus-logged difference, read against the claim's tolerance (a run with a claim
    block) and against the logged run's test-split sampling error (the 95% Wilson interval of its accuracy)."""
    from scipy.stats import binomtest

    metric = STATISTICAL_METRIC
    before, after = logged[metric], rerun[metric]
    difference = after - before
    interval = binomtest(round(before * test_size), test_size).proportion_ci(0.95, method="wilson")
    inside = interval.low <= after <= interval.high
    parts = [
        f"{metric} {before:.4f} logged, {after:.4f} here, difference {100 * difference:+.2f} points",
        f"{'within' if inside else 'outside'} the logged run's 95% test-split sampling interval "
        f"[{interval.low:.4f}, {interval.high:.4f}] ({test_size} test images)",
    ]
    if cfg.get("claim") is not None:
        tolerance = cfg.claim.tolerance
        word = "within" if abs(difference) <= tolerance else "beyond"
        parts.append(f"{word} the claim's tolerance of {100 * tolerance:g} points")
    return "statistical, not bit for bit: " + "; ".join(parts), abs(difference)


def compare_histories(logged: dict[str, list[float]], rerun: dict[str, list[float]]) -> tuple[str, float, int | None]:
    """``identical`` when every epoch's value is equal; else ``within x from epoch k`` (largest gap, first epoch)."""
    largest, first = 0.0, None
    for metric, before in logged.items():
        after = rerun.get(metric, [])
        if len(after) != len(before):
            raise VerificationRefused(f"{metric}: the rerun has {len(after)} epochs, the run logged {len(before)}")
        for epoch, (a, b) in enumerate(zip(before, after, strict=True), start=1):
            if a != b:
                largest = max(largest, abs(a - b))
                first = epoch if first is None else min(first, epoch)
    if first is None:
        return "identical", 0.0, None
    return f"within {largest:.3g} from epoch {first}", largest, first


def verify(run_id: str, tracking_uri: str) -> Verification:
    """Reruns ``run_id`` and compares; raises VerificationRefused before training when it cannot be a fair rerun."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from cnnlab import train
    from cnnlab.config.compose import with_dataset_description
    from cnnlab.config.schema import Config, fields_not_taken, option
    from cnnlab.config.validation import validate
    from cnnlab.tracking.provenance import git_state, versions

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        raise VerificationRefused(f"tracking_uri: no MLflow store at {tracking_uri} (run from where the run was made)")
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as error:
        raise VerificationRefused(f"run_id: no run {run_id!r} in {tracking_uri}") from error
    try:
        logged_config = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    except Exception as error:
        raise VerificationRefused(f"run {run_id} has no config.yaml artifact: not a cnnlab training run") from error
    if "dataset" in logged_config:
        logged_config.dataset = with_dataset_description(logged_config.dataset)
    cfg = OmegaConf.merge(OmegaConf.structured(Config), logged_config)
    # A sweep trial logged before optimizers took only their own fields may carry another optimizer's (adam's
    # beta_1 in an rmsprop trial), which Keras was never given: dropped, so such a run still reruns as it trained.
    for key in fields_not_taken(option(cfg.optimizer.name)):
        cfg.optimizer[key] = None
    validate(cfg)
    tags = run.data.tags
    current = versions()
    differ = [
        f"{tag.removeprefix('version.')} {tags.get(tag)} logged, {current[tag]} here"
        for tag in VERSION_TAGS
        if tags.get(tag) != current[tag]
    ]
    data = train.prepare_data(cfg)  # loads and verifies once; the rerun trains on these very arrays
    arrays = data.arrays
    differ += [
        f"data {key} hashes to {digest[:12]}... here, {tags.get(f'data.sha256.{key}', 'nothing')[:12]}... logged"
        for key, digest in sorted(arrays.sha256.items())
        if tags.get(f"data.sha256.{key}") != digest
    ]
    if differ:
        raise VerificationRefused("refused: data or library versions differ (" + "; ".join(differ) + ")")
    logged = {
        metric: [point.value for point in sorted(client.get_metric_history(run_id, metric), key=lambda p: p.step)]
        for metric in HISTORIES
        if metric in run.data.metrics
    }
    if not logged:
        raise VerificationRefused(f"run {run_id} logged no per-epoch history ({', '.join(HISTORIES)})")
    from cnnlab import machine

    differences = machine_differences(tags)
    other_machine = "; ".join(differences.values()) or None
    logged_threads = tags.get("machine.threads")
    threads_only = list(differences) == ["machine.threads"]
    if threads_only:
        note = (
            f"refused to compare bit for bit: the run trained on another number of intra-op threads "
            f"({other_machine}), which sums in another order; retraining here and comparing the final metric "
            f"statistically instead. To compare bit for bit, rerun as TF_NUM_INTRAOP_THREADS={logged_threads} "
            f"cnnlab verify run_id={run_id}"
        )
    elif other_machine:
        note = (
            f"refused to compare bit for bit: the run was recorded on another machine ({other_machine}), whose "
            "kernels round differently, so equal numbers cannot be expected; retraining here and comparing the final "
            "metric statistically instead. One run against one run cannot tell whether the kinds differ: seeds of "
            "each kind in one store (cnnlab seeds export and import) and `cnnlab reproduce` of the claim test that "
            "within its tolerance (docs/claims.md, Machine kinds)"
        )
    elif "machine.kind" not in tags:
        note = (
            "the run recorded no machine kind (logged before runs did): compared bit for bit as before, though a "
            "difference may come from another machine's kernels rather than from cnnlab"
        )
    elif logged_threads is None:
        note = (
            "the run recorded no thread count (logged before runs did): compared bit for bit as before, though a "
            f"difference may come from another number of intra-op threads (this one trains on "
            f"{machine.intra_op_threads()}; TF_NUM_INTRAOP_THREADS sets it)"
        )
    else:
        note = ""
    if other_machine and STATISTICAL_METRIC not in run.data.metrics:
        raise VerificationRefused(
            f"the run was recorded on another machine ({other_machine}), so it can only be compared statistically, "
            f"and it logged no {STATISTICAL_METRIC} to compare; verify it on a machine of its kind"
            + (
                f" (here: TF_NUM_INTRAOP_THREADS={logged_threads} cnnlab verify run_id={run_id})"
                if threads_only
                else ""
            )
        )
    if note:
        log.warning(note)
    if tags.get("git.commit") != git_state().get("git.commit"):
        log.warning(
            "cnnlab's code is at another commit than the run's (%s); the rerun uses today's", tags.get("git.commit")
        )
    rerun_cfg = OmegaConf.merge(
        cfg,
        {
            "tracking": {
                "uri": tracking_uri,
                "experiment": EXPERIMENT,
                "run_name": f"verify-{run.info.run_name}",
                "log_model": False,
            }
        },
    )
    overrides = tags.get("hydra.overrides", "").split()
    result = train.train(rerun_cfg, overrides, extra_tags={"cnnlab.verifies": run_id}, data=data)
    compared = {metric: len(values) for metric, values in logged.items()}
    if other_machine:
        outcome, largest = statistical_reading(cfg, run.data.metrics, result.metrics, len(data.splits.test))
        first, compared = None, {STATISTICAL_METRIC: 1}
    else:
        outcome, largest, first = compare_histories(logged, {m: result.history.get(m, []) for m in logged})
    client.set_tag(result.run_id, "cnnlab.verification", outcome)
    return Verification(
        run_id=run_id,
        rerun_id=result.run_id,
        outcome=outcome,
        max_difference=largest,
        first_epoch_differing=first,
        compared=compared,
        bit_for_bit=not other_machine,
        note=note,
    )


def summary(result: Verification) -> str:
    """What `python -m cnnlab.verify` prints: what was compared and how the rerun came out."""
    if result.bit_for_bit:
        compared = ", ".join(f"{metric} ({epochs} epochs)" for metric, epochs in result.compared.items())
    else:
        compared = (
            f"the final {STATISTICAL_METRIC} (statistically: the run was recorded on another machine kind, oneDNN "
            "cap or thread count)"
        )
    return (
        f"\n  verified run   {result.run_id}\n  compared       {compared}\n  result         {result.outcome}\n"
        + (f"  note           {result.note}\n" if result.note else "")
        + f"  rerun logged   {result.rerun_id} (experiment cnnlab-verifications)\n"
    )
