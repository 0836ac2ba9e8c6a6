"""``make airflow``: Airflow 3 on the embedded default, without Docker.

Four processes, as in a real deployment: ``api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and
``triggerer``. SQLite holds the Airflow metadata (Airflow 3's LocalExecutor accepts it; fine for one developer,
not for production), and the environment is the one of ``make demo`` (``demo/run_demo.py``): SQLite sources and
target, a local folder as object store, the ``local`` compute backend, the offline glossary translator and the
demo connections as ``AIRFLOW_CONN_*``. Everything lives under ``.airflow-local/`` (``--home``).

``survey_nps_daily`` reads its answers from DynamoDB: the launcher starts a local moto server (local AWS emulator,
no AWS account used) with the survey tables and the demo's seeded answers (``demo/survey_answers.py``), and the
DAG writes its reporting table to SQLite (``survey/reporting.db``) and its CSV and chart under ``objects/``.

Login: SimpleAuthManager, user ``admin``, password ``admin``. Ctrl-C stops all four processes.

The tests use :func:`local_airflow`, a context manager: it starts the same processes on free ports, waits until
the API answers and the DAG processor has parsed every entity DAG, and stops everything on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demo.run_demo import demo_environment  # noqa: E402
from demo.sources import make_all  # noqa: E402
from demo.survey_answers import local_survey_aws, without_real_aws  # noqa: E402

DEFAULT_HOME = ROOT / ".airflow-local"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
USERNAME = "admin"
PASSWORD = "admin"  # noqa: S105 - a local development login, printed on start
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def expected_dag_ids() -> list[str]:
    """The DAG ids the factory builds: one per valid, enabled entity file (no Airflow import)."""
    from entity_etl.config.loader import load_entities

    result = load_entities(ROOT / "include" / "entities", ROOT / "include" / "sql")
    return sorted(config.dag_id for config in result.enabled.values())


def _secrets(home: Path) -> dict[str, str]:
    """The API server's session and JWT secrets, shared by all four processes and kept across restarts."""
    path = home / "secrets.json"
    if path.exists():
        return dict(json.loads(path.read_text(encoding="utf-8")))
    values = {"jwt_secret": secrets.token_urlsafe(64), "secret_key": secrets.token_urlsafe(64)}
    path.write_text(json.dumps(values), encoding="utf-8")
    path.chmod(0o600)
    return values


