"""stepup's HTML view: the verification form (the JSON API is in :mod:`stepup.api`).

The view parses requests and renders results; the verification logic lives in
:mod:`stepup.flows.verification`.

Every response carries ``Cache-Control: no-store``, ``X-Frame-Options: DENY``
and ``Content-Security-Policy: frame-ancestors 'none'``: a verification page
must never be cached, or framed for clickjacking.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from stepup import outcome
from stepup.enforcement import enforce
from stepup.factors import webauthn
from stepup.flows import verification as flow
from stepup.responses import enroll_url
from stepup.throttling import current_lockout

View = Callable[..., HttpResponse]

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


# --- the verification form --------------------------------------------------------


@_hardened
@require_http_methods(["GET", "HEAD", "POST"])
@login_required
@csrf_protect
def verify(request: HttpRequest) -> HttpResponse:
    """Show the verification form (``GET``) or check a code (``POST``).

    Query string: ``challenge`` (a pending challenge's id) and ``next``.
    ``POST`` fields: ``device`` and the chosen kind's fields (``token``,
    ``password``; ``send=1`` to have an email code sent), ``next``,
    ``challenge`` and the CSRF token.
    """
    challenge_id = request.POST.get("challenge") or request.GET.get("challenge")
    target = flow.load_target(request, challenge_id)
    if target.id is None and (settled := outcome.settled_page(request, challenge_id)) is not None:
        return settled  # already confirmed here, or expired: say so instead of a form without context
    next_url = request.POST.get("next") or request.GET.get("next") or target.challenge.next or ""
    if request.method != "POST":
        return _form(request, target, next_url)
    if request.POST.get("factor") == "webauthn":
        result = webauthn.verify_assertion(request, target, request.POST.get("credential"))
    elif request.POST.get("send"):
        result = flow.begin(request, target, request.POST)
    else:
        result = flow.verify(request, target, request.POST)
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
    form = result.form if result is not None else None
    if (
        form is not None
        and result is not None
        and result.field is not None
        and result.field not in form.errors
    ):
        form.add_error(result.field, result.message)  # a refusal after validation: shown on its field
    steps = flow.step_forms(user, target, result)
    error = result.message if result is not None and result.status != flow.STARTED else None
    if error is None and (lockout := current_lockout(user)) is not None:
        error = flow.retry_message(lockout)
    context = {
        "target": target,
        "challenge_id": target.id or "",
        "next": next_url,
        "steps": steps,
        "notice": result.message if result is not None and result.status == flow.STARTED else "",
        "error": error,
        "error_field": result.field if result is not None else None,
        "enroll_url": enroll_url(),
        "cancel_url": outcome.cancel_url(request, target.challenge),
    }
    return render(request, "stepup/verify.html", context)


def _verified(request: HttpRequest, target: flow.Target, next_url: str) -> HttpResponse:
    """After success: present an interrupted POST for one click, else onwards (:mod:`stepup.outcome`)."""
    return outcome.after_verification(request, target, next_url)


def _add_retry_after(response: HttpResponse, result: flow.Result) -> None:
    seconds = result.throttle.retry_after() if result.throttle is not None else None
    if seconds is not None:
        response["Retry-After"] = str(seconds)


# --- adding a passkey -----------------------------------------------------------------


@_hardened
@require_http_methods(["GET", "HEAD"])
@login_required
def webauthn_register(request: HttpRequest) -> HttpResponse:
    """The page that adds a passkey or security key (``webauthn-register``); ``?next=`` once added.

    The page only shows the button: the ceremony is ``webauthn-register-begin``
    and ``-complete`` (:mod:`stepup.api`), which also ask for the step-up.
    """
    if not webauthn.available():
        raise Http404("django-otp-webauthn is not installed")
    if webauthn.has_factors(request.user):  # type: ignore[arg-type]
        # Asked here too, not only by the ceremony: the user verifies first, then lands on this page.
        enforce(request, webauthn.DEVICES_ADD_ACTION)
    done_url = flow.success_url(request, request.GET.get("next") or reverse("stepup:devices"))
    return render(request, "stepup/webauthn_register.html", {"done_url": done_url})
