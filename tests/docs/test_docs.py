"""The documentation's commands and code samples, run so that the docs cannot drift from the code.

Which files: README.md, CHANGELOG.md, SECURITY.md and docs/**/*.md (not
docs/briefs/, and not the files in ``blocks.EXCLUDED``, each with its reason).

How a block is tested is said by an HTML comment on the line before it
(``<!-- test: KIND [ARG] -->``). Every fenced block needs a language, and a
``sh`` block needs a marker, so nothing runnable goes untested by accident:

``sh`` blocks
    ``run``: each command runs, in order, in a copy of the demo project and its
    database (one copy per document, shared by that document's blocks in
    order; see ``sandbox.py``). ``python manage.py`` and ``.venv/bin/python
    manage.py`` run with this Python. Commands must exit 0, or the code named by
    a trailing comment that starts with ``exit N`` (``# exit 2: changes``).
    Only ``manage.py``, ``sed``, ``cp`` and ``cat`` commands may appear.
    ``dry-run``: commands that can't run inside a test are checked instead:
    ``make T`` must be a target (``make -n T`` succeeds) and ``pip install N``
    must name this distribution.
``text`` blocks
    unmarked: prose (a usage line); not run.
    ``output-of-previous``: every line must appear, in order, in the output of
    the last command of the preceding ``run`` block (other lines, such as log
    lines, may come between).
    ``output-of COMMAND``: the same, for COMMAND run at that point in the copy.
``yaml`` blocks
    unmarked with ``version:``, or ``policy-file``: a whole policy file; it must
    load without errors and its ``tests:`` must all pass.
    ``policy``: one policy (or a list of them), validated as in a file. ``tests``: a ``tests:``
    block, each test validated.
    ``invalid-file NAME``: a file with errors, written to NAME in the
    document's copy (for a following ``output-of``); it must have errors.
    ``fragment [reason]``: only parsed as YAML.
``python`` blocks
    unmarked: compiled, and every module and name it imports must exist.
    ``run``: executed (Django configured with the test settings).
    ``pytest``: executed; each ``test_*`` function is then called with the
    fixtures its parameters name (``client``, ``user``, ``stepup_verified`` …,
    see ``conftest.py``), against the demo's URLs and policies.
    ``settings``: executed on top of a new project's default settings; the
    resulting apps must be importable and ``MIDDLEWARE``/``STEPUP`` must pass
    stepup's system checks.
``django`` blocks with ``template``: compiled by Django's template engine.
``json`` blocks: parsed; ``file NAME`` also writes it to NAME in the document's copy,
for the commands after it.

docs/api.md's curl sessions need a running server: they are ``text`` blocks marked
``<!-- api-test: curl -->``, run against a live demo by ``tests/api/test_docs_curl.py``.

The CI workflow files under docs/ci/ are checked separately: they must parse,
run ``validate``, ``test`` and ``plan`` on pull requests and ``sync`` on
deploy, and their scripts are executed against a copy of the demo in a git
repository whose base branch differs from the working tree.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import tomllib
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.template import engines
from django.test import override_settings

from stepup.checks import check_settings
from stepup.conf import DEFAULTS
from stepup.policy.loader import load_text, validate_policy, validate_test
from stepup.policy.suite import run_suite
from tests.docs.blocks import ROOT, Block, all_blocks, blocks_of, commands_of, doc_files
from tests.docs.sandbox import Sandbox, prepare

BLOCKS = all_blocks()
ALLOWED_COMMANDS = ("python", ".venv/bin/python", "sed", "cp", "cat")
SHELL_LANGS = ("sh", "bash", "shell")
KNOWN = {
    SHELL_LANGS: {"run", "dry-run"},
    ("text",): {None, "output-of-previous", "output-of"},
    ("yaml", "yml"): {None, "policy-file", "policy", "tests", "invalid-file", "fragment"},
    ("python", "py"): {None, "run", "pytest", "settings"},
    ("django", "html"): {"template"},
    ("json",): {None, "file"},
}
PENDING_LINKS = {
    "docs/api.md": "written by the API helper (issue 4)",
    "docs/audit.md": "written by the audit helper (issue 5)",
    "docs/operations.md": "written by the scale helper (issue 6)",
}
"""Pages other work is writing: a link to one is tolerated while it is missing (and reported)."""


def blocks(*langs: str, markers: set[str | None] | None = None) -> list[Block]:
    found = [b for b in BLOCKS if b.lang in langs and (markers is None or b.marker in markers)]
    return found


def params(found: list[Block]) -> Any:
    return pytest.mark.parametrize("block", found, ids=[b.id for b in found])


# --- every block is covered by a convention -------------------------------------------


def test_every_block_follows_a_convention() -> None:
    problems = []
    for block in BLOCKS:
        allowed = next((markers for langs, markers in KNOWN.items() if block.lang in langs), None)
        if allowed is None:
            problems.append(
                f"{block.where}: block language {block.lang or '(none)'!r} has no test convention"
            )
        elif block.marker not in allowed:
            problems.append(
                f"{block.where}: a {block.lang} block may be marked {sorted(map(str, allowed))}, "
                f"not {block.marker!r} (see the top of tests/docs/test_docs.py)"
            )
    assert problems == []
    assert len(doc_files()) >= 8 and len(BLOCKS) >= 40, "the docs went missing"


# --- shell blocks, in document order, in a copy of the demo -----------------------------


def _check_output(shown: str, output: str, where: str) -> list[str]:
    """Every line of ``shown`` must be a line of ``output``, in the same order."""
    actual = [line.rstrip() for line in output.splitlines()]
    position = 0
    for expected in (line.rstrip() for line in shown.splitlines() if line.strip()):
        try:
            position = actual.index(expected, position) + 1
        except ValueError:
            return [f"{where}: the output shown has {expected!r}, which the command did not print:\n{output}"]
    return []


def _run_document(rel: str, sandbox: Sandbox) -> list[str]:
    problems: list[str] = []
    last_output: str | None = None
    for block in blocks_of(rel):
        if block.lang in SHELL_LANGS and block.marker == "run":
            for command in commands_of(block):
                first = command.text.split()[0]
                if first not in ALLOWED_COMMANDS:
                    problems.append(f"{block.path}:{command.line}: {first!r} may not run in docs tests")
                    continue
                result = sandbox.run(command.text)
                last_output = result.output
                if result.exit_code != command.exit_code:
                    problems.append(
                        f"{block.path}:{command.line}: `{command.text}` exited {result.exit_code}, "
                        f"the docs say {command.exit_code}:\n{result.output}"
                    )
        elif block.marker in ("invalid-file", "file"):
            (sandbox.path / block.arg).write_text(block.text)
        elif block.marker == "output-of":
            problems += _check_output(block.text, sandbox.run(block.arg).output, block.where)
        elif block.marker == "output-of-previous":
            if last_output is None:
                problems.append(f"{block.where}: no command ran before this output block")
            else:
                problems += _check_output(block.text, last_output, block.where)
    return problems


def _runs_something(rel: str) -> bool:
    return any(
        b.marker in ("run", "output-of") and (b.lang in SHELL_LANGS or b.lang == "text")
        for b in blocks_of(rel)
    )


RUN_DOCS = [rel for rel in doc_files() if _runs_something(rel)]
WORKFLOWS = ("github", "gitlab")


@pytest.fixture(scope="session")
def template_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    return prepare(tmp_path_factory.mktemp("docs") / "template")


@pytest.fixture(scope="session")
def ran(
    template_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[list[str]]]]:
    """Every document's shell blocks and both workflows, run side by side (they are independent)."""
    root = tmp_path_factory.mktemp("docs-runs")
    jobs: dict[str, Any] = {rel: _run_document for rel in RUN_DOCS}
    jobs.update(github=_run_github_workflow, gitlab=_run_gitlab_workflow)
    sandboxes = {name: template_sandbox.copy(root / re.sub(r"\W+", "-", name)) for name in jobs}
    try:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            yield {name: pool.submit(_started, job, name, sandboxes[name]) for name, job in jobs.items()}
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()


