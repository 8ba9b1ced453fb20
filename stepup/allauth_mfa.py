"""``allauth.mfa`` authenticators, and checking them with allauth's own code.

With ``"allauth"`` in ``STEPUP["FACTOR_SOURCES"]``, a user's
:class:`allauth.mfa.models.Authenticator` rows are factors: TOTP as ``totp``,
recovery codes as ``static``, WebAuthn as ``webauthn``. This module is the one
place that knows allauth: which rows count, what they are called, and how a
code or a WebAuthn assertion is checked. Everything is checked by allauth:

- TOTP: ``TOTP(authenticator).validate_code`` — including allauth's replay
  protection, a used-code mark in Django's cache for the whole tolerance
  window, shared with allauth's own login and reauthentication;
- recovery codes: ``RecoveryCodes(authenticator).validate_code``, which locks
  the row and marks the code used;
- WebAuthn: the ``Fido2Server`` allauth configures (relying party, origin
  check) with the user's allauth credentials, and allauth's lookup of the
  authenticator by credential id (:func:`webauthn_options`,
  :func:`check_webauthn`). Unlike allauth's own flow, user verification is
  always required; the ceremony (challenge, single use, the transaction it
  commits to) is stepup's, the same for every source of passkeys.

Throttling: on top of stepup's per-user lockout, every code attempt spends
allauth's own ``login_failed`` rate limit of the user (the budget allauth's
MFA login form spends), so guesses at a step-up and at a login share one
budget; a success clears it, as allauth's form does.

allauth is imported only inside functions: stepup works without it installed,
and ``stepup.E020`` reports ``"allauth"`` in ``FACTOR_SOURCES`` without
``allauth.mfa`` in ``INSTALLED_APPS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.checks import CheckMessage, Error, Warning
from django.http import HttpRequest

APP = "allauth.mfa"
MODEL_LABEL = "mfa.authenticator"
"""The model label (lower-case) of allauth's Authenticator; persistent ids start with it."""

TYPE_KINDS: dict[str, str] = {"totp": "totp", "recovery_codes": "static", "webauthn": "webauthn"}
"""``Authenticator.type`` -> factor kind."""


def is_installed() -> bool:
    """Whether ``allauth.mfa`` is in ``INSTALLED_APPS`` (its models can be used)."""
    return apps.is_installed(APP)


def configuration_problems() -> list[CheckMessage]:
    """allauth settings under which its checks can't protect a step-up (for :mod:`stepup.checks`).

    - A dummy default cache: allauth marks used TOTP codes in ``caches["default"]``;
      with :class:`~django.core.cache.backends.dummy.DummyCache` nothing is
      marked and a code verifies again and again within its window.
    - ``MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN``: allauth's server then accepts
      assertions made for any origin.
    """
    from django.conf import settings

    problems: list[CheckMessage] = []
    backend = str(getattr(settings, "CACHES", {}).get("default", {}).get("BACKEND", ""))
    if backend.endswith("DummyCache"):
        problems.append(
            Error(
                "The default cache is a DummyCache: allauth can't mark used TOTP codes, so a code "
                "would step up again and again within its time window.",
                hint="Use a shared cache (Redis, Memcached or the database) as CACHES['default'].",
                id="stepup.E021",
            )
        )
    if getattr(settings, "MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN", False):
        problems.append(
            Warning(
                "MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN is on: passkey step-ups accept assertions made for "
                "any origin.",
                hint="Only for local development; remove it in production.",
                id="stepup.W020",
            )
        )
    return problems


@contextmanager
def allauth_request(request: HttpRequest) -> Iterator[None]:
    """allauth's code reads the request from its own context variable; set it for the duration."""
    from allauth.core import context

    if context.request is request:
        yield
        return
    with context.request_context(request):
        yield


@dataclass(frozen=True)
class AllauthFactor:
    """One allauth authenticator as stepup offers it.

    :ivar pk: the ``Authenticator`` row's primary key.
    :ivar kind: the factor kind (``totp``, ``static``, ``webauthn``).
    :ivar name: what the user calls it (a passkey's name; else allauth's name of the type).
    :ivar digits: for ``totp``, how many digits a code has (``MFA_TOTP_DIGITS``).
    """

    pk: int
    user_id: Any
    kind: str
    name: str
    digits: int | None = None

    @property
    def persistent_id(self) -> str:
        return persistent_id(self.pk)

    @property
    def stepup_kind(self) -> str:
        """The factor kind, for :meth:`stepup.factors.Factor.owns`."""
        return self.kind


