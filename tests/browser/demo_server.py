"""The demo, served for the browser tests: a fresh SQLite file, migrated, synced and seeded.

Runs the real commands of the README (``migrate``, ``stepup sync``,
``seed_demo``, ``runserver``) in subprocesses with the demo's own settings
(``project.settings``), pointed at a temporary database through
``DEMO_SQLITE_PATH``. Nothing here touches the test process's Django setup.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django_otp.oath import TOTP

ROOT = Path(__file__).resolve().parents[2]
SYNC_REASON = "browser tests: initial sync"
SETUP = f"""
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("stepup", "sync", "--reason", {SYNC_REASON!r})
call_command("seed_demo")
"""
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 120.0


DEMO_SETTINGS = "project.settings"


def demo_env(db_path: Path, settings: str = DEMO_SETTINGS) -> dict[str, str]:
    """The environment of the demo's processes: demo settings, the given SQLite file."""
    # Only the temporary SQLite file: never a database or cache the environment points at.
    skip = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DEMO_SQLITE_PATH=str(db_path),
        DJANGO_DEBUG="1",  # runserver serves the demo's CSS only in debug mode
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(db_path: Path, *args: str, log: IO[str] | None = None, settings: str = DEMO_SETTINGS) -> str:
    """Run ``manage.py ARGS`` against the demo database; its output, or an error with it."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=demo_env(db_path, settings),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if log is not None:
        log.write(f"$ manage.py {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DemoServer:
    """A running demo: its base URL, its database file and the server process."""

    url: str
    db_path: Path
    process: subprocess.Popen[str]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # --- reading the demo's database, as a user's authenticator app knows its secret ----

    def query(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.db_path, timeout=10) as db:
            return list(db.execute(sql, params))

    def totp_code(self, username: str, *, not_before: int | None = None) -> str:
        """A code the user's confirmed TOTP device accepts now and has not accepted before.

        django-otp accepts each time step at most once (``last_t``) and within
        one step of the device's clock either way. This takes the current step,
        or the next one when the current one is used up, and waits for the next
        30-second step only when both are.
        """
        rows = self.query(
            "SELECT d.key, d.step, d.t0, d.digits, d.drift, d.last_t FROM otp_totp_totpdevice d "
            "JOIN auth_user u ON u.id = d.user_id WHERE u.username = ? AND d.confirmed = 1",
            username,
        )
        assert len(rows) == 1, f"{username} should have exactly one confirmed TOTP device, has {len(rows)}"
        key, step, t0, digits, drift, last_t = rows[0]
        assert isinstance(key, str) and isinstance(step, int) and isinstance(last_t, int)
        return next_code(bytes.fromhex(key), step, int(str(t0)), int(str(digits)), int(str(drift)), last_t)


def next_code(key: bytes, step: int, t0: int, digits: int, drift: int, last_t: int) -> str:
    """The code of the earliest acceptable step after ``last_t`` (waiting when none is)."""
    while True:
        totp = TOTP(key, step, t0, digits, drift)
        now = totp.t()
        for offset in (0, 1):
            if now + offset > last_t:
                totp.drift = drift + offset
                return f"{totp.token():0{digits}d}"
        time.sleep(step - (time.time() - t0) % step + 0.05)


def wrong_code(key_hex: str, digits: int = 6) -> str:
    """A code of the right shape that is not valid in any nearby time step."""
    valid = {f"{TOTP(bytes.fromhex(key_hex), drift=d).token():0{digits}d}" for d in range(-3, 4)}
    return next(c for c in ("000000", "123456", "111111", "999999") if c not in valid)


@contextlib.contextmanager
def serving(settings: str = DEMO_SETTINGS) -> Iterator[DemoServer]:
    """:func:`start` in a temporary folder; the server is stopped and the folder removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="stepup-browser-"))
    server = start(workdir, settings)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def start(workdir: Path, settings: str = DEMO_SETTINGS) -> DemoServer:
    """Create the database, load the demo's policies and users, and serve it on a free port.

    :param settings: the demo's settings module (``project.settings_allauth`` for the allauth demo).
    """
    db_path = workdir / "demo.sqlite3"
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        # What `make demo` runs (migrate, stepup sync, seed_demo), in one process to start Django once.
        manage(db_path, "shell", "-c", SETUP, log=log, settings=settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = log_path.open("a")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", "--nothreading", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=demo_env(db_path, settings),
        stdout=server_log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server_log.close()
    server = DemoServer(url, db_path, process, log_path)
    try:
        _wait_until_up(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: DemoServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the demo server exited early:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/accounts/login/", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the demo server did not answer within {START_TIMEOUT:.0f} s:\n{server.log_tail()}")
