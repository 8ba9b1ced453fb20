"""Commands the scale tests run in a process of their own, against the test's PostgreSQL.

``python -m tests.scale.worker COMMAND JSON`` with ``DJANGO_SETTINGS_MODULE=
tests.scale.server_settings`` and ``DATABASE_URL``/``REDIS_URL`` set; prints
one JSON object. A separate process, like ``manage.py shell`` on another host:
what it commits reaches the servers only through the database and the cache.

Commands:

- ``user {"username", "sessions": N, "totp": bool}`` — a user with N logged-in
  sessions (cookies) and optionally a confirmed TOTP device (its key).
- ``policy {"id", ...policy-file fields}`` — create or replace a policy through the ORM.
- ``delete-policy {"id"}``
- ``grant {"username", "session"}`` — record a TOTP verification for that
  session (as the verification page does); returns the rotated session key.
- ``revoke {"username"}`` — ``stepup.grants.revoke_all`` (a device removed).
- ``delete-grants {"username"}`` — delete the user's grants behind stepup's
  back (a bare ``DELETE``): no notice is sent.
- ``counts {"username"}`` — the user's failure counter, lockout, decision-log
  events and the TOTP device's state.
- ``sync-race {"locked": bool, "pause": seconds}`` — two threads run ``sync``
  of a 50-policy file at once; ``_apply`` is slowed down so that without the
  lock their transactions overlap.
- ``verify-race {"locked": bool, "pause": seconds, "guesses": N, "valid": bool,
  "limit": N, "throttle_factor": N}`` — N threads post a TOTP code to the
  verification API at once, each from its own session.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import traceback
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.scale.server_settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django_otp.models import Device  # noqa: E402
from django_otp.oath import TOTP  # noqa: E402
from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: E402

from stepup import store, throttling  # noqa: E402
from stepup import sync as sync_module  # noqa: E402
from stepup.conf import conf  # noqa: E402
from stepup.models import DecisionLog, Policy, PolicySetState, UserState  # noqa: E402
from stepup.policy.loader import load_files  # noqa: E402
from tests.paths import API_VERIFY  # noqa: E402


def totp_code(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    valid = set()
    for offset in range(-3, 4):
        totp = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset)
        valid.add(f"{totp.token():06d}")
    return next(c for c in (f"{n:06d}" for n in range(123456, 999999, 7919)) if c not in valid)


def cmd_user(args: dict[str, Any]) -> dict[str, Any]:
    user = get_user_model().objects.create_user(
        args["username"],
        password="pw",
        is_staff=bool(args.get("superuser")),
        is_superuser=bool(args.get("superuser")),
    )
    result: dict[str, Any] = {"user_id": user.pk, "sessions": []}
    if args.get("totp"):
        device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
        result.update(device=device.persistent_id, key=device.key, digits=device.digits, step=device.step)
    for _ in range(int(args.get("sessions", 1))):
        client = Client()
        client.force_login(user)
        result["sessions"].append(client.cookies["sessionid"].value)
    return result


def cmd_grant(args: dict[str, Any]) -> dict[str, Any]:
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    from stepup import grants

    user = get_user_model().objects.get(username=args["username"])
    request = RequestFactory().get("/")
    request.session = SessionStore(args["session"])
    request.user = user
    grants.record_verification(request, user, "totp")
    request.session.save()
    return {"session": request.session.session_key}


def cmd_revoke(args: dict[str, Any]) -> dict[str, Any]:
    from stepup import grants

    grants.revoke_all(get_user_model().objects.get(username=args["username"]))
    return {}


def cmd_delete_grants(args: dict[str, Any]) -> dict[str, Any]:
    from stepup.models import Grant

    user = get_user_model().objects.get(username=args["username"])
    return {"deleted": Grant.objects.filter(user=user)._raw_delete(using="default")}


POLICY_FIELDS = ("description", "decision", "max_age", "enabled", "mode")


def cmd_policy(args: dict[str, Any]) -> dict[str, Any]:
    row = Policy.objects.filter(policy_id=args["id"]).first() or Policy(policy_id=args["id"])
    match = args.get("match", {})
    row.actions = list(match.get("actions", []))
    row.urls = list(match.get("urls", []))
    row.methods = list(match.get("methods", []))
    row.when = dict(args.get("when", {}))
    row.factors = list(args.get("factors", []))
    for name in POLICY_FIELDS:
        if name in args:
            setattr(row, name, args[name])
    row.source_file = "tests/scale"
    row.save()
    return {"version": store.current_state().label}  # as the servers' policy sets carry it


def cmd_delete_policy(args: dict[str, Any]) -> dict[str, Any]:
    Policy.objects.get(policy_id=args["id"]).delete()
    return {"version": store.current_state().label}  # as the servers' policy sets carry it


def cmd_listeners(args: dict[str, Any]) -> list[int]:
    """Backend pids of the other processes' LISTEN connections (``NOTICES = "database"``)."""
    from django.db import connection

    channel = store.change_notices()
    own = getattr(getattr(channel, "_connection", None), "info", None)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'stepup-notices' AND pid <> %s ORDER BY pid",
            [own.backend_pid if own is not None else 0],
        )
        return [pid for (pid,) in cursor.fetchall()]


