"""Several hosts, proven: the multi-host recipe of docs/scale-out.md run across network namespaces, with faults.

Four network namespaces stand in for four hosts, joined by veth pairs on one bridge, with addresses from
198.18.0.0/15 (reserved for benchmarking networks): a tracking server (MLflow over PostgreSQL, both on that host),
a chief and two workers. The root namespace has no address on that network, so all traffic stays between the
namespaces the test made. Each process is started with the lines of that page's "Several hosts, one study" block,
placeholders filled in and the test's small study appended. Then: a worker host is lost mid-trial (its tuner id is
started again on another host), the tracking server is stopped for 15 s and started again, and the chief is killed
and restarted. The study must reach its budget with every trial FINISHED exactly once under one parent run, no run
left RUNNING, and every model loadable from another host.

Needs root (namespaces, a PostgreSQL cluster of its own) and Debian's postgresql; skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import kmnist_folder, kmnist_study

ROOT = Path(__file__).resolve().parents[1]
HOSTS = {"server": "198.18.0.1", "chief": "198.18.0.2", "worker1": "198.18.0.3", "worker2": "198.18.0.4"}
BUDGET = 8


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None or not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "needs iproute2 and Debian's postgresql (.ci/run installs it)"
    probe = f"cnlprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "this machine does not allow creating network namespaces"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = why_not()
pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)}: {result.stderr.strip()}")
    return result


class Lab:
    """The namespaces, their addresses, and the processes started in them."""

    def __init__(self, workdir: Path) -> None:
        tag = os.getpid() % 100000
        self.namespace = {host: f"cnl{tag}-{host}" for host in HOSTS}
        self.bridge = f"cnl{tag}br"
        self.workdir = workdir

    def up(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "link", "set", self.bridge, "up")
        for index, (host, address) in enumerate(HOSTS.items()):
            namespace, veth = self.namespace[host], f"{self.bridge[:-2]}v{index}"
            sh("ip", "netns", "add", namespace)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", namespace, "link", "set", "eth0", "up")
            sh("ip", "-n", namespace, "link", "set", "lo", "up")

    def down(self) -> None:
        for host in HOSTS:
            self.kill(host)
            sh("ip", "netns", "del", self.namespace[host], check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    def start(self, host: str, line: str, log_name: str, extra: list[str] = ()) -> subprocess.Popen:
        """Runs a documented line (``VAR=value ... command args``) on ``host``, with ``extra`` arguments appended."""
        words = shlex.split(line)
        env = {**os.environ, "CNNLAB_DATA": str(self.workdir / f"cache-{host}")}  # each host its own data cache
        while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if words[0] == "python":
            words[0] = sys.executable
        if words[0] == "cnnlab":  # the console script, as the environment's Python runs it
            words[0:1] = [sys.executable, "-m", "cnnlab"]
        if words[0] == "make":
            words[1:1] = ["-C", str(ROOT)]
        log = open(self.workdir / f"{log_name}.log", "a")  # noqa: SIM115 - kept open for the process's life
        return subprocess.Popen(
            ["ip", "netns", "exec", self.namespace[host], *words, *extra],
            env=env,
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, host: str, *command: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", user, "--"] if user else []
        return sh("ip", "netns", "exec", self.namespace[host], *prefix, *command, check=check)

    def pids(self, host: str) -> list[str]:
        return sh("ip", "netns", "pids", self.namespace[host], check=False).stdout.split()

    def kill(self, host: str) -> None:
        """SIGKILL every process in ``host``'s namespace: the host is lost."""
        for pid in self.pids(host):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def api(self, path: str, body: dict | None = None, host_header: str | None = None) -> tuple[int, dict]:
        """A request to the tracking server's REST API from the chief's host, as curl sends it."""
        url = f"http://{HOSTS['server']}:5001{path}"
        command = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"]
        if host_header:
            command += ["-H", f"Host: {host_header}"]
        if body is not None:
            command += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
        result = self.run("chief", *command, url, check=False)  # curl fails while the server is down
        text, _, code = result.stdout.rpartition("\n")
        try:
            return int(code), json.loads(text) if text.strip().startswith("{") else {}
        except ValueError:
            return int(code or 0), {}

    def cpu_seconds(self, host: str, postgres: bool = False) -> float:
        """CPU time so far of ``host``'s processes: PostgreSQL's alone, or everything else."""
        total = 0
        for pid in self.pids(host):
            with contextlib.suppress(OSError, IndexError):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                if (name == "postgres") == postgres:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def bytes_on(self, host: str) -> int:
        """Bytes received and sent by ``host``'s network interface so far."""
        counts = self.run(host, "cat", "/proc/net/dev").stdout
        line = next(line for line in counts.splitlines() if line.strip().startswith("eth0:"))
        fields = line.split(":")[1].split()
        return int(fields[0]) + int(fields[8])


