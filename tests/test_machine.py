"""Precision that knows its machine: the CPU check is simulated, so these hold on every machine kind."""

from __future__ import annotations

import pytest
from hydra import initialize_config_dir
from omegaconf import OmegaConf

from cnnlab import machine
from cnnlab.checks import check_reproduce, check_run
from cnnlab.config import ConfigError
from tests.conftest import CONF_DIR, compose_config

AVX2_ONLY = {"avx2", "fma", "sse4_2"}
AVX512_BF16 = {"avx2", "fma", "avx512f", "avx512_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """Sets the CPU flags cnnlab sees; no GPU, no oneDNN cap from the shell that runs the tests."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)

    def set_flags(flags: set[str]) -> None:
        monkeypatch.setattr(machine, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(machine, "native_bf16", _native_without_gpu)

    return set_flags


def _native_without_gpu() -> str | None:
    found = [flag for flag in machine.NATIVE_BF16_FLAGS if flag in machine.cpu_flags()]
    return f"the CPU has {found[0]}" if found else None


def test_bf16_without_native_support_is_refused_before_anything_runs(cpu, tmp_path, monkeypatch):
    cpu(AVX2_ONLY)
    monkeypatch.chdir(tmp_path)
    cfg = compose_config("trainer.precision=bf16")
    with pytest.raises(ConfigError) as refused:
        check_run(cfg, [])
    message = str(refused.value)
    assert "trainer.precision: bf16 has no native support on this machine" in message
    assert "flags: avx2 fma" in message and "roughly 10x slower than float32" in message
    assert "trainer.allow_emulated_bf16=true" in message
    assert list(tmp_path.iterdir()) == []


def test_bf16_is_allowed_where_native_or_when_insisted(cpu):
    cpu(AVX512_BF16)
    check_run(compose_config("trainer.precision=bf16"), [])
    cpu(AVX2_ONLY)
    check_run(compose_config("trainer.precision=bf16", "trainer.allow_emulated_bf16=true"), [])


def test_a_reproduction_in_bf16_is_refused_on_a_cpu_without_it(cpu):
    cpu(AVX2_ONLY)
    cfg = compose_config("claims=[mnist_simple]", "precisions=[float32,bf16]", config_name="reproduce_config")
    with (
        initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"),
        pytest.raises(ConfigError, match="trainer.precision: bf16 has no native support"),
    ):
        check_reproduce(cfg, [])


@pytest.mark.parametrize(
    "flags,expected,reason",
    [
        (AVX512_BF16, "bf16", "auto: the CPU has avx512_bf16, so bfloat16 runs natively"),
        ({"avx2", "amx_bf16"}, "bf16", "auto: the CPU has amx_bf16"),
        (AVX2_ONLY, "float32", "auto: no native bfloat16 here"),
    ],
)
def test_auto_picks_bf16_only_where_native_and_says_why(cpu, flags, expected, reason):
    cpu(flags)
    precision, why = machine.choose_precision("auto")
    assert precision == expected and reason in why
    assert machine.choose_precision("float32") == ("float32", "trainer.precision=float32")


def test_claims_stay_float32_by_default():
    for name in ("mnist_simple", "mnist_pooled", "mnist_dropout", "fashion_deep", "kmnist"):
        assert compose_config(f"experiment={name}").trainer.precision.value == "float32", name


def test_the_new_switch_at_its_default_leaves_recorded_fingerprints_alone():
    """Reproductions recorded before allow_emulated_bf16 existed keep their fingerprint (nothing retrains)."""
    pytest.importorskip("tensorflow")
    from cnnlab.claims.reproduce import fingerprint

    cfg = compose_config("experiment=mnist_simple")
    before = OmegaConf.to_container(cfg)
    del before["trainer"]["allow_emulated_bf16"]
    hashes = {"x_train": "a"}
    assert fingerprint(cfg, hashes) == fingerprint(OmegaConf.create(before), hashes)
    cfg.trainer.allow_emulated_bf16 = True
    assert fingerprint(cfg, hashes) != fingerprint(OmegaConf.create(before), hashes)


@pytest.mark.parametrize(
    "cap,kind,native",
    [
        (None, "avx512_bf16", True),
        ("AVX512_CORE", "avx512", False),
        ("avx2", "avx2", False),  # oneDNN reads the value in any case
        ("DEFAULT", "avx512_bf16", True),
    ],
)
def test_a_onednn_isa_cap_hides_the_flags_above_it(monkeypatch, cap, kind, native):
    """Under ONEDNN_MAX_CPU_ISA=AVX2 TensorFlow cannot run bf16 at all (oneDNN has no bf16 matmul below AVX-512: the
    process aborts), so `auto` must not pick it, and speed figures belong to the AVX2 kind."""
    monkeypatch.setattr(
        machine, "_cpuinfo", lambda: "model name\t: Test CPU\nflags\t\t: sse4_2 avx2 fma avx512f avx512_bf16\n"
    )
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert machine.kind() == kind
    assert (machine.choose_precision("auto")[0] == "bf16") is native
    capped = cap is not None and cap != "DEFAULT"
    assert ("capped by ONEDNN_MAX_CPU_ISA=" in machine.cpu_description()) is capped
    assert "sse4_2" in machine.cpu_flags()  # flags outside oneDNN's vector units are untouched
    tags = machine.tags()  # what every run records: the kind it ran as, and the cap that made it so
    assert (tags["machine.kind"], tags["machine.cpu"]) == (kind, "Test CPU")
    assert tags["machine.isa_cap"] == (f"ONEDNN_MAX_CPU_ISA={cap.upper()}" if capped else "none")
    assert ("avx512f" in tags["machine.flags"].split()) is (kind != "avx2")


def test_bf16_under_a_cap_below_avx512_is_refused_even_when_emulation_is_allowed(monkeypatch, tmp_path):
    """TensorFlow would abort mid-run (oneDNN has no bf16 kernel below AVX-512); AVX512_CORE emulates it."""
    monkeypatch.setattr(machine, "_cpuinfo", lambda: "flags\t\t: avx2 fma avx512f avx512_bf16\n")
    monkeypatch.chdir(tmp_path)
    emulated = compose_config("trainer.precision=bf16", "trainer.allow_emulated_bf16=true")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(ConfigError) as refused:
        check_run(emulated, [])
    assert "trainer.precision: bf16 cannot run here: ONEDNN_MAX_CPU_ISA=AVX2 leaves oneDNN no bfloat16 kernel" in str(
        refused.value
    )
    assert "no native support" not in str(refused.value)  # one reason, the one that holds
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    check_run(emulated, [])


def test_the_rerun_command_names_what_in_the_environment_changes_the_arithmetic(monkeypatch):
    from cnnlab.tracking.provenance import rerun_command

    for name in ("ONEDNN_MAX_CPU_ISA", "TF_NUM_INTRAOP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert rerun_command("cnnlab.run", ["seed=1"]) == "cnnlab run seed=1"
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert rerun_command("cnnlab.reproduce", ["claims=[a]"]) == (
        "ONEDNN_MAX_CPU_ISA=AVX2 TF_NUM_INTRAOP_THREADS=1 cnnlab reproduce 'claims=[a]'"
    )
