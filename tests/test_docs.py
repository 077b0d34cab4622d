"""The documentation cannot rot: every shell command shown in README.md and docs/ is run, or composed and checked
exactly as written, and the generated pages match the code.

A cnnlab command is composed with Hydra and put through the checks the command runs before work (its refusals
shown in docs/troubleshooting.md must print the message shown there); a make target is dry-run (`make -n`) with
the same variables, and its ARGS composed as the command behind it; anything else (the system administrator's lines
of the PostgreSQL recipe, curl) must at least parse as shell. A command this file cannot classify fails the test.
The tour's run and comparison run for real, on synthetic data and one epoch.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.config import ConfigError
from cnnlab.seeds import ACTIONS as SEEDS_ACTIONS
from tests.conftest import CONF_DIR, ROOT, tiny_run

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# A command's config, as its entry point names it.
CONFIG_NAMES = {
    "run": "config",
    "sweep": "sweep_config",
    "reproduce": "reproduce_config",
    "evaluate": "use_config",
    "predict": "use_config",
    "register": "use_config",
    "compare": "compare_config",
    "verify": "verify_config",
    "seeds": "seeds_config",
}
MAKE_COMMANDS = {"run": "run", "sweep": "sweep", "reproduce": "reproduce", "register": "register"}
# Placeholders a reader fills in, and a value of the right shape for each.
PLACEHOLDERS = {
    "<run_id>": "0123456789abcdef0123456789abcdef",
    "<run id>": "0123456789abcdef0123456789abcdef",
    "<id>": "0123456789abcdef0123456789abcdef",
    "<study>": "default",
    "<server-address>": "198.18.0.1",
    "<chief-address>": "198.18.0.2",
    "<i>": "1",
}
# Lines for other programs, checked as shell only; each names where it is exercised for real.
EXTERNAL = {
    "sudo": "the PostgreSQL recipe: .ci/run sets PostgreSQL up the same way for tests/test_postgres.py",
    "curl": "tests/test_serving.py posts raw pixels to a real mlflow models serve",
    "export": "a shell variable",
    "mlflow": "tests/test_serving.py serves a logged model with mlflow models serve (make test-system)",
}


def shown_commands() -> list[tuple[str, str, list[str]]]:
    """``(document, command, expected output lines)`` for every command in a bash or console block."""
    found = []
    for path in DOCUMENTS:
        for language, body in re.findall(r"```(bash|console|sh)\n(.*?)```", path.read_text(), re.S):
            lines = re.sub(r"\\\n\s*", "", body).splitlines()  # a command continued with \ is one command
            for index, line in enumerate(lines):
                if language == "console":
                    if not line.startswith("$ "):
                        continue
                    output = []
                    for after in lines[index + 1 :]:
                        if after.startswith("$ "):
                            break
                        output.append(after)
                    found.append((path.name, line[2:].strip(), output))
                elif line.strip() and not line.lstrip().startswith("#"):
                    found.append((path.name, strip_comment(line), []))
    return found


def strip_comment(line: str) -> str:
    """The command without its trailing ``# comment`` (shlex knows where quotes end)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split, lexer.commenters = True, "#"
    words = list(lexer)
    head = line
    if "#" in line:
        # keep the original spelling (quotes) up to the comment
        for cut in [m.start() for m in re.finditer(r"\s#", line)]:
            if shlex.split(line[:cut], comments=False) == words:
                head = line[:cut]
                break
    return head.strip()


