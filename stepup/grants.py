"""What a client has proven, stored server-side per *grant subject*.

Grant subjects
--------------

Grants (when each factor kind was last verified, single-request grants) and
pending challenges belong to a *grant subject*, the server-side identity of
one client:

- a browser, or any request authenticated by its session: a random id kept in
  the session (``request.session["_stepup"]["subject"]``). It is not the
  session key; like the key, it is new at every login and at every
  verification (the grants move to the new id), so a copy of the session
  cookie taken before a verification carries none of its grants, even with a
  session backend that can't revoke old cookies (``signed_cookies``).
- an API client authenticated by an ``Authorization`` header (HTTP Basic,
  DRF's ``TokenAuthentication``, a JWT, …) rather than by the session: a
  *step-up token*. A successful verification hands the client a new random
  token (``stepup_token`` in ``api-verify``'s answer); the client sends it
  back in the ``StepUp-Token`` header, and its grants belong to a keyed hash
  (HMAC-SHA256 with ``SECRET_KEY``) of that token. The ``Authorization``
  header may be the same for many clients (with Basic it *is* the password;
  a long-lived API key is shared by every copy of a script), so a grant is
  never keyed on it: another client holding the same credential but not the
  step-up token inherits nothing. Like a session's id, the token is new at
  every verification (the grants move to it) and is never stored.

  A pending challenge of such a client (what a ``401`` asked for) belongs to
  a keyed hash of the ``Authorization`` header, since the client has no
  step-up token yet when it is refused; a challenge proves nothing.

Storage
-------

Grants live in the database (:class:`stepup.models.Grant`,
:class:`stepup.models.PendingChallenge`), not in the session and not in the
cache: they are security state that must be the same for every process, that
commits or rolls back with the request that made it, and that no cache
eviction or flush may silently restore or lose. The database also makes
single use real: a single-request grant is used up with a conditional
``UPDATE … WHERE used_at IS NULL``, so of two parallel requests only one can
use it (a session's last write would let both).

A grant counts only for its user, only until it expires, and only while the
user's grant epoch (bumped when a device is removed) and password (a digest
of the session auth hash) are unchanged. Logging out deletes the subject's
grants and challenges; logging in starts a new subject.

Nothing here is read from the client: a request can't claim verification.
Reads cost at most one query per request (cached on the request); a request
whose subject has no id yet costs none, and neither does one whose lasting
grants this process read a moment ago, while Redis carries the notices that
void them (:mod:`stepup.grant_cache`: every function here that deletes,
moves, uses or gives back a grant calls :func:`stepup.grant_cache.changed`).

Why one module of about 550 lines: recording, reading and voiding grants must
agree on the subject, the epoch and the password digest; they stay together
so that a change to one is reviewed beside the others.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connections, router, transaction
from django.db.models import QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils.crypto import salted_hmac

from stepup import grant_cache
from stepup.conf import conf
from stepup.state import state

SESSION_KEY = "_stepup"
MAX_ONE_SHOT = 10
"""Unused single-request grants kept per subject (the oldest go first)."""

_SUBJECT_SALT = "stepup.grants.subject"
_SESSION_PREFIX = "s:"
_CREDENTIAL_PREFIX = "c:"
_TOKEN_PREFIX = "t:"
TOKEN_HEADER = "StepUp-Token"
"""The request header a client authenticated by ``Authorization`` sends its step-up token in."""
TOKEN_META = "HTTP_" + TOKEN_HEADER.upper().replace("-", "_")
"""Its key in ``request.META``."""
_TOKEN_FORMAT = re.compile(r"[A-Za-z0-9_-]{43}")


def now() -> float:
    return time.time()


# --- the session part: login time and the subject id -------------------------------


def _state(request: Any) -> dict[str, Any]:
    session = getattr(request, "session", None)
    state = session.get(SESSION_KEY) if session is not None else None
    return dict(state) if isinstance(state, dict) else {}


def _save(request: Any, state: dict[str, Any]) -> None:
    request.session[SESSION_KEY] = state
    request.session.modified = True


def _new_session_subject() -> str:
    return _SESSION_PREFIX + secrets.token_urlsafe(32)


def record_login(request: Any) -> None:
    """Start a fresh step-up state: the login time, a new subject, and no grants at all."""
    _delete_subject(_session_subject(request))
    _save(request, {"login_at": now(), "subject": _new_session_subject()})
    _invalidate(request)


def session_age(request: Any, user: Any = None) -> float | None:
    """Seconds since the session's login; ``None`` when unknown.

    Unknown for a request without a session login, and for one authenticated
    by an API credential rather than by its session (a token has no login time).
    """
    if not uses_session(request, user):
        return None
    login_at = _state(request).get("login_at")
    return max(0.0, now() - float(login_at)) if isinstance(login_at, (int, float)) else None


# --- which subject --------------------------------------------------------------------


def _user_of(request: Any, user: Any) -> Any:
    return user if user is not None else getattr(request, "user", None)


def _session_subject(request: Any) -> str | None:
    session = getattr(request, "session", None)
    found = session.get(SESSION_KEY) if session is not None else None
    subject = found.get("subject") if isinstance(found, dict) else None
    return subject if isinstance(subject, str) and subject.startswith(_SESSION_PREFIX) else None


def _credential(request: Any, user: Any) -> str | None:
    """The ``Authorization`` header when it, not the session, authenticates ``user``."""
    meta = getattr(request, "META", None) or {}
    header = meta.get("HTTP_AUTHORIZATION")
    if not isinstance(header, str) or not header.strip():
        return None
    session = getattr(request, "session", None)
    session_user = session.get(AUTH_SESSION_KEY) if session is not None else None
    pk = getattr(user, "pk", None)
    if session_user is not None and pk is not None and str(session_user) == str(pk):
        return None  # the session authenticates this very user: the browser's subject
    return header


def uses_session(request: Any, user: Any = None) -> bool:
    """Whether the request's grants belong to its session (rather than to an API credential)."""
    return _credential(request, _user_of(request, user)) is None


