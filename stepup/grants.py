"""What a session has proven, kept server-side in the session.

State under ``request.session["_stepup"]``:

- ``login_at``: when the user logged in (for ``session_age``);
- ``verified``: per factor kind, when it was last verified;
- ``one_shot``: single-request grants, each bound to the digest of one
  (action, URL name, attributes) and consumed by the request it authorizes;
- ``challenges``: pending challenges (what is being authorized, where to go
  back, an interrupted POST to present again), by random id;
- ``epoch`` and ``auth``: the user's grant epoch and session auth hash when
  the grants were made. A grant made before the password changed or a device
  was removed (both bump or change them) is void.

Nothing here is read from the client: a request can't claim verification.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from stepup.conf import conf

SESSION_KEY = "_stepup"
MAX_CHALLENGES = 10


def _state(request: HttpRequest) -> dict[str, Any]:
    state = request.session.get(SESSION_KEY)
    return state if isinstance(state, dict) else {}


def _save(request: HttpRequest, state: dict[str, Any]) -> None:
    request.session[SESSION_KEY] = state
    request.session.modified = True


def now() -> float:
    return time.time()


def grant_epoch(user: AbstractBaseUser) -> int:
    """The user's current grant epoch (one query)."""
    from stepup.models import UserState

    epoch = UserState.objects.filter(user_id=user.pk).values_list("grant_epoch", flat=True).first()
    return int(epoch or 0)


def _auth_hash(user: AbstractBaseUser) -> str:
    return user.get_session_auth_hash()


def attributes_digest(
    action: str | None, url_name: str | None, attributes: Mapping[str, Any]
) -> str:
    """A stable digest of what one request does; single-request grants are bound to it."""
    canonical = json.dumps(
        {
            "action": action,
            "url": url_name,
            "attrs": {str(k): str(v) for k, v in attributes.items()},
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- login ------------------------------------------------------------------


def record_login(request: HttpRequest) -> None:
    """Start a fresh step-up state: the login time, and no grants at all."""
    _save(request, {"login_at": now()})


def session_age(request: HttpRequest) -> float | None:
    login_at = _state(request).get("login_at")
    return max(0.0, now() - float(login_at)) if isinstance(login_at, (int, float)) else None


# --- grants -----------------------------------------------------------------


def _valid_grants(request: HttpRequest, user: AbstractBaseUser) -> dict[str, Any]:
    """The state, with every grant dropped when the epoch or the password changed."""
    state = _state(request)
    if not state.get("verified") and not state.get("one_shot"):
        return state
    if state.get("epoch") != grant_epoch(user) or state.get("auth") != _auth_hash(user):
        state = {k: v for k, v in state.items() if k not in ("verified", "one_shot")}
        _save(request, state)
    return state


def verification_ages(request: HttpRequest, user: AbstractBaseUser) -> dict[str, float]:
    """Seconds since each factor kind was last verified in this session."""
    verified = _valid_grants(request, user).get("verified") or {}
    t = now()
    return {kind: max(0.0, t - float(at)) for kind, at in verified.items()}


def one_shot_kinds(request: HttpRequest, user: AbstractBaseUser, digest: str) -> frozenset[str]:
    """Factor kinds with an unused, unexpired single-request grant for exactly ``digest``."""
    grants = _valid_grants(request, user).get("one_shot") or []
    t = now()
    return frozenset(
        g["kind"] for g in grants if g.get("digest") == digest and g.get("expires", 0) > t
    )


def consume_one_shot(request: HttpRequest, digest: str) -> None:
    """Use up every single-request grant bound to ``digest``."""
    state = _state(request)
    grants = state.get("one_shot") or []
    remaining = [g for g in grants if g.get("digest") != digest]
    if len(remaining) != len(grants):
        state["one_shot"] = remaining
        _save(request, state)


def record_verification(
    request: HttpRequest, user: AbstractBaseUser, kind: str, one_shot_digest: str | None = None
) -> None:
    """Record a successful verification of ``kind`` and rotate the session key.

    With ``one_shot_digest`` a single-request grant bound to that request is
    added too (what ``max_age: 0`` policies need).
    """
    state = _valid_grants(request, user)
    t = now()
    state["epoch"] = grant_epoch(user)
    state["auth"] = _auth_hash(user)
    state.setdefault("verified", {})[kind] = t
    if one_shot_digest:
        grants = [g for g in state.get("one_shot") or [] if g.get("expires", 0) > t]
        grants.append({"digest": one_shot_digest, "kind": kind, "expires": t + conf.ONE_SHOT_TTL})
        state["one_shot"] = grants[-MAX_CHALLENGES:]
    _save(request, state)
    request.session.cycle_key()


def clear(request: HttpRequest) -> None:
    """Forget every grant of this session (the login time stays)."""
    state = _state(request)
    _save(request, {k: v for k, v in state.items() if k not in ("verified", "one_shot")})


def revoke_all(user: AbstractBaseUser) -> None:
    """Void every grant of every session of ``user`` (a device was removed, say)."""
    from django.db.models import F

    from stepup.models import UserState

    state, _ = UserState.objects.get_or_create(user_id=user.pk)
    UserState.objects.filter(pk=state.pk).update(grant_epoch=F("grant_epoch") + 1)


# --- pending challenges -----------------------------------------------------


def save_challenge(request: HttpRequest, challenge: dict[str, Any]) -> str:
    """Remember a pending challenge; return its id (random, not guessable)."""
    state = _state(request)
    challenges: dict[str, Any] = state.get("challenges") or {}
    t = now()
    challenges = {k: v for k, v in challenges.items() if v.get("expires", 0) > t}
    challenge_id = secrets.token_urlsafe(16)
    challenges[challenge_id] = {**challenge, "expires": t + conf.CHALLENGE_TTL}
    state["challenges"] = dict(_newest(challenges, MAX_CHALLENGES))
    _save(request, state)
    return challenge_id


def _newest(challenges: dict[str, Any], limit: int) -> Iterator[tuple[str, Any]]:
    ordered = sorted(challenges.items(), key=lambda item: item[1].get("expires", 0))
    yield from ordered[-limit:]


def get_challenge(request: HttpRequest, challenge_id: str | None) -> dict[str, Any] | None:
    if not challenge_id:
        return None
    challenge = (_state(request).get("challenges") or {}).get(challenge_id)
    if not isinstance(challenge, dict) or challenge.get("expires", 0) <= now():
        return None
    return challenge


def drop_challenge(request: HttpRequest, challenge_id: str) -> None:
    state = _state(request)
    challenges = state.get("challenges") or {}
    if challenges.pop(challenge_id, None) is not None:
        state["challenges"] = challenges
        _save(request, state)
