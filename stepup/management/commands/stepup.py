"""``manage.py stepup <subcommand>``: validate, test, plan, sync, export, explain, routes, prune-log.

A subcommand that exits non-zero raises :class:`CommandError` with the exit
code as its ``returncode``: ``manage.py`` prints ``CommandError: <message>``
to standard error and exits with it; ``call_command`` raises it.
"""

from __future__ import annotations

import json
from argparse import SUPPRESS, ArgumentParser, ArgumentTypeError
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS

from stepup.conf import conf
from stepup.policy.collector import collector_paused
from stepup.policy.engine import PolicySet, compile_policies, input_from_dict
from stepup.policy.loader import load_files, validate_test
from stepup.policy.model import Decision, PolicyFile
from stepup.policy.suite import run_suite

if TYPE_CHECKING:
    from stepup.routes import Route

EXIT_FAILED = 1
"""Errors in the files, a failing policy test, an uncovered route."""
EXIT_CHANGES = 2
"""``plan``: the database differs from the files (not an error: CI shows the plan to reviewers)."""


class Command(BaseCommand):
    help = "Policy-as-code for step-up authentication: validate, test, plan, sync, export, explain, routes."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        add_parser = sub.add_parser

        def subcommand(name: str, **kwargs: Any) -> ArgumentParser:
            p = add_parser(name, **kwargs)
            # Accept `stepup test -v 2` as well as `stepup -v 2 test`.
            p.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], default=SUPPRESS)
            return p

        sub.add_parser = subcommand  # type: ignore[method-assign,assignment]

        def files(p: ArgumentParser) -> None:
            p.add_argument(
                "files",
                nargs="*",
                metavar="FILES",
                help="Policy files (default: STEPUP['POLICY_FILES']).",
            )

        def database(p: ArgumentParser) -> None:
            p.add_argument(
                "--database",
                default=DEFAULT_DB_ALIAS,
                help='The database to use (default: "default").',
            )

        files(sub.add_parser("validate", help="Check files against the schema and the URLconf."))
        files(sub.add_parser("test", help="Run the files' tests: block."))
        p = sub.add_parser("plan", help="Show what sync would change; exit 2 when anything would.")
        files(p)
        database(p)
        p.add_argument(
            "--replay",
            type=_positive_days,
            metavar="DAYS",
            help="Also replay the decision log of the last DAYS against the files and report "
            "the decisions that would flip.",
        )
        p = sub.add_parser("sync", help="Make the database equal to the files, atomically.")
        files(p)
        database(p)
        p.add_argument("--reason", help="Change reason recorded in history (default: files and git commit).")
        p.add_argument("--dry-run", action="store_true", help="Show the plan, change nothing.")
        p = sub.add_parser("export", help="Write the database's policies as a policy file.")
        database(p)
        p.add_argument("-o", "--output", help="File to write (default: standard output).")
        p.add_argument(
            "--format",
            choices=["yaml", "json"],
            default=None,
            help="yaml or json (default: by the output's suffix, else yaml).",
        )
        p = sub.add_parser("explain", help="Trace the decision for one input.")
        p.add_argument(
            "--input",
            required=True,
            metavar="JSON_OR_FILE",
            help="A policy-test input as JSON, or a file holding it.",
        )
        p.add_argument(
            "--policies",
            nargs="+",
            metavar="FILE",
            help="Decide against these files instead of the policies in the database.",
        )
        database(p)
        p = sub.add_parser("routes", help="Every URL route with its action, methods and policies.")
        files(p)
        p.add_argument("--format", choices=["text", "json"], default="text")
        p.add_argument(
            "--require-coverage",
            nargs="+",
            metavar="PATTERN",
            default=[],
            help="Exit 1 when a route whose name matches a pattern has no policy.",
        )

        p = sub.add_parser("prune-log", help="Delete decision-log entries older than the retention period.")
        database(p)
        p.add_argument(
            "--days",
            type=int,
            help="Keep this many days (default: STEPUP['DECISION_LOG_RETENTION'], 90).",
        )
        p.add_argument("--dry-run", action="store_true", help="Count the entries, delete nothing.")
        p.add_argument(
            "--batch-size", type=int, default=10_000, help="Rows deleted per statement (default: 10000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        handler = getattr(self, "do_" + options["subcommand"].replace("-", "_"))
        handler(**options)

    # -- helpers --

    def say(self, message: str = "", level: int = 1) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)

    def paths(self, files: Sequence[str] | None) -> list[Path]:
        paths = [Path(f) for f in files] if files else conf.POLICY_FILES
        if not paths:
            raise CommandError("No policy files: pass FILES or set STEPUP['POLICY_FILES'].")
        # Sources are recorded on each row: keep them short and portable.
        return [_relative(p) for p in paths]

    def load(self, files: Sequence[str] | None, *, changing: bool = False) -> PolicyFile:
        """Load and fully validate the files (schema and URLconf); exit 1 on any error.

        :param changing: the subcommand would change the database (``sync``): its
            error says that nothing was changed. The others never change anything.
        """
        from stepup.i18n import check_description_languages
        from stepup.routes import check_against_urlconf

        policy_file = load_files([str(p) for p in self.paths(files)])
        errors = list(policy_file.errors)
        if not errors:
            errors.extend(check_against_urlconf(policy_file))
            errors.extend(check_description_languages(policy_file))
        if errors:
            for error in errors:
                self.stderr.write(f"error: {error}")
            summary = _count(len(errors), "error") + ("; nothing was changed." if changing else ".")
            raise CommandError(summary, returncode=EXIT_FAILED)
        return policy_file

    # -- subcommands --

    def do_validate(self, files: Sequence[str], **_: Any) -> None:
        with collector_paused():  # a big file: many objects, no garbage (see stepup.policy.collector)
            self.validate(files)

    def validate(self, files: Sequence[str]) -> None:
        from stepup.routes import collect_routes, uncovered_actions, unknown_actions

        policy_file = self.load(files)
        policy_set = compile_policies(policy_file.policies, default_max_age=conf.DEFAULT_MAX_AGE)
        for action in uncovered_actions(policy_set):
            self.stderr.write(
                f"warning: declared action {action!r} has no policy; "
                f"it gets the default requirement (max_age {conf.DEFAULT_MAX_AGE}s)."
            )
        for warning in unknown_actions(policy_file):
            self.stderr.write(f"warning: {warning}")
        self.warn_about_routes(policy_set, collect_routes(policy_set))
        self.report_defaults(policy_file)
        self.say(
            f"OK: {_count(len(policy_file.policies), 'policy')} and "
            f"{_count(len(policy_file.tests), 'test')} in {', '.join(policy_file.sources)}."
        )

    def do_test(self, files: Sequence[str], **_: Any) -> None:
        policy_file = self.load(files)
        suite = run_suite(policy_file, default_max_age=conf.DEFAULT_MAX_AGE)
        for result in suite.results:
            if result.passed:
                self.say(f"PASS {result.test.name}", 2)
                continue
            where = f"{result.test.source}:{result.test.line}" if result.test.line else result.test.source
            self.stdout.write(f"FAIL {result.test.name} ({where})")
            for failure in result.failures:
                self.stdout.write(f"  {failure}")
            self.stdout.write(format_trace(result.decision, indent="  "))
        for policy_id in suite.unexercised:
            self.stdout.write(f"warning: no test exercises policy {policy_id!r}")
        passed = len(suite.results) - len(suite.failed)
        self.stdout.write(f"{passed} passed, {len(suite.failed)} failed")
        if suite.failed:
            raise CommandError(f"{_count(len(suite.failed), 'policy test')} failed.", returncode=EXIT_FAILED)

    def do_plan(self, files: Sequence[str], database: str, replay: float | None, **_: Any) -> None:
        from stepup.sync import make_plan

        policy_file = self.load(files)
        plan = make_plan(policy_file, using=database)
        self.write_plan(plan, "Plan")
        if replay is not None:
            self.write_replay(policy_file, replay, database)
        if not plan.empty:
            raise CommandError(
                f"the database differs from the policy files: {plan.summary()}.", returncode=EXIT_CHANGES
            )

    def write_replay(self, policy_file: PolicyFile, days: float, database: str) -> None:
        from stepup.replay import current_policy_set, replay

        proposed = compile_policies(
            policy_file.policies, default_max_age=conf.DEFAULT_MAX_AGE, version="files"
        )
        current = current_policy_set(database, default_max_age=conf.DEFAULT_MAX_AGE)
        result = replay(proposed, current, days=days, using=database)
        self.stdout.write(
            f"Replay of the decision log since {result.since:%Y-%m-%d %H:%M} UTC: "
            f"{_count(result.replayed, 'decision')} replayed, {result.flipped} would flip."
        )
        for flip in result.flips:
            self.stdout.write(f"  {flip.describe()}")
        if result.skipped:
            self.say(f"  {_count(result.skipped, 'logged decision')} without facts to replay left out.")
        if result.unexplained:
            self.say(
                f"  note: {_count(result.unexplained, 'logged decision')} came out differently under the "
                "current policies (made under an earlier policy version, or on facts the log lacks)."
            )

    def do_sync(
        self, files: Sequence[str], database: str, reason: str | None, dry_run: bool, **_: Any
    ) -> None:
        from stepup.sync import default_reason, git_commit, sync

        paths = self.paths(files)
        policy_file = self.load(files, changing=True)
        commit = git_commit(paths)
        plan = sync(
            policy_file,
            reason=reason or default_reason(paths, commit),
            commit=commit,
            using=database,
            dry_run=dry_run,
        )
        self.write_plan(plan, "Dry run, nothing was changed; the plan" if dry_run else "Synced")

    def do_prune_log(self, database: str, days: int | None, dry_run: bool, batch_size: int, **_: Any) -> None:
        from django.utils import timezone

        from stepup import grants
        from stepup.audit import prune_log

        keep = conf.DECISION_LOG_RETENTION if days is None else days
        if keep < 0:
            raise CommandError(f"--days must be 0 or more, got {keep}.")
        if batch_size < 1:
            raise CommandError(f"--batch-size must be 1 or more, got {batch_size}.")
        before = timezone.now() - timedelta(days=keep)
        count = prune_log(before, using=database, batch_size=batch_size, dry_run=dry_run)
        when = f"older than {keep} days (before {before:%Y-%m-%d %H:%M} UTC)"
        expired = grants.prune(using=database, dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"Dry run: {count} decision-log entries {when} would be deleted.")
            self.stdout.write(f"Dry run: {expired} expired grants and challenges would be deleted.")
        else:
            self.stdout.write(f"Deleted {count} decision-log entries {when}.")
            self.stdout.write(f"Deleted {expired} expired grants and challenges.")

    def report_defaults(self, policy_file: PolicyFile) -> None:
        """Which of stepup's default policies the files replace (all of them with ``-v 2``)."""
        from stepup.policy.builtins import DEFAULT_POLICIES, replaced_defaults

        replaced = replaced_defaults(policy_file.policies)
        for default in DEFAULT_POLICIES:
            actions = ", ".join(default.actions)
            if default.id in replaced:
                by = ", ".join(replaced[default.id])
                self.say(f"Default policy {default.id} ({actions}) is replaced by your policy {by}.")
            else:
                self.say(f"Default policy {default.id} ({actions}) is in force.", level=2)

    def warn_about_routes(self, policy_set: PolicySet, routes: Sequence[Route]) -> None:
        """Warn about views that URL policies cover unevenly, and about methods policies leave out."""
        from stepup.routes import method_gaps, partly_covered_views

        for view in partly_covered_views(policy_set):
            self.stderr.write(f"warning: {view.warning()}")
        for gap in method_gaps(policy_set, routes):
            self.stderr.write(f"warning: {gap.warning()}")

    def write_plan(self, plan: Any, verb: str) -> None:
        for change in plan.changes:
            self.say(f"{change.kind} {change.policy_id}" + (f"  ({change.why})" if change.why else ""))
            for item in change.fields:
                if change.kind == "create":
                    if self.verbosity >= 2:  # not formatted for nothing: 10,000 creates have 110,000 fields
                        self.say(f"    {item.field}: {json.dumps(item.new)}", 2)
                else:
                    self.say(f"    {item.field}: {json.dumps(item.old)} -> {json.dumps(item.new)}")
        if plan.empty:
            self.say("No changes: the database matches the policy files.")
        else:
            self.say(f"{verb}: {plan.summary()}.")

    def do_export(self, database: str, output: str | None, format: str | None, **_: Any) -> None:
        from stepup.sync import export

        fmt = format or ("json" if output and output.endswith(".json") else "yaml")
        text, broken = export(using=database, fmt=fmt)
        for policy_id in broken:
            self.stderr.write(f"warning: stored policy {policy_id!r} is malformed; exported its stand-in")
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.say(f"Wrote {output}.")
        else:
            self.stdout.write(text, ending="")

    def do_explain(self, input: str, policies: Sequence[str] | None, database: str, **_: Any) -> None:
        data = read_input(input)
        checked, errors = validate_test(
            {"name": "explain", "input": data, "expect": {"decision": "allow"}}, source="--input"
        )
        if checked is None:
            # Each error names its source ("--input: input.action: …"): no second prefix.
            raise CommandError("; ".join(str(e) for e in errors))
        data = dict(checked.input)
        if policies:
            policy_set = compile_policies(
                self.load(policies).policies, default_max_age=conf.DEFAULT_MAX_AGE, version="files"
            )
        else:
            from stepup.store import get_policy_set

            policy_set = get_policy_set()
        decision = policy_set.decide(input_from_dict(data), trace=True)
        self.stdout.write(format_trace(decision))

    def do_routes(self, files: Sequence[str], format: str, require_coverage: Sequence[str], **_: Any) -> None:
        from stepup.routes import collect_routes, idle_policies, uncovered_routes

        policy_file = self.load(files)
        policy_set = compile_policies(policy_file.policies, default_max_age=conf.DEFAULT_MAX_AGE)
        routes = collect_routes(policy_set)
        self.warn_about_routes(policy_set, routes)
        if format == "json":
            self.stdout.write(json.dumps([r.as_dict() for r in routes], indent=2))
        else:
            for route in routes:
                self.stdout.write(route.as_text())
        if require_coverage:
            missing = uncovered_routes(routes, require_coverage)
            for route in missing:
                idle = idle_policies(policy_set, route)
                why = (
                    f"only shadow/disabled policies: {', '.join(idle)} (they enforce nothing)"
                    if idle
                    else "no policy that can apply"
                )
                self.stderr.write(f"error: route {route.name!r} ({route.pattern}) has {why}")
            if missing:
                raise CommandError(f"{_count(len(missing), 'unprotected route')}.", returncode=EXIT_FAILED)