def fill(command: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    return command


USER_FOLDER = "~/my_configs"


def write_user_configs(tmp_path: Path) -> Path:
    """The reader's own config folder, made from the pages' own YAML: each ```yaml block that a page introduces with
    its file's path (`` `~/my_configs/dataset/pets.yaml`: ``, `` `conf/experiment/my_claim.yaml` ``) is written
    there, and a folder a dataset file names is made, so the commands that use them compose as a reader's would."""
    folder = tmp_path / "my_configs"
    for path in DOCUMENTS:
        text = path.read_text()
        for match in re.finditer(r"`(?:~/my_configs|conf)/([\w/]+\.yaml)`[^`]*?\n\n```yaml\n(.*?)```", text, re.S):
            relative, body = match.groups()
            if (ROOT / "conf" / relative).exists():
                continue  # a file the repository ships: the page quotes it
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            local = re.search(r"^local_dir: (/\S+)", body, re.M)
            if local:
                images = tmp_path / "images"
                images.mkdir(exist_ok=True)
                body = body.replace(local.group(1), str(images))
            target.write_text(body)
    return folder


def cnnlab_call(words: list[str]) -> tuple[str, list[str]] | None:
    """``(command, overrides)`` when ``words`` start a cnnlab command, environment assignments before it aside."""
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words = words[1:]
    if words[:1] in (["cnnlab"], [".venv/bin/cnnlab"]):
        return (words[1], words[2:]) if len(words) > 1 else ("--help", [])
    for python in ("python", ".venv/bin/python"):
        if words[:2] == [python, "-m"] and words[2].startswith("cnnlab."):
            return words[2].removeprefix("cnnlab."), words[3:]
    return None


def check_cnnlab(command: str, overrides: list[str], tmp_path: Path, monkeypatch, readers_store: bool = False) -> None:
    """Composes ``command``'s config with ``overrides`` and runs its checks; raises what the user would see.

    ``readers_store``: the command names the reader's own runs and models (``runs:/<run_id>/model``, an experiment
    of theirs), which no test store holds; the checks must then reach the store's lookups (tests/test_store_faults.py
    tests those) with everything before them accepted."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    from cnnlab import checks
    from cnnlab.__main__ import main

    looked_up = []
    if readers_store:
        from cnnlab.claims import portable

        monkeypatch.setattr(checks, "check_store_first", lambda name, cfg: looked_up.append(name))
        # a seeds file to import is the reader's too: its own refusals are tested in tests/test_portable_seeds.py
        monkeypatch.setattr(portable, "read_seeds_file", lambda path: looked_up.append(path))

    if command == "--help":
        with pytest.raises(SystemExit) as leaving:
            main(["--help"])
        assert leaving.value.code == 0
        return
    assert command in CONFIG_NAMES, f"{command}: not a cnnlab command"
    words = {"--csv": "format=csv", "--markdown": "format=markdown", **(SEEDS_ACTIONS if command == "seeds" else {})}
    overrides = [words.get(word, word) for word in overrides]
    overrides = [word for word in overrides if word != "--help"]  # Hydra's help: the composed config is its subject
    monkeypatch.chdir(tmp_path)
    for word in overrides:  # image files a command names exist where the reader runs it
        if word.startswith("images="):
            for image in word.partition("=")[2].strip("[]").split(","):
                write_png(tmp_path / image)
    # The reader's own folder is on the search path, as --config-dir puts it there.
    if "--config-dir" in overrides:
        at = overrides.index("--config-dir")
        overrides = [*overrides[:at], *overrides[at + 2 :]]
    user = write_user_configs(tmp_path)
    if user.exists() and command not in ("compare", "verify", "seeds"):
        overrides = [*overrides, f"hydra.searchpath=[file://{user}]"]
    GlobalHydra.instance().clear()
    with hydra_for(command):
        cfg = compose(CONFIG_NAMES[command], overrides=overrides)
        entry_point_checks(command)(cfg, overrides)
    assert looked_up or not readers_store, f"{command}: its checks never reached the store"


def entry_point_checks(command: str):
    """The checks ``cnnlab.<command>`` hands to the launcher (``launch(main, check_<...>)``): the very ones it runs."""
    import importlib

    module = importlib.import_module(f"cnnlab.{command}")
    (found,) = [value for name, value in vars(module).items() if name.startswith("check_") and callable(value)]
    return found


def hydra_for(command: str):
    """Hydra as the command starts it: compare and verify have no config folder (their schema is the config)."""
    from hydra import initialize, initialize_config_dir

    if command in ("compare", "verify", "seeds"):
        return initialize(config_path=None, version_base="1.3")
    return initialize_config_dir(config_dir=CONF_DIR, version_base="1.3")


def write_png(path: Path) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(path)


def check_make(words: list[str], tmp_path: Path, monkeypatch) -> None:
    """``make -n`` accepts the target and variables as written, and ARGS composes as the command behind it."""
    target = words[1] if len(words) > 1 and "=" not in words[1] else "help"
    variables = [word for word in words[1:] if "=" in word]
    result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"make -n {shlex.join(words[1:])}: {result.stderr}"
    arguments = dict(word.split("=", 1) for word in variables).get("ARGS")
    if arguments and target in MAKE_COMMANDS:
        check_cnnlab(MAKE_COMMANDS[target], shlex.split(arguments), tmp_path, monkeypatch, readers_store=True)


def test_every_document_shows_commands_and_they_are_all_classified():
    commands = shown_commands()
    assert len(commands) > 60, "README.md and docs/ show far fewer commands than they did: did the extraction break?"
    for document, command, _ in commands:
        words = shlex.split(fill(command))
        known = cnnlab_call(words) or words[0] in ("make", "source", *EXTERNAL)
        assert known, f"{document}: `{command}` is neither run nor checked by tests/test_docs.py; teach it how"


@pytest.mark.parametrize(
    "document, command, output", shown_commands(), ids=[f"{d}: {c[:60]}" for d, c, _ in shown_commands()]
)
def test_shown_command_is_accepted_as_written(document, command, output, tmp_path, monkeypatch, capsys):
    words = shlex.split(fill(command))
    expected = [line for line in output if line.strip()]
    call = cnnlab_call(words)
    if call is not None:
        if expected and expected[0].startswith("Error:"):
            with pytest.raises((ConfigError, Exception, SystemExit)) as refused:
                check_cnnlab(*call, tmp_path, monkeypatch)
            error = refused.value
            message = f"{error}\n{error.__cause__ or ''}"  # as cnnlab.cli prints Hydra's errors: with their cause
            first = expected[0].removeprefix("Error: ").strip()
            said = " ".join(message.split())
            assert " ".join(first.split())[:60] in said, f"{document} shows `{first}`; the code says `{message}`"
            for line in expected[1:3]:
                if not line.startswith(("(", " ", "\t")) and line.strip():
                    assert " ".join(line.split())[:40] in said, f"{document}: `{line}` not in `{message}`"
            assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns").exists()
        else:
            check_cnnlab(*call, tmp_path, monkeypatch, readers_store=True)
    elif words[0] == "make":
        if expected and expected[0].startswith("Error:"):
            result = subprocess.run(words, cwd=ROOT, capture_output=True, text=True)
            assert result.returncode != 0
            assert expected[0].split("(found")[0] in result.stderr
        else:
            check_make(words, tmp_path, monkeypatch)
    else:
        assert subprocess.run(["bash", "-n", "-c", command], capture_output=True).returncode == 0, command


def test_generated_pages_match_the_code():
    result = subprocess.run([sys.executable, "docs/gen_reference.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.slow
def test_the_tour_runs_and_compares(tmp_path, idx_dir, pin_mnist, new_store, monkeypatch, capsys):
    """README's tour, steps 1 and 5, for real: its run (one epoch of the MNIST network) on synthetic MNIST-shaped
    files, then its comparison of MNIST runs, which must list that run."""
    from hydra import compose, initialize_config_dir

    from cnnlab import train
    from cnnlab.commands import runs_table

    tour = next(c for d, c, _ in shown_commands() if d == "README.md" and c.startswith("make run ARGS="))
    overrides = shlex.split(dict(w.split("=", 1) for w in shlex.split(tour)[2:])["ARGS"])
    store = new_store()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *tiny_run(idx_dir, store)[1:]])
    assert cfg.trainer.epochs == 1 and cfg.model.name == "simple"
    result = train.train(cfg, overrides)
    compare = next(c for d, c, _ in shown_commands() if d == "README.md" and "compare" in c)
    with hydra_for("compare"):
        compare_cfg = compose("compare_config", overrides=[*shlex.split(compare)[2:], f"tracking_uri={store}"])
    table = runs_table.search(compare_cfg)
    assert len(table) == 1 and result.metrics["test_accuracy"] in set(table["test_accuracy"])
