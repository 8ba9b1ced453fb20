"""stepup's JSON API, as Django REST framework views: ``api-verify``, ``api-status``, ``api-decide``.

The views parse requests and shape answers; checking a code is
:mod:`stepup.flows.verification`'s, deciding is :mod:`stepup.enforcement`'s.

Authentication: the project's ``DEFAULT_AUTHENTICATION_CLASSES``, with
``SessionAuthentication`` added when it is missing (a browser verifies with
its session). Grants are recorded for the client's grant subject (see
:mod:`stepup.grants`): the session of a browser, the step-up token that
``api-verify`` hands a client authenticated by a credential.

CSRF: a session-authenticated ``POST`` needs the CSRF token in the
``X-CSRFToken`` header (``api-status`` sets the ``csrftoken`` cookie); a
client authenticated by a token sends none (DRF's ``SessionAuthentication``
enforces CSRF for session-authenticated requests only).

Every answer is JSON with a ``code`` on errors, and carries
``Cache-Control: no-store``, ``X-Frame-Options: DENY`` and
``Content-Security-Policy: frame-ancestors 'none'``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.utils.translation import gettext
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from stepup import openapi
from stepup.enforcement import decide_input, decide_status, enforce
from stepup.exceptions import PolicyStoreUnavailable, StepUpError
from stepup.factors import webauthn
from stepup.flows import verification as flow
from stepup.policy.engine import input_from_dict
from stepup.policy.loader import validate_test
from stepup.policy.model import Decision, PolicyTrace
from stepup.responses import ApiRefusal, api_refusal, not_authenticated, unavailable_refusal
from stepup.throttling import Throttle, current_lockout

HTTP_STATUS = {
    flow.VERIFIED: 200,
    flow.INVALID: 400,
    flow.FAILED: 400,
    flow.THROTTLED: 429,
    flow.LOCKED: 429,
    flow.STARTED: 202,
}
"""The ``api-verify`` status code of each result."""

ATTR_PREFIX = "attrs."


def error(status: int, code: str, detail: str, **extra: Any) -> Response:
    """A JSON error: ``{"code": …, "detail": …, **extra}``."""
    return Response({"code": code, "detail": detail, **extra}, status=status)


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.data)
        self.response = response


# --- the shared plumbing -------------------------------------------------------------


class JSONObjectParser(JSONParser):
    """JSON bodies that are one object; anything else (or nesting too deep to parse) is a ``400``."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(gettext("The body is not valid JSON.")) from None
        if not isinstance(data, dict):
            raise exceptions.ParseError(gettext("The body must be a JSON object."))
        return data


