"""The active policy set of this process, compiled from the database.

Every process keeps one compiled :class:`~stepup.policy.engine.PolicySet` in
memory. A change to any policy bumps ``PolicySetState.version`` in the same
transaction (see :mod:`stepup.signals`); this process drops its copy at once
and again after commit, and other processes notice the new version within
``STEPUP["RELOAD_INTERVAL"]`` seconds.

Fail closed: when the database can't be read, the last good set stays in
force; a stored row that no longer validates is replaced by a stricter
stand-in (same match, ``max_age: 0`` or ``deny``) instead of being dropped,
and never disables the other policies.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import DatabaseError

from stepup.conf import conf
from stepup.policy.engine import PolicySet, compile_policies
from stepup.policy.loader import validate_policy
from stepup.policy.model import PolicySpec

logger = logging.getLogger("stepup.store")


class PolicyStoreUnavailable(RuntimeError):
    """No policy set could be loaded, and there is no earlier good one to keep."""


class _Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set: PolicySet | None = None
        self._version: int | None = None
        self._checked_at = 0.0

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = 0.0
            self._version = None

    def get(self) -> PolicySet:
        now = time.monotonic()
        current = self._set
        if (
            current is not None
            and self._version is not None
            and now - self._checked_at < conf.RELOAD_INTERVAL
        ):
            return current
        with self._lock:
            try:
                version = current_version()
                if self._set is None or version != self._version:
                    self._set = load_policy_set(version)
                    self._version = version
                self._checked_at = now
            except DatabaseError:
                logger.exception("policy store unreachable; keeping the last good policy set")
                if self._set is None:
                    raise PolicyStoreUnavailable("the policy store is unreachable") from None
                self._checked_at = now
            return self._set


def current_version() -> int:
    from stepup.models import PolicySetState

    state = PolicySetState.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(state or 0)


def load_policy_set(version: int) -> PolicySet:
    """Compile every stored policy; malformed rows become stricter stand-ins."""
    from stepup.models import Policy

    specs = [spec_from_row(row.policy_id, row.to_dict()) for row in Policy.objects.all()]
    return compile_policies(
        [s for s in specs if s is not None],
        default_max_age=conf.DEFAULT_MAX_AGE,
        version=str(version),
    )


def spec_from_row(policy_id: str, data: dict[str, Any]) -> PolicySpec | None:
    spec, errors = validate_policy(data, source=f"<database:{policy_id}>")
    if spec is not None:
        return spec
    logger.error(
        "stored policy %r is malformed; enforcing a stricter stand-in: %s",
        policy_id,
        "; ".join(str(e) for e in errors),
    )
    return stand_in(policy_id, data)


def stand_in(policy_id: str, data: dict[str, Any]) -> PolicySpec | None:
    """The fail-closed replacement of a malformed row: same targets, no conditions, strictest effect."""
    match = data.get("match") if isinstance(data.get("match"), dict) else {}
    assert isinstance(match, dict)
    names = {
        key: tuple(v for v in match.get(key) or () if isinstance(v, str) and v)
        for key in ("actions", "urls")
    }
    if not names["actions"] and not names["urls"]:
        logger.critical(
            "stored policy %r names no action or URL that can be read; it cannot be enforced",
            policy_id,
        )
        return None
    deny = data.get("decision") == "deny"
    return PolicySpec(
        id=policy_id,
        description="Stored policy is malformed: the strictest requirement applies until it is fixed.",
        actions=names["actions"],
        urls=names["urls"],
        decision="deny" if deny else "step_up",
        max_age=None if deny else 0,
    )


_store = _Store()


def get_policy_set() -> PolicySet:
    """The policy set in force for this process (reloaded when the stored version changes)."""
    return _store.get()


def invalidate() -> None:
    """Forget the compiled set; the next :func:`get_policy_set` reads the database."""
    _store.invalidate()
