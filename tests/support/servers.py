"""Real servers for the tests: a private MariaDB and a moto server, started and stopped by fixtures.

Under ``CI=true`` a missing server binary is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests never skip for a missing service)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except Exception:  # noqa: S110 - still starting
            pass
        time.sleep(0.2)
    detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not start within {timeout}s\n{detail}")


@dataclass
class MariaDB:
    socket: str
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]

    def connect(self, db: str | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        import MySQLdb

        return MySQLdb.connect(unix_socket=self.socket, user="root", db=db or "", charset="utf8mb4", **kwargs)

    def conn_json(self, db: str) -> str:
        import json

        return json.dumps(
            {
                "conn_type": "mysql",
                "host": "127.0.0.1",
                "port": self.port,
                "login": "root",
                "schema": db,
                "extra": {"unix_socket": self.socket},
            }
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        self.process = _spawn_mariadbd(self.datadir, self.socket, self.port)
        _wait(lambda: self.connect().close() is None, 60, "mariadbd", self.datadir.parent / "mariadb.log")


def _spawn_mariadbd(datadir: Path, sock: str, port: int) -> subprocess.Popen[bytes]:
    log = (datadir.parent / "mariadb.log").open("ab")
    # The server's own temporary files (big dedupes spill to on-disk tables there), next to its data
    # rather than in the shared /tmp, which they could fill and where other jobs' clean-ups run.
    tmpdir = datadir.parent / "tmp"
    tmpdir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={port}",
            f"--tmpdir={tmpdir}",
            "--bind-address=127.0.0.1",
            "--skip-log-bin",
            "--local-infile=1",
            "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            f"--pid-file={datadir.parent / 'mariadb.pid'}",
        ],
        stdout=log,
        stderr=log,
    )


def start_mariadb(base: Path) -> MariaDB:
    mariadbd = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
    installer = shutil.which("mariadb-install-db")
    require(bool(mariadbd and installer), "MariaDB server is not installed (make test installs it)")
    datadir = base / "data"
    subprocess.run(
        [
            installer or "",
            "--no-defaults",
            "--user=root",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    server = MariaDB(socket=str(base / "mariadb.sock"), port=free_port(), datadir=datadir, process=None)  # type: ignore[arg-type]
    server.start()
    return server


@dataclass
class MotoServer:
    endpoint: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10)

    def configure_batch_without_docker(self) -> None:
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/config",
            data=b'{"batch": {"use_docker": false}}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_moto(base: Path, extra_env: dict[str, str] | None = None) -> MotoServer:
    binary = Path(sys.executable).with_name("moto_server")
    require(binary.exists(), "moto_server is not installed (uv sync installs moto[server])")
    port = free_port()
    log = base / f"moto-{port}.log"
    env = {**os.environ, **(extra_env or {})}
    # moto_server itself, through a launcher that serialises DynamoDB item writes (see support/moto_launcher.py).
    launcher = Path(__file__).with_name("moto_launcher.py")
    process = subprocess.Popen(
        [sys.executable, str(launcher), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = MotoServer(endpoint=f"http://127.0.0.1:{port}", process=process)
    _wait(
        lambda: urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2).status == 200, 60, "moto_server", log
    )
    server.configure_batch_without_docker()
    return server
