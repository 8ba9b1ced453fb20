"""The one place that turns a refusal into an HTTP response.

- :class:`~stepup.StepUpRequired` → a pending challenge is saved and the
  browser is sent to ``stepup:verify`` (``302``), or an API client gets the
  RFC 9470 ``401``; an anonymous user gets the usual login redirect (or a
  plain ``401`` from an API); a user with no usable device
  (:func:`stepup.devices.usable_devices`) is sent to
  ``STEPUP["ENROLL_URL"]`` or shown a ``403`` page that says how to enrol.
- a ``deny`` → ``403`` through Django's ``handler403`` (JSON for an API).
- the policy store unreachable on an unsafe URL-only request → ``503``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.handlers.exception import get_exception_response
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import get_resolver, get_urlconf, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext, gettext_lazy, ngettext

from stepup import binding, devices, pending, store
from stepup.audit import display_attrs, split_secrets
from stepup.challenge import Challenge
from stepup.conf import conf
from stepup.context import RequestContext, get_context
from stepup.exceptions import PolicyStoreUnavailable, StepUpDenied, StepUpError, StepUpRequired
from stepup.i18n import localized_description
from stepup.policy.model import DENY, Decision
from stepup.presentation import Presentation

ENROLL_TEMPLATE = "stepup/enroll_required.html"
MAX_SAVED_FIELDS = 200
MAX_SAVED_BYTES = 64 * 1024
_DESCRIPTION_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6750 error_description
ACR_VALUE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # one value of a space-separated list


# --- is this an API request? ---------------------------------------------------------


def _class_path(cls: object) -> str:
    return f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', '')}"


def view_class(view: Any) -> type | None:
    """The class behind a view function (Django's ``view_class``, DRF's ``cls``)."""
    cls = getattr(view, "view_class", None) or getattr(view, "cls", None)
    return cls if isinstance(cls, type) else None


def is_drf_view(view: Any) -> bool:
    """Whether ``view`` is a Django REST framework view (checked without importing DRF)."""
    cls = view_class(view)
    return cls is not None and any(_class_path(k) == "rest_framework.views.APIView" for k in cls.__mro__)


def is_api_request(request: HttpRequest) -> bool:
    """Whether the client wants JSON rather than a page.

    True for a DRF view, a request whose ``Accept`` prefers ``application/json``
    over ``text/html``, a JSON body, or ``X-Requested-With: XMLHttpRequest``.
    """
    match = getattr(request, "resolver_match", None)
    if match is not None and is_drf_view(match.func):
        return True
    if request.headers.get("x-requested-with") == "XMLHttpRequest":
        return True
    content_type = (request.content_type or "").lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return True
    if not request.headers.get("accept"):
        return False
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


# --- step-up -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRefusal:
    """A refusal as an API client gets it: the status, the JSON body and the headers.

    :func:`api_refusal` builds it; :func:`refusal_response` sends it as a
    ``JsonResponse``, and :class:`stepup.permissions.StepUpPermission` raises
    it as a DRF exception, so both say exactly the same.
    """

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> HttpResponse:
        response = JsonResponse(self.body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        add_never_cache_headers(response)
        return response


def _stepup_response(context: RequestContext, exc: StepUpRequired) -> HttpResponse:
    """The response for a request that needs step-up (see the module doc)."""
    http, user = context.request, context.user
    if is_api_request(http):
        return _stepup_refusal(context, exc).response()
    if not user.is_authenticated:
        return redirect_to_login(http.get_full_path())
    decision = exc.decision
    if not devices.usable_devices(user, decision.factors):
        return _enroll_page(http, decision)
    challenge = build_challenge(http, exc)
    challenge_id = pending.save_challenge(http, challenge.to_dict())
    response = HttpResponseRedirect(_verify_url(challenge, challenge_id))
    add_never_cache_headers(response)
    return response


def _stepup_refusal(context: RequestContext, exc: StepUpRequired) -> ApiRefusal:
    """What an API client gets for a request that needs step-up.

    ``401`` with the RFC 9470 ``WWW-Authenticate`` challenge and the body
    ``{"code": "stepup_required", "max_age", "factors", "verify_url",
    "challenge"}`` (``challenge`` is the id to send to ``stepup:api-verify``);
    ``401 not_authenticated`` when nobody is logged in; ``403
    stepup_enroll_required`` when the user has no device that can satisfy it.
    """
    http, user = context.request, context.user
    if not user.is_authenticated:
        return not_authenticated()
    decision = exc.decision
    if not devices.usable_devices(user, decision.factors):
        return _enroll_refusal(decision)
    challenge = build_challenge(http, exc, include_post=False)
    challenge_id = pending.save_challenge(http, challenge.to_dict())
    max_age, factors = challenge.max_age, list(challenge.factors)
    body = {
        "code": "stepup_required",
        "max_age": max_age,
        "factors": factors,
        "verify_url": _verify_url(challenge, challenge_id),
        "challenge": challenge_id,
    }
    return ApiRefusal(401, body, {"WWW-Authenticate": www_authenticate(max_age, factors=factors)})


def _verify_url(challenge: Challenge, challenge_id: str) -> str:
    params = {"next": challenge.next, "challenge": challenge_id}
    if challenge.is_form_post:
        params["back"] = challenge.form_url or ""  # where to start again should the challenge expire
    query = urlencode(params)
    return f"{reverse('stepup:verify')}?{query}"


def www_authenticate(max_age: int, description: str | None = None, factors: Sequence[str] = ()) -> str:
    """The RFC 9470 challenge: ``Bearer error="insufficient_user_authentication", …, max_age=N``.

    ``acr_values="…"`` is added when ``STEPUP["ACR_VALUES"]`` maps any of
    ``factors`` (empty: any kind) to an ACR value.
    """
    if description is None:
        description = (
            gettext("A fresh second-factor verification is required for this request")
            if max_age == 0
            else ngettext(
                "A second factor verified within the last %(seconds)d second is required",
                "A second factor verified within the last %(seconds)d seconds is required",
                max_age,
            )
            % {"seconds": max_age}
        )
    params = [
        'error="insufficient_user_authentication"',
        f'error_description="{header_text(description)}"',
    ]
    acr = acr_values(factors)
    if acr:
        params.append(f'acr_values="{" ".join(acr)}"')
    params.append(f"max_age={int(max_age)}")
    return "Bearer " + ", ".join(params)


# Letters that NFKD can't take apart into an ASCII letter and an accent, spelled out as
# German and French spell them when they must write without them.
_ASCII_SPELLING = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
    | {"œ": "oe", "Œ": "Oe", "æ": "ae", "Æ": "Ae"}
    # typographic quotes and apostrophes, and no-break spaces
    | dict.fromkeys(["\u2019", "\u2018", "\u00ab", "\u00bb", "\u201e", "\u201c", "\u201d"], "'")
    | dict.fromkeys(["\u00a0", "\u202f"], " ")
)


def header_text(text: str) -> str:
    """``text`` as an RFC 6750 ``error_description`` can carry it: printable ASCII without ``"`` or ``\\``.

    A translated description keeps its words: umlauts and ligatures are spelled
    out (``ä`` → ``ae``), accents dropped (``é`` → ``e``), typographic quotes
    made plain; whatever is left outside the allowed set becomes a space.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_ASCII_SPELLING))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _DESCRIPTION_UNSAFE.sub(" ", plain)


