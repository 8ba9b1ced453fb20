"""stepup's views: the verification form and the JSON APIs.

The views parse requests and render results; the verification logic lives in
:mod:`stepup.flows.verification`, the decision in the policy engine.

Every response of these views carries ``Cache-Control: no-store``,
``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors
'none'``: a verification page must never be cached, or framed for
clickjacking.

CSRF: the JSON endpoints that ``POST`` (``api-verify``, ``api-decide``) are
meant for same-origin single-page apps using the session cookie, so they
enforce Django's CSRF protection like any form: send the token in the
``X-CSRFToken`` header (read it from the ``csrftoken`` cookie, which
``api-status`` sets) and the body as ``Content-Type: application/json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from stepup import grants
from stepup.conf import conf
from stepup.context import get_context
from stepup.flows import verification as flow
from stepup.policy.engine import input_from_dict
from stepup.policy.loader import validate_test
from stepup.policy.model import Decision, PolicyTrace
from stepup.store import PolicyStoreUnavailable, get_policy_set
from stepup.throttling import current_lockout

View = Callable[..., HttpResponse]

HTTP_STATUS = {
    flow.VERIFIED: 200,
    flow.INVALID: 400,
    flow.FAILED: 400,
    flow.THROTTLED: 429,
    flow.LOCKED: 429,
}
"""The ``api-verify`` status code of each result."""

_ATTR_PREFIX = "attrs."


# --- response hardening -----------------------------------------------------------


def _hardened(view: View) -> View:
    """Mark every response of ``view`` as uncacheable and unframeable."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        add_never_cache_headers(response)
        response["X-Frame-Options"] = "DENY"
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    return wrapped


