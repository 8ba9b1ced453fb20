"""What stepup keeps on one request while it is handled: :class:`RequestState`, reached by :func:`state`.

One private attribute on the ``HttpRequest`` holds it (a DRF ``Request``
shares the one of the request it wraps), so the modules that need to
remember something for the rest of the request agree on one typed place.
Attributes stamped on *views* (``stepup_action``, ``_stepup_enforced``) are
about the view, not the request, and stay on the view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest

if TYPE_CHECKING:
    from stepup.context import RequestContext
    from stepup.grants import _Loaded

STATE_ATTR = "_stepup_state"


@dataclass(slots=True)
class RequestState:
    """stepup's bookkeeping for one request; each field names the module that owns it."""

    context: RequestContext | None = None
    """:mod:`stepup.context`: the request's facts, built once (:func:`stepup.context.get_context`)."""
    grants: _Loaded | None = None
    """:mod:`stepup.grants`: the subject's unused grants, loaded at most once."""
    url_enforced: str | None = None
    """:mod:`stepup.enforcement`: the URL name whose policies this request already enforced."""
    one_shot_used: tuple[int, ...] = ()
    """:mod:`stepup.enforcement`: single-request grants used up so far, given back on a refusal
    before the view started."""
    view_started: bool = False
    """:mod:`stepup.enforcement`: the protected view's own code runs (or ran); grants used stay used."""
    saved_challenges: tuple[dict[str, Any], ...] = ()
    """:mod:`stepup.grants`: the pending challenges saved, to save again after a rollback."""
    deferred_rows: list[Any] | None = None
    """:mod:`stepup.audit`: decision-log rows waiting for the request's transaction (only in a
    request the middleware wraps); ``None`` until the first one."""
    policy_files: object = None
    """:mod:`stepup.sync`: the stored policies compared with the files, read once (the admin's drift)."""
    policy_admin_allowed: bool = False
    """:mod:`stepup.admin`: the policy-admin step-up passed."""


def state(request: Any) -> RequestState:
    """The :class:`RequestState` of ``request``, created on first use.

    ``request`` is an ``HttpRequest``, a DRF ``Request`` (its wrapped request's
    state), or any object standing in for one.
    """
    try:
        return request.__dict__[STATE_ATTR]  # the fast path: set on this very request
    except (KeyError, AttributeError):
        pass  # a DRF Request never holds it itself: its wrapped request does
    if not isinstance(request, HttpRequest):
        inner = getattr(request, "_request", None)
        if isinstance(inner, HttpRequest):
            request = inner
    found = getattr(request, STATE_ATTR, None)
    if found is None:
        found = RequestState()
        setattr(request, STATE_ATTR, found)
    return found
