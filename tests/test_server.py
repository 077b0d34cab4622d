"""`make ui` and `make server` listen on loopback only and refuse requests with a foreign Host header."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port``, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.mark.parametrize("target", ["ui", "server"])
def test_make_ui_and_server_bind_loopback_and_refuse_foreign_host(tmp_path, target):
    port = free_port()
    store = f"sqlite:///{tmp_path}/mlflow.db"
    variables = (
        [f"PORT={port}", f"TRACKING_URI={store}"] if target == "ui" else [f"SERVER_PORT={port}", f"BACKEND_URI={store}"]
    )
    server = subprocess.Popen(
        ["make", "--no-print-directory", target, *variables],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        for line in server.stdout:  # make ui prints where it serves (after any set-up output)
            if "MLflow UI" in line or "MLflow tracking server" in line:
                break
        assert f"http://127.0.0.1:{port}" in line
        deadline = time.time() + 90
        while time.time() < deadline and not listening_addresses(port):
            time.sleep(0.5)
        assert listening_addresses(port) == {"127.0.0.1"}

        def request(host: str) -> int:
            api = urllib.request.Request(
                f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=10", headers={"Host": host}
            )
            try:
                return urllib.request.urlopen(api, timeout=10).status
            except urllib.error.HTTPError as error:
                return error.code

        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                ok = request(f"127.0.0.1:{port}")
                break
            except OSError:
                time.sleep(0.5)
        assert ok == 200
        assert request("attacker.example.com") == 403
        # MLflow's job runners (GenAI jobs cnnlab never submits) stay off; make ui is MLflow's command and one
        # uvicorn process serving in itself, make server keeps uvicorn's workers
        started = [" ".join(child.cmdline()) for child in psutil.Process(server.pid).children(recursive=True)]
        serving = [command for command in started if "python" in command]
        assert serving and not [command for command in serving if "mlflow.server.jobs" in command], started
        assert len(serving) == 2 if target == "ui" else len(serving) > 2, started
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
