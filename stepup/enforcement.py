"""``decide()`` and ``enforce()``: the one place every enforcement point calls.

The decorator, the mixin, the middleware, the DRF permission and the status
API all come here, so a request is decided the same way wherever it is
checked, and never challenged twice for the same thing:

- a decision on a declared action includes the policies that target the
  request's URL name, and the URL name is then marked as enforced on the
  request so that later calls (and the middleware) leave it out;
- a decision already allowed in this request is not made again.

A request that no policy can match is answered from the compiled policy set
alone: no session, user, group or grant is read, so it costs no query.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch

from stepup import grants, signals, store
from stepup.audit import decision_facts, record_event
from stepup.conf import conf
from stepup.context import (
    SAFE_METHODS,
    RequestContext,
    get_context,
    http_request,
    match_name,
    matching_method,
    request_user,
    resolver_match,
    url_name,
)
from stepup.exceptions import PolicyStoreUnavailable, StepUpDenied, StepUpRequired
from stepup.policy.engine import PolicySet, compile_policies
from stepup.policy.model import ALLOW, DENY, Decision, Input

logger = logging.getLogger("stepup")

URL_ENFORCED_ATTR = "_stepup_url_enforced"
CONSUMED_ATTR = "_stepup_one_shot_used"
EXEMPT_MODULES = ("stepup.views", "stepup.api")
"""stepup's own views (verification, status, decide) are never subject to URL policies.