def _started(job: Any, name: str, sandbox: Sandbox) -> list[str]:
    return job(name, sandbox.start())


@pytest.mark.parametrize("rel", RUN_DOCS)
def test_shell_blocks_run_as_documented(rel: str, ran: dict[str, Future[list[str]]]) -> None:
    assert ran[rel].result() == []


@params(blocks(*SHELL_LANGS, markers={"dry-run"}))
def test_dry_run_commands_exist(block: Block) -> None:
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    for command in commands_of(block):
        words = command.text.split()
        if words[0] == "make":
            done = subprocess.run(
                ["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, f"{block.where}: `{command.text}`: {done.stderr}"
        elif words[:2] == ["pip", "install"]:
            # This distribution, with extras it defines: pip install "django-stepup[allauth]".
            extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
            parsed = [re.fullmatch(r"([\w.-]+)(?:\[([\w,-]+)\])?", w.strip("'\"")) for w in words[2:]]
            assert [m.group(1) if m else None for m in parsed] == [name], block.where
            wanted = [e for m in parsed if m and m.group(2) for e in m.group(2).split(",")]
            assert set(wanted) <= set(extras), f"{block.where}: unknown extras {set(wanted) - set(extras)}"
        else:
            pytest.fail(f"{block.where}: no dry-run check for `{command.text}`")


# --- YAML --------------------------------------------------------------------------------


@params(blocks("yaml", "yml"))
def test_yaml_blocks(block: Block) -> None:
    data = yaml.safe_load(block.text)
    kind = block.marker or ("policy-file" if isinstance(data, dict) and "version" in data else None)
    if kind == "fragment":
        return
    if kind in ("policy-file", "invalid-file"):
        loaded = load_text(block.text, block.path)
        if kind == "invalid-file":
            assert loaded.errors, f"{block.where}: shown as invalid, but it loads"
            return
        assert [str(e) for e in loaded.errors] == [], block.where
        suite = run_suite(loaded)
        assert [(r.test.name, r.failures) for r in suite.failed] == [], block.where
        assert suite.unexercised == (), f"{block.where}: policies no test exercises"
    elif kind == "policy":
        for policy in data if isinstance(data, list) else [data]:
            spec, errors = validate_policy(policy, block.path, block.line)
            assert spec is not None and [str(e) for e in errors] == [], block.where
    elif kind == "tests":
        assert list(data) == ["tests"], block.where
        for test in data["tests"]:
            found, errors = validate_test(test, block.path, block.line)
            assert found is not None and [str(e) for e in errors] == [], block.where
    else:
        pytest.fail(f"{block.where}: a YAML block that is not a policy file needs a marker")


# --- Python ------------------------------------------------------------------------------


def _imports_resolve(tree: ast.AST, where: str) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            module, _, attr = name.rpartition(".")
            try:
                if isinstance(node, ast.Import) or not hasattr(importlib.import_module(module), attr):
                    importlib.import_module(name)  # a module (or a submodule), or fail
            except ImportError as exc:
                raise AssertionError(f"{where}: the sample imports {name}, which does not exist") from exc


@params(blocks("python", "py", markers={None}))
def test_python_blocks_compile_and_import(block: Block) -> None:
    tree = ast.parse(block.text, block.where)
    compile(tree, block.where, "exec")
    _imports_resolve(tree, block.where)


@params(blocks("python", "py", markers={"run"}))
@pytest.mark.django_db
def test_python_blocks_run(block: Block) -> None:
    exec(compile(block.text, block.where, "exec"), {"__name__": "docs_sample"})


@params(blocks("python", "py", markers={"pytest"}))
@pytest.mark.django_db
def test_python_test_samples_pass(block: Block, request: pytest.FixtureRequest) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_sample"}
    exec(compile(block.text, block.where, "exec"), namespace)
    tests = {name: fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)}
    assert tests, f"{block.where}: no test_ function"
    for fn in tests.values():
        arguments = fn.__code__.co_varnames[: fn.__code__.co_argcount]
        fn(*(request.getfixturevalue(name) for name in arguments))


NEW_PROJECT = {
    "INSTALLED_APPS": [
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
    ],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
}
"""What ``django-admin startproject`` gives, for settings samples that add to it."""


@params(blocks("python", "py", markers={"settings"}))
def test_settings_samples_configure_stepup(block: Block) -> None:
    namespace: dict[str, Any] = {k: list(v) for k, v in NEW_PROJECT.items()}
    namespace["BASE_DIR"] = Path("/srv/project")
    exec(compile(block.text, block.where, "exec"), namespace)
    for app in namespace["INSTALLED_APPS"]:
        importlib.import_module(app)
    for app in ("django_otp", "simple_history", "rest_framework", "stepup"):
        assert app in namespace["INSTALLED_APPS"], f"{block.where}: {app} missing"
    for dotted in namespace["MIDDLEWARE"]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name), dotted
    stepup = namespace["STEPUP"]
    assert set(stepup) <= set(DEFAULTS), f"{block.where}: unknown STEPUP keys {set(stepup) - set(DEFAULTS)}"
    # The sample's own policy file can't exist here; check the rest with a real one.
    checked = {**stepup, "POLICY_FILES": [ROOT / "fixtures" / "stepup" / "policies.yaml"]}
    with override_settings(MIDDLEWARE=namespace["MIDDLEWARE"], STEPUP=checked):
        assert [f"{m.id}: {m.msg}" for m in check_settings()] == []