def persistent_id(pk: object) -> str:
    return f"{MODEL_LABEL}/{pk}"


def pk_from_persistent_id(value: object) -> int | None:
    """The primary key in ``mfa.authenticator/<pk>``, or ``None`` when ``value`` isn't one."""
    if not isinstance(value, str) or not value.startswith(f"{MODEL_LABEL}/"):
        return None
    tail = value[len(MODEL_LABEL) + 1 :]
    return int(tail) if tail.isascii() and tail.isdigit() and len(tail) <= 18 else None


def factors_for_user(user: AbstractBaseUser, kinds: Iterable[str] = ()) -> list[AllauthFactor]:
    """The user's allauth authenticators whose kind is in ``kinds`` (empty: every kind).

    Recovery codes with no unused code left are not offered: nothing could verify.
    """
    if not is_installed() or user.pk is None:
        return []
    from allauth.mfa import app_settings
    from allauth.mfa.models import Authenticator

    wanted = set(kinds)
    types = [t for t, kind in TYPE_KINDS.items() if not wanted or kind in wanted]
    found = []
    for authenticator in Authenticator.objects.filter(user_id=user.pk, type__in=types).order_by("pk"):
        kind = TYPE_KINDS[authenticator.type]
        if kind == "static" and not authenticator.wrap().get_unused_codes():
            continue
        digits = int(app_settings.TOTP_DIGITS) if kind == "totp" else None
        found.append(AllauthFactor(authenticator.pk, authenticator.user_id, kind, str(authenticator), digits))
    return found


def lock_authenticator(user: AbstractBaseUser, pk: int) -> Any | None:
    """The user's authenticator ``pk``, locked for update (``SELECT … FOR UPDATE``), or ``None``."""
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.select_for_update().filter(pk=pk, user_id=user.pk).first()


class CodeAttempt:
    """One code attempt on an allauth TOTP or recovery-codes authenticator, for the verification flow.

    It answers the flow as a django-otp device does (``verify_is_allowed``,
    ``verify_token``) and does what allauth's own MFA form does around the
    check: spend the user's ``login_failed`` rate limit, clear it after a
    success, record the use (``last_used_at``, ``authenticator_used``) or the
    failure (``authentication_failed``).
    """

    confirmed = True

    def __init__(self, request: HttpRequest, authenticator: Any) -> None:
        self.request = request
        self.authenticator = authenticator
        self.kind = TYPE_KINDS[authenticator.type]
        self.persistent_id = persistent_id(authenticator.pk)
        self.user_id = authenticator.user_id
        self.name = str(authenticator)
        self.digits = _totp_digits() if self.kind == "totp" else None
        self.stepup_kind = self.kind

    def verify_is_allowed(self) -> tuple[bool, dict[str, Any] | None]:
        user = self.authenticator.user
        return (True, None) if spend_attempt(self.request, user) else (False, None)

    def verify_token(self, token: str) -> bool:
        user = self.authenticator.user
        if check_code(self.request, self.authenticator, token):
            clear_attempts(self.request, user)
            record_use(self.request, self.authenticator)
            return True
        record_failure(self.request, user, self.authenticator)
        return False


def _totp_digits() -> int:
    from allauth.mfa import app_settings

    return int(app_settings.TOTP_DIGITS)


def code_attempt(request: HttpRequest, user: AbstractBaseUser, device_id: str) -> CodeAttempt | None:
    """The user's TOTP or recovery-codes authenticator named by ``device_id``, locked, ready for a code."""
    pk = pk_from_persistent_id(device_id)
    if pk is None or not is_installed():
        return None
    authenticator = lock_authenticator(user, pk)
    if authenticator is None or TYPE_KINDS.get(authenticator.type) not in ("totp", "static"):
        return None
    return CodeAttempt(request, authenticator)


def spend_attempt(request: HttpRequest, user: AbstractBaseUser) -> bool:
    """Spend one attempt of allauth's ``login_failed`` rate limit of ``user``; ``False`` when none is left."""
    from allauth.mfa.base.internal.flows import check_rate_limit
    from django.core.exceptions import ValidationError

    with allauth_request(request):
        try:
            check_rate_limit(user)
        except ValidationError:
            return False
    return True


def clear_attempts(request: HttpRequest, user: AbstractBaseUser) -> None:
    """After a success: clear allauth's rate limit, as allauth's MFA form does."""
    from allauth.core import ratelimit

    ratelimit.clear(request, action="login_failed", key=f"mfa-auth-user-{user.pk}")


