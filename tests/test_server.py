"""`make ui` and `make server` listen on loopback only and refuse requests with a foreign Host header."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import make_mlflow

# MLflow's own server, as make starts it (make server: uvicorn's four workers): make test-system
pytestmark = [pytest.mark.slow, pytest.mark.system]


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
    log = tmp_path / "make.log"
    with make_mlflow(target, f"sqlite:///{tmp_path}/mlflow.db", log) as (address, server):
        port = int(address.rsplit(":", 1)[1])
        # make ui prints where it serves (after any set-up output)
        lines = log.read_text().splitlines()
        said = next(line for line in lines if "MLflow UI" in line or "MLflow tracking server" in line)
        assert address in said
        assert listening_addresses(port) == {"127.0.0.1"}

        def request(host: str) -> int:
            api = urllib.request.Request(
                f"{address}/ajax-api/2.0/mlflow/experiments/search?max_results=10", headers={"Host": host}
            )
            try:
                return urllib.request.urlopen(api, timeout=10).status
            except urllib.error.HTTPError as error:
                return error.code

        assert request(f"127.0.0.1:{port}") == 200
        assert request("attacker.example.com") == 403
        # MLflow's job runners (GenAI jobs cnnlab never submits) stay off; make ui is MLflow's command and one
        # uvicorn process serving in itself, make server keeps uvicorn's workers
        started = [" ".join(child.cmdline()) for child in psutil.Process(server.pid).children(recursive=True)]
        serving = [command for command in started if "python" in command]
        assert serving and not [command for command in serving if "mlflow.server.jobs" in command], started
        assert len(serving) == 2 if target == "ui" else len(serving) > 2, started
