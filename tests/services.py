"""Tests that need something from outside (PostgreSQL, MariaDB, Redis, Chromium): skipped locally, failed in CI.

In CI (``CI`` set to ``1``, ``true`` or ``yes``, as ``.ci/run`` does) a skipped
check would pass off an unrun one as green, so a missing service is a failure
there.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str, *, what: str) -> NoReturn:
    """Skip with ``reason``; in CI, fail: ``what`` must run there."""
    if in_ci():
        pytest.fail(f"{what} cannot run in CI: {reason}")
    pytest.skip(reason)