def airflow_environment(
    home: Path, *, port: int, host: str = "127.0.0.1", log_ports: tuple[int, int]
) -> dict[str, str]:
    """``make demo``'s environment plus what a long-running, four-process Airflow needs.

    Every process gets the same environment: parse-time settings (``ETL_*``, the DAGs folder) must agree between
    the DAG processor, the scheduler and the task processes the LocalExecutor starts.
    """
    env = demo_environment(home)
    passwords = home / "simple_auth_manager_passwords.json"
    keys = _secrets(home)
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__HOST": host,
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://{host}:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{host}:{port}/execution/",
            "AIRFLOW__API__SECRET_KEY": keys["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_ports[0]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_ports[1]),
            # INFO, not the demo's WARNING: a task log shows each stage's plan, progress and statistics.
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # The DAG processor sees a new or changed entity file within 30 s, not the default 5 minutes.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # A task's first Execution API call can take the single api-server worker more than the default
            # 5 s on SQLite; waiting is cheaper than three timed-out retries with back-off.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            # The entity DAGs run one task at a time (max_active_tasks=1): a few executor workers are plenty,
            # instead of the default 32 forked processes.
            "AIRFLOW__CORE__PARALLELISM": "4",
            # Airflow's and the providers' import-path deprecations would drown the console.
            "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _clean_parent_environment() -> dict[str, str]:
    """The caller's environment without any Airflow or ETL setting (a test session sets its own)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ETL_"))}


def _http_json(
    url: str,
    *,
    token: str | None = None,
    body: Mapping[str, Any] | None = None,
    timeout: float = 30,
    method: str | None = None,
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    method = method or ("POST" if data is not None else "GET")
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http://127.0.0.1 only
        return json.loads(response.read() or b"null")


@dataclass
class LocalAirflow:
    """A running four-process Airflow: its URL, login, environment and processes."""

    home: Path
    url: str
    env: dict[str, str]
    username: str = USERNAME
    password: str = PASSWORD
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: What the launcher provides besides Airflow (e.g. the survey tables on local moto), one line each.
    notes: list[str] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _token: str | None = None

    @property
    def log_dir(self) -> Path:
        return self.home / "logs" / "components"

    # --- REST API (the same /api/v2 the React UI calls, with the same JWT login) ---------------------------
    def token(self) -> str:
        answer = _http_json(f"{self.url}/auth/token", body={"username": self.username, "password": self.password})
        return str(answer["access_token"])

    def api(
        self, path: str, *, body: Mapping[str, Any] | None = None, token: str | None = None, method: str | None = None
    ) -> Any:
        """One call of the public REST API, with a cached JWT (renewed once when the server answers 401).

        GET without ``body``, POST with one, unless ``method`` says otherwise (e.g. PATCH).
        """
        url = f"{self.url}/api/v2/{path.lstrip('/')}"
        if token:
            return _http_json(url, token=token, body=body, method=method)
        if self._token is None:
            self._token = self.token()
        try:
            return _http_json(url, token=self._token, body=body, method=method)
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
            self._token = self.token()
            return _http_json(url, token=self._token, body=body, method=method)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self, *, echo: bool = False) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in COMPONENTS:
            log = (self.log_dir / f"{name}.log").open("ab")
            # Own session: a terminal's Ctrl-C reaches this launcher only, which then stops the components in
            # order; the process group also lets stop() reach the workers each component forked.
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", name],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if echo else log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.processes[name] = process
            if echo:
                thread = threading.Thread(target=_relay, args=(name, process.stdout, log), daemon=True)
                thread.start()
                self._threads.append(thread)
            else:
                log.close()

    def failed(self) -> dict[str, int]:
        """Components that exited (name → exit code); a healthy Airflow has none."""
        return {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in COMPONENTS:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ({path}) ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def health(self) -> dict[str, str]:
        """Component → status, from the unauthenticated /api/v2/monitor/health."""
        answer = _http_json(f"{self.url}/api/v2/monitor/health", timeout=5)
        return {k: str((v or {}).get("status")) for k, v in answer.items() if isinstance(v, dict)}

    def wait_until_ready(self, dag_ids: list[str], timeout: float = 240) -> None:
        """Wait until the API answers, every component reports healthy and every DAG in ``dag_ids`` is parsed."""
        deadline = time.monotonic() + timeout
        last = "nothing answered yet"
        while time.monotonic() < deadline:
            if dead := self.failed():
                raise RuntimeError(f"Airflow component(s) exited: {dead}\n{self.log_tail()}")
            try:
                _http_json(f"{self.url}/api/v2/version", timeout=5)
                health = self.health()
                unhealthy = {
                    k: v
                    for k, v in health.items()
                    if k in ("scheduler", "triggerer", "dag_processor") and v != "healthy"
                }
                if unhealthy or len(health) < 4:
                    last = f"health: {health}"
                else:
                    dags = self.api("dags?limit=1000")
                    parsed = {d["dag_id"] for d in dags["dags"]}
                    missing = sorted(set(dag_ids) - parsed)
                    if not missing:
                        return
                    errors = self.api("importErrors")
                    last = f"DAGs not parsed yet: {missing}; import errors: {errors.get('import_errors')}"
            except (OSError, urllib.error.URLError, ValueError, KeyError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(1)
        raise RuntimeError(f"Airflow was not ready within {timeout:.0f}s ({last})\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every component (each shuts its own workers down), then SIGKILL what is left of its group.

        A second Ctrl-C meanwhile is ignored: it would leave orphans, and this ends within ``timeout`` anyway.
        """
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
        try:
            self._stop(timeout)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _stop(self, timeout: float) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes.values():
            # The group id is the component's pid (start_new_session): only processes this launcher started.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


def _relay(name: str, stream: IO[bytes] | None, log: IO[bytes]) -> None:
    """Print a component's output as ``name | line`` and keep it in its log file."""
    if stream is None:
        return
    with log:
        for raw in iter(stream.readline, b""):
            log.write(raw)
            log.flush()
            print(f"{name:<13} | {raw.decode(errors='replace').rstrip()}", flush=True)


def prepare(home: Path, env: Mapping[str, str]) -> None:
    """Sample sources, the login's password file and the metadata database (``airflow db migrate``)."""
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    make_all(home / "sources")
    passwords = Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    passwords.write_text(json.dumps({USERNAME: PASSWORD}) + "\n", encoding="utf-8")
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=dict(env), capture_output=True, text=True, check=False
    )
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")


