"""``import stepup`` (and every enforcement module) never imports Django REST framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys

    import stepup, stepup.policy.engine, stepup.policy.loader
    assert "rest_framework" not in sys.modules, "import stepup"

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="x",
        INSTALLED_APPS=[
            "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
            "django_otp", "simple_history", "stepup",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ROOT_URLCONF=[],
    )
    django.setup()
    import stepup.decorators, stepup.mixins, stepup.middleware, stepup.enforcement, stepup.responses
    import stepup.grants, stepup.context, stepup.testing, stepup.views, stepup.devices
    from stepup import require_stepup, StepUpRequiredMixin, decide, enforce
    drf = sorted(m for m in sys.modules if m.split(".")[0] == "rest_framework")
    assert not drf, drf
    print("no DRF")
    """
)


def test_stepup_does_not_import_drf() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no DRF"


def test_the_permission_module_is_where_drf_comes_in() -> None:
    import stepup.permissions

    assert "rest_framework" in sys.modules
    assert stepup.permissions.StepUpPermission.__mro__[1].__module__ == "rest_framework.permissions"
