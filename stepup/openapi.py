"""The OpenAPI 3 description of stepup's JSON API, for drf-spectacular.

drf-spectacular is optional: when it is installed, the API views carry their
request and response schemas (``python manage.py spectacular``, or
``SpectacularAPIView`` in your URLconf, describes them); when it isn't, the
decorators here change nothing.

The serializers below only *describe* the bodies: requests are validated by
the policy loader's own rules (one definition of a valid input), and the
test suite checks real responses against this description.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rest_framework import serializers

from stepup.policy.model import FACTOR_KINDS, HTTP_METHODS, OUTCOMES

F = TypeVar("F", bound=Callable[..., Any])

TAG = "step-up"


# --- bodies -------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. `not_authenticated`, `invalid_json`.")
    detail = serializers.CharField()


class InputErrorSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The offending field, e.g. `input.verified.sms`.")
    message = serializers.CharField()


class InvalidInputSerializer(ErrorSerializer):
    errors = InputErrorSerializer(many=True)  # type: ignore[assignment]  # a field, not Serializer.errors


class StepUpRequiredSerializer(serializers.Serializer):
    """The body of a ``401`` step-up challenge (RFC 9470 ``WWW-Authenticate`` header alongside)."""

    code = serializers.ChoiceField(["stepup_required"])
    max_age = serializers.IntegerField(
        min_value=0,
        help_text="Seconds: the verification must be at most this old; 0 = for this request only.",
    )
    factors = serializers.ListField(
        child=serializers.CharField(),
        help_text=f"Acceptable factor kinds ({', '.join(map('`{}`'.format, FACTOR_KINDS))}); empty = any.",
    )
    verify_url = serializers.CharField(help_text="The HTML verification page for this challenge.")
    challenge = serializers.CharField(help_text="The challenge id to send to `api-verify`.")


class VerifyRequestSerializer(serializers.Serializer):
    device = serializers.CharField(
        required=False,
        help_text="The device's `persistent_id`; may be left out with exactly one usable device.",
    )
    token = serializers.CharField(max_length=64, help_text="The code the device shows.")
    challenge = serializers.CharField(
        required=False, help_text="The `challenge` of the 401 being answered (binds single-request grants)."
    )


class VerifiedSerializer(serializers.Serializer):
    verified = serializers.BooleanField(help_text="Always `true`.")
    factor = serializers.ChoiceField(FACTOR_KINDS)
    stepup_token = serializers.CharField(
        required=False,
        help_text="Only for a client authenticated by an `Authorization` credential rather than a "
        "session: send it in the `StepUp-Token` header from now on; the grants are usable only with it.",
    )


class VerifyFailedSerializer(serializers.Serializer):
    verified = serializers.BooleanField(help_text="Always `false`.")
    code = serializers.CharField(
        help_text="`no_device`, `invalid_device`, `invalid_token`, `throttled`, `locked`; "
        "or a request error: `invalid_json`, `unsupported_media_type`, `not_authenticated`, …"
    )
    detail = serializers.CharField()
    retry_after = serializers.IntegerField(
        required=False, allow_null=True, help_text="Seconds until another attempt may be made (429 only)."
    )


# What the status and the decide API both say of a decision (a comment, not a docstring:
# drf-spectacular would copy a docstring into both schemas' descriptions).
class _OutcomeSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(OUTCOMES)
    max_age = serializers.IntegerField(allow_null=True)
    factors = serializers.ListField(child=serializers.CharField())
    policies = serializers.ListField(child=serializers.CharField())
    reasons = serializers.ListField(child=serializers.CharField())


class StatusSerializer(_OutcomeSerializer):
    verify_url = serializers.CharField(allow_null=True, help_text="Set when the outcome is `step_up`.")


class DecideInputSerializer(serializers.Serializer):
    """A policy test's ``input`` (see the policy file reference); ``action`` or ``url`` is required."""

    action = serializers.CharField(required=False, help_text="A declared action, e.g. `billing.update`.")
    url = serializers.CharField(required=False, help_text="A URL name, e.g. `admin:auth_user_change`.")
    method = serializers.ChoiceField(HTTP_METHODS, required=False, help_text="Default GET.")
    roles = serializers.ListField(child=serializers.CharField(), required=False)
    origin = serializers.IPAddressField(required=False, help_text="The client IP.")
    session_age = serializers.FloatField(min_value=0, required=False, help_text="Seconds since login.")
    verified = serializers.DictField(
        child=serializers.FloatField(min_value=0),
        required=False,
        help_text="Seconds since the last verification, per factor kind; 0 = a single-request grant.",
    )
    attrs = serializers.DictField(child=serializers.JSONField(), required=False)