def check_code(request: HttpRequest, authenticator: Any, token: str) -> bool:
    """Whether ``token`` is a valid, unused code of a TOTP or recovery-codes ``authenticator``.

    A valid code is spent: allauth marks it used (a TOTP code in the cache
    for its window, a recovery code in the row), so it never verifies twice.
    """
    if TYPE_KINDS.get(authenticator.type) not in ("totp", "static"):
        return False
    with allauth_request(request):
        return bool(authenticator.wrap().validate_code(token))


def record_use(request: HttpRequest, authenticator: Any) -> None:
    """What allauth does after its own use of an authenticator: ``last_used_at`` and ``authenticator_used``.

    allauth's session record of authentications is left alone: a step-up is
    recorded by stepup's grants, and is no allauth login or reauthentication.
    """
    from allauth.mfa import signals

    authenticator.record_usage()
    with allauth_request(request):
        signals.authenticator_used.send(
            sender=type(authenticator),
            request=request,
            user=authenticator.user,
            authenticator=authenticator,
            reauthenticated=True,
            passwordless=False,
        )


def record_failure(request: HttpRequest, user: AbstractBaseUser, authenticator: Any) -> None:
    """allauth's ``authentication_failed`` signal, as its reauthentication form sends it."""
    from allauth.mfa import signals

    with allauth_request(request):
        signals.authentication_failed.send(
            sender=type(authenticator),
            request=request,
            user=user,
            authenticator=authenticator,
            reauthentication=True,
        )


# --- WebAuthn -------------------------------------------------------------------
#
# stepup keeps the ceremony (its challenge, the stepup challenge it answers,
# the transaction it commits to, single use) for every source alike; allauth
# makes the options and checks the assertion for its own credentials.


def webauthn_options(request: HttpRequest, user: AbstractBaseUser, challenge: bytes) -> dict[str, Any] | None:
    """``PublicKeyCredentialRequestOptions`` (JSON) for the user's allauth passkeys; ``None`` without any.

    Made by allauth's ``Fido2Server`` (its relying party) for ``challenge``,
    with user verification required whatever ``MFA_WEBAUTHN_USER_VERIFICATION`` says.
    """
    from allauth.mfa.webauthn.internal import auth
    from fido2.webauthn import UserVerificationRequirement

    with allauth_request(request):
        credentials = auth.get_credentials(user)
        if not credentials:
            return None
        options, _state = auth.get_server().authenticate_begin(
            credentials=credentials,
            user_verification=UserVerificationRequirement.REQUIRED,
            challenge=challenge,
        )
    import json

    return dict(json.loads(json.dumps(dict(options)["publicKey"])))  # plain JSON types (enums are str)


def check_webauthn(
    request: HttpRequest, user: AbstractBaseUser, challenge: bytes, credential: object
) -> Any | None:
    """The user's allauth authenticator that signed ``credential`` over ``challenge``, else ``None``.

    allauth's server checks the client data (type, ``challenge``, origin), the
    relying party, the user-present and user-verified flags and the signature,
    against the user's own allauth credentials only.
    """
    if not isinstance(credential, dict):
        return None
    from allauth.mfa.webauthn.internal import auth
    from fido2.utils import websafe_encode
    from fido2.webauthn import UserVerificationRequirement

    state = {
        "challenge": websafe_encode(challenge),
        "user_verification": UserVerificationRequirement.REQUIRED,
    }
    with allauth_request(request):
        try:
            credentials = auth.get_credentials(user)
            binding = auth.get_server().authenticate_complete(state, credentials, credential)
        except Exception:  # fido2 raises ValueError, TypeError, KeyError… on anything malformed: a failure
            return None
        return auth.get_authenticator_by_credential_id(user, binding.credential_id)


def passkey_used(request: HttpRequest, authenticator: Any) -> AllauthFactor:
    """After a verified assertion: allauth's record of the use; the factor, for the verification's result."""
    record_use(request, authenticator)
    return AllauthFactor(authenticator.pk, authenticator.user_id, "webauthn", str(authenticator))


def owns_credential(user: AbstractBaseUser, credential: object) -> bool:
    """Whether ``credential`` (assertion JSON) names one of the user's allauth passkeys; nothing checked."""
    if not isinstance(credential, dict) or not isinstance(credential.get("rawId"), str):
        return False
    from allauth.mfa.webauthn.internal import auth
    from fido2.utils import websafe_decode

    try:
        raw_id = websafe_decode(credential["rawId"])
    except (ValueError, TypeError):
        return False
    return auth.get_authenticator_by_credential_id(user, raw_id) is not None
