"""Helpers for your own test suite: prove sensitive views can't be reached without step-up.

::

    from stepup.testing import assert_requires_stepup, stepup_verified

    def test_transfer_needs_stepup(client, user):
        client.force_login(user)
        assert_requires_stepup(client, "post", "/transfer/", {"amount": "5000"})

    def test_transfer_when_verified(client, user):
        client.force_login(user)
        with stepup_verified(client, user):
            assert client.post("/transfer/", {"amount": "5000"}).status_code == 302

With pytest, the ``stepup_verified`` fixture (installed by the ``stepup``
pytest plugin) returns the same context manager.

Allowed decisions reach the decision log in batches after the response
(:mod:`stepup.allowed_log`): call :func:`flush_decision_log` before reading
``allowed`` rows::

    flush_decision_log()
    assert DecisionLog.objects.filter(event="allowed").count() == 1
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import reverse

from stepup import allowed_log, binding, grants
from stepup.state import state

_RFC9470 = re.compile(r'^Bearer\s.*\berror="insufficient_user_authentication".*\bmax_age=\d+', re.S)


def assert_requires_stepup(
    client: Client,
    method: str,
    url: str,
    data: Any = None,
    *,
    refused_in_view: bool = False,
    **extra: Any,
) -> HttpResponse:
    """Fail unless the request is challenged for step-up before the view ran; return the response.

    Challenged means a ``302`` to ``stepup:verify`` carrying ``next`` and
    ``challenge``, or an RFC 9470 ``401`` (``WWW-Authenticate: Bearer
    error="insufficient_user_authentication" … max_age=N``).

    Before the view ran means the refusal came from ``@require_stepup``,
    ``StepUpRequiredMixin``, ``StepUpPermission`` or the middleware's URL
    policies, not from ``enforce()`` in the view's own code (or from anything
    refused after one of those checks passed): such a refusal comes after
    whatever the view did first. The helper reads this from the request the
    test client handled (``response.wsgi_request``); nothing is added to
    responses.

    :param client: a Django test client (or DRF's ``APIClient``), usually logged in.
    :param method: ``"get"``, ``"post"``, … (any case).
    :param refused_in_view: set it when the view calls ``enforce()`` itself and
        you have made sure nothing happens before that call (the helper can't
        tell ``enforce()`` on the view's first line from one after its work).
        The response must still be a challenge. When the view has side
        effects, assert in your test that they did not happen.
    :param extra: passed to the client (``content_type=``, ``headers=`` …).
    """
    send = getattr(client, method.lower(), None)
    if send is None:
        raise AssertionError(f"the test client has no method {method!r}")
    response: HttpResponse = send(url, data, **extra) if data is not None else send(url, **extra)
    problem = _challenge_problem(response) or (None if refused_in_view else _refused_in_view(response))
    if problem:
        raise AssertionError(
            f"{method.upper()} {url} was not challenged for step-up before the view ran: {problem}"
        )
    return response


def _refused_in_view(response: HttpResponse) -> str | None:
    request = getattr(response, "wsgi_request", None)
    if request is None:
        return "the response carries no request to tell where it was refused (use django.test.Client)"
    if not state(request).view_started:
        return None
    return (
        "it was challenged only after the view's own code had started (enforce() in the view, or a "
        "check after @require_stepup, StepUpRequiredMixin, StepUpPermission or a URL policy passed), "
        "so the view may have done its work first. Enforce before the view runs, or pass "
        "refused_in_view=True when the view calls enforce() before doing anything"
    )


def _challenge_problem(response: HttpResponse) -> str | None:
    if response.status_code == 401:
        header = response.headers.get("WWW-Authenticate", "")
        return None if _RFC9470.match(header) else f"401 without an RFC 9470 challenge ({header!r})"
    if response.status_code != 302:
        return f"status {response.status_code}, expected a 302 to stepup:verify or an RFC 9470 401"
    location = urlsplit(response.headers.get("Location", ""))
    if location.path != reverse("stepup:verify"):
        return f"redirected to {response.headers.get('Location')!r}, not to stepup:verify"
    query = parse_qs(location.query)
    if not query.get("challenge") or not query.get("next"):
        return "the redirect to stepup:verify carries no challenge or next"
    return None


@contextmanager
def stepup_verified(
    client: Client,
    user: AbstractBaseUser,
    factor: str = "totp",
    *,
    action: str | None = None,
    url_name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    request: HttpRequest | None = None,
) -> Iterator[None]:
    """Make the client's session (or its API token) freshly verified with ``factor`` while the block runs.

    The grants are written into ``client.session`` exactly as a successful
    verification writes them (so the session key rotates, as in real life);
    they are removed again on exit. For a ``max_age: 0`` policy, also give the
    ``action`` (or ``url_name``) and ``attributes`` of the one request it
    authorizes; for a view with ``bind_request``, also that ``request`` as
    the client will send it (``RequestFactory().post(path, data)`` builds
    what ``client.post(path, data)`` sends).
    """
    digest = None
    if action is not None or url_name is not None:
        bound = binding.request_fingerprint(request) if request is not None else None
        digest = binding.attributes_digest(action, url_name, attributes or {}, bound)
    request = _session_request(client, user)
    token = grants.record_verification(request, user, factor, one_shot_digest=digest)
    credentials = getattr(client, "_credentials", None)
    if token is not None and isinstance(credentials, dict):
        credentials[grants.TOKEN_META] = token  # as an API client sends it after api-verify
    _store(client, request)
    try:
        yield
    finally:
        request = _session_request(client, user)
        grants.clear(request)
        _store(client, request)
        if token is not None and isinstance(credentials, dict):
            credentials.pop(grants.TOKEN_META, None)


def _session_request(client: Client, user: AbstractBaseUser) -> HttpRequest:
    """A request as ``client`` sends them: its session, and its credentials (DRF's ``APIClient``).

    An ``Authorization`` credential set with ``APIClient.credentials()`` makes
    the grants a step-up token's, as they are for a token client (see
    :mod:`stepup.grants`); the client then sends that token in its
    ``StepUp-Token`` header while the block runs.
    """
    request = HttpRequest()
    request.session = client.session
    request.user = user  # type: ignore[assignment]  # any user model
    credentials = getattr(client, "_credentials", {})
    sent = ("HTTP_AUTHORIZATION", grants.TOKEN_META)
    request.META.update({k: v for k, v in credentials.items() if k in sent})
    return request


def _store(client: Client, request: HttpRequest) -> None:
    request.session.save()
    name = settings.SESSION_COOKIE_NAME
    client.cookies[name] = request.session.session_key or ""
    morsel = client.cookies[name]
    morsel["path"] = "/"
    if settings.SESSION_COOKIE_DOMAIN:
        morsel["domain"] = settings.SESSION_COOKIE_DOMAIN
    if settings.SESSION_COOKIE_SECURE:
        morsel["secure"] = True


def flush_decision_log() -> int:
    """Write the buffered ``allowed`` decision-log rows now; return how many were written.

    Every other event (challenges, denials, verifications, failures, shadow
    decisions) is in the database as soon as it happens; an allowed decision
    waits in a per-process buffer (:mod:`stepup.allowed_log`).
    """
    return allowed_log.flush()