class DecisionSerializer(_OutcomeSerializer):
    shadow = serializers.ListField(child=serializers.CharField())
    one_shot = serializers.BooleanField()
    version = serializers.CharField()


class ConditionTraceSerializer(serializers.Serializer):
    field = serializers.CharField()
    held = serializers.BooleanField()
    detail = serializers.CharField()


class PolicyTraceSerializer(serializers.Serializer):
    policy = serializers.CharField()
    matched = serializers.BooleanField()
    applied = serializers.BooleanField()
    effect = serializers.CharField()
    conditions = ConditionTraceSerializer(many=True)


class DecideResultSerializer(serializers.Serializer):
    decision = DecisionSerializer()
    trace = PolicyTraceSerializer(many=True)


class WebAuthnBeginRequestSerializer(serializers.Serializer):
    challenge = serializers.CharField(
        required=False,
        help_text="The `challenge` of the 401 being answered; for a one-shot one, "
        "the WebAuthn challenge commits to its transaction.",
    )


class WebAuthnOptionsSerializer(serializers.Serializer):
    publicKey = serializers.DictField(  # the WebAuthn name, as navigator.credentials.get() takes it
        help_text="PublicKeyCredentialRequestOptions (or CreationOptions) as JSON, base64url-encoded; "
        "`userVerification` is always `required`."
    )
    challenge = serializers.CharField(required=False, allow_null=True, help_text="The stepup challenge id.")


class WebAuthnCompleteRequestSerializer(serializers.Serializer):
    challenge = serializers.CharField(required=False, help_text="The same `challenge` as given to begin.")
    credential = serializers.DictField(help_text="The PublicKeyCredential as JSON (`toJSON()`).")


class WebAuthnRegisterRequestSerializer(serializers.Serializer):
    credential = serializers.DictField(help_text="The new PublicKeyCredential as JSON (`toJSON()`).")
    name = serializers.CharField(required=False, max_length=64, help_text="What the user calls it.")


class WebAuthnRegisteredSerializer(serializers.Serializer):
    registered = serializers.BooleanField(help_text="Always `true`.")
    device = serializers.CharField(help_text="The new credential's `persistent_id`.")
    name = serializers.CharField()


# --- the schema decorators ------------------------------------------------------------------


def _identity(func: F) -> F:
    return func