def _keyed(prefix: str, secret: str) -> str:
    return prefix + salted_hmac(_SUBJECT_SALT, secret, algorithm="sha256").hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def presented_token(request: Any) -> str | None:
    """The step-up token in the request's ``StepUp-Token`` header, if well-formed."""
    meta = getattr(request, "META", None) or {}
    token = meta.get(TOKEN_META)
    return token if isinstance(token, str) and _TOKEN_FORMAT.fullmatch(token) else None


def subject(request: Any, user: Any = None, *, create: bool = False) -> str | None:
    """The grant subject of ``request`` (see the module doc): whose grants it may use.

    :param user: the authenticated user, when it is not ``request.user`` (DRF
        sets both).
    :param create: give a session that has no subject id yet a new one
        (writes the session); otherwise such a session has no subject. A
        client authenticated by a credential gets its subject only from a
        verification (:func:`record_verification`).
    """
    if _credential(request, _user_of(request, user)) is not None:
        token = presented_token(request)
        return _keyed(_TOKEN_PREFIX, token) if token is not None else None
    return _session_subject_of(request, create)


def challenge_subject(request: Any, user: Any = None, *, create: bool = False) -> str | None:
    """Whose pending challenges ``request`` may see: the session's, or its credential's."""
    credential = _credential(request, _user_of(request, user))
    if credential is not None:
        return _keyed(_CREDENTIAL_PREFIX, credential)
    return _session_subject_of(request, create)


def _session_subject_of(request: Any, create: bool) -> str | None:
    found = _session_subject(request)
    if found is None and create:
        if getattr(request, "session", None) is None:
            raise RuntimeError(
                "stepup can't record a grant: the request has neither a session nor an "
                "Authorization credential (is SessionMiddleware installed?)"
            )
        found = _new_session_subject()
        _save(request, {**_state(request), "subject": found})
    return found


# --- validity -------------------------------------------------------------------------


def grant_epoch(user: AbstractBaseUser) -> int:
    """The user's current grant epoch (one query)."""
    from stepup.models import UserState

    epoch = UserState.objects.filter(user_id=user.pk).values_list("grant_epoch", flat=True).first()
    return int(epoch or 0)


def _auth_digest(user: AbstractBaseUser) -> str:
    """A digest of the session auth hash: it changes when the password does."""
    return hashlib.sha256(user.get_session_auth_hash().encode()).hexdigest()