@params(blocks("django", "html", markers={"template"}))
def test_template_samples_compile(block: Block) -> None:
    engines["django"].from_string(block.text)


@params(blocks("json"))
def test_json_samples_parse(block: Block) -> None:
    json.loads(block.text)


# --- links -------------------------------------------------------------------------------

_LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def test_relative_links_resolve() -> None:
    broken, pending = [], []
    for rel in doc_files():
        for target in _LINK.findall((ROOT / rel).read_text()):
            path = (ROOT / rel).parent / target.split("#")[0]
            if path.exists():
                continue
            resolved = path.resolve().relative_to(ROOT.resolve()).as_posix()
            if resolved in PENDING_LINKS:
                pending.append(f"{rel} -> {target} ({PENDING_LINKS[resolved]})")
            else:
                broken.append(f"{rel} -> {target}")
    assert broken == []
    for link in sorted(set(pending)):
        warnings.warn(f"documentation page not written yet: {link}", UserWarning, stacklevel=1)


# --- the CI workflow files ---------------------------------------------------------------

STEPUP_COMMANDS = ("stepup validate", "stepup test", "stepup plan", "stepup sync")
PR_CHANGE = (
    "    max_age: 300\n    factors: [totp, webauthn, static]",
    "    max_age: 600\n    factors: [totp, webauthn, static]",
)