def _spectacular_decorators() -> tuple[Callable[[F], F], Callable[[F], F], Callable[[F], F]]:
    try:
        from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
    except ImportError:  # drf-spectacular is optional
        return _identity, _identity, _identity

    def reply(serializer: Any, description: str) -> Any:
        return OpenApiResponse(serializer, description=description)

    unauthenticated = reply(ErrorSerializer, "Not logged in (`not_authenticated`) or a bad credential.")
    verify = extend_schema(
        operation_id="stepup_verify",
        tags=[TAG],
        request=VerifyRequestSerializer,
        responses={
            200: reply(VerifiedSerializer, "Verified; the grant is recorded for this client."),
            400: reply(VerifyFailedSerializer, "A rejected code or unusable input (also `invalid_json`)."),
            401: reply(VerifyFailedSerializer, "Not logged in (`not_authenticated`) or a bad credential."),
            403: reply(VerifyFailedSerializer, "CSRF check failed (session clients)."),
            415: reply(VerifyFailedSerializer, "The body is not `application/json`."),
            429: reply(VerifyFailedSerializer, "Throttled or locked out; see `Retry-After`."),
        },
    )
    status = extend_schema(
        operation_id="stepup_status",
        tags=[TAG],
        parameters=[
            OpenApiParameter("action", str, description="The declared action (or give `url`)."),
            OpenApiParameter("url", str, description="A URL name (or give `action`)."),
            OpenApiParameter("method", str, enum=list(HTTP_METHODS), description="Default GET."),
            OpenApiParameter(
                "attrs.amount",
                str,
                description="Transaction attributes, one `attrs.<name>=value` parameter each "
                "(`attrs.amount` is an example).",
            ),
        ],
        responses={
            200: reply(StatusSerializer, "The decision for this client now (server-side facts only)."),
            400: reply(InvalidInputSerializer, "An invalid query (`invalid_input`, `invalid_query`)."),
            401: unauthenticated,
            503: reply(ErrorSerializer, "No policy set could be loaded."),
        },
    )
    decide = extend_schema(
        operation_id="stepup_decide",
        tags=[TAG],
        request=DecideInputSerializer,
        responses={
            200: reply(DecideResultSerializer, "The decision for the input, with its trace."),
            400: reply(
                InvalidInputSerializer, "An invalid input (`invalid_input`) or body (`invalid_json`)."
            ),
            401: unauthenticated,
            403: reply(ErrorSerializer, "The caller lacks `stepup.query_decision`, or CSRF failed."),
            415: reply(ErrorSerializer, "The body is not `application/json`."),
            503: reply(ErrorSerializer, "No policy set could be loaded."),
        },
    )
    return verify, status, decide


verify_schema, status_schema, decide_schema = _spectacular_decorators()


def _webauthn_decorators() -> tuple[Callable[[F], F], ...]:
    try:
        from drf_spectacular.utils import OpenApiResponse, extend_schema
    except ImportError:  # drf-spectacular is optional
        return (_identity,) * 4

    failed = {
        400: OpenApiResponse(
            VerifyFailedSerializer,
            description="`no_device`, `ceremony_expired`, `invalid_credential`, or a request error.",
        ),
        401: OpenApiResponse(ErrorSerializer, description="Not logged in, or a step-up is needed first."),
        403: OpenApiResponse(ErrorSerializer, description="CSRF check failed (session clients)."),
        429: OpenApiResponse(VerifyFailedSerializer, description="Locked out; see `Retry-After`."),
    }

    def schema(operation: str, request: Any, ok: int, answer: Any) -> Callable[[F], F]:
        return extend_schema(
            operation_id=operation, tags=[TAG], request=request, responses={ok: answer, **failed}
        )

    return (
        schema("stepup_webauthn_begin", WebAuthnBeginRequestSerializer, 200, WebAuthnOptionsSerializer),
        schema("stepup_webauthn_complete", WebAuthnCompleteRequestSerializer, 200, VerifiedSerializer),
        schema("stepup_webauthn_register_begin", None, 200, WebAuthnOptionsSerializer),
        schema(
            "stepup_webauthn_register_complete",
            WebAuthnRegisterRequestSerializer,
            201,
            WebAuthnRegisteredSerializer,
        ),
    )


(
    webauthn_begin_schema,
    webauthn_complete_schema,
    webauthn_register_begin_schema,
    webauthn_register_complete_schema,
) = _webauthn_decorators()


def stepup_responses() -> dict[int, Any]:
    """The refusals :class:`~stepup.permissions.StepUpPermission` adds to a view, for its schema.

    Use with drf-spectacular::

        @extend_schema(responses={201: TransferSerializer, **stepup_responses()})
        def post(self, request): ...
    """
    from drf_spectacular.utils import OpenApiResponse

    return {
        401: OpenApiResponse(
            StepUpRequiredSerializer,
            description="Step-up needed (RFC 9470: `WWW-Authenticate: Bearer "
            'error="insufficient_user_authentication"`), or not logged in.',
        ),
        403: OpenApiResponse(
            ErrorSerializer,
            description="`stepup_denied` (a policy denies it), `stepup_enroll_required` (no usable device).",
        ),
    }
