"""A throwaway copy of the demo project, for running the documentation's commands.

The copy holds ``manage.py``, ``project/``, ``templates/`` and ``fixtures/``
and a SQLite database prepared once per test session like ``make demo`` does
(``migrate``, ``stepup sync``, ``seed_demo``). Commands run in the copy, with
the demo's settings pointed at the copy's database, so nothing a document does
(editing a policy file, syncing, exporting) touches the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.docs import forkserver
from tests.docs.blocks import ROOT

COPIED = ("manage.py", "project", "templates", "fixtures")
TIMEOUT = 120
_PYTHON = re.compile(r"(?<![\w./-])(?:\.venv/bin/)?python3? manage\.py\b")


def as_runnable(command: str) -> str:
    """The command with ``python manage.py`` / ``.venv/bin/python manage.py`` run by this Python."""
    return _PYTHON.sub('"$PYTHON" manage.py', command)


@dataclass(frozen=True)
class Result:
    command: str
    exit_code: int
    output: str  # stdout and stderr, interleaved as printed


class Sandbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = sys.executable
        self._server: subprocess.Popen[str] | None = None
        self._socket_dir: str | None = None

    def start(self) -> Sandbox:
        """Serve this copy's ``manage.py`` from a fork server (see ``forkserver.py``): much faster."""
        self._socket_dir = tempfile.mkdtemp(prefix="stepup-docs-")
        socket_path = os.path.join(self._socket_dir, "manage.sock")
        self._server = subprocess.Popen(
            [sys.executable, forkserver.__file__, socket_path],
            cwd=self.path,
            env=self.env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._server.stdout is not None
        for line in self._server.stdout:  # anything before "ready" (a warning, say) is skipped
            if line.strip() == "ready":
                break
        else:
            self.stop()
            raise RuntimeError("the manage.py fork server did not start")
        self.python = str(forkserver.write_client(Path(self._socket_dir) / "python", socket_path))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.kill()
            self._server.wait(timeout=10)
            self._server = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self.python = sys.executable

    @property
    def db(self) -> Path:
        return self.path / "db.sqlite3"

    def env(self, **extra: str) -> dict[str, str]:
        skip = ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")
        env = {k: v for k, v in os.environ.items() if k not in skip}
        env.update(
            DJANGO_SETTINGS_MODULE="project.settings",
            DEMO_SQLITE_PATH=str(self.db),
            PYTHON=self.python,
            PYTHONUNBUFFERED="1",
            GIT_SHA="0123abc",
        )
        env.update(extra)
        return env

    def run(self, command: str, **env: str) -> Result:
        """Run one shell command (``python manage.py`` made runnable) in the copy."""
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", as_runnable(command)],
            cwd=self.path,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return Result(command, done.returncode, done.stdout)

    def script(self, script: str, **env: str) -> Result:
        """Run a multi-line script with ``bash -e`` (as CI runners do)."""
        return self.run(f"set -e\n{script}", **env)

    def copy(self, dest: Path) -> Sandbox:
        shutil.copytree(self.path, dest)
        return Sandbox(dest)


def prepare(dest: Path) -> Sandbox:
    """The template sandbox: the project files and a migrated, synced, seeded database."""
    dest.mkdir(parents=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
        else:
            shutil.copy2(source, dest / name)
    sandbox = Sandbox(dest).start()
    for command in (
        "python manage.py migrate --noinput -v 0",
        "python manage.py stepup sync --reason 'docs tests'",
        "python manage.py seed_demo -v 0",
    ):
        result = sandbox.run(command)
        if result.exit_code != 0:
            sandbox.stop()
            raise RuntimeError(f"{command} exited {result.exit_code}:\n{result.output}")
    sandbox.stop()
    return sandbox
