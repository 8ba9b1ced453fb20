"""Pending challenges made by hand, as enforcement saves them, for the verification tests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from django.test import Client

from stepup import binding, pending

ATTRS = {"amount": "5000", "account": "DE89370400440532013000"}
"""The transfer a one-shot challenge approves by default."""


def challenge_dict(**overrides: Any) -> dict[str, Any]:
    """A one-shot challenge for a transfer of :data:`ATTRS`; ``overrides`` replace its fields."""
    action = overrides.pop("action", "payments.transfer")
    attrs = overrides.pop("attrs", dict(ATTRS))
    data: dict[str, Any] = {
        "action": action,
        "url_name": None,
        "method": "GET",
        "path": "/pay/",
        "attrs": attrs,
        "digest": binding.attributes_digest(action, None, attrs),
        "policies": ["payments-large"],
        "descriptions": ["Transfers over 1000 need a fresh second factor."],
        "max_age": 0,
        "factors": [],
        "one_shot": True,
        "post": None,
        "next": "/pay/",
    }
    data.update(overrides)
    return data


def save_challenge(client: Client, **overrides: Any) -> str:
    """Store a pending challenge (:func:`challenge_dict`) in ``client``'s session; return its id."""
    session = client.session
    request = cast(Any, SimpleNamespace(session=session, user=None))
    challenge_id = pending.save_challenge(request, challenge_dict(**overrides))
    session.save()
    return challenge_id


def session_request(client: Client, user: Any) -> Any:
    """A stand-in request on ``client``'s current session (for reading grants)."""
    return SimpleNamespace(session=client.session, user=user, META={})