def _api_login_required(view: View) -> View:
    """``401`` JSON for an anonymous request (an API client can't follow a login redirect)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            detail = "Authentication credentials were not provided."
            response = _error(401, "not_authenticated", detail)
            response["WWW-Authenticate"] = 'Session realm="api"'
            return response
        return view(request, *args, **kwargs)

    return wrapped


def _error(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail, **extra}, status=status)


class _BadRequest(Exception):
    def __init__(self, response: JsonResponse) -> None:
        super().__init__(response.content)
        self.response = response


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object, else :class:`_BadRequest` (415 or 400)."""
    if request.content_type != "application/json":
        raise _BadRequest(
            _error(415, "unsupported_media_type", "Send the body as application/json.")
        )
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):
        raise _BadRequest(_error(400, "invalid_json", "The body is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise _BadRequest(_error(400, "invalid_json", "The body must be a JSON object."))
    return data


# --- the verification form --------------------------------------------------------


@_hardened
@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@csrf_protect
def verify(request: HttpRequest) -> HttpResponse:
    """Show the verification form (``GET``) or check a code (``POST``).

    Query string: ``challenge`` (a pending challenge's id) and ``next``.
    ``POST`` fields: ``device``, ``token``, ``next``, ``challenge`` and the CSRF token.
    """
    challenge_id = request.POST.get("challenge") or request.GET.get("challenge")
    target = flow.load_target(request, challenge_id)
    next_url = request.POST.get("next") or request.GET.get("next") or target.next or ""
    if request.method != "POST":
        return _form(request, target, next_url)
    result = flow.verify(request, target, request.POST.get("device"), request.POST.get("token"))
    if result.ok:
        return _verified(request, target, next_url)
    response = _form(request, target, next_url, result)
    response.status_code = 429 if result.status in (flow.THROTTLED, flow.LOCKED) else 200
    _add_retry_after(response, result)
    return response


def _form(
    request: HttpRequest, target: flow.Target, next_url: str, result: flow.Result | None = None
) -> HttpResponse:
    user = flow.authenticated_user(request)
    choices = flow.device_choices(flow.usable_devices(user, target.factors))
    error = result.message if result is not None else None
    if error is None and (lockout := current_lockout(user)) is not None:
        error = flow.retry_message(lockout)
    context = {
        "target": target,
        "challenge_id": target.id or "",
        "next": next_url,
        "devices": choices,
        "selected": request.POST.get("device", ""),
        "inputmode": flow.input_mode(choices),
        "error": error,
        "error_field": result.field if result is not None else None,
        "enroll_url": conf.ENROLL_URL,
    }
    return render(request, "stepup/verify.html", context)


def _verified(request: HttpRequest, target: flow.Target, next_url: str) -> HttpResponse:
    """After success: present an interrupted POST for one click, else ``303`` onwards."""
    confirmation = flow.confirmation(request, target)
    if confirmation is not None:
        context = {
            "target": target,
            "confirmation": confirmation,
            "cancel_url": flow.success_url(request, ""),
        }
        return render(request, "stepup/confirm.html", context)
    response = HttpResponseRedirect(flow.success_url(request, next_url))
    response.status_code = 303
    return response


def _add_retry_after(response: HttpResponse, result: flow.Result) -> None:
    seconds = result.throttle.retry_after() if result.throttle is not None else None
    if seconds is not None:
        response["Retry-After"] = str(seconds)


# --- api-verify ---------------------------------------------------------------------


@_hardened
@require_POST
@csrf_protect
@_api_login_required
def api_verify(request: HttpRequest) -> HttpResponse:
    """``POST {"device": …, "token": …, "challenge": …}`` → ``{"verified": true, "factor": …}``.

    ``400`` with ``{"verified": false, "code": …}`` for a rejected code or
    unusable input, ``429`` while throttled or locked out, ``401`` when not
    logged in. CSRF is enforced (header ``X-CSRFToken``).
    """
    try:
        data = _json_body(request)
    except _BadRequest as exc:
        return exc.response
    target = flow.load_target(request, data.get("challenge"))
    result = flow.verify(request, target, data.get("device"), data.get("token"))
    if result.ok:
        return JsonResponse({"verified": True, "factor": result.factor})
    body: dict[str, Any] = {"verified": False, "code": result.code, "detail": result.message}
    if result.throttle is not None:
        body["retry_after"] = result.throttle.retry_after()
    response = JsonResponse(body, status=HTTP_STATUS[result.status])
    _add_retry_after(response, result)
    return response


# --- api-status -------------------------------------------------------------------


@_hardened
@require_safe
@ensure_csrf_cookie
@_api_login_required
def api_status(request: HttpRequest) -> HttpResponse:
    """``GET ?action=…&method=…`` (or ``url=…``) → this session's decision, as JSON.

    Transaction attributes are given as ``attrs.<name>=…``. Computed from
    server-side state only (verification ages and grants in the session,
    roles, client IP); any other query parameter, such as a claimed
    ``verified``, is ignored. Single-request grants are reported, never
    consumed. The response sets the CSRF cookie that ``api-verify`` needs.
    """
    try:
        query = _status_query(request)
    except _BadRequest as exc:
        return exc.response
    context = get_context(request)
    action, url, attrs = query.get("action"), query.get("url"), query.get("attrs", {})
    digest = grants.attributes_digest(action, url, attrs)
    inp = replace(context.input(action, url, attrs, digest), method=query["method"])
    try:
        decision = get_policy_set().decide(inp)
    except PolicyStoreUnavailable:
        return _error(503, "policy_store_unavailable", "No policy set could be loaded.")
    body = {
        "outcome": decision.outcome,
        "max_age": decision.max_age,
        "factors": list(decision.factors),
        "policies": list(decision.policies),
        "reasons": list(decision.reasons),
        "verify_url": reverse("stepup:verify") if decision.outcome == "step_up" else None,
    }
    return JsonResponse(body)


def _status_query(request: HttpRequest) -> dict[str, Any]:
    """The validated ``action``/``url``/``method``/``attrs`` of an ``api-status`` query."""
    data: dict[str, Any] = {}
    attrs: dict[str, str] = {}
    for key, values in request.GET.lists():
        is_attr = key.startswith(_ATTR_PREFIX)
        if not is_attr and key not in ("action", "url", "method"):
            continue  # anything else, such as a claimed "verified", is ignored
        if len(values) != 1:
            raise _BadRequest(_error(400, "invalid_query", f"Give {key!r} once."))
        if is_attr:
            attrs[key[len(_ATTR_PREFIX) :]] = values[0]
        else:
            data[key] = values[0]
    if attrs:
        data["attrs"] = attrs
    query = _validated_input(data)
    if query["method"] == "HEAD":  # Django serves HEAD with the GET view
        query["method"] = "GET"
    return query


def _validated_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` checked as a policy test's ``input:`` (the loader's own rules), else ``400``."""
    test, errors = validate_test(
        {"name": "request", "input": dict(data), "expect": {"decision": "allow"}},
        source="<request>",
    )
    if test is None:
        details = [{"field": e.field, "message": e.message} for e in errors]
        raise _BadRequest(_error(400, "invalid_input", "The input is not valid.", errors=details))
    return dict(test.input)


# --- api-decide -------------------------------------------------------------------


@_hardened
@require_POST
@csrf_protect
@_api_login_required
def api_decide(request: HttpRequest) -> HttpResponse:
    """``POST`` a policy test's ``input`` → ``{"decision": {…}, "trace": […]}``.

    Only for users holding ``stepup.query_decision`` (``403`` otherwise). The
    input is evaluated as given against the policies in force; nothing of the
    caller's session is used.
    """
    if not request.user.has_perm("stepup.query_decision"):
        return _error(403, "permission_denied", "You may not query step-up decisions.")
    try:
        data = _validated_input(_json_body(request))
    except _BadRequest as exc:
        return exc.response
    try:
        decision = get_policy_set().decide(input_from_dict(data), trace=True)
    except PolicyStoreUnavailable:
        return _error(503, "policy_store_unavailable", "No policy set could be loaded.")
    return JsonResponse(
        {"decision": decision_dict(decision), "trace": trace_list(decision.trace or ())}
    )


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A :class:`~stepup.Decision` as JSON-compatible data (without its trace)."""
    return {
        "outcome": decision.outcome,
        "max_age": decision.max_age,
        "factors": list(decision.factors),
        "policies": list(decision.policies),
        "reasons": list(decision.reasons),
        "shadow": list(decision.shadow),
        "one_shot": decision.one_shot,
        "version": decision.version,
    }


def trace_list(traces: tuple[PolicyTrace, ...]) -> list[dict[str, Any]]:
    """A decision's trace as JSON-compatible data."""
    return [
        {
            "policy": t.policy,
            "matched": t.matched,
            "applied": t.applied,
            "effect": t.effect,
            "conditions": [
                {"field": c.field, "held": c.held, "detail": c.detail} for c in t.conditions
            ],
        }
        for t in traces
    ]