def cmd_terminate(args: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        for pid in args["pids"]:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    return {}


def cmd_counts(args: dict[str, Any]) -> dict[str, Any]:
    user = get_user_model().objects.get(username=args["username"])
    state = UserState.objects.filter(user=user).first()
    events: dict[str, int] = {}
    for event in DecisionLog.objects.filter(user=user).values_list("event", flat=True):
        events[event] = events.get(event, 0) + 1
    device = TOTPDevice.objects.filter(user=user).first()
    return {
        "failures": state.failures if state else 0,
        "locked": bool(state and state.locked_until),
        "events": events,
        "device_failures": device.throttling_failure_count if device else None,
        "device_last_t": device.last_t if device else None,
    }


# --- races --------------------------------------------------------------------------


def _run_threads(count: int, target: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except Exception as exc:  # reported, not raised: the test reads what happened
            results[index] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _race_file(count: int) -> Path:
    lines = ["version: 1", "policies:"]
    for i in range(count):
        lines += [
            f"  - id: race-{i:03d}",
            "    match:",
            f"      actions: [race.action{i}]",
            "    decision: step_up",
            "    max_age: 300",
        ]
    folder = Path(tempfile.mkdtemp(prefix="stepup-race-"))
    path = folder / "race.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cmd_sync_race(args: dict[str, Any]) -> dict[str, Any]:
    Policy.objects.filter(policy_id__startswith="race-").delete()
    # The demo's files plus 50 more policies: the demo's own policies stay as they are.
    policy_file = load_files([*conf.POLICY_FILES, _race_file(50)])
    pause = float(args.get("pause", 0.5))
    original_apply = sync_module._apply

    def slow_apply(*a: Any, **kw: Any) -> None:
        time.sleep(pause)  # inside the transaction, after the plan was made
        original_apply(*a, **kw)

    patches = ExitStack()
    patches.enter_context(mock.patch.object(sync_module, "_apply", slow_apply))
    if not args.get("locked", True):
        patches.enter_context(mock.patch.object(sync_module, "_lock", lambda using: None))
    version_before = PolicySetState.objects.get(pk=1).version
    created = Policy.history.filter(policy_id__startswith="race-", history_type="+")
    history_before = created.count()

    def one(index: int) -> dict[str, Any]:
        started = time.monotonic()
        plan = sync_module.sync(policy_file, reason=f"race {index}")
        return {
            "started": started,
            "finished": time.monotonic(),
            "created": plan.count("create"),
            "empty": plan.empty,
        }

    with patches:
        results = _run_threads(2, one)
    history = created.count() - history_before
    rows = Policy.objects.filter(policy_id__startswith="race-").count()
    version_after = PolicySetState.objects.get(pk=1).version
    Policy.objects.filter(policy_id__startswith="race-").delete()
    return {
        "results": results,
        "rows": rows,
        "created_history": history,
        "version_bumps": version_after - version_before,
    }


def cmd_verify_race(args: dict[str, Any]) -> dict[str, Any]:
    count = int(args.get("guesses", 20))
    pause = float(args.get("pause", 0.0))
    user = get_user_model().objects.create_user(args["username"], password="pw")
    device = TOTPDevice.objects.create(user=user, name="Phone", confirmed=True)
    # As for a user who verified before: creating this row would serialise the first attempts.
    UserState.objects.create(user=user)
    token = totp_code(device) if args.get("valid") else wrong_code(device)
    clients = []
    for _ in range(count):
        client = Client()
        client.force_login(user)
        clients.append(client)
    connection.close()

    original_verify = TOTPDevice.verify_token
    original_from_persistent_id = Device.from_persistent_id.__func__  # type: ignore[attr-defined]

    def slow_verify(self: TOTPDevice, code: str) -> bool:
        time.sleep(pause)  # widen the window between reading the device and saving it
        return original_verify(self, code)

    def unlocked_user(user: Any) -> UserState:
        return UserState.objects.get_or_create(user_id=user.pk)[0]

    def unlocked_device(cls: Any, persistent_id: str, for_verify: bool = False) -> Any:
        return original_from_persistent_id(cls, persistent_id, for_verify=False)

    patches = ExitStack()
    patches.enter_context(mock.patch.object(TOTPDevice, "verify_token", slow_verify))
    if not args.get("locked", True):
        patches.enter_context(mock.patch.object(throttling, "lock_user", unlocked_user))
        patches.enter_context(mock.patch.object(Device, "from_persistent_id", classmethod(unlocked_device)))

    def one(index: int) -> dict[str, Any]:
        response = clients[index].post(
            API_VERIFY,
            json.dumps({"device": device.persistent_id, "token": token}),
            content_type="application/json",
        )
        return {"status": response.status_code, "code": response.json().get("code")}

    stepup = {
        **django.conf.settings.STEPUP,
        "USER_FAILURE_LIMIT": int(args.get("limit", 1000)),
    }
    throttle = int(args.get("throttle_factor", 0))
    with patches, override_settings(STEPUP=stepup, OTP_TOTP_THROTTLE_FACTOR=throttle):
        results = _run_threads(count, one)
    state = UserState.objects.get(user=user)
    device.refresh_from_db()
    events: dict[str, int] = {}
    for event in DecisionLog.objects.filter(user=user).values_list("event", flat=True):
        events[event] = events.get(event, 0) + 1
    statuses: dict[str, int] = {}
    for result in results:
        key = str(result.get("status", result.get("error")))
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "statuses": statuses,
        "codes": sorted(str(r.get("code")) for r in results),
        "failures": state.failures,
        "locked": state.locked_until is not None,
        "events": events,
        "device_failures": device.throttling_failure_count,
    }


COMMANDS = {
    "user": cmd_user,
    "policy": cmd_policy,
    "delete-policy": cmd_delete_policy,
    "counts": cmd_counts,
    "grant": cmd_grant,
    "revoke": cmd_revoke,
    "delete-grants": cmd_delete_grants,
    "sync-race": cmd_sync_race,
    "verify-race": cmd_verify_race,
    "listeners": cmd_listeners,
    "terminate": cmd_terminate,
}


def run(command: str, args: dict[str, Any]) -> Any:
    # A policy change commits (and is announced) before the test hears about it.
    atomic = transaction.atomic() if command in ("policy", "delete-policy", "grant", "revoke") else nullcontext()
    with atomic:
        return COMMANDS[command](args)


def serve() -> None:
    """One JSON request per line on stdin, one JSON answer per line on stdout (saves a start-up each)."""
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"ok": True, "result": run(request["command"], request.get("args") or {})}
        except Exception:
            answer = {"ok": False, "error": traceback.format_exc()}
        finally:
            connections.close_all()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main() -> None:
    if sys.argv[1] == "--serve":
        serve()
        return
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}"))))


if __name__ == "__main__":
    main()