def readme_lines() -> dict[str, str]:
    """The server, chief and worker lines of the "Several hosts, one study" block of docs/scale-out.md."""
    text = (ROOT / "docs" / "scale-out.md").read_text()
    block = text.split("Several hosts, one study", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if line and not line.startswith("#")]
    server = next(line for line in lines if line.startswith("make server"))
    chief = next(line for line in lines if "KERASTUNER_TUNER_ID=chief" in line)
    worker = next(line for line in lines if "KERASTUNER_TUNER_ID=tuner<i>" in line)
    return {"server": server, "chief": chief, "worker": worker}


def fill(line: str, shared: Path, artifacts: Path) -> str:
    return (
        line.replace("<server-address>", HOSTS["server"])
        .replace("<chief-address>", HOSTS["chief"])
        .replace("/shared/sweeps", str(shared))
        .replace("/srv/mlflow-artifacts", str(artifacts))
        .replace("<study>", "default")
    )


def start_postgres(lab: Lab) -> None:
    """A PostgreSQL cluster on the server host, with the role and database the documented set-up creates."""
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    shutil.chown(data, "postgres", "postgres")
    lab.run("server", str(bindir / "initdb"), "-D", str(data / "db"), "-A", "trust", user="postgres")
    options = f"-c listen_addresses=127.0.0.1 -p 5432 -k {data}"
    # -l: the server's output goes to a file, not to pipes this test would wait on
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-o", options, "-w", "start"]
    lab.run("server", *pg_ctl, user="postgres")
    psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-U", "postgres", "-q", "-c"]
    lab.run("server", *psql, "CREATE ROLE mlflow LOGIN PASSWORD 'change-me'")
    lab.run("server", *psql, "CREATE DATABASE mlflow OWNER mlflow")
    lab.postgres_data = data