class JSONOnly(DefaultContentNegotiation):
    """Always answer JSON, whatever ``Accept`` or ``?format=`` say (never ``406``/``404``)."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class StepUpAPIView(APIView):
    """The base of stepup's JSON views: authentication, JSON in and out, errors with a ``code``."""

    renderer_classes = [JSONRenderer]
    parser_classes = [JSONObjectParser]
    content_negotiation_class = JSONOnly
    permission_classes = [IsAuthenticated]

    def get_authenticators(self) -> list[BaseAuthentication]:
        """The project's authentication classes, plus ``SessionAuthentication`` if missing."""
        classes = cast(list[type[BaseAuthentication]], list(api_settings.DEFAULT_AUTHENTICATION_CLASSES))
        if not any(issubclass(c, SessionAuthentication) for c in classes):
            classes.append(SessionAuthentication)
        return [cls() for cls in classes]

    def handle_exception(self, exc: Exception) -> Response:
        response = _known_error(exc)
        return response if response is not None else super().handle_exception(exc)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        add_never_cache_headers(response)
        response["X-Frame-Options"] = "DENY"
        response["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response


def _refusal(refusal: ApiRefusal) -> Response:
    return Response(refusal.body, status=refusal.status, headers=refusal.headers)


def _known_error(exc: Exception) -> Response | None:
    """DRF's own refusals, and no policy set, in stepup's shape (and never a 401 turned into a 403)."""
    if isinstance(exc, PolicyStoreUnavailable):
        return _refusal(unavailable_refusal())
    if isinstance(exc, exceptions.NotAuthenticated):
        return _refusal(not_authenticated())
    if isinstance(exc, exceptions.AuthenticationFailed):
        refusal = not_authenticated()
        body = {"code": "authentication_failed", "detail": str(exc.detail)}
        return Response(body, status=401, headers=refusal.headers)
    if isinstance(exc, exceptions.ParseError):
        return error(400, "invalid_json", str(exc.detail))
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error(415, "unsupported_media_type", gettext("Send the body as application/json."))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error(405, "method_not_allowed", str(exc.detail))
    if isinstance(exc, exceptions.PermissionDenied):
        return error(403, "permission_denied", str(exc.detail))
    if isinstance(exc, exceptions.Throttled):
        wait = getattr(exc, "wait", None)
        headers = {"Retry-After": str(int(wait))} if wait is not None else {}
        return Response({"code": "throttled", "detail": str(exc.detail)}, status=429, headers=headers)
    return None


# --- api-verify ------------------------------------------------------------------------


class VerifyAPIView(StepUpAPIView):
    """``POST {"device", "token", "challenge"}`` → ``200 {"verified": true, "factor": …}``."""

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(response.data, dict):
            response.data.setdefault("verified", False)  # every refusal of api-verify says so
        return response

    @openapi.verify_schema
    def post(self, request: Request) -> Response:
        """Check a code for the logged-in user and record the verification.

        ``device`` (a ``persistent_id``) may be left out when the user has
        exactly one usable device; ``challenge`` (the id from a ``401``'s
        body) binds a single-request grant to the refused request. A client
        authenticated by a credential rather than a session also gets a
        ``stepup_token``: its grants are usable only with that token in the
        ``StepUp-Token`` header (see :mod:`stepup.grants`). ``400``
        with ``{"verified": false, "code": …}`` for a rejected code or
        unusable input, ``429`` while throttled or locked out (with
        ``Retry-After``), ``401`` when not logged in.
        """
        data = cast(Mapping[str, Any], request.data)  # JSONObjectParser: always an object
        http = request._request
        target = flow.load_target(http, data.get("challenge"))
        if data.get("send") is True:
            result = flow.begin(http, target, data)
            if result.status == flow.STARTED:
                body = {"verified": False, "sent": True, "code": result.code, "detail": result.message}
                return Response({**body, **result.data}, status=202)
        else:
            result = flow.verify(http, target, data)
        return verification_answer(result)


def verification_answer(result: flow.Result) -> Response:
    """A verification's result as ``api-verify`` (and ``webauthn-complete``) answer it."""
    if result.ok:
        verified: dict[str, Any] = {"verified": True, "factor": result.factor}
        if result.stepup_token is not None:
            verified["stepup_token"] = result.stepup_token
        return Response(verified)
    body: dict[str, Any] = {"verified": False, "code": result.code, "detail": result.message}
    headers = {}
    if result.throttle is not None:
        retry_after = result.throttle.retry_after()
        body["retry_after"] = retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
    return Response(body, status=HTTP_STATUS[result.status], headers=headers)


# --- api-status -----------------------------------------------------------------------


@method_decorator(ensure_csrf_cookie, name="dispatch")
class StatusAPIView(StepUpAPIView):
    """``GET ?action=…&method=…`` (or ``url=…``) → the client's decision now."""

    @openapi.status_schema
    def get(self, request: Request) -> Response:
        """Would this action need step-up now? Computed from server-side state only.

        Transaction attributes are given as ``attrs.<name>=…``. The facts are
        the server's: the client's verification ages and single-request grants
        (reported, never consumed), roles, client IP and session age; any
        other query parameter, such as a claimed ``verified``, is ignored. The
        response sets the CSRF cookie a browser needs for ``api-verify``.
        """
        try:
            query = status_query(request.query_params.lists())
        except _BadRequest as exc:
            return exc.response
        decision = decide_status(
            request, query.get("action"), query.get("url"), query.get("attrs", {}), query["method"]
        )
        return Response(
            {
                "outcome": decision.outcome,
                "max_age": decision.max_age,
                "factors": list(decision.factors),
                "policies": list(decision.policies),
                "reasons": list(decision.reasons),
                "verify_url": reverse("stepup:verify") if decision.outcome == "step_up" else None,
            }
        )


def status_query(items: Any) -> dict[str, Any]:
    """The validated ``action``/``url``/``method``/``attrs`` of an ``api-status`` query string."""
    data: dict[str, Any] = {}
    attrs: dict[str, str] = {}
    for key, values in items:
        is_attr = key.startswith(ATTR_PREFIX)
        if not is_attr and key not in ("action", "url", "method"):
            continue  # anything else, such as a claimed "verified", is ignored
        if len(values) != 1:
            raise _BadRequest(error(400, "invalid_query", gettext("Give %(key)r once.") % {"key": key}))
        if is_attr:
            attrs[key[len(ATTR_PREFIX) :]] = values[0]
        else:
            data[key] = values[0]
    if attrs:
        data["attrs"] = attrs
    query = validated_input(data)
    if query["method"] == "HEAD":  # Django serves HEAD with the GET view
        query["method"] = "GET"
    return query


def validated_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` checked as a policy test's ``input:`` (the loader's own rules), else ``400``."""
    test, errors = validate_test(
        {"name": "request", "input": dict(data), "expect": {"decision": "allow"}},
        source="<request>",
    )
    if test is None:
        details = [{"field": e.field, "message": e.message} for e in errors]
        raise _BadRequest(error(400, "invalid_input", gettext("The input is not valid."), errors=details))
    return dict(test.input)


# --- api-decide -----------------------------------------------------------------------


class DecideAPIView(StepUpAPIView):
    """``POST`` a policy test's ``input`` → ``{"decision": {…}, "trace": […]}``."""

    @openapi.decide_schema
    def post(self, request: Request) -> Response:
        """The decision service: evaluate an input against the policies in force.

        Only for users holding ``stepup.query_decision`` (``403`` otherwise).
        The input is evaluated exactly as given (as ``stepup explain`` does);
        nothing of the caller's own session or grants is used.
        """
        if not request.user.has_perm("stepup.query_decision"):
            return error(403, "permission_denied", gettext("You may not query step-up decisions."))
        try:
            data = validated_input(cast(Mapping[str, Any], request.data))
        except _BadRequest as exc:
            return exc.response
        decision = decide_input(input_from_dict(data), trace=True)
        return Response({"decision": decision_dict(decision), "trace": trace_list(decision.trace or ())})


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
            "conditions": [{"field": c.field, "held": c.held, "detail": c.detail} for c in t.conditions],
        }
        for t in traces
    ]


# --- passkeys and security keys (webauthn) ------------------------------------------------


def _ceremony_error(exc: webauthn.CeremonyError) -> Response:
    return Response({"verified": False, "code": exc.code, "detail": str(exc.message)}, status=400)


class WebAuthnBeginAPIView(StepUpAPIView):
    """``POST {"challenge"}`` → ``200 {"publicKey": PublicKeyCredentialRequestOptions}``."""

    @openapi.webauthn_begin_schema
    def post(self, request: Request) -> Response:
        """Begin a passkey verification for the logged-in user (``webauthn-begin``).

        ``challenge`` (the id from a ``401``'s body or the verify page) names
        what is being authorized; for a one-shot challenge the WebAuthn
        challenge commits to its transaction. The ceremony is kept
        server-side until ``webauthn-complete`` (or the verify page) uses it,
        once. ``400 no_device`` when the user has no usable passkey, ``429``
        while verification is locked.
        """
        data = cast(Mapping[str, Any], request.data)
        http = request._request
        user = flow.authenticated_user(http)
        lockout = current_lockout(user)
        if lockout is not None:
            return _throttled(lockout)
        target = flow.load_target(http, data.get("challenge"))
        try:
            options = webauthn.begin_authentication(
                http,
                user,
                challenge_id=target.id,
                factors=target.challenge.factors,
                digest=target.one_shot_digest,
            )
        except webauthn.CeremonyError as exc:
            return _ceremony_error(exc)
        return Response({"publicKey": options, "challenge": target.id})


class WebAuthnCompleteAPIView(VerifyAPIView):
    """``POST {"challenge", "credential"}`` → ``200 {"verified": true, "factor": "webauthn"}``."""

    @openapi.webauthn_complete_schema
    def post(self, request: Request) -> Response:
        """Finish a passkey verification (``webauthn-complete``): answered exactly as ``api-verify``.

        ``credential`` is the ``PublicKeyCredential`` as JSON (``toJSON()``);
        ``challenge`` must be the one ``webauthn-begin`` was called with. The
        ceremony is used once, whatever the outcome. ``400`` with
        ``{"verified": false, "code": …}`` for a refused or unusable
        assertion (``ceremony_expired``, ``invalid_credential``, ``no_device``),
        ``429`` while locked out.
        """
        data = cast(Mapping[str, Any], request.data)
        http = request._request
        target = flow.load_target(http, data.get("challenge"))
        return verification_answer(webauthn.verify_assertion(http, target, data.get("credential")))


def _throttled(throttle: Throttle) -> Response:
    retry_after = throttle.retry_after()
    body = {
        "verified": False,
        "code": "locked",
        "detail": flow.retry_message(throttle),
        "retry_after": retry_after,
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return Response(body, status=429, headers=headers)


class WebAuthnRegisterBeginAPIView(StepUpAPIView):
    """``POST {}`` → ``200 {"publicKey": PublicKeyCredentialCreationOptions}``."""

    @openapi.webauthn_register_begin_schema
    def post(self, request: Request) -> Response:
        """Begin adding a passkey for the logged-in user (``webauthn-register-begin``).

        A user who already has a second factor must step up for the action
        :data:`~stepup.factors.webauthn.DEVICES_ADD_ACTION` first (the usual
        ``401`` challenge); a user with none adds a first one with the login alone.
        """
        http = request._request
        user = flow.authenticated_user(http)
        if not webauthn.available():
            return error(404, "not_found", str(webauthn.UNAVAILABLE))
        if webauthn.has_factors(user):
            try:
                enforce(request, webauthn.DEVICES_ADD_ACTION)
            except StepUpError as exc:
                return _refusal(api_refusal(request, exc))
        return Response({"publicKey": webauthn.begin_registration(http, user)})


class WebAuthnRegisterCompleteAPIView(StepUpAPIView):
    """``POST {"credential", "name"}`` → ``201 {"registered": true, "device", "name"}``."""

    @openapi.webauthn_register_complete_schema
    def post(self, request: Request) -> Response:
        """Finish adding a passkey (``webauthn-register-complete``): the attestation, checked.

        Only a ceremony begun by ``webauthn-register-begin`` for this client and
        user (which enforced the step-up) can be completed, once.
        """
        data = cast(Mapping[str, Any], request.data)
        http = request._request
        user = flow.authenticated_user(http)
        if not webauthn.available():
            return error(404, "not_found", str(webauthn.UNAVAILABLE))
        try:
            device = webauthn.complete_registration(http, user, data.get("credential"), data.get("name"))
        except webauthn.CeremonyError as exc:
            return Response({"registered": False, "code": exc.code, "detail": str(exc.message)}, status=400)
        return Response({"registered": True, "device": device.persistent_id, "name": device.name}, status=201)


api_verify = VerifyAPIView.as_view()
api_status = StatusAPIView.as_view()
api_decide = DecideAPIView.as_view()
webauthn_begin = WebAuthnBeginAPIView.as_view()
webauthn_complete = WebAuthnCompleteAPIView.as_view()
webauthn_register_begin = WebAuthnRegisterBeginAPIView.as_view()
webauthn_register_complete = WebAuthnRegisterCompleteAPIView.as_view()
