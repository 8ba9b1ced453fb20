"""docs/api.md's curl sessions, run for real against a live demo server (as after ``make demo``).

The sessions are ``text`` blocks after ``<!-- api-test: curl -->`` (the docs
harness in ``tests/docs`` has no convention for commands that need a running
server); each may be followed by an ``<!-- api-test: output -->`` block whose
lines must appear, in order, in what the session printed (``…`` matches
anything). They run in one shell, in order, in a copy of the demo prepared as
``make demo`` prepares it (migrate, ``stepup sync``, ``seed_demo``), with
``BASE`` pointed at a ``runserver`` of that copy.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.sandbox import Sandbox, prepare

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api.md"
BLOCK = re.compile(r"<!-- api-test: (?P<kind>curl|output) -->\n```text\n(?P<text>.*?)\n```", re.S)
MARK = "@@@ block {} @@@"


def sessions() -> list[tuple[str, str | None]]:
    """Each curl block of the page with the output block that follows it, if any."""
    found: list[tuple[str, str | None]] = []
    for match in BLOCK.finditer(DOC.read_text()):
        if match["kind"] == "curl":
            found.append((match["text"], None))
        else:
            assert found and found[-1][1] is None, "an output block must follow a curl block"
            found[-1] = (found[-1][0], match["text"])
    return found


def expect_lines(output: str, expected: str, where: str) -> None:
    lines = output.splitlines()
    position = 0
    for wanted in expected.splitlines():
        pattern = re.compile(".*?".join(re.escape(part) for part in wanted.strip().split("…")))
        while position < len(lines) and not pattern.search(lines[position]):
            position += 1
        assert position < len(lines), f"{where}: {wanted!r} not found in:\n{output}"
        position += 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[Sandbox, str]]:
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"docs/api.md's shell sessions need {' and '.join(missing)}, not installed here")
    sandbox = prepare(tmp_path / "demo")
    port = _free_port()
    log = tmp_path / "runserver.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=sandbox.path,
            env=sandbox.env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"runserver did not start:\n{log.read_text()}") from exc
                time.sleep(0.1)
        yield sandbox, f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_the_curl_sessions_work_against_the_demo(demo_server: tuple[Sandbox, str]) -> None:
    sandbox, base = demo_server
    found = sessions()
    assert len(found) >= 3 and sum(1 for _, output in found if output) >= 3
    script = []
    for number, (commands, _) in enumerate(found):
        script.append(f"echo '{MARK.format(number)}'")
        script.append(commands.replace("BASE=http://127.0.0.1:8000", f"BASE={base}"))
    result = sandbox.script("\n".join(script))
    assert result.exit_code == 0, result.output
    outputs = re.split(r"@@@ block \d+ @@@\n", result.output)[1:]
    assert len(outputs) == len(found), result.output
    for number, ((_, expected), output) in enumerate(zip(found, outputs, strict=True)):
        if expected is not None:
            expect_lines(output, expected, f"docs/api.md curl block {number + 1}")


def test_the_readme_curl_sample_is_one_of_the_tested_sessions() -> None:
    """README.md shows the decision service; its block must be a session the test above runs."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- api-test: curl -->\n```text\n(.*?)```", readme, re.S)
    assert blocks, "README.md lost its decision-service curl sample"
    tested = [commands for commands, _ in sessions()]
    for block in blocks:
        assert any(block.strip() in commands for commands in tested), block
