"""MLflow: where runs go (:mod:`.store`), how each run lives and ends (:mod:`.runs`, :mod:`.signals`), what it
records (:mod:`.records`: params, config, outcome, figures, model; :mod:`.datasets`; :mod:`.provenance`; each
epoch's metrics in :mod:`.epochs`, a Keras callback, not imported here).

Modules inside ``cnnlab`` import from the submodule that defines a name; the names are also here, so
``from cnnlab.tracking import tracked_run`` keeps working.
"""

from cnnlab.tracking.datasets import DUPLICATE_KEY, SPLIT_CONTEXTS, dataset_source_uri, log_datasets, log_input
from cnnlab.tracking.provenance import git_state, log_uncommitted_diff, rerun_command, versions
from cnnlab.tracking.records import (
    flatten,
    log_figures,
    log_keras_model,
    log_trial_outcome,
    model_summary,
    record_run_start,
)
from cnnlab.tracking.runs import (
    REASON_TAG,
    mark_dead_processes_killed,
    mark_killed,
    process_alive,
    process_tags,
    system_metrics_interval,
    tracked_run,
)
from cnnlab.tracking.store import (
    DESCRIPTIONS,
    EXPERIMENT_KIND,
    configure,
    experiment_description,
    sqlite_init_lock,
    tracking_uri,
)

__all__ = [
    "DESCRIPTIONS",
    "DUPLICATE_KEY",
    "EXPERIMENT_KIND",
    "REASON_TAG",
    "SPLIT_CONTEXTS",
    "configure",
    "dataset_source_uri",
    "experiment_description",
    "flatten",
    "git_state",
    "log_datasets",
    "log_figures",
    "log_input",
    "log_keras_model",
    "log_trial_outcome",
    "log_uncommitted_diff",
    "mark_dead_processes_killed",
    "mark_killed",
    "model_summary",
    "process_alive",
    "process_tags",
    "record_run_start",
    "rerun_command",
    "sqlite_init_lock",
    "system_metrics_interval",
    "tracked_run",
    "tracking_uri",
    "versions",
]
