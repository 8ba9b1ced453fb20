"""The demo's tests (``tests/demo/``) in a child pytest on the demo's own settings.

pytest runs with one settings module: the library's tests use the test project
(``tests.settings``), which doesn't install the demo; the demo's tests need the
demo's apps, URLs and templates, so they run here on ``tests.demo.settings``.
"""

from __future__ import annotations

import re

from tests.services import child_pytest


def test_the_demo_suite() -> None:
    result = child_pytest("tests.demo.settings", ["tests/demo"], timeout=900)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), result.stdout[-2000:]
    assert "failed" not in summary and "error" not in summary, summary
