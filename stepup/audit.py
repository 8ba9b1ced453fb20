"""The decision log: one helper that stores an event and logs it to the ``stepup`` logger.

Enforcement records ``allowed``, ``challenged``, ``denied`` and ``shadow``
events; the verification flow records ``verified``, ``failed`` and
``locked``. Attribute values are stored as strings and anything that looks
like a secret (a password, token, OTP, CSRF token, key …) is redacted: the log
never holds one.

An ``allowed`` row is sampled, buffered and written in batches after the
response (:mod:`stepup.allowed_log`); every other event is written as it
happens.

A decision row (``allowed``, ``challenged``, ``denied``) also stores the facts
it was made on (:func:`decision_facts`): the roles, and in ``facts`` the URL
name the decision covered, the session age, the verification age of each
factor kind and the single-request grants, so that ``stepup plan --replay``
can decide it again under other policies.

Policy history: every historical record of a :class:`~stepup.models.Policy`
without a change reason gets one here (:func:`default_change_reason`) naming the
program and OS user that saved it, so a change made from a shell is never
anonymous.
"""

from __future__ import annotations

import functools
import getpass
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, router, transaction
from django.http import HttpRequest
from django.utils import timezone

from stepup import allowed_log
from stepup.conf import conf
from stepup.context import client_ip, flag_roles, http_request, request_user
from stepup.context import url_name as route_name
from stepup.policy.engine import ANY_METHOD
from stepup.policy.model import Decision
from stepup.state import state

if TYPE_CHECKING:
    from stepup.context import RequestContext

logger = logging.getLogger("stepup")

REDACTED = "[redacted]"
USER_AGENT_LENGTH = 300
CSRF_FIELD = "csrfmiddlewaretoken"

_SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
    "csrf",
    "credential",
    "apikey",
)
"""Secret wherever they appear between a name's separators (``newpassword``, ``x_APIKey``)."""
_SECRET_TERMS = frozenset(
    {
        *("pass", "pw", "pin", "pincode", "otp", "totp", "hotp", "key", "privatekey", "jwt"),
        *("cvv", "cvc", "cvn", "csc", "securitycode", "cardcode", "ssn", "pan"),
        *("cardnumber", "cardnum", "cardno", "ccnum", "ccnumber", "ccno", "creditcard"),
        *("authcode", "verificationcode", "backupcode", "recoverycode"),
    }
)
"""Secret as one or more whole words of a name: ``pw`` in ``user[pw]``, ``card number`` in ``cardNumber``.

An account number or IBAN is not a secret: it is what the user is approving, and is shown.
"""
_RUNS = re.compile(r"[^\W_]+")
_ASCII_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def name_words(name: str) -> list[str]:
    """The words of a field name, lower-case: ``newPassword`` and ``user[new-password]2`` alike.

    Words are split at anything but letters and digits and, in ASCII, at
    camelCase and between letters and digits (``cvv2`` is ``cvv``, ``2``).
    """
    return _words(_RUNS.findall(name))


def _words(runs: list[str]) -> list[str]:
    words: list[str] = []
    for run in runs:
        words.extend(_ASCII_WORDS.findall(run) if run.isascii() else [run])
    return [word.lower() for word in words]


@functools.lru_cache(maxsize=8)
def _terms(extra: tuple[str, ...]) -> tuple[frozenset[str], int]:
    terms = _SECRET_TERMS | {"".join(name_words(term)) for term in extra} - {""}
    return terms, max(len(term) for term in terms)


def is_secret_name(name: str) -> bool:
    """Whether a field or attribute name looks like it holds a secret.

    It does when a part between separators contains a secret word
    (``password``, ``token`` …), or when one or more of its words in a row
    spell a secret term (``pw``, ``pin``, ``cvv``, ``card number`` …) or a
    name in ``STEPUP["SECRET_FIELDS"]``.
    """
    extra = conf.SECRET_FIELDS
    if len(name) > _CACHED_NAME_LENGTH:  # a posted form's field names are anyone's: never cache a long one
        return _is_secret_name(name, extra)
    return _is_secret_name_cached(name, extra)