def _verification_ttl() -> float:
    """How long a verification is kept: a session can't outlive ``SESSION_COOKIE_AGE`` either."""
    return float(settings.SESSION_COOKIE_AGE)


# --- reading grants (cached per request) ------------------------------------------------


@dataclass(frozen=True)
class _Row:
    pk: int
    kind: str
    digest: str
    verified_at: float
    expires_at: float


@dataclass(frozen=True)
class _Loaded:
    subject: str
    user_id: Any
    auth: str
    rows: tuple[_Row, ...]
    password: str | None  # the password hash ``auth`` was worked out from, when only it counts
    one_shot: bool  # any single-request grant among the rows (expired since, perhaps)


def _invalidate(request: Any) -> None:
    state(request).grants = None


def _load(request: Any, user: AbstractBaseUser) -> tuple[_Row, ...]:
    """The subject's valid, unused grants for ``user``: one query, then cached on the request."""
    if not getattr(user, "is_authenticated", False):
        return ()
    found = subject(request, user)
    if found is None:
        return ()
    cached = state(request).grants
    if (
        cached is not None
        and cached.subject == found
        and cached.user_id == user.pk
        and _same_auth(cached, user)
    ):
        return cached.rows
    auth = _auth_digest(user)
    key = (found, user.pk, auth)
    made_under = grant_cache.generation()
    rows = grant_cache.get(key, made_under)
    if rows is None:
        rows = tuple(_Row(*row) for row in valid_grants(found, user.pk, auth, now()))
        one_shot = any(r.digest for r in rows)
        if not one_shot:
            grant_cache.put(key, made_under, rows)
    else:
        one_shot = False  # only lasting grants are kept
    password = user.password if _auth_is_the_password(user) else None
    state(request).grants = _Loaded(found, user.pk, auth, rows, password, one_shot)
    return rows


def _auth_is_the_password(user: AbstractBaseUser) -> bool:
    """Whether the session auth hash depends on the password hash alone (Django's own)."""
    own = user.__class__.get_session_auth_hash is AbstractBaseUser.get_session_auth_hash
    return own and isinstance(getattr(user, "password", None), str)


def _same_auth(cached: _Loaded, user: AbstractBaseUser) -> bool:
    """Whether the grants were read under the user's current password (an HMAC only when it must)."""
    if cached.password is not None and _auth_is_the_password(user):
        return cached.password == user.password
    return cached.auth == _auth_digest(user)


def valid_grants(subject: str, user_id: Any, auth: str, at: float) -> list[tuple[Any, ...]]:
    """``(pk, kind, digest, verified_at, expires_at)`` of the subject's unused grants valid at ``at``.

    Valid: for this user, made under this ``auth`` digest and under the
    user's current grant epoch, not used, not expired. One statement, the
    same as :func:`valid_grants_queryset` but written once per database
    (:func:`_grants_sql`) rather than compiled by the ORM on every request
    (about 1.2 ms of a protected request, against 0.07 ms to run it).
    """
    from stepup.models import Grant

    alias = router.db_for_read(Grant)
    with connections[alias].cursor() as cursor:
        cursor.execute(_grants_sql(alias, connections[alias].vendor), [subject, user_id, auth, at, user_id])
        rows = cursor.fetchall()
    return [(pk, kind, digest, float(at), float(until)) for pk, kind, digest, at, until in rows]


def valid_grants_queryset(subject: str, user_id: Any, auth: str, at: float) -> QuerySet[Any]:
    """:func:`valid_grants` through the ORM: what the hand-written statement must equal (tests)."""
    from stepup.models import Grant, UserState

    epoch = UserState.objects.filter(user_id=user_id).values("grant_epoch")[:1]
    return (
        Grant.objects.filter(
            subject=subject,
            user_id=user_id,
            auth=auth,
            used_at__isnull=True,
            expires_at__gt=at,
            epoch=Coalesce(Subquery(epoch), Value(0)),
        )
        .order_by("pk")
        .values_list("pk", "kind", "digest", "verified_at", "expires_at")
    )


