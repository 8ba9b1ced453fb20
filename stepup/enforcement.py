"""Deciding and enforcing: the one module that asks the policy engine.

Every way in reaches :meth:`PolicySet.decide <stepup.policy.engine.PolicySet.decide>`
through :func:`decide_input`, and every way in with a request through
:func:`_decision`: the decorator, the mixin and the DRF permission
(:func:`enforce_before_view`), the middleware (:func:`enforce_url`),
:func:`decide` and :func:`enforce`, and the status API (:func:`decide_status`).
The decision service (:func:`decide_input`) decides a given input, with no
request behind it. Each entry point turns the request into its
:class:`~stepup.context.RequestContext` once and hands that down, so a
request is decided the same way wherever it is checked, and never
challenged twice for the same thing:

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

from stepup import allowed_log, binding, grants, signals, store
from stepup.audit import decision_facts, record_event
from stepup.conf import conf
from stepup.context import SAFE_METHODS, RequestContext, get_context, match_name, resolver_match
from stepup.exceptions import PolicyStoreUnavailable, StepUpDenied, StepUpRequired
from stepup.policy.engine import PolicySet, compile_policies
from stepup.policy.model import ALLOW, DENY, Decision, Input
from stepup.presentation import Display, make
from stepup.state import state

logger = logging.getLogger("stepup")

EXEMPT_MODULES = ("stepup.views", "stepup.api")
"""stepup's own views (verification, status, decide) are never subject to URL policies.

