"""Pending challenges: what a refused client is being asked to verify, kept server-side.

A challenge (:class:`stepup.challenge.Challenge`, stored as its dict) belongs
to the client's challenge subject (:func:`stepup.grants.challenge_subject`):
the browser session's, or a keyed hash of an API client's credential. The
client holds only its random id, so it can't change what it is asked for.
"""

from __future__ import annotations

import secrets
from typing import Any

from stepup.conf import conf
from stepup.grants import challenge_subject, now
from stepup.state import state

MAX_CHALLENGES = 10
"""Pending challenges kept per subject (the oldest go first)."""


def save_challenge(request: Any, challenge: dict[str, Any]) -> str:
    """Remember a pending challenge for the request's subject; return its id (random, not guessable)."""
    from stepup.models import PendingChallenge

    user = getattr(request, "user", None)
    found = challenge_subject(request, user, create=True)
    assert found is not None
    t = now()
    challenge_id = secrets.token_urlsafe(16)
    fields = {
        "challenge_id": challenge_id,
        "subject": found,
        "user_id": getattr(user, "pk", None) if getattr(user, "is_authenticated", False) else None,
        "data": challenge,
        "created_at": t,
        "expires_at": t + conf.CHALLENGE_TTL,
    }
    PendingChallenge.objects.filter(subject=found, expires_at__lte=t).delete()
    PendingChallenge.objects.create(**fields)
    request_state = state(request)
    request_state.saved_challenges = (*request_state.saved_challenges, fields)
    kept = PendingChallenge.objects.filter(subject=found).order_by("-created_at", "-pk")
    stale = list(kept.values_list("pk", flat=True)[MAX_CHALLENGES:])
    if stale:
        PendingChallenge.objects.filter(pk__in=stale).delete()
    return challenge_id


def keep_saved_challenges(request: Any) -> None:
    """Save again the challenges of this request that a rollback undid.

    DRF's exception handler rolls back the request's transaction under
    ``ATOMIC_REQUESTS``, and with it the challenge a ``401`` points at. The
    middleware calls this once the view (and its transaction) is done; a
    request that saved no challenge costs nothing.
    """
    from stepup.models import PendingChallenge

    request_state = state(request)
    saved = request_state.saved_challenges
    if not saved:
        return
    request_state.saved_challenges = ()
    ids = [fields["challenge_id"] for fields in saved]
    present = set(
        PendingChallenge.objects.filter(challenge_id__in=ids).values_list("challenge_id", flat=True)
    )
    missing = [PendingChallenge(**fields) for fields in saved if fields["challenge_id"] not in present]
    if missing:
        PendingChallenge.objects.bulk_create(missing)


def get_challenge(request: Any, challenge_id: str | None) -> dict[str, Any] | None:
    """The pending challenge ``challenge_id`` of this request's subject, unless expired."""
    from stepup.models import PendingChallenge

    found = challenge_subject(request)
    if not challenge_id or found is None:
        return None
    row = PendingChallenge.objects.filter(
        challenge_id=challenge_id, subject=found, expires_at__gt=now()
    ).first()
    # Compared again here: a case-insensitive collation (MySQL's, MariaDB's) finds "aBc" for "AbC".
    if row is None or row.challenge_id != challenge_id or not isinstance(row.data, dict):
        return None
    user = getattr(request, "user", None)
    if row.user_id is not None and user is not None and getattr(user, "pk", None) != row.user_id:
        return None
    return {**row.data, "expires": row.expires_at}


def drop_challenge(request: Any, challenge_id: str) -> None:
    from stepup.models import PendingChallenge

    found = challenge_subject(request)
    if found is not None:
        PendingChallenge.objects.filter(challenge_id=challenge_id, subject=found).delete()