@contextlib.contextmanager
def local_airflow(
    home: Path,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    echo: bool = False,
    ready_timeout: float = 240,
) -> Iterator[LocalAirflow]:
    """Start the four components on ``port`` (a free one by default), wait until ready, stop on exit."""
    home = home.absolute()
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = without_real_aws(_clean_parent_environment())
    log_ports = (free_port(), free_port())
    env.update(airflow_environment(home, port=port, log_ports=log_ports))
    with local_survey_aws(home) as (survey_env, survey_note):
        # survey_nps_daily's DynamoDB tables: a local moto server with the demo's answers (demo/survey_answers.py).
        env.update(survey_env)
        env.update(extra_env or {})
        prepare(home, env)
        airflow = LocalAirflow(
            home=home, url=f"http://{env['AIRFLOW__API__HOST']}:{port}", env=env, notes=[survey_note]
        )
        try:
            airflow.start(echo=echo)
            airflow.wait_until_ready(expected_dag_ids(), timeout=ready_timeout)
            yield airflow
        finally:
            airflow.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="state folder (default: .airflow-local/)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--reset", action="store_true", help="delete the home folder first (runs, logs, target)")
    args = parser.parse_args(argv)
    if args.reset:
        shutil.rmtree(args.home, ignore_errors=True)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            print(f"airflow: port {args.port} is in use; pick another with --port or AIRFLOW_PORT=", file=sys.stderr)
            return 1

    # Ctrl-C or SIGTERM: leave the wait below, then the context manager stops the components. (Installed
    # explicitly: a shell starts a background job with SIGINT ignored, and Python then leaves it so.)
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    # The caller's own AIRFLOW__SECTION__KEY settings win (e.g. AIRFLOW__LOGGING__LOGGING_LEVEL=DEBUG).
    overrides = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__")}
    print(f"airflow: starting api-server, scheduler, dag-processor and triggerer (home {args.home}) ...", flush=True)
    if overrides:
        print(f"airflow: with your settings {', '.join(sorted(overrides))}", flush=True)
    try:
        with local_airflow(args.home, port=args.port, extra_env=overrides, echo=True) as airflow:
            dags = ", ".join(expected_dag_ids())
            print(
                f"\nairflow: ready at {airflow.url}  (login: {airflow.username} / {airflow.password})\n"
                f"airflow: DAGs {dags} (paused: unpause one in the UI to run it)\n"
                f"airflow: component logs in {airflow.log_dir}; Ctrl-C stops everything\n"
                + "".join(f"airflow: {note}\n" for note in airflow.notes),
                flush=True,
            )
            while not (dead := airflow.failed()):
                time.sleep(1)
            print(f"airflow: component(s) exited: {dead}; stopping the others", file=sys.stderr, flush=True)
            return 1
    except KeyboardInterrupt:
        print("\nairflow: stopping ...", flush=True)
    except RuntimeError as exc:
        print(f"airflow: {exc}", file=sys.stderr, flush=True)
        return 1
    print("airflow: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
