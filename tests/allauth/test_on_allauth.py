"""The allauth.mfa suite (``tests/allauth/suite/``) in a child pytest on ``tests.allauth.settings``.

pytest runs with one settings module, and allauth's apps can't be added to a
running project, so the suite that needs them runs here, like the MariaDB one.
``django-allauth[mfa]`` is in the ``dev`` extra: without it, the test is
skipped locally and fails in CI.
"""

from __future__ import annotations

import importlib.util

from tests.services import child_pytest, skip_or_fail

SUITE = ["tests/allauth/suite"]


def test_the_allauth_suite() -> None:
    if importlib.util.find_spec("allauth") is None:
        skip_or_fail(
            "django-allauth is not installed (pip install -e '.[dev]')", what="the allauth.mfa suite"
        )
    result = child_pytest("tests.allauth.settings", SUITE)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]