def wait_for(what: str, condition, timeout: float, every: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def study_runs(lab: Lab) -> list[dict]:
    code, experiment = lab.api("/api/2.0/mlflow/experiments/get-by-name?experiment_name=cnnlab-sweep-lab")
    if code != 200:
        return []
    experiment_id = experiment["experiment"]["experiment_id"]
    code, found = lab.api("/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id], "max_results": 1000})
    runs = []
    for run in found.get("runs", []) if code == 200 else []:
        tags = {tag["key"]: tag["value"] for tag in run["data"].get("tags", [])}
        metrics = {metric["key"]: metric["value"] for metric in run["data"].get("metrics", [])}
        runs.append({"id": run["info"]["run_id"], "status": run["info"]["status"], "tags": tags, "metrics": metrics})
    return runs


def trial_runs(lab: Lab, status: str | None = None, tuner: str | None = None) -> list[dict]:
    return [
        run
        for run in study_runs(lab)
        if "cnnlab.trial_id" in run["tags"]
        and (status is None or run["status"] == status)
        and (tuner is None or run["tags"].get("cnnlab.tuner_id") == tuner)
    ]


def story(tmp_path: Path, runs: list[dict]) -> str:
    """What a failed run of the study leaves to read: each trial run's status, and each process's last lines."""
    lines = [
        f"{run['tags'].get('cnnlab.trial_id')} {run['tags'].get('cnnlab.tuner_id')} {run['status']}"
        for run in runs
        if "cnnlab.trial_id" in run["tags"]
    ]
    for log in sorted(tmp_path.glob("*.log")):
        text = log.read_text(errors="replace").splitlines()
        lines += [f"--- {log.name}", *[line for line in text if "Epoch" not in line and "━" not in line][-25:]]
    return "\n".join(lines)


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    try:
        lab.up()
        yield lab
    finally:
        lab.down()
        data = getattr(lab, "postgres_data", None)
        if data is not None:
            shutil.rmtree(data, ignore_errors=True)


def test_readme_recipe_runs_a_study_across_hosts_through_faults(lab, tmp_path, arrays):
    lines = readme_lines()
    shared, artifacts = tmp_path / "shared" / "sweeps", tmp_path / "server-artifacts"
    folder = kmnist_folder(tmp_path, arrays, copies=4)
    study = kmnist_study(folder, "lab", BUDGET, epochs=3)
    server_line, chief_line = fill(lines["server"], shared, artifacts), fill(lines["chief"], shared, artifacts)

    def worker_line(tuner: str) -> str:
        return fill(lines["worker"], shared, artifacts).replace("tuner<i>", tuner)

    start_postgres(lab)
    server = lab.start("server", server_line, "server")
    wait_for("the tracking server", lambda: lab.api("/health")[0] == 200, 180)
    # Allowed hosts: the lab address is answered, a foreign Host header refused.
    assert lab.api("/api/2.0/mlflow/experiments/search", {"max_results": 1})[0] == 200
    assert lab.api("/api/2.0/mlflow/experiments/search", {"max_results": 1}, host_header="evil.example")[0] in (
        400,
        403,
    )

    # What serving the study costs, for docs/scale-out.md's "How it scales": bytes on each host's interface over
    # the study, and CPU seconds of the tracking server, its database and the chief while trials run (start-ups left
    # out), with the server's requests over the same windows.
    traffic = {host: lab.bytes_on(host) for host in ("server", "chief")}
    cpu = {"chief": 0.0}
    windows: list[tuple[dict, dict]] = []

    def server_meter() -> dict:
        log = (tmp_path / "server.log").read_text()
        return {
            "mlflow": lab.cpu_seconds("server"),
            "postgres": lab.cpu_seconds("server", postgres=True),
            "requests": log.count(' HTTP/1.1" '),
        }

    chief = lab.start("chief", chief_line, "chief", study)
    wait_for("the chief to start the study", lambda: "starting:" in (tmp_path / "chief.log").read_text(), 180, 0.5)
    cpu["chief"] -= lab.cpu_seconds("chief")
    wait_for("the study's state", lambda: (shared / "lab" / "cnnlab_study.json").exists(), 180)
    lab.start("worker1", worker_line("tuner1"), "tuner1", study)
    lab.start("worker2", worker_line("tuner2"), "tuner2", study)

    # Nothing listens on every address: each host's listeners are its own address or its loopback.
    wait_for("a trial", lambda: trial_runs(lab, "RUNNING"), 240)
    window_start = server_meter()
    for host in HOSTS:
        listeners = lab.run(host, "ss", "-ltnH").stdout.split("\n")
        bound = [line.split()[3] for line in listeners if line.strip()]
        assert all(not address.startswith(("0.0.0.0:", "*:", "[::]:")) for address in bound), (host, bound)

    # (a) worker1's host is lost mid-trial; its tuner id is started again on worker2's host.
    lost = wait_for(
        "a trial of tuner1 that has logged an epoch",
        lambda: [run for run in trial_runs(lab, "RUNNING", "tuner1") if run["metrics"]],
        240,
        every=1,
    )[0]
    lab.kill("worker1")
    lab.start("worker2", worker_line("tuner1"), "tuner1-again", study)
    wait_for("the lost run ended KILLED", lambda: trial_runs(lab, "KILLED", "tuner1"), 180)

    # (b) the tracking server stops for 15 s mid-study, then starts again with the same line. Long enough for every
    # process's requests to be refused and retried; a longer outage only waits out more of MLflow's backoff.
    wait_for("another trial under way", lambda: trial_runs(lab, "RUNNING"), 240, every=1)
    windows.append((window_start, server_meter()))
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=60)
    time.sleep(15)
    server = lab.start("server", server_line, "server")
    wait_for("the tracking server back", lambda: lab.api("/health")[0] == 200, 180)

    # (c) the chief is killed and restarted with the same line; the workers wait for it and carry on.
    wait_for("a trial under way", lambda: trial_runs(lab, "RUNNING"), 240, every=1)
    window_start = server_meter()
    cpu["chief"] += lab.cpu_seconds("chief")
    lab.kill("chief")
    chief.wait(timeout=30)
    time.sleep(5)
    chief = lab.start("chief", chief_line, "chief", study)
    wait_for("the chief to resume", lambda: "resuming:" in (tmp_path / "chief.log").read_text(), 180, 0.5)
    cpu["chief"] -= lab.cpu_seconds("chief")
    wait_for("every worker done", lambda: "every worker is done" in (tmp_path / "chief.log").read_text(), 900, 0.5)
    cpu["chief"] += lab.cpu_seconds("chief")
    traffic = {host: lab.bytes_on(host) - before for host, before in traffic.items()}
    windows.append((window_start, server_meter()))
    for key in ("mlflow", "postgres", "requests"):
        cpu[key] = sum(end[key] - start[key] for start, end in windows)

    assert chief.wait(timeout=300) == 0, (tmp_path / "chief.log").read_text()[-3000:]
    runs = study_runs(lab)
    parents = [run for run in runs if "mlflow.parentRunId" not in run["tags"]]
    assert len(parents) == 1 and parents[0]["status"] == "FINISHED"
    finished = [run for run in runs if run["status"] == "FINISHED" and "cnnlab.trial_id" in run["tags"]]
    finished_ids = sorted(int(run["tags"]["cnnlab.trial_id"]) for run in finished)
    assert finished_ids == list(range(BUDGET)), story(tmp_path, runs)
    assert all(run["tags"]["mlflow.parentRunId"] == parents[0]["id"] for run in finished)
    assert not [run for run in runs if run["status"] == "RUNNING"]
    killed = {run["id"] for run in runs if run["status"] == "KILLED"}
    assert lost["id"] in killed
    rerun = next(run for run in finished if run["tags"]["cnnlab.trial_id"] == lost["tags"]["cnnlab.trial_id"])
    assert rerun["tags"]["cnnlab.tuner_id"] == "tuner1"

    # Every model, logged through the server, loads and predicts on worker1's host (back after the loss).
    load = (
        "import sys, numpy, mlflow\n"
        "for run_id in sys.argv[1:]:\n"
        "    model = mlflow.pyfunc.load_model(f'runs:/{run_id}/model')\n"
        "    print(run_id, model.predict(numpy.zeros((1, 28, 28), 'float32')).shape)\n"
    )
    loaded = lab.run(
        "worker1",
        "env",
        f"MLFLOW_TRACKING_URI=http://{HOSTS['server']}:5001",
        sys.executable,
        "-c",
        load,
        *(run["id"] for run in finished),
    ).stdout
    assert loaded.count("(1, 10)") == BUDGET, loaded

    requests = (tmp_path / "server.log").read_text().count(' HTTP/1.1" ')
    scaling = {"trials": BUDGET, "bytes": traffic, "while_trials_run": cpu, "server_requests": requests}
    (tmp_path / "scaling.json").write_text(json.dumps(scaling))
    print(f"\n[multihost] {json.dumps(scaling)}")