def _count(n: int, noun: str) -> str:
    """``1 policy``, ``2 policies``, ``0 tests``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else f"{n} {noun}s"


def _positive_days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise ArgumentTypeError(f"expected a number of days, got {value!r}") from None
    if not 0 < days < 100_000:
        raise ArgumentTypeError(f"expected a number of days above 0, got {value!r}")
    return days


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def read_input(value: str) -> Any:
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"--input: {value!r} is neither JSON nor a readable file ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"--input is not valid JSON: {exc}") from None


def format_trace(decision: Decision, indent: str = "") -> str:
    lines = [f"{indent}decision: {decision.outcome}"]
    if decision.max_age is not None:
        lines.append(f"{indent}max_age: {decision.max_age}")
    if decision.factors:
        lines.append(f"{indent}factors: {', '.join(decision.factors)}")
    lines.append(f"{indent}policies: {', '.join(decision.policies) or '-'}")
    for reason in decision.reasons:
        lines.append(f"{indent}reason: {reason}")
    for trace in decision.trace or ():
        lines.append(f"{indent}policy {trace.policy}: {trace.effect}")
        for condition in trace.conditions:
            mark = "held" if condition.held else "failed"
            lines.append(f"{indent}  {condition.field}: {mark} — {condition.detail}")
    return "\n".join(lines)