@lru_cache(maxsize=16)
def _grants_sql(alias: str, vendor: str) -> str:
    """The statement of :func:`valid_grants` for one database, with its own quoting of names.

    Only table and column names from the models go into the text; every value is a parameter.
    """
    from stepup.models import Grant, UserState

    quote = connections[alias].ops.quote_name

    def name(model: Any, field: str | None = None) -> str:
        table = quote(model._meta.db_table)
        return table if field is None else f"{table}.{quote(model._meta.get_field(field).column)}"

    g = functools.partial(name, Grant)
    columns = ", ".join(g(field) for field in ("id", "kind", "digest", "verified_at", "expires_at"))
    epoch = (
        f"SELECT {name(UserState, 'grant_epoch')} FROM {name(UserState)} WHERE {name(UserState, 'user')} = %s"  # noqa: S608
    )
    conditions = [
        f"{g('subject')} = %s",
        f"{g('user')} = %s",
        f"{g('auth')} = %s",
        f"{g('used_at')} IS NULL",
        f"{g('expires_at')} > %s",
        f"{g('epoch')} = COALESCE(({epoch}), 0)",
    ]
    return f"SELECT {columns} FROM {g()} WHERE {' AND '.join(conditions)} ORDER BY {g('id')}"  # noqa: S608


def _live(rows: Iterable[_Row]) -> list[_Row]:
    t = now()
    return [r for r in rows if r.expires_at > t]


def verification_ages(request: Any, user: AbstractBaseUser) -> dict[str, float]:
    """Seconds since each factor kind was last verified by this subject."""
    t = now()
    ages: dict[str, float] = {}
    for row in _live(_load(request, user)):
        if not row.digest:
            age = max(0.0, t - row.verified_at)
            ages[row.kind] = min(age, ages.get(row.kind, age))
    return ages


def holds_one_shot(request: Any, user: AbstractBaseUser) -> bool:
    """Whether the subject may hold an unused single-request grant (``False``: surely not)."""
    loaded = state(request).grants
    if loaded is not None and loaded.user_id == user.pk and not loaded.one_shot:
        # What was read for this user holds none. Answering "none" without checking that the
        # subject is still the one read can only refuse more, never allow more.
        return False
    if not _load(request, user):
        return False
    loaded = state(request).grants
    return loaded is None or loaded.one_shot


def one_shot_kinds(request: Any, user: AbstractBaseUser, digest: str) -> frozenset[str]:
    """Factor kinds with an unused, unexpired single-request grant for exactly ``digest``."""
    return frozenset(r.kind for r in _bound_to(request, user, digest))


def _bound_to(request: Any, user: AbstractBaseUser, digest: str) -> list[_Row]:
    """The subject's unused, unexpired single-request grants for exactly ``digest``.

    An empty ``digest`` binds nothing (a lasting grant's digest is empty): none.
    """
    if not digest:
        return []
    return [r for r in _live(_load(request, user)) if r.digest == digest]


# --- using single-request grants ------------------------------------------------------------


def consume_one_shot(request: Any, digest: str, user: Any = None) -> tuple[int, ...]:
    """Use up the unused single-request grants bound to ``digest``; return the ids used.

    Each grant is used with a conditional ``UPDATE`` (``used_at IS NULL``), so
    a grant a parallel request used first is not counted: an empty result
    means nothing was left to authorize the request.
    """
    from stepup.models import Grant

    user = _user_of(request, user)
    if user is None or not getattr(user, "is_authenticated", False):
        return ()
    candidates = [r.pk for r in _bound_to(request, user, digest)]
    used: list[int] = []
    t = now()
    for pk in candidates:
        if Grant.objects.filter(pk=pk, used_at__isnull=True).update(used_at=t) == 1:
            used.append(pk)
    if used:
        grant_cache.changed()
    _invalidate(request)
    return tuple(used)


def restore_one_shot(request: Any, ids: Iterable[int]) -> None:
    """Give back grants :func:`consume_one_shot` used for a request that did not go through."""
    from stepup.models import Grant

    ids = list(ids)
    if ids:
        Grant.objects.filter(pk__in=ids).update(used_at=None)
        grant_cache.changed()
    _invalidate(request)


# --- recording ------------------------------------------------------------------------------