_CACHED_NAME_LENGTH = 80


def _is_secret_name(name: str, extra: tuple[str, ...]) -> bool:
    runs = _RUNS.findall(name)
    if any(secret in run.lower() for run in runs for secret in _SECRET_WORDS):
        return True
    words = _words(runs)
    terms, longest = _terms(extra)
    for start in range(len(words)):
        joined = ""
        for word in words[start:]:
            joined += word
            if len(joined) > longest:
                break
            if joined in terms:
                return True
    return False


_is_secret_name_cached = functools.lru_cache(maxsize=2048)(_is_secret_name)
"""Every attribute of a logged decision is asked about: the answer, remembered by name and settings."""


def split_secrets(fields: Mapping[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """A form's fields without the secret-looking ones, and their names, once per value.

    The CSRF token is dropped: a page that posts the form again brings its own.
    """
    kept: dict[str, list[str]] = {}
    secrets: list[str] = []
    for name, values in fields.items():
        if name == CSRF_FIELD:
            continue
        if is_secret_name(name):
            secrets.extend(name for _ in values)
        else:
            kept[name] = values
    return kept, secrets


def display_attrs(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """Attributes as ``str -> str``, secrets redacted: what is shown to users and logged."""
    return {str(k): REDACTED if is_secret_name(str(k)) else str(v) for k, v in (attributes or {}).items()}


def _field(value: object, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


DECISION_EVENTS = ("allowed", "challenged", "denied")
"""Events that record one enforced decision, with the facts it was made on."""

_LOG_LEVELS = {"allowed": logging.DEBUG, "locked": logging.WARNING}
"""``stepup`` logger level per event; INFO for the others."""


def decision_facts(
    context: RequestContext,
    url: str | None,
    digest: str | Callable[[], str],
    spent: Iterable[str] = (),
    *,
    groups_later: bool = False,
) -> dict[str, Any]:
    """``roles`` and ``facts`` for :func:`record_event`: what a decision was made on.

    Reads the roles and the step-up grants (a query each only when the
    decision itself did not need them).

    :param url: the URL name the decision included (``None`` when its URL
        policies were enforced earlier in the request).
    :param digest: the request digest single-request grants are bound to (or a
        function giving it, called only when the subject holds such grants).
    :param spent: factor kinds of the single-request grants the decision used
        up (no longer readable from the grants).
    :param groups_later: when the decision did not load the roles, give the
        roles from the user's flags alone and leave the group names to be
        added when the row is written (``groups_of``, an allowed row: see
        :mod:`stepup.allowed_log`), instead of a query now.
    """
    facts: dict[str, Any] = {
        "url": url,
        "session_age": _rounded(context.session_age),
        "verified": {kind: _rounded(age) for kind, age in sorted(context.verified.items())},
        "one_shot": sorted({*context.one_shot(digest), *spent}),
    }
    if context.method == ANY_METHOD:
        facts["method"] = ANY_METHOD  # matched as every method (see stepup.context.matching_method)
    if groups_later and not context.roles.loaded:
        return {"roles": sorted(flag_roles(context.user)), "facts": facts, "groups_of": context.user}
    return {"roles": sorted(context.roles()), "facts": facts}


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds), 3)


def _known_roles(request: HttpRequest) -> list[str]:
    """The roles if this request already loaded them (never a query just for the log)."""
    context = state(request).context
    return sorted(context.roles()) if context is not None and context.roles.loaded else []


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
    roles: Iterable[str] | None = None,
    facts: Mapping[str, Any] | None = None,
    groups_of: Any = None,
) -> None:
    """Store one event in :class:`~stepup.models.DecisionLog` and log it.

    :param request: the request the event happened on (a DRF ``Request`` works too).
    :param event: one of ``DecisionLog.EVENTS`` (``challenged``, ``verified``,
        ``failed``, ``locked``, ``denied``, ``shadow``, ``allowed``).
    :param user: defaults to ``request.user``.
    :param url_name: defaults to the request's URL name.
    :param decision: fills ``outcome``, ``policies`` and ``policy_version`` unless given;
        without one, ``policy_version`` is the version of the policy set in force.
    :param attrs: transaction attributes; stored as strings with secrets redacted.
    :param roles: the user's roles; by default those the request already loaded (no query).
    :param facts: for decision events, see :func:`decision_facts`.
    :param groups_of: a user whose group names ``roles`` still lacks; added
        when the row is written (``allowed`` rows only).

    An ``allowed`` row is buffered and written in a batch after the response
    (:mod:`stepup.allowed_log`); every other event is written at once. A
    database error is logged and swallowed: the log must not turn a refused
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
    context = state(http).context
    ip = context.origin if context is not None and context.request is http else client_ip(http)
    fields: dict[str, Any] = {
        "created_at": timezone.now(),
        "event": event,
        "user": user if authenticated else None,
        "username": _field(user.get_username() if authenticated else "", 150),
        "action": _field(action, 200),
        "url_name": _field(url_name, 200),
        "path": _field(http.path, 500),
        "method": _field(http.method, 10),
        "outcome": _field(outcome if outcome is not None else (decision.outcome if decision else ""), 16),
        "policies": policy_ids,
        "policy_version": _field(decision.version if decision else _version_in_force(), 64),
        "factor": _field(factor, 16),
        "client_ip": str(ip) if ip is not None else None,
        "user_agent": _field(http.META.get("HTTP_USER_AGENT"), USER_AGENT_LENGTH),
        "roles": sorted(roles) if roles is not None else _known_roles(http),
        "attrs": display_attrs(attrs),
        "detail": detail,
        "facts": dict(facts) if facts is not None else None,
    }
    logger.log(
        _LOG_LEVELS.get(event, logging.INFO),
        "stepup %s: user=%s action=%s url=%s method=%s outcome=%s policies=%s ip=%s",
        event,
        fields["username"] or "-",
        fields["action"] or "-",
        fields["url_name"] or "-",
        fields["method"],
        fields["outcome"] or "-",
        ",".join(policy_ids) or "-",
        fields["client_ip"] or "-",
    )
    if event == "allowed":
        allowed_log.add(fields, groups_of=groups_of)  # the row is made and written after the response
    else:
        _save(DecisionLog(**fields), http)


def _version_in_force() -> str:
    """The version of the policy set in force, or ``""`` when none can be loaded."""
    from stepup.exceptions import PolicyStoreUnavailable
    from stepup.store import get_policy_set

    try:
        return get_policy_set().version
    except PolicyStoreUnavailable:
        return ""


def _save(row: Any, request: HttpRequest) -> None:
    """Store ``row`` now, or, inside a transaction the request may still roll back, once it is over.

    With ``ATOMIC_REQUESTS`` a view runs in a transaction that Django rolls
    back when the view raises (``enforce()`` refusing deep inside it) and
    DRF's exception handler marks for rollback on any refusal: a row written
    there would be lost with it, and a security log must not lose denials.
    So when :class:`~stepup.middleware.StepUpMiddleware` wraps the request
    (:func:`defer_rows`) and a transaction is open, the row is kept on the
    request: written right after that transaction commits (``on_commit``), or,
    if it rolls back, by the middleware once the view is done
    (:func:`write_deferred_rows`). Each row is written exactly once.
    """
    from stepup.models import DecisionLog

    alias = router.db_for_write(DecisionLog)
    if not connections[alias].in_atomic_block or not getattr(request, DEFER_ATTR, False):
        _write(row, alias)
        return
    pending = state(request)
    if pending.deferred_rows is None:
        pending.deferred_rows = []
    deferred = pending.deferred_rows
    deferred.append(row)

    def committed() -> None:
        for index, waiting in enumerate(deferred):
            if waiting is row:
                del deferred[index]
                _write(row, alias)
                return

    transaction.on_commit(committed, using=alias)


def _write(row: Any, alias: str) -> None:
    try:
        if connections[alias].in_atomic_block:
            # A savepoint: a failed insert can't break the caller's transaction.
            with transaction.atomic(using=alias):
                row.save(using=alias)
        else:
            row.save(using=alias)
    except DatabaseError:
        logger.exception("could not store the stepup %s event", row.event)


DEFER_ATTR = "_stepup_defers_rows"
"""Set on a request the middleware wraps: rows written in its transaction wait (see :func:`_save`)."""


def defer_rows(request: HttpRequest) -> None:
    """Keep this request's rows written inside a transaction until it is over (see :func:`_save`).

    Only a flag: nothing is allocated for the many requests that write no row.
    """
    setattr(request, DEFER_ATTR, True)


def write_deferred_rows(request: HttpRequest) -> None:
    """Write the rows whose transaction rolled back (the middleware calls this after the view)."""
    setattr(request, DEFER_ATTR, False)  # a row after this point is written as it comes
    pending = state(request)
    deferred = pending.deferred_rows or []
    pending.deferred_rows = None
    rows = list(deferred)
    deferred.clear()  # a commit callback that runs later finds nothing left to write
    if not rows:
        return
    from stepup.models import DecisionLog

    alias = router.db_for_write(DecisionLog)
    for row in rows:
        row.pk = None  # a rolled-back insert may have set one
        _write(row, alias)


# --- retention ------------------------------------------------------------------------

PRUNE_BATCH_SIZE = 10_000


def prune_log(
    before: datetime, *, using: str = "default", batch_size: int = PRUNE_BATCH_SIZE, dry_run: bool = False
) -> int:
    """Delete decision-log rows created before ``before``, ``batch_size`` rows per statement.

    Each batch is its own short transaction (outside an atomic block), so
    pruning millions of rows never holds a long lock. Returns how many rows
    were (or, with ``dry_run``, would be) deleted.
    """
    from stepup.models import DecisionLog

    old = DecisionLog.objects.using(using).filter(created_at__lt=before).order_by()
    if dry_run:
        return old.count()
    total = 0
    while True:
        batch = list(old.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return total
        # A plain DELETE: QuerySet.delete() would load every row to send post_delete signals.
        total += DecisionLog.objects.using(using).filter(pk__in=batch)._raw_delete(using)


# --- policy history ------------------------------------------------------------------


def default_change_reason() -> str:
    """The change reason of a policy saved without one: which program, as which OS user.

    The admin and ``stepup sync`` always give a reason; anything else (a shell,
    a data migration, a custom view) gets this one, so the history says where
    the change came from even when no Django user is known.
    """
    program = _program()
    try:
        os_user = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in this environment
        os_user = "unknown"
    return f"no reason given: saved outside the admin and `stepup sync` ({program}, OS user {os_user})"


def _program() -> str:
    """The running program, e.g. ``manage.py shell`` (no other arguments: they may hold secrets)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name in ("manage.py", "django-admin") and len(sys.argv) > 1 and sys.argv[1].isidentifier():
        return f"{name} {sys.argv[1]}"  # a Django command name
    return name


def _fill_change_reason(sender: Any, history_instance: Any = None, **kwargs: Any) -> None:
    if history_instance is not None and not getattr(history_instance, "history_change_reason", None):
        history_instance.history_change_reason = default_change_reason()


def connect_history_receivers() -> None:
    """Give every policy history record a reason (called from ``AppConfig.ready``)."""
    from simple_history.signals import pre_create_historical_record

    from stepup.models import Policy

    pre_create_historical_record.connect(
        _fill_change_reason,
        sender=Policy.history.model,
        dispatch_uid="stepup.policy_change_reason",
    )