Recognised by what they are, not by the namespace they are included under:
``include("stepup.urls", namespace="mfa")`` must not put the verification
page behind a ``urls: ["*"]`` policy (nobody could ever verify), and a
project's own view in a namespace that happens to be called ``stepup`` is not
exempt.
"""


# --- the entry points -------------------------------------------------------------


def decide(request: Any, action: str | None, attributes: Mapping[str, Any] | None = None) -> Decision:
    """The :class:`~stepup.Decision` for ``action`` on ``request``, without enforcing it.

    The policies targeting the request's URL name are included unless this
    request already enforced them. Nothing is recorded and no grant is used.

    :param request: the current request (a DRF ``Request`` works too).
    :param action: the declared action, e.g. ``"billing.update"``.
    :param attributes: transaction attributes for ``attrs`` conditions.
    """
    context = get_context(request)
    return _decision(context, _Check(request, action, _url_for(context), attributes or {}))


def enforce(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None = None,
    *,
    bind_request: bool = False,
    labels: Mapping[str, Any] | None = None,
    display: Display | None = None,
    form_url: str | None = None,
    download: bool = False,
) -> Decision:
    """Enforce the decision for ``action``; return it when the request may proceed.

    Challenges and denials are recorded (signal, decision log, ``stepup``
    logger); a single-request grant the decision relied on is used up. Called
    from the view's own code, so the view counts as started from the call on
    (:attr:`RequestState.view_started <stepup.state.RequestState.view_started>`):
    the grants this request used stay used whatever is refused then or later,
    and a refusal here is one from inside the view (which
    :func:`stepup.testing.assert_requires_stepup` reports).

    :param bind_request: bind a single-request grant (``max_age: 0``) to the
        whole request — method, path, query string and body — not only to
        the action and ``attributes`` (:func:`stepup.binding.request_fingerprint`).
    :param labels: attribute names in people's words (see :mod:`stepup.presentation`).
    :param display: ``display(request, attributes) -> dict``: values in people's words.
    :param form_url: the page holding the form of a refused ``POST``.
    :param download: the view answers with a file.
    :raises stepup.StepUpRequired: the user must verify a second factor first.
    :raises stepup.StepUpDenied: a policy denies the request (a ``PermissionDenied``).
    """
    presentation = make(labels, display, form_url, download, where="enforce")
    state(request).view_started = True
    try:
        return enforce_before_view(request, action, attributes, bind_request=bind_request)
    except StepUpRequired as exc:
        exc.presentation = exc.presentation or presentation
        raise


def enforce_before_view(
    request: Any,
    action: str | None,
    attributes: Mapping[str, Any] | None = None,
    *,
    bind_request: bool = False,
) -> Decision:
    """:func:`enforce` for the checks that run before the view's code (decorator, mixin, DRF permission).

    Each of them marks the view started once the last of them has passed, so
    a refusal by a later one gives back the grants used so far.
    """
    context = get_context(request)
    return _enforce(context, _Check(request, action, _url_for(context), attributes or {}, bind_request))


def url_policies_may_apply(request: HttpRequest) -> bool:
    """Whether any policy could target the request's URL name.

    The middleware asks this on every request, so it reads no session, user
    or database (the compiled set answers from a dict), and costs a few
    attribute reads on routes no policy names: the request's context is
    built only for a route some policy names.
    """
    name = match_name(resolver_match(request))
    if name is None:
        return False
    try:
        named = store.get_policy_set().names_url(name)
    except PolicyStoreUnavailable:
        named = True  # enforce_url() decides how to fail closed
    return named and _url_for(get_context(request)) is not None  # not stepup's view, nor enforced already


def enforce_url(request: Any) -> Decision:
    """Enforce the URL-name policies alone (the middleware's part).

    :raises PolicyStoreUnavailable: when no policy set can be loaded and the
        method is not safe.
    """
    context = get_context(request)
    return _enforce(context, _Check(request, None, _url_for(context), {}))


def decide_status(
    request: Any, action: str | None, url: str | None, attributes: Mapping[str, Any], method: str
) -> Decision:
    """The decision ``api-status`` reports: this client's, for an action or URL name and a method.

    Single-request grants are reported, never used; nothing is recorded.

    :raises PolicyStoreUnavailable: when no policy set can be loaded.
    """
    context = get_context(request)
    check = _Check(request, action, url, attributes)
    return _decision(context, check, store.get_policy_set(), method=method)


def decide_input(inp: Input, policies: PolicySet | None = None, *, trace: bool = False) -> Decision:
    """The decision for an input as given (the decision service): the one call of the engine.

    :param policies: the policy set; by default the one in force.
    :param trace: explain every policy considered.
    :raises PolicyStoreUnavailable: when no policy set can be loaded.
    """
    if policies is None:  # not `policies or`: a set's truth is its length, and an empty set is a set
        policies = store.get_policy_set()
    return policies.decide(inp, trace=True) if trace else policies.decide(inp)  # no keyword: a hot path


# --- which policies a call covers ------------------------------------------------


def is_stepup_view(func: Any) -> bool:
    """Whether a view is one of stepup's own (see :data:`EXEMPT_MODULES`)."""
    try:
        return _is_stepup_view(func)
    except TypeError:  # an unhashable view
        return _exempt(func)


@lru_cache(maxsize=1024)
def _is_stepup_view(func: Any) -> bool:
    return _exempt(func)


def _exempt(func: Any) -> bool:
    target = getattr(func, "view_class", None) or getattr(func, "cls", None) or func
    return getattr(target, "__module__", None) in EXEMPT_MODULES


def _url_for(context: RequestContext) -> str | None:
    """The URL name to include in a decision: ``None`` for stepup's own views, or when already enforced."""
    name = context.url_name
    if name is None:
        return None
    own = context.own_view
    if own is None:
        match = context.match
        own = context.own_view = match is None or is_stepup_view(match.func)
    if own:
        return None
    return None if context.pending.url_enforced == name else name


@lru_cache(maxsize=8)
def _fallback_set(default_max_age: int) -> PolicySet:
    return compile_policies([], default_max_age=default_max_age, version="unavailable")


def _policy_set(context: RequestContext, action: str | None) -> PolicySet:
    """The policies in force; when none can be loaded, fail closed.

    A declared action then meets the default requirement (any factor within
    ``DEFAULT_MAX_AGE``); a URL-only decision on a safe method is allowed and
    on any other method re-raises :class:`PolicyStoreUnavailable` (503).
    """
    try:
        return store.get_policy_set()
    except PolicyStoreUnavailable:
        http = context.request
        logger.error(
            "stepup policy store unavailable: %s %s (action=%s); failing closed",
            http.method,
            http.path,
            action or "-",
        )
        if action is None and context.method not in SAFE_METHODS:
            raise
        return _fallback_set(conf.DEFAULT_MAX_AGE)


# --- deciding ---------------------------------------------------------------------


class _Check:
    """One call: the request as the caller gave it, what it is about, and what a grant is bound to."""

    __slots__ = ("_digest", "action", "attrs", "bind_request", "bound", "client", "url")

    def __init__(
        self,
        client: Any,
        action: str | None,
        url: str | None,
        attrs: Mapping[str, Any],
        bind_request: bool = False,
    ) -> None:
        self.client = client  # a DRF Request stays one: signals receive it, its data is fingerprinted
        self.action = action
        self.url = url
        self.attrs = {**attrs}  # its own copy (quicker than dict() for a plain dict)
        self.bind_request = bind_request
        self.bound: str | None = None  # the request's fingerprint, once a policy may apply
        self._digest: str | None = None

    def digest(self) -> str:
        """What a single-request grant for this call is bound to (:func:`stepup.binding.attributes_digest`).

        Worked out once, and only when needed: for a challenge, a log row, or
        a subject holding single-request grants. Call it after ``bound`` is set.
        """
        if self._digest is None:
            self._digest = binding.attributes_digest(self.action, self.url, self.attrs, self.bound)
        return self._digest

    @property
    def key(self) -> tuple[Any, ...]:
        """Identifies the action and attributes, whether or not URL policies were included.

        A decision that included the URL policies covers the same call made
        later in the request, when they are left out as already enforced.
        Attribute values count as their text, as in the digest.
        """
        attrs = [(str(k), binding.text(v)) for k, v in self.attrs.items()]
        if len(attrs) > 1:
            attrs.sort()
        return (self.action, tuple(attrs), self.bound)


_NOTHING = Decision(ALLOW, reasons=("no policy applies",))


def _decision(
    context: RequestContext,
    check: _Check,
    policies: PolicySet | None = None,
    *,
    one_shot: bool = True,
    method: str | None = None,
) -> Decision:
    """The decision on one call: an earlier one allowed in this request, or the engine's.

    :param policies: the policy set to decide with; by default the one in
        force, or the fail-closed stand-in (:func:`_policy_set`).
    :param one_shot: let single-request grants count.
    :param method: decide for this method instead of the request's own
        (``api-status``); an earlier allowed decision is then not reused.
    """
    if check.action is None and check.url is None:
        return _NOTHING
    if policies is None:
        policies = _policy_set(context, check.action)
    if not policies.may_match(check.action, check.url):
        return decide_input(Input(action=check.action, url=check.url), policies)
    if check.bind_request and check.bound is None:
        check.bound = binding.request_fingerprint(check.client)
    if method is None and context.allowed:
        earlier = context.allowed.get(check.key)
        if earlier is not None:
            return earlier
    inp = context.input(check.action, check.url, check.attrs, check.digest)
    if not one_shot:
        inp = replace(inp, one_shot=frozenset())
    if method is not None:
        inp = replace(inp, method=method)
    return decide_input(inp, policies)


def _enforce(context: RequestContext, check: _Check) -> Decision:
    if check.action is None and check.url is None:
        return _NOTHING
    policies = _policy_set(context, check.action)
    decision = _decision(context, check, policies)
    if not policies.may_match(check.action, check.url) or check.key in context.allowed:
        return decision  # no policy could match, or already allowed in this request
    # The single-request grants this decision uses, read before they are used up (for the log).
    spent = context.one_shot(check.digest()) if decision.one_shot else frozenset()
    if decision.outcome == ALLOW and decision.one_shot and not _consume_one_shot(context, check):
        # A parallel request used the single-request grant first: decide without it.
        decision = _decision(context, check, policies, one_shot=False)
        spent = frozenset()
    if decision.shadow:
        _record(context, check, "shadow", decision)
    if decision.outcome == ALLOW:
        if context.authenticated and allowed_log.sampled():
            _record(context, check, "allowed", decision, spent, facts=True)
        _allowed(context, check, decision)
        return decision
    if decision.outcome == DENY:
        _announce(context, check, "denied", signals.stepup_denied, decision)
        raise StepUpDenied(decision, check.action, check.url)
    if not context.authenticated and check.action is None and _is_login_page(context):
        logger.warning("stepup: URL policies %s match the login page", ",".join(decision.policies))
        return Decision(ALLOW, reasons=("the login page: nobody can step up before logging in",))
    _restore_one_shot(context)
    if context.authenticated:
        _announce(context, check, "challenged", signals.stepup_challenged, decision)
    raise StepUpRequired(decision, check.action, check.attrs, url_name=check.url, digest=check.digest())


def _allowed(context: RequestContext, check: _Check, decision: Decision) -> None:
    context.allowed[check.key] = decision
    if check.url is not None:
        context.pending.url_enforced = check.url


def _is_login_page(context: RequestContext) -> bool:
    """Whether this is ``settings.LOGIN_URL`` (a URL policy there would loop anonymous users).

    Compared with ``request.path``, which carries the script prefix
    (``SCRIPT_NAME``/``FORCE_SCRIPT_NAME``) as a reversed ``LOGIN_URL`` does.
    """
    try:
        login = urlsplit(resolve_url(settings.LOGIN_URL))
    except NoReverseMatch:
        return False
    return not login.netloc and login.path == context.request.path


# --- single-request grants ---------------------------------------------------------
#
# A grant authorizes one request. It is used up (a conditional UPDATE, so only
# one of two parallel requests can use it) when the decision that relied on it
# allows the request. When the same request is then challenged for something
# else before the protected code started (a URL policy passed, then the view's
# own action), it did not go through: the grants it used are given back, or
# the user could never satisfy both at once. Once the protected code started
# (RequestState.view_started, set by each enforcement point once its check
# passed), it may have done its work: a refusal after that point gives
# nothing back, or the same grant would authorize the work twice.


def _consume_one_shot(context: RequestContext, check: _Check) -> bool:
    """Use up the grants for this decision; ``False`` when none was left (a parallel request won)."""
    used = grants.consume_one_shot(context.request, check.digest(), context.user)
    if not used:
        return False
    pending = context.pending
    pending.one_shot_used = (*pending.one_shot_used, *used)
    return True


def _restore_one_shot(context: RequestContext) -> None:
    pending = context.pending
    used = pending.one_shot_used
    if not used or pending.view_started:
        return
    pending.one_shot_used = ()
    grants.restore_one_shot(context.request, used)


# --- recording ---------------------------------------------------------------------


def _record(
    context: RequestContext,
    check: _Check,
    event: str,
    decision: Decision,
    spent: frozenset[str] = frozenset(),
    *,
    facts: bool = False,
) -> None:
    """Log one event; with ``facts``, a decision row with the facts ``plan --replay`` needs.

    An allowed row is written after the response, and its group names then
    (:mod:`stepup.allowed_log`): no query is made for it while the request waits.
    """
    allowed = event == "allowed"
    found = decision_facts(context, check.url, check.digest, spent, groups_later=allowed) if facts else {}
    if allowed and conf.DECISION_LOG_ALLOWED < 1.0:
        found["facts"]["sample_rate"] = conf.DECISION_LOG_ALLOWED
    record_event(
        check.client,
        event,
        user=context.user,
        action=check.action,
        url_name=check.url or context.url_name,
        decision=decision,
        attrs=check.attrs,
        detail="; ".join(decision.reasons),
        **found,
    )


def _announce(context: RequestContext, check: _Check, event: str, signal: Any, decision: Decision) -> None:
    """Record a challenge or denial (decision log, logger) and send its signal."""
    _record(context, check, event, decision, facts=True)
    match = getattr(context.request, "resolver_match", None)  # the view being enforced, when known
    signal.send(
        sender=match.func if match is not None else sys.modules[__name__],
        request=check.client,
        user=context.user,
        decision=decision,
        action=check.action,
        attributes=check.attrs,
    )