def acr_values(factors: Sequence[str]) -> list[str]:
    """The ACR values ``STEPUP["ACR_VALUES"]`` maps ``factors`` to, in its order (empty factors: all).

    A value that can't appear in a space-separated quoted list (spaces,
    quotes, backslashes, control or non-ASCII characters) is left out.
    """
    wanted = set(factors)
    found: list[str] = []
    for kind, value in conf.ACR_VALUES.items():
        usable = isinstance(value, str) and ACR_VALUE.fullmatch(value) is not None
        if usable and (not wanted or kind in wanted) and value not in found:
            found.append(value)
    return found


def build_challenge(http: HttpRequest, exc: StepUpRequired, *, include_post: bool = True) -> Challenge:
    """The pending challenge handed to the verification views."""
    decision = exc.decision
    max_age = decision.max_age if decision.max_age is not None else conf.DEFAULT_MAX_AGE
    path = http.get_full_path()
    post, post_secrets = _saved_post(http) if include_post else (None, [])
    presentation = exc.presentation if isinstance(exc.presentation, Presentation) else Presentation()
    names = [*exc.attributes, *(post or {}), *post_secrets]
    return Challenge(
        action=exc.action,
        url_name=exc.url_name,
        method=http.method or "GET",
        path=path,
        attrs=display_attrs(exc.attributes),
        digest=exc.digest or binding.attributes_digest(exc.action, exc.url_name, exc.attributes),
        policies=tuple(decision.policies),
        descriptions=tuple(_descriptions(decision)),
        max_age=int(max_age),
        factors=tuple(decision.factors),
        one_shot=max_age == 0,
        post=post,
        post_secrets=tuple(post_secrets),
        next=path,
        labels=presentation.label_map(names),
        display=presentation.display_values(http, exc.attributes),
        form_url=presentation.form_page(http),
        download=presentation.download,
    )


def _descriptions(decision: Decision, only: str | None = None) -> list[str]:
    """The descriptions of the policies behind ``decision`` (``only`` those whose decision it is)."""
    try:
        specs = store.get_policy_set().specs
    except PolicyStoreUnavailable:
        return []
    found = (
        localized_description(specs[p].description)
        for p in decision.policies
        if p in specs and (only is None or specs[p].decision == only)
    )
    return [d for d in dict.fromkeys(found) if d]