def _as_git_repo(sandbox: Sandbox) -> None:
    """Commit the copy as branch main (and its own origin), then change a policy as a PR would."""
    (sandbox.path / ".gitignore").write_text("*.sqlite3\n__pycache__/\n")
    script = """
        git init -q -b main
        git -c user.name=docs -c user.email=docs@example.invalid add -A
        git -c user.name=docs -c user.email=docs@example.invalid commit -q -m base
        git remote add origin "$PWD"
        git fetch -q origin
    """
    result = sandbox.script(script)
    assert result.exit_code == 0, result.output
    policies = sandbox.path / "fixtures" / "stepup" / "policies.yaml"
    text = policies.read_text()
    assert PR_CHANGE[0] in text, "billing-update changed shape; update PR_CHANGE"
    policies.write_text(text.replace(PR_CHANGE[0], PR_CHANGE[1], 1))


def _no_expressions(value: str) -> str:
    return re.sub(r"\$\{\{[^}]*\}\}", "", value)


def _run_github_workflow(name: str, sandbox: Sandbox) -> list[str]:
    workflow = yaml.safe_load((ROOT / "docs" / "ci" / "github-actions.yml").read_text())
    problems: list[str] = []
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    if set(triggers) != {"pull_request", "push"}:
        problems.append(f"triggers are {sorted(triggers)}")
    jobs = {job["if"]: job for job in workflow["jobs"].values()}
    pr = jobs.get("github.event_name == 'pull_request'")
    deploy = jobs.get("github.event_name == 'push'")
    if pr is None or deploy is None:
        return [*problems, f"expected a pull-request job and a push job, got {list(jobs)}"]
    problems += _require(pr, ("stepup validate", "stepup test", "stepup plan"), "pull-request job")
    problems += _require(deploy, ("stepup sync",), "deploy job")
    _as_git_repo(sandbox)
    summary = sandbox.path / "summary.md"
    env = {
        **{k: str(v) for k, v in workflow.get("env", {}).items()},
        "GITHUB_BASE_REF": "main",
        "RUNNER_TEMP": str(sandbox.path),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_SHA": "0123456789abcdef",
        "GITHUB_ACTOR": "octocat",
    }
    problems += _run_steps(sandbox, pr, env, "pull-request job")
    text = summary.read_text() if summary.exists() else ""
    if "Step-up policy changes" not in text or "billing-update" not in text:
        problems.append(f"the pull-request job's summary does not show the change:\n{text}")
    problems += _run_steps(sandbox, deploy, env, "deploy job")
    return problems + _synced(sandbox)


