"""The decision log: one helper that stores an event and logs it to the ``stepup`` logger.

Enforcement records ``challenged``, ``denied`` and ``shadow`` events; the
verification views record ``verified``, ``failed`` and ``locked``. Attribute
values are stored as strings and anything that looks like a secret (a
password, token, OTP, CSRF token, key …) is redacted: the log never holds one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import DatabaseError, transaction
from django.http import HttpRequest

from stepup.context import CONTEXT_ATTR, client_ip, http_request, request_user
from stepup.context import url_name as route_name
from stepup.policy.model import Decision

logger = logging.getLogger("stepup")

REDACTED = "[redacted]"
USER_AGENT_LENGTH = 300
_SECRET_PARTS = frozenset(
    {
        "pass",
        "passwd",
        "password",
        "passcode",
        "passphrase",
        "pin",
        "otp",
        "totp",
        "token",
        "secret",
        "csrf",
        "csrfmiddlewaretoken",
        "key",
        "apikey",
        "credential",
        "credentials",
        "cvv",
        "cvc",
        "ssn",
    }
)
_SECRET_WORDS = ("password", "passwd", "token", "secret", "csrf", "apikey", "credential")


def is_secret_name(name: str) -> bool:
    """Whether a field or attribute name looks like it holds a secret."""
    lowered = name.lower()
    if any(word in lowered.replace("_", "").replace("-", "") for word in _SECRET_WORDS):
        return True
    return any(part in _SECRET_PARTS for part in re.split(r"[^a-z0-9]+", lowered))


def display_attrs(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """Attributes as ``str -> str``, secrets redacted: what is shown to users and logged."""
    return {str(k): REDACTED if is_secret_name(str(k)) else str(v) for k, v in (attributes or {}).items()}


def _field(value: object, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def _known_roles(request: HttpRequest) -> list[str]:
    """The roles if this request already loaded them (never a query just for the log)."""
    context = getattr(request, CONTEXT_ATTR, None)
    roles = getattr(context, "roles", None)
    loaded = getattr(roles, "loaded", False)
    return sorted(roles()) if loaded and roles is not None else []


def record_event(
    request: Any,
    event: str,
    *,
    user: Any = None,
    action: str | None = None,
    url_name: str | None = None,
    decision: Decision | None = None,
    outcome: str | None = None,
    policies: Iterable[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
    factor: str = "",
    detail: str = "",
) -> None:
    """Store one event in :class:`~stepup.models.DecisionLog` and log it.

    :param request: the request the event happened on (a DRF ``Request`` works too).
    :param event: one of ``DecisionLog.EVENTS`` (``challenged``, ``verified``,
        ``failed``, ``locked``, ``denied``, ``shadow``, ``allowed``).
    :param user: defaults to ``request.user``.
    :param url_name: defaults to the request's URL name.
    :param decision: fills ``outcome``, ``policies`` and ``policy_version`` unless given.
    :param attrs: transaction attributes; stored as strings with secrets redacted.

    A database error is logged and swallowed: the log must not turn a refused
    request into a server error (the refusal itself stands).
    """
    from stepup.models import DecisionLog

    http = http_request(request)
    user = user if user is not None else request_user(request)
    authenticated = bool(getattr(user, "is_authenticated", False))
    if url_name is None:
        url_name = route_name(http)
    policy_ids = list(policies if policies is not None else (decision.policies if decision else ()))
    if decision is not None and event == "shadow":
        policy_ids = list(decision.shadow)
    ip = client_ip(http)
    row = DecisionLog(
        event=event,
        user=user if authenticated else None,
        username=_field(user.get_username() if authenticated else "", 150),
        action=_field(action, 200),
        url_name=_field(url_name, 200),
        path=_field(http.path, 500),
        method=_field(http.method, 10),
        outcome=_field(outcome if outcome is not None else (decision.outcome if decision else ""), 16),
        policies=policy_ids,
        policy_version=_field(decision.version if decision else "", 64),
        factor=_field(factor, 16),
        client_ip=str(ip) if ip is not None else None,
        user_agent=_field(http.META.get("HTTP_USER_AGENT"), USER_AGENT_LENGTH),
        roles=_known_roles(http),
        attrs=display_attrs(attrs),
        detail=detail,
    )
    logger.info(
        "stepup %s: user=%s action=%s url=%s method=%s outcome=%s policies=%s ip=%s",
        event,
        row.username or "-",
        row.action or "-",
        row.url_name or "-",
        row.method,
        row.outcome or "-",
        ",".join(policy_ids) or "-",
        row.client_ip or "-",
    )
    _save(row)


def _save(row: Any) -> None:
    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():  # a savepoint: a failed insert can't break the caller's transaction
                row.save()
        else:
            row.save()
    except DatabaseError:
        logger.exception("could not store the stepup %s event", row.event)
