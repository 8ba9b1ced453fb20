from __future__ import annotations

import textwrap
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command


class Result:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def run():
    def run(*args: str) -> Result:
        """``manage.py stepup ARGS``: its exit code and output, ``CommandError: …`` included."""
        out, err = StringIO(), StringIO()
        try:
            call_command("stepup", *args, stdout=out, stderr=err)
            code = 0
        except CommandError as exc:
            err.write(f"CommandError: {exc}\n")  # what manage.py prints before it exits
            code = exc.returncode
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "policies.yaml") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


GOOD = """\
version: 1
policies:
  - id: billing-update
    description: Billing needs a recent factor.
    match: {actions: [billing.update], methods: [POST]}
    decision: step_up
    max_age: 300
    factors: [totp]
  - id: admin-users
    match: {urls: ["admin:auth_user_*"], methods: [POST]}
    decision: step_up
    max_age: 60
tests:
  - name: billing post without factor
    input: {action: billing.update, method: POST}
    expect: {decision: step_up, policies: [billing-update]}
  - name: admin post with fresh factor
    input: {url: "admin:auth_user_change", method: POST, verified: {totp: 5}}
    expect: {decision: allow}
"""


@pytest.fixture
def good(write):
    return write(GOOD)