def record_verification(
    request: Any, user: AbstractBaseUser, kind: str, one_shot_digest: str | None = None
) -> str | None:
    """Record a successful verification of ``kind`` for the request's subject.

    With ``one_shot_digest`` a single-request grant bound to that request is
    added too (what ``max_age: 0`` policies need). The subject is renewed and
    the grants move to the new one: a browser's session gets a new subject
    id and its session key is rotated; a client authenticated by a
    credential gets a new step-up token, which is returned (``None`` for a
    session).
    """
    from stepup.models import Grant

    session_bound = uses_session(request, user)
    token = None if session_bound else _new_token()
    t = now()
    common = {
        "user_id": user.pk,
        "kind": kind,
        "verified_at": t,
        "epoch": grant_epoch(user),
        "auth": _auth_digest(user),
    }
    with transaction.atomic():
        if token is None:
            current = subject(request, user, create=True)
            assert current is not None  # a session always gets one
            found = _rotate_subject(request, current)
        else:
            found = _keyed(_TOKEN_PREFIX, token)
            previous = subject(request, user)
            if previous is not None:
                Grant.objects.filter(subject=previous, user_id=user.pk).update(subject=found)
        Grant.objects.filter(subject=found, user_id=user.pk, kind=kind, digest="").delete()
        rows = [Grant(**common, subject=found, expires_at=t + _verification_ttl())]
        if one_shot_digest:
            one_shot_until = t + conf.ONE_SHOT_TTL
            rows.append(Grant(**common, subject=found, digest=one_shot_digest, expires_at=one_shot_until))
        Grant.objects.bulk_create(rows)
        _trim_one_shot(found)
        prune(t)
        grant_cache.changed()  # the grants left the old subject
    _invalidate(request)
    if session_bound:
        request.session.cycle_key()
    return token


def _rotate_subject(request: Any, old: str) -> str:
    """Give the session a new subject id and move the old one's grants and challenges to it.

    The session key rotates too, but a cookie-held session (``signed_cookies``)
    can't be revoked: a copy of the cookie from before this verification would
    still carry the old id. With a new one, it carries no grant at all.
    """
    from stepup.models import Grant, PendingChallenge

    new = _new_session_subject()
    Grant.objects.filter(subject=old).update(subject=new)
    PendingChallenge.objects.filter(subject=old).update(subject=new)
    _save(request, {**_state(request), "subject": new})
    return new


def _trim_one_shot(found: str) -> None:
    from stepup.models import Grant

    unused = Grant.objects.filter(subject=found, used_at__isnull=True).exclude(digest="")
    stale = list(unused.order_by("-verified_at", "-pk").values_list("pk", flat=True)[MAX_ONE_SHOT:])
    if stale:
        Grant.objects.filter(pk__in=stale).delete()


def prune(at: float | None = None, using: str = "default", dry_run: bool = False) -> int:
    """Delete every expired grant and challenge, of every subject; return how many rows (would) go."""
    from stepup.models import Grant, PendingChallenge

    t = now() if at is None else at
    expired = [model.objects.using(using).filter(expires_at__lte=t) for model in (Grant, PendingChallenge)]
    if dry_run:
        return sum(query.count() for query in expired)
    return sum(query.delete()[0] for query in expired)


def clear(request: Any) -> None:
    """Forget every grant of this request's subject (the login time and challenges stay)."""
    from stepup.models import Grant

    found = subject(request)
    if found is not None:
        Grant.objects.filter(subject=found).delete()
        grant_cache.changed()
    _invalidate(request)


def forget(request: Any) -> None:
    """Delete everything of this request's subject: grants and pending challenges (logout)."""
    _delete_subject(subject(request))
    _invalidate(request)


def _delete_subject(found: str | None) -> None:
    from stepup.models import Grant, PendingChallenge

    if found is not None:
        Grant.objects.filter(subject=found).delete()
        PendingChallenge.objects.filter(subject=found).delete()
        grant_cache.changed()


def revoke_all(user: AbstractBaseUser) -> None:
    """Void every grant of ``user``, for every subject (a device was removed, say)."""
    from django.db.models import F

    from stepup.models import Grant, UserState

    state, _ = UserState.objects.get_or_create(user_id=user.pk)
    UserState.objects.filter(pk=state.pk).update(grant_epoch=F("grant_epoch") + 1)
    Grant.objects.filter(user_id=user.pk).delete()
    grant_cache.changed()