def _saved_post(http: HttpRequest) -> tuple[dict[str, list[str]] | None, list[str]]:
    """An interrupted form POST, to present again after verification, and its secret fields' names.

    The challenge is stored in the database, and a secret never is: fields
    that look secret (a password, a code, a card number …:
    :func:`stepup.audit.is_secret_name`) are left out, and the confirm page
    asks for them again. Nothing is kept when the form is too big.
    """
    if http.method != "POST":
        return None, []
    try:
        fields = dict(http.POST.lists())
        if http.FILES:
            return None, []  # a file can't be put back into a form: the user submits it again
    except Exception:
        return None, []
    size = sum(len(k) + sum(len(v) for v in values) for k, values in fields.items())
    if len(fields) > MAX_SAVED_FIELDS or size > MAX_SAVED_BYTES:
        return None, []
    return split_secrets(fields)


def not_authenticated() -> ApiRefusal:
    """``401`` for an API request nobody is logged in for (no RFC 9470 challenge: log in first)."""
    body = {"code": "not_authenticated", "detail": gettext("Authentication credentials were not provided.")}
    return ApiRefusal(401, body, {"WWW-Authenticate": 'Session realm="api"'})


_ENROLL_DETAIL = gettext_lazy(
    "This action needs a second factor, and you have no device that can provide it."
)


def enroll_url() -> str | None:
    """``STEPUP["ENROLL_URL"]`` as a URL (it may name a URL), or ``None``."""
    return resolve_url(conf.ENROLL_URL) if conf.ENROLL_URL else None


def _enroll_refusal(decision: Decision) -> ApiRefusal:
    body = {
        "code": "stepup_enroll_required",
        "detail": str(_ENROLL_DETAIL),
        "factors": list(decision.factors),
        "enroll_url": enroll_url(),
    }
    return ApiRefusal(403, body)


def _enroll_page(http: HttpRequest, decision: Decision) -> HttpResponse:
    url = enroll_url()
    response: HttpResponse
    if url:
        message = gettext(
            "This action needs a second factor, and you have no device that can provide it. "
            "Set one up to continue."
        )
        messages.warning(http, message, fail_silently=True)
        joiner = "&" if "?" in url else "?"
        response = HttpResponseRedirect(f"{url}{joiner}{urlencode({'next': _local(http.get_full_path())})}")
    else:
        context = {
            "factors": list(decision.factors),
            "descriptions": _descriptions(decision),
            "next": _local(http.get_full_path()),
        }
        response = render(http, ENROLL_TEMPLATE, context, status=403)
    add_never_cache_headers(response)
    return response


def _local(path: str) -> str:
    """``path`` when it can only mean this site (no ``//host`` or ``/\\host``), else ``/``."""
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else "/"


# --- deny, unavailable -----------------------------------------------------------------


def denied_refusal() -> ApiRefusal:
    """``403 stepup_denied`` for an API client."""
    return ApiRefusal(403, {"code": "stepup_denied", "detail": str(_DENIED)})


def unavailable_refusal() -> ApiRefusal:
    """``503`` when no policy set can be loaded for an unsafe request (fail closed)."""
    body = {"code": "stepup_unavailable", "detail": str(_UNAVAILABLE)}
    return ApiRefusal(503, body, {"Retry-After": str(RETRY_AFTER)})


_DENIED = gettext_lazy("This request is denied by policy.")
_UNAVAILABLE = gettext_lazy("Security policies are temporarily unavailable; try again shortly.")
RETRY_AFTER = 30


def _denied_response(http: HttpRequest, exc: StepUpDenied) -> HttpResponse:
    """``403``: JSON for an API client, else Django's ``handler403`` page.

    The page's reason is what the denying policies' descriptions say, not
    their ids. A denial is an answer, not an error: the decision log and the
    ``stepup`` logger record it, and no traceback is logged.
    """
    if is_api_request(http):
        return denied_refusal().response()
    reason = "; ".join(_descriptions(exc.decision, only=DENY)) or str(_DENIED)
    return get_exception_response(http, get_resolver(get_urlconf()), 403, PermissionDenied(reason))


def _unavailable_response(http: HttpRequest) -> HttpResponse:
    """``503`` when no policy set can be loaded for an unsafe request (fail closed)."""
    if is_api_request(http):
        return unavailable_refusal().response()
    response = HttpResponse(str(_UNAVAILABLE), status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER)
    add_never_cache_headers(response)
    return response


def api_refusal(request: Any, exc: StepUpError) -> ApiRefusal:
    """One of stepup's refusals as an API client gets it.

    Anything but step-up or a denial (the policy store unreachable) is the
    ``503``: nothing could be decided, so nothing is allowed.
    """
    if isinstance(exc, StepUpRequired):
        return _stepup_refusal(get_context(request), exc)
    if isinstance(exc, StepUpDenied):
        return denied_refusal()
    return unavailable_refusal()


def refusal_response(request: Any, exc: StepUpError) -> HttpResponse:
    """The response for one of stepup's refusals (the ``503`` for any but step-up or a denial)."""
    context = get_context(request)
    if isinstance(exc, StepUpRequired):
        return _stepup_response(context, exc)
    if isinstance(exc, StepUpDenied):
        return _denied_response(context.request, exc)
    return _unavailable_response(context.request)