Recognised by what they are, not by the namespace they are included under:
``include("stepup.urls", namespace="mfa")`` must not put the verification
page behind a ``urls: ["*"]`` policy (nobody could ever verify), and a
project's own view in a namespace that happens to be called ``stepup`` is not
exempt.
"""


# --- which policies a call covers ------------------------------------------------


def _route(http: HttpRequest) -> str | None:
    """The URL name URL policies match on, or ``None`` (no name, or one of stepup's own views)."""
    match = resolver_match(http)
    name = match_name(match)
    if name is None or match is None or is_stepup_view(match.func):
        return None
    return name


def is_stepup_view(func: Any) -> bool:
    """Whether a view is one of stepup's own (see :data:`EXEMPT_MODULES`)."""
    target = getattr(func, "view_class", None) or getattr(func, "cls", None) or func
    return getattr(target, "__module__", None) in EXEMPT_MODULES


def _url_for(http: HttpRequest) -> str | None:
    """The URL name to include in a decision, unless this request already enforced it."""
    name = _route(http)
    return None if name is None or getattr(http, URL_ENFORCED_ATTR, None) == name else name


@lru_cache(maxsize=8)
def _fallback_set(default_max_age: int) -> PolicySet:
    return compile_policies([], default_max_age=default_max_age, version="unavailable")


def _policy_set(http: HttpRequest, action: str | None) -> PolicySet:
    """The policies in force; when none can be loaded, fail closed.

    A declared action then meets the default requirement (any factor within
    ``DEFAULT_MAX_AGE``); a URL-only decision on a safe method is allowed and
    on any other method re-raises :class:`PolicyStoreUnavailable` (503).
    """
    try:
        return store.get_policy_set()
    except PolicyStoreUnavailable:
        logger.error(
            "stepup policy store unavailable: %s %s (action=%s); failing closed",
            http.method,
            http.path,
            action or "-",
        )
        if action is None and matching_method(http) not in SAFE_METHODS:
            raise
        return _fallback_set(conf.DEFAULT_MAX_AGE)


# --- deciding ---------------------------------------------------------------------


class _Subject:
    """What one decision is about, and the digest a single-request grant is bound to."""

    __slots__ = ("action", "attrs", "bound", "url")

    def __init__(
        self, action: str | None, url: str | None, attrs: Mapping[str, Any], bound: str | None = None
    ) -> None:
        self.action = action
        self.url = url
        self.attrs = dict(attrs)
        self.bound = bound  # the request's fingerprint, for a view that binds the whole request

    @property
    def digest(self) -> str:
        return grants.attributes_digest(self.action, self.url, self.attrs, self.bound)

    @property
    def key(self) -> str:
        """Identifies the action and attributes, whether or not URL policies were included.

        A decision that included the URL policies covers the same call made
        later in the request, when they are left out as already enforced.
        """
        return grants.attributes_digest(self.action, None, self.attrs, self.bound)


def _evaluate(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None,
    *,
    url: str | None,
    one_shot: bool = True,
    bind_request: bool = False,
) -> tuple[Decision, _Subject, RequestContext | None]:
    http = http_request(request)
    subject = _Subject(action, url, attributes or {})
    if action is None and url is None:
        return Decision(ALLOW, reasons=("no policy applies",)), subject, None
    policies = _policy_set(http, action)
    if not policies.may_match(action, url):
        return policies.decide(Input(action=action, url=url)), subject, None
    if bind_request:
        subject.bound = grants.request_fingerprint(request)
    context = get_context(request)
    digest = subject.digest
    earlier = context.allowed.get(subject.key)
    if earlier is not None:
        return earlier, subject, context
    inp = context.input(action, url, subject.attrs, digest)
    if not one_shot:
        inp = replace(inp, one_shot=frozenset())
    return policies.decide(inp), subject, context


def decide(request: Any, action: str | None, attributes: Mapping[str, Any] | None = None) -> Decision:
    """The :class:`~stepup.Decision` for ``action`` on ``request``, without enforcing it.

    The policies targeting the request's URL name are included unless this
    request already enforced them. Nothing is recorded and no grant is used.

    :param request: the current request (a DRF ``Request`` works too).
    :param action: the declared action, e.g. ``"billing.update"``.
    :param attributes: transaction attributes for ``attrs`` conditions.
    """
    http = http_request(request)
    return _evaluate(request, action, attributes, url=_url_for(http))[0]


def decide_url(request: Any) -> Decision:
    """The decision of the URL-name policies alone (what the middleware enforces).

    :raises PolicyStoreUnavailable: when no policy set can be loaded and the
        method is not safe.
    """
    http = http_request(request)
    return _evaluate(request, None, None, url=_url_for(http))[0]


def enforce(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None = None,
    *,
    bind_request: bool = False,
) -> Decision:
    """Enforce the decision for ``action``; return it when the request may proceed.

    Challenges and denials are recorded (signal, decision log, ``stepup``
    logger); a single-request grant the decision relied on is used up. Called
    from the view's own code, so the view counts as started from the call on
    (see :func:`mark_view_started`): the grants this request used stay used
    whatever is refused then or later, and a refusal here is one from inside
    the view (which :func:`stepup.testing.assert_requires_stepup` reports).

    :param bind_request: bind a single-request grant (``max_age: 0``) to the
        whole request — method, path, query string and body — not only to
        the action and ``attributes`` (:func:`stepup.grants.request_fingerprint`).
    :raises stepup.StepUpRequired: the user must verify a second factor first.
    :raises django.core.exceptions.PermissionDenied: a policy denies the request.
    """
    mark_view_started(request)
    return enforce_before_view(request, action, attributes, bind_request=bind_request)


def enforce_before_view(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None = None,
    *,
    bind_request: bool = False,
) -> Decision:
    """:func:`enforce` for the checks that run before the view's code (decorator, mixin, DRF permission).

    Each of them calls :func:`mark_view_started` once the last of them has
    passed, so a refusal by a later one gives back the grants used so far.
    """
    http = http_request(request)
    return _enforce(request, action, attributes, url=_url_for(http), bind_request=bind_request)


def url_policies_may_apply(request: Any) -> bool:
    """Whether any policy could target the request's URL name.

    The middleware asks this on every request, so it reads no session, user
    or database (the compiled set answers from a dict), and costs a few
    attribute reads on routes no policy names.
    """
    http = http_request(request)
    # Django set resolver_match before process_view; resolver_match() covers views called directly.
    name = match_name(getattr(http, "resolver_match", None) or resolver_match(http))
    if name is None:
        return False
    try:
        named = store.get_policy_set().names_url(name)
    except PolicyStoreUnavailable:
        named = True  # enforce_url() decides how to fail closed
    return named and _url_for(http) is not None  # not one of stepup's views, nor enforced already


def enforce_url(request: Any) -> Decision:
    """Enforce the URL-name policies alone (the middleware's part).

    :raises PolicyStoreUnavailable: see :func:`decide_url`.
    """
    http = http_request(request)
    return _enforce(request, None, None, url=_url_for(http))


def _enforce(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None,
    *,
    url: str | None,
    bind_request: bool = False,
) -> Decision:
    http = http_request(request)
    decision, subject, context = _evaluate(request, action, attributes, url=url, bind_request=bind_request)
    if context is None or subject.key in context.allowed:
        return decision  # no policy could match, or already allowed in this request
    # The single-request grants this decision uses, read before they are used up (for the log).
    spent = context.one_shot(subject.digest) if decision.one_shot else frozenset()
    if decision.outcome == ALLOW and decision.one_shot and not _consume_one_shot(http, context, subject):
        # A parallel request used the single-request grant first: decide without it.
        decision, subject, context = _evaluate(
            request, action, attributes, url=url, one_shot=False, bind_request=bind_request
        )
        assert context is not None
        spent = frozenset()
    if decision.shadow:
        _record(request, "shadow", decision, subject)
    if decision.outcome == ALLOW:
        if context.authenticated:
            _record(request, "allowed", decision, subject, context, spent)
        _allowed(http, context, decision, subject)
        return decision
    if decision.outcome == DENY:
        _announce(request, "denied", signals.stepup_denied, decision, subject, context)
        raise StepUpDenied(decision, action, subject.url)
    if not context.authenticated and action is None and _is_login_page(http):
        logger.warning("stepup: URL policies %s match the login page", ",".join(decision.policies))
        return Decision(ALLOW, reasons=("the login page: nobody can step up before logging in",))
    _restore_one_shot(http)
    if context.authenticated:
        _announce(request, "challenged", signals.stepup_challenged, decision, subject, context)
    raise StepUpRequired(decision, action, subject.attrs, url_name=subject.url, digest=subject.digest)


def _announce(
    request: Any, event: str, signal: Any, decision: Decision, subject: _Subject, context: RequestContext
) -> None:
    """Record a challenge or denial (decision log, logger) and send its signal."""
    _record(request, event, decision, subject, context)
    signal.send(
        sender=_sender(http_request(request)),
        request=request,
        user=context.user,
        decision=decision,
        action=subject.action,
        attributes=subject.attrs,
    )


def _allowed(http: HttpRequest, context: RequestContext, decision: Decision, subject: _Subject) -> None:
    context.allowed[subject.key] = decision
    if subject.url is not None:
        setattr(http, URL_ENFORCED_ATTR, subject.url)


def _is_login_page(http: HttpRequest) -> bool:
    """Whether this is ``settings.LOGIN_URL`` (a URL policy there would loop anonymous users).

    Compared with ``request.path``, which carries the script prefix
    (``SCRIPT_NAME``/``FORCE_SCRIPT_NAME``) as a reversed ``LOGIN_URL`` does.
    """
    try:
        login = urlsplit(resolve_url(settings.LOGIN_URL))
    except NoReverseMatch:
        return False
    return not login.netloc and login.path == http.path


# --- single-request grants ---------------------------------------------------------
#
# A grant authorizes one request. It is used up (a conditional UPDATE, so only
# one of two parallel requests can use it) when the decision that relied on it
# allows the request. When the same request is then challenged for something
# else before the protected code started (a URL policy passed, then the view's
# own action), it did not go through: the grants it used are given back, or
# the user could never satisfy both at once. Once the protected code started
# (mark_view_started), it may have done its work: a refusal after that point
# gives nothing back, or the same grant would authorize the work twice.

VIEW_STARTED_ATTR = "_stepup_view_started"


def mark_view_started(request: Any) -> None:
    """Note that the protected view's own code runs from now on (the enforcement points call this).

    Single-request grants used so far in this request stay used, whatever is
    refused later in it. The mark stays on the request, so a refusal can be
    told apart afterwards: before the view ran, or inside it (:func:`view_started`).
    """
    setattr(http_request(request), VIEW_STARTED_ATTR, True)


def view_started(request: Any) -> bool:
    """Whether the protected view's own code had started in this request (see :func:`mark_view_started`)."""
    return bool(getattr(http_request(request), VIEW_STARTED_ATTR, False))


def _consume_one_shot(http: HttpRequest, context: RequestContext, subject: _Subject) -> bool:
    """Use up the grants for this decision; ``False`` when none was left (a parallel request won)."""
    used = grants.consume_one_shot(http, subject.digest, context.user)
    if not used:
        return False
    setattr(http, CONSUMED_ATTR, (*getattr(http, CONSUMED_ATTR, ()), *used))
    return True


def _restore_one_shot(http: HttpRequest) -> None:
    used = getattr(http, CONSUMED_ATTR, None)
    if used is None or view_started(http):
        return
    delattr(http, CONSUMED_ATTR)
    grants.restore_one_shot(http, used)


# --- recording ---------------------------------------------------------------------


def _sender(http: HttpRequest) -> Any:
    """The view being enforced, when known; else this module."""
    match = getattr(http, "resolver_match", None)
    return match.func if match is not None else sys.modules[__name__]


def _record(
    request: Any,
    event: str,
    decision: Decision,
    subject: _Subject,
    context: RequestContext | None = None,
    spent: frozenset[str] = frozenset(),
) -> None:
    """Log one event; with ``context``, a decision row with the facts ``plan --replay`` needs."""
    facts = decision_facts(context, subject.url, subject.digest, spent) if context is not None else {}
    record_event(
        request,
        event,
        user=request_user(request),
        action=subject.action,
        url_name=subject.url or url_name(http_request(request)),
        decision=decision,
        attrs=subject.attrs,
        detail="; ".join(decision.reasons),
        **facts,
    )
