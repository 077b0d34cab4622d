"""cnnlab.verify: a logged run retrained from what MLflow holds, its histories compared; refused when unfair."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnlab.commands.rerun import VerificationRefused, compare_histories


def test_histories_identical_or_within_a_gap_from_an_epoch():
    logged = {"loss": [0.5, 0.4, 0.3], "accuracy": [0.8, 0.85, 0.9]}
    assert compare_histories(logged, {k: list(v) for k, v in logged.items()}) == ("identical", 0.0, None)
    rerun = {"loss": [0.5, 0.41, 0.3], "accuracy": [0.8, 0.85, 0.93]}
    outcome, largest, first = compare_histories(logged, rerun)
    assert outcome == "within 0.03 from epoch 2" and first == 2 and largest == pytest.approx(0.03)
    with pytest.raises(VerificationRefused, match="loss: the rerun has 2 epochs, the run logged 3"):
        compare_histories(logged, {"loss": [0.5, 0.4], "accuracy": [0.8, 0.85, 0.9]})


def test_malformed_run_id_and_missing_store_are_refused_before_anything_is_made(tmp_path):
    for arguments, message in (
        (["run_id=../../etc"], "run_id: must be an MLflow run id (32 hexadecimal characters)"),
        (["run_id=" + "a" * 32, f"tracking_uri=sqlite:///{tmp_path}/none.db"], "no MLflow store at"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "cnnlab.verify", *arguments], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "none.db").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_a_tiny_run_verifies_identical_and_a_changed_library_is_refused(tiny_run_overrides, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from cnnlab.commands.rerun import verify
    from cnnlab.train import train
    from tests.conftest import compose_config

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    source = train(compose_config(*tiny_run_overrides, "trainer.epochs=2", "optimizer=rmsprop"), tiny_run_overrides)
    result = verify(source.run_id, uri)
    assert result.outcome == "identical"
    assert result.compared == {"loss": 2, "accuracy": 2, "val_loss": 2, "val_accuracy": 2}
    client = MlflowClient(uri)
    rerun = client.get_run(result.rerun_id)
    assert rerun.data.tags["cnnlab.verifies"] == source.run_id and rerun.info.status == "FINISHED"
    assert rerun.data.tags["cnnlab.verification"] == "identical"

    # A sweep trial logged before optimizers took only their own fields: adam's betas in an rmsprop trial's config,
    # never given to Keras. It still verifies, identical, rather than being refused by today's check.
    logged = OmegaConf.create(mlflow.artifacts.load_text(f"runs:/{source.run_id}/config.yaml"))
    logged.optimizer.beta_1, logged.optimizer.beta_2 = 0.9, 0.999
    client.log_text(source.run_id, OmegaConf.to_yaml(logged), "config.yaml")
    assert verify(source.run_id, uri).outcome == "identical"

    client.set_tag(source.run_id, "version.keras", "2.0.0")
    client.set_tag(source.run_id, "data.sha256.x_train", "0" * 64)
    runs_before = len(client.search_runs([rerun.info.experiment_id]))
    with pytest.raises(VerificationRefused) as refused:
        verify(source.run_id, uri)
    assert "refused: data or library versions differ" in str(refused.value)
    assert "keras 2.0.0 logged" in str(refused.value) and "data x_train" in str(refused.value)
    assert len(client.search_runs([rerun.info.experiment_id])) == runs_before  # nothing trained or logged


def test_a_run_of_another_machine_kind_or_onednn_cap_is_not_compared_bit_for_bit(monkeypatch):
    from cnnlab import machine
    from cnnlab.commands.rerun import machine_difference

    here = machine.tags()
    assert machine_difference(here) is None
    other = "amx" if here["machine.kind"] != "amx" else "avx2"
    assert machine_difference({**here, "machine.kind": other}) == f"machine.kind {other} logged, {machine.kind()} here"
    assert machine_difference({"dataset": "mnist"}) is None  # logged before machines were tagged: the caller says so
    # The same kind under a oneDNN cap runs other kernels too.
    real_kind = machine.kind()
    monkeypatch.setattr(machine, "isa_cap", lambda: ("ONEDNN_MAX_CPU_ISA=AVX2", ("avx2", "fma")))
    monkeypatch.setattr(machine, "kind", lambda: real_kind)
    assert machine_difference(here) == f"machine.isa_cap {here['machine.isa_cap']} logged, ONEDNN_MAX_CPU_ISA=AVX2 here"
    # So does another number of intra-op threads: oneDNN partitions its reductions by thread.
    monkeypatch.undo()
    threads = here["machine.threads"]
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1" if threads != "1" else "2")
    assert machine_difference(here) == f"machine.threads {threads} logged, {machine.tags()['machine.threads']} here"


def test_the_statistical_reading_says_what_it_compares_and_where_the_difference_falls():
    from omegaconf import OmegaConf

    from cnnlab.commands.rerun import statistical_reading

    claimed = OmegaConf.create({"claim": {"tolerance": 0.005}})
    # 900 of 1000 right: Wilson's 95% interval is [0.8798, 0.9171] (0.8985 -+ 0.0186)
    outcome, difference = statistical_reading(claimed, {"test_accuracy": 0.9}, {"test_accuracy": 0.904}, 1000)
    assert outcome.startswith("statistical, not bit for bit: test_accuracy 0.9000 logged, 0.9040 here")
    assert "difference +0.40 points" in outcome and difference == pytest.approx(0.004)
    assert "within the logged run's 95% test-split sampling interval [0.8798, 0.9171] (1000 test images)" in outcome
    assert outcome.endswith("within the claim's tolerance of 0.5 points")
    outcome, _ = statistical_reading(claimed, {"test_accuracy": 0.9}, {"test_accuracy": 0.93}, 1000)
    assert "outside the logged run's" in outcome and outcome.endswith("beyond the claim's tolerance of 0.5 points")
    outcome, _ = statistical_reading(
        OmegaConf.create({"claim": None}), {"test_accuracy": 0.9}, {"test_accuracy": 0.9}, 1000
    )
    assert "tolerance" not in outcome


@pytest.mark.slow
def test_a_run_from_another_machine_kind_is_retrained_and_compared_statistically(
    tiny_run_overrides, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from cnnlab import machine
    from cnnlab.commands.rerun import summary, verify
    from cnnlab.train import train
    from tests.conftest import compose_config

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    source = train(compose_config(*tiny_run_overrides), tiny_run_overrides)
    client = MlflowClient(uri)
    real_kind = machine.kind()
    other = "amx" if real_kind != "amx" else "avx2"
    monkeypatch.setattr(machine, "kind", lambda: other)  # this machine now reads as another kind than the run's

    result = verify(source.run_id, uri)
    assert not result.bit_for_bit and result.compared == {"test_accuracy": 1}
    assert result.note.startswith(
        f"refused to compare bit for bit: the run was recorded on another machine "
        f"(machine.kind {real_kind} logged, {other} here)"
    )
    assert "cannot tell whether the kinds differ" in result.note and "`cnnlab reproduce` of the claim" in result.note
    assert result.outcome.startswith("statistical, not bit for bit: test_accuracy")
    assert "test-split sampling interval" in result.outcome and "(80 test images)" in result.outcome
    assert client.get_run(result.rerun_id).data.tags["cnnlab.verification"] == result.outcome
    printed = summary(result)
    assert "statistically: the run was recorded on another machine kind" in printed and "note" in printed

    # The same kind on another number of intra-op threads: statistically, with the way to compare bit for bit.
    monkeypatch.setattr(machine, "kind", lambda: real_kind)
    logged = client.get_run(source.run_id).data.tags["machine.threads"]
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1" if logged != "1" else "2")
    result = verify(source.run_id, uri)
    assert not result.bit_for_bit and "another number of intra-op threads" in result.note
    assert f"rerun as TF_NUM_INTRAOP_THREADS={logged} cnnlab verify run_id={source.run_id}" in result.note
    monkeypatch.delenv("TF_NUM_INTRAOP_THREADS")
    # A run logged before threads were tagged: bit for bit as before, with a note naming this process's count.
    client.delete_tag(source.run_id, "machine.threads")
    result = verify(source.run_id, uri)
    assert result.bit_for_bit and result.note.startswith("the run recorded no thread count"), result.note

    # A run logged before machines were tagged is compared bit for bit as before, with a note saying so.
    monkeypatch.setattr(machine, "kind", lambda: other)
    for tag in ("machine.kind", "machine.isa_cap"):
        client.delete_tag(source.run_id, tag)
    result = verify(source.run_id, uri)
    assert result.bit_for_bit and result.outcome == "identical"
    assert result.note.startswith("the run recorded no machine kind")
