"""Where the verify page sends the user: after a success, and when the challenge is gone.

After a successful verification (:func:`after_verification`):

- an interrupted ``POST`` that was saved is presented for one click (``stepup/confirm.html``);
- an interrupted ``POST`` that could not be saved (a file upload, a form too
  big) is never repeated as a ``GET``: the user goes back to the page that
  holds the form (the view's ``form_url``, else the ``Referer`` saved with the
  challenge), told by a message to submit it again;
- a view that answers with a file (``download=True``) gets a page that says
  the verification is done and starts the download (``stepup/done.html``),
  so the user is not left on the verify page with a spent code;
- anything else: ``303`` to ``next`` (when it is safe).

The session remembers the challenges it completed (ids, a few, for
``CHALLENGE_TTL``). Reopening the verify URL of one, or pressing Verify
again on a page left open, says it is already confirmed and checks no code
(so it counts no failure); a challenge id that is neither pending nor
completed here (it expired, or the session ended and the user signed in
again) says the request expired and links to where to start again
(:func:`settled_page`).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import global_settings, settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from stepup.challenge import Challenge
from stepup.conf import conf
from stepup.flows import verification as flow

SESSION_KEY = "_stepup_done"
MAX_REMEMBERED = 10
DONE_TEMPLATE = "stepup/done.html"
EXPIRED_TEMPLATE = "stepup/expired.html"
CONFIRM_TEMPLATE = "stepup/confirm.html"


# --- after a success ---------------------------------------------------------------------


def after_verification(request: HttpRequest, target: flow.Target, next_url: str) -> HttpResponse:
    """The response to a successful verification of ``target`` (see the module doc)."""
    challenge = target.challenge
    back = cancel_url(request, challenge)
    confirmation = flow.confirmation(request, target)
    if confirmation is not None:
        _remember(request, target.id, back, back)
        context = {"target": target, "confirmation": confirmation, "cancel_url": back}
        return render(request, CONFIRM_TEMPLATE, context)
    if target.id is not None and challenge.is_form_post:
        _remember(request, target.id, back, back)
        messages.info(request, resubmit_message(), fail_silently=True)
        return _see_other(back)
    onwards = flow.success_url(request, next_url)
    if target.id is not None and challenge.download:
        _remember(request, target.id, onwards, back, download=True)
        return _see_other(verify_url(target.id))
    if target.id is not None:
        _remember(request, target.id, onwards, back)
    return _see_other(onwards)


def resubmit_message() -> str:
    return _("You are verified, but your form was not sent. Fill it in and submit it again.")


def cancel_url(request: HttpRequest, challenge: Challenge) -> str:
    """Where Cancel (and "back") goes: the page the user came from, else the site's home page."""
    if challenge.form_url and flow.is_safe_url(request, challenge.form_url):
        return challenge.form_url
    return home_url()


def home_url() -> str:
    """``LOGIN_REDIRECT_URL`` when the project sets it, else ``/``.

    Django's default (``/accounts/profile/``) is a 404 in most projects.
    """
    configured = getattr(settings, "LOGIN_REDIRECT_URL", None)
    if not configured or configured == global_settings.LOGIN_REDIRECT_URL:
        return "/"
    return resolve_url(configured)


def verify_url(challenge_id: str) -> str:
    return f"{reverse('stepup:verify')}?{urlencode({'challenge': challenge_id})}"


def _see_other(url: str) -> HttpResponse:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


# --- what the session remembers -----------------------------------------------------------


def _remember(
    request: HttpRequest, challenge_id: str | None, onwards: str, back: str, *, download: bool = False
) -> None:
    session = getattr(request, "session", None)
    if challenge_id is None or session is None:
        return
    kept = [r for r in _records(request) if r.get("id") != challenge_id]
    record = {"id": challenge_id, "onwards": onwards, "back": back, "download": download, "at": time.time()}
    session[SESSION_KEY] = [*kept, record][-MAX_REMEMBERED:]


def _records(request: HttpRequest) -> list[dict[str, Any]]:
    session = getattr(request, "session", None)
    found = session.get(SESSION_KEY) if session is not None else None
    if not isinstance(found, list):
        return []
    oldest = time.time() - conf.CHALLENGE_TTL
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("at"), float) and r["at"] > oldest]


def completed(request: HttpRequest, challenge_id: object) -> dict[str, Any] | None:
    """What this session remembers of the completed challenge ``challenge_id``, if it completed it."""
    if not isinstance(challenge_id, str) or not challenge_id:
        return None
    return next((r for r in _records(request) if r.get("id") == challenge_id), None)


# --- the verify URL of a challenge that is gone ---------------------------------------------


def settled_page(request: HttpRequest, challenge_id: object) -> HttpResponse | None:
    """The page for a challenge id that is no longer pending, or ``None`` to show the form.

    Completed in this session: "already confirmed" (or, once, the download
    page), for ``GET`` and ``POST`` alike, with no code checked. Unknown or
    expired: on ``GET``, the "expired" page; a ``POST`` goes on as a generic
    verification, as before.
    """
    record = completed(request, challenge_id)
    if record is not None:
        return _done_page(request, record)
    if request.method == "GET" and isinstance(challenge_id, str) and challenge_id:
        return _expired_page(request)
    return None


def _done_page(request: HttpRequest, record: dict[str, Any]) -> HttpResponse:
    onwards, back = _safe(request, record.get("onwards")), _safe(request, record.get("back"))
    starting = record.get("download") is True and not record.get("started")
    if starting:
        record["started"] = True
        request.session.modified = True
    context = {
        "download_url": onwards if record.get("download") is True else None,
        "starting": starting,
        "onwards": onwards,
        "back": back,
    }
    return render(request, DONE_TEMPLATE, context)


def _expired_page(request: HttpRequest) -> HttpResponse:
    # A refused POST's verify URL names its form page in ``back`` (empty when unknown): its
    # ``next`` is the POST's own URL, which a link would open as a GET.
    if "back" in request.GET:
        start_again = _safe(request, request.GET.get("back"))
    else:
        start_again = _safe(request, request.GET.get("next"))
    return render(request, EXPIRED_TEMPLATE, {"start_again": start_again or home_url()})


def _safe(request: HttpRequest, url: object) -> str | None:
    return url if isinstance(url, str) and flow.is_safe_url(request, url) else None