def _require(job: dict[str, Any], commands: tuple[str, ...], what: str) -> list[str]:
    scripts = "\n".join(str(step.get("run", "")) for step in job.get("steps", [])) + "\n".join(
        str(line) for line in job.get("script", [])
    )
    return [f"the {what} does not run `{c}`" for c in commands if c not in scripts]


def _run_steps(sandbox: Sandbox, job: dict[str, Any], env: dict[str, str], what: str) -> list[str]:
    problems = []
    for step in job["steps"]:
        script = step.get("run")
        if script is None or script.startswith("pip install"):
            continue  # actions (checkout, setup-python) and installing: the test's own environment
        step_env = {k: _no_expressions(str(v)) for k, v in step.get("env", {}).items()}
        result = sandbox.script(script, **env, **step_env)
        if result.exit_code != 0:
            problems.append(f"{what}, step {step.get('name')!r} exited {result.exit_code}:\n{result.output}")
    return problems


def _synced(sandbox: Sandbox) -> list[str]:
    after = sandbox.run("python manage.py stepup plan")
    if after.exit_code != 0:
        return [f"after the deploy job the database differs from the files:\n{after.output}"]
    return []


def _run_gitlab_workflow(name: str, sandbox: Sandbox) -> list[str]:
    config = yaml.safe_load((ROOT / "docs" / "ci" / "gitlab-ci.yml").read_text())
    problems: list[str] = []
    check, deploy = config.get("stepup-policies"), config.get("stepup-sync")
    if check is None or deploy is None:
        return ["expected the jobs stepup-policies and stepup-sync"]
    if check["rules"] != [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]:
        problems.append(f"stepup-policies runs on {check['rules']}, not on merge requests")
    if deploy["rules"] != [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]:
        problems.append(f"stepup-sync runs on {deploy['rules']}, not on the default branch")
    problems += _require(check, ("stepup validate", "stepup test", "stepup plan"), "merge-request job")
    problems += _require(deploy, ("stepup sync",), "deploy job")
    _as_git_repo(sandbox)
    env = {
        **{k: str(v) for k, v in config.get("variables", {}).items()},
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_COMMIT_SHORT_SHA": "01234567",
        "GITLAB_USER_LOGIN": "tanuki",
    }
    before = [line for line in config["default"]["before_script"] if not line.startswith("pip install")]
    for job_name, job in (("stepup-policies", check), ("stepup-sync", deploy)):
        result = sandbox.script("\n".join([*before, *job["script"]]), **env)
        if result.exit_code != 0:
            problems.append(f"{job_name} exited {result.exit_code}:\n{result.output}")
        if job_name == "stepup-policies":
            plan = sandbox.path / "stepup-plan.txt"
            if not plan.exists() or "billing-update" not in plan.read_text():
                problems.append(
                    f"the merge-request job's plan artifact does not show the change:\n{result.output}"
                )
    return problems + _synced(sandbox)


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_ci_workflow_runs_as_documented(workflow: str, ran: dict[str, Future[list[str]]]) -> None:
    assert ran[workflow].result() == []


@pytest.mark.parametrize("path", ["docs/ci/github-actions.yml", "docs/ci/gitlab-ci.yml"])
def test_ci_workflow_names_the_four_commands(path: str) -> None:
    text = (ROOT / path).read_text()
    yaml.safe_load(text)
    assert [c for c in STEPUP_COMMANDS if f"python manage.py {c}" not in text] == []


# --- reference tables that must list exactly what the code has ---------------------------


def test_settings_table_lists_every_key_with_its_default() -> None:
    text = (ROOT / "docs" / "install.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", text, re.M))
    assert list(rows) == list(DEFAULTS), "docs/install.md's STEPUP table vs stepup.conf.DEFAULTS"
    shown = {key: repr(value).replace("'", '"') for key, value in DEFAULTS.items()}
    assert rows == shown


def test_command_table_lists_every_subcommand() -> None:
    from stepup.management.commands.stepup import Command

    parser = Command().create_parser("manage.py", "stepup")
    sub = next(a for a in parser._actions if a.dest == "subcommand")
    text = (ROOT / "docs" / "cli.md").read_text()
    documented = re.findall(r"^\| `([a-z-]+)[ `]", text, re.M)
    assert documented == list(sub.choices), "docs/cli.md's table vs `manage.py stepup` subcommands"
    for name in sub.choices:
        assert f"\n## {name}\n" in text, f"docs/cli.md has no section for {name}"
