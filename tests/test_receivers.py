"""stepup's receivers are connected by ``AppConfig.ready()``, never by importing a module."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from stepup import receivers
from stepup.models import DecisionLog, Policy

ROOT = Path(__file__).resolve().parents[1]
STEPUP = ROOT / "stepup"

IMPORT_CONNECTS_NOTHING = textwrap.dedent(
    """
    import sys

    from django.contrib.auth.signals import user_logged_in, user_logged_out
    from django.db.models.signals import post_delete, post_save

    import stepup, stepup.signals

    assert "stepup.receivers" not in sys.modules, "stepup.receivers imported"
    connected = [s.receivers for s in (post_save, post_delete, user_logged_in, user_logged_out)]
    assert connected == [[], [], [], []], connected
    print("nothing connected")
    """
)


def test_importing_stepup_and_its_signals_connects_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CONNECTS_NOTHING],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing connected"


def test_the_app_connects_every_receiver_when_ready() -> None:
    assert post_save.has_listeners(Policy)
    assert post_delete.has_listeners(Policy)
    assert post_delete.has_listeners(TOTPDevice)
    assert post_delete.has_listeners(StaticDevice)
    assert not post_delete.has_listeners(DecisionLog)  # one receiver per device model, none for all senders
    uids = {entry[0][0] for entry in user_logged_in.receivers + user_logged_out.receivers}
    assert {"stepup.record_login", "stepup.forget_grants"} <= uids


def test_connecting_again_adds_no_receiver() -> None:
    signals = (post_save, post_delete, user_logged_in, user_logged_out)
    before = [len(signal.receivers) for signal in signals]
    receivers.connect()
    assert [len(signal.receivers) for signal in signals] == before


def test_the_signals_module_defines_signals_and_nothing_else() -> None:
    tree = ast.parse((STEPUP / "signals.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.module in ("__future__", "django.dispatch"):
            assert [alias.name for alias in node.names] in (["annotations"], ["Signal"])
            continue
        assert isinstance(node, ast.Assign), ast.dump(node)
        call = node.value
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Signal"


def test_only_the_app_config_imports_the_receivers() -> None:
    importers = []
    for path in sorted(STEPUP.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name == "stepup.receivers" or name.startswith("stepup.receivers.") for name in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["stepup/apps.py"]
