"""Tests that need something from outside (PostgreSQL, MariaDB, Redis, Chromium): skipped locally, failed in CI.

In CI (``CI`` set to ``1``, ``true`` or ``yes``, as ``.ci/run`` does) a skipped
check would pass off an unrun one as green, so a missing service is a failure
there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str, *, what: str) -> NoReturn:
    """Skip with ``reason``; in CI, fail: ``what`` must run there."""
    if in_ci():
        pytest.fail(f"{what} cannot run in CI: {reason}")
    pytest.skip(reason)


ROOT = Path(__file__).resolve().parents[1]


def child_pytest(
    settings_module: str, paths: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``paths`` in a child pytest on another settings module (another database), with a new test database."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--create-db",
            f"--ds={settings_module}",
            *paths,
        ],
        cwd=ROOT,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
