"""Passkeys and security keys (``webauthn``): ceremonies through django-otp-webauthn, bound to the challenge.

A WebAuthn verification is two requests. *Begin* makes the
``PublicKeyCredentialRequestOptions`` for the user's usable credentials and
keeps the ceremony server-side; *complete* checks the signed assertion the
browser (or an API client) sends back against that ceremony. Both use the
package's helper (``get_webauthn_helper(request)``), never its login views:
those log the user in and relax user verification for a logged-in user.

What this module guarantees, whatever the client sends:

- **User verification is required**, in the options (``userVerification:
  "required"``) and on the response (the UV flag must be set); a security key
  that only proves presence is refused.
- **The ceremony is server-side, single use and expiring**: a row of
  :class:`stepup.models.PendingChallenge` whose id starts with
  :data:`CEREMONY_PREFIX` (an id :func:`stepup.flows.verification.load_target`
  never accepts), owned by the client's challenge subject and user, expiring
  after ``OTP_WEBAUTHN_TIMEOUT_SECONDS``. *Complete* deletes it before it
  checks anything (a conditional ``DELETE``: of two parallel completes only
  one finds it), so an assertion can be used once. A new *begin* replaces the
  subject's previous ceremony.
- **The ceremony answers one stepup challenge**: it records the challenge id
  it was begun for, and *complete* refuses it for any other.
- **Dynamic linking**: for a one-shot decision (``max_age: 0``) the WebAuthn
  challenge is 32 random bytes followed by the 32 bytes of the transaction's
  digest (:func:`stepup.binding.attributes_digest`, the one the single-request
  grant is bound to). The authenticator signs it, so the assertion itself
  commits to the amount and account the user was shown; *complete* checks
  that commitment against the digest of the challenge being answered.
- **Only the user's own usable credentials**: confirmed credentials of the
  user, and only where the challenge accepts ``webauthn``. A credential of
  another user is refused before its signature is checked.
- **The sign counter** is checked and updated by py_webauthn and the helper.
- **Nothing secret is logged**: no assertion, client data or signature
  reaches a log or the decision log; failures are logged by their code only.

Registration (:func:`begin_registration`, :func:`complete_registration`)
requires user verification too. Whether the user must step up first is the
caller's decision (see :mod:`stepup.api`, action ``stepup.devices.add``).

Why one module of about 600 lines: every guarantee above is kept by code in
this file (ceremony state, challenge bytes, the credential filter, the
verification); a reviewer checks them in one place, not across several.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from stepup.factors.base import Begun, Choice, Factor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from stepup.flows.verification import Target

CEREMONY_PREFIX = "webauthn."
"""The id prefix of a ceremony's row; ``.`` is never in a stepup challenge id."""

DEVICES_ADD_ACTION = "stepup.devices.add"
"""The action a user who already has a second factor steps up for before adding a passkey."""

AUTHENTICATE = "authenticate"
REGISTER = "register"

NONCE_BYTES = 32
DIGEST_BYTES = 32
MAX_CREDENTIAL_JSON = 64 * 1024
"""The largest credential (as JSON text) looked at; real ones are a few KB."""
MAX_NAME = 64


class CeremonyError(Exception):
    """A ceremony can't begin or complete; ``code`` is the API's, ``message`` the user's.

    :ivar checked: whether a signature was actually checked (and failed): such a
        failure counts towards the per-user lockout.
    """

    def __init__(self, code: str, message: Any, *, checked: bool = False) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.checked = checked


UNAVAILABLE = _("Passkeys are not available on this site.")


def no_credential() -> CeremonyError:
    return CeremonyError("no_device", _("You have no passkey or security key that can confirm this."))


def _expired() -> CeremonyError:
    return CeremonyError("ceremony_expired", _("That request has expired. Try again."))


def _invalid() -> CeremonyError:
    return CeremonyError("invalid_credential", _("Your passkey could not be checked. Try again."))


def _refused() -> CeremonyError:
    return CeremonyError(
        "invalid_credential",
        _("That passkey or security key was not accepted."),
        checked=True,
    )


# --- the WebAuthn challenge --------------------------------------------------------


def ceremony_challenge(digest: str | None) -> bytes:
    """A fresh WebAuthn challenge: random bytes, followed by the transaction digest when bound."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + _digest_bytes(digest) if digest else nonce


def commits_to(challenge: bytes, digest: str | None) -> bool:
    """Whether ``challenge`` is exactly one :func:`ceremony_challenge` made for ``digest``."""
    if not digest:
        return len(challenge) == NONCE_BYTES
    expected = _digest_bytes(digest)
    return len(challenge) == NONCE_BYTES + DIGEST_BYTES and secrets.compare_digest(
        challenge[NONCE_BYTES:], expected
    )


def _digest_bytes(digest: str) -> bytes:
    raw = bytes.fromhex(digest)
    if len(raw) != DIGEST_BYTES:
        raise ValueError("a transaction digest is a SHA-256 hex digest")
    return raw


# --- the ceremony kept server-side -----------------------------------------------------


@dataclass(frozen=True)
class Ceremony:
    """One begun ceremony, as stored.

    :ivar purpose: :data:`AUTHENTICATE` or :data:`REGISTER`.
    :ivar challenge: the WebAuthn challenge the authenticator must sign.
    :ivar challenge_id: the stepup challenge it answers (``None``: generic or registration).
    :ivar digest: the transaction digest the challenge commits to (one-shot only).
    """

    purpose: str
    challenge: bytes
    challenge_id: str | None = None
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from webauthn.helpers import bytes_to_base64url

        return {
            "webauthn_ceremony": {
                "purpose": self.purpose,
                "challenge": bytes_to_base64url(self.challenge),
                "challenge_id": self.challenge_id,
                "digest": self.digest,
            }
        }

    @classmethod
    def from_dict(cls, data: Any) -> Ceremony | None:
        from webauthn.helpers import base64url_to_bytes

        found = data.get("webauthn_ceremony") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            return None
        purpose, challenge = found.get("purpose"), found.get("challenge")
        challenge_id, digest = found.get("challenge_id"), found.get("digest")
        if purpose not in (AUTHENTICATE, REGISTER) or not isinstance(challenge, str):
            return None
        if not (challenge_id is None or isinstance(challenge_id, str)):
            return None
        if not (digest is None or isinstance(digest, str)):
            return None
        try:
            raw = base64url_to_bytes(challenge)
        except ValueError:
            return None
        return cls(purpose, raw, challenge_id, digest)


def _timeout_seconds() -> int:
    from django_otp_webauthn.settings import app_settings

    return int(app_settings.OTP_WEBAUTHN_TIMEOUT_SECONDS)


def _subject(request: HttpRequest, user: AbstractBaseUser, *, create: bool = False) -> str | None:
    from stepup.grants import challenge_subject

    return challenge_subject(request, user, create=create)


def save_ceremony(request: HttpRequest, user: AbstractBaseUser, ceremony: Ceremony) -> None:
    """Keep ``ceremony`` for the request's subject, replacing the subject's previous one."""
    from stepup.grants import now
    from stepup.models import PendingChallenge

    subject = _subject(request, user, create=True)
    if subject is None:  # pragma: no cover - create=True always gives one
        raise RuntimeError("no challenge subject for a WebAuthn ceremony")
    t = now()
    with transaction.atomic():
        PendingChallenge.objects.filter(subject=subject, challenge_id__startswith=CEREMONY_PREFIX).delete()
        PendingChallenge.objects.create(
            challenge_id=CEREMONY_PREFIX + secrets.token_urlsafe(16),
            subject=subject,
            user_id=user.pk,
            data=ceremony.to_dict(),
            created_at=t,
            expires_at=t + _timeout_seconds(),
        )


def claim_ceremony(request: HttpRequest, user: AbstractBaseUser, purpose: str) -> Ceremony | None:
    """Take the subject's current ceremony of ``purpose`` out of storage: single use.

    ``None`` when there is none, it expired, it belongs to another user, it is
    of another purpose, or a parallel request claimed it first. Whatever is
    found is deleted, so a ceremony is never checked twice.
    """
    from stepup.grants import now
    from stepup.models import PendingChallenge

    subject = _subject(request, user)
    if subject is None:
        return None
    rows = PendingChallenge.objects.filter(subject=subject, challenge_id__startswith=CEREMONY_PREFIX)
    row = rows.order_by("-created_at", "-pk").first()
    if row is None:
        return None
    # A conditional DELETE: of two requests that read the same row, only one deletes it.
    if PendingChallenge.objects.filter(pk=row.pk).delete()[0] != 1:
        return None
    if row.user_id != user.pk or row.expires_at <= now() or not row.challenge_id.startswith(CEREMONY_PREFIX):
        return None
    ceremony = Ceremony.from_dict(row.data)
    return ceremony if ceremony is not None and ceremony.purpose == purpose else None


# --- credentials -------------------------------------------------------------------------


def available() -> bool:
    """Whether django-otp-webauthn credentials are factors here: installed, and ``django_otp`` a source."""
    from django.apps import apps

    from stepup.conf import conf

    return apps.is_installed("django_otp_webauthn") and "django_otp" in conf.FACTOR_SOURCES


def allauth_available() -> bool:
    """Whether ``allauth.mfa``'s WebAuthn authenticators are factors here (see :mod:`stepup.allauth_mfa`)."""
    from stepup import allauth_mfa
    from stepup.conf import conf

    return allauth_mfa.is_installed() and "allauth" in conf.FACTOR_SOURCES


def accepts_webauthn(factors: tuple[str, ...] | list[str]) -> bool:
    """Whether a challenge asking for ``factors`` (empty: any kind) takes a passkey."""
    return not factors or "webauthn" in factors


def usable_credentials(user: AbstractBaseUser) -> Any:
    """The user's confirmed django-otp-webauthn credentials (a queryset)."""
    from django_otp_webauthn.utils import get_credential_model

    return get_credential_model().objects.filter(user_id=user.pk, confirmed=True)


def has_factors(user: AbstractBaseUser) -> bool:
    """Whether ``user`` already has a confirmed second factor (of any kind stepup knows)."""
    from stepup.devices import has_second_factor

    return has_second_factor(user)


def _helper(request: HttpRequest) -> Any:
    from django_otp_webauthn.utils import get_credential_model

    return get_credential_model().get_webauthn_helper(request)


# --- authentication ------------------------------------------------------------------------


def begin_authentication(
    request: HttpRequest,
    user: AbstractBaseUser,
    *,
    challenge_id: str | None,
    factors: tuple[str, ...],
    digest: str | None,
) -> dict[str, Any]:
    """The ``PublicKeyCredentialRequestOptions`` (JSON) for the user's usable credentials.

    :param challenge_id: the stepup challenge being answered, or ``None``.
    :param factors: the kinds that challenge accepts (empty: any).
    :param digest: the transaction digest to commit to (a one-shot challenge), or ``None``.
    :raises CeremonyError: ``no_device`` when the user has no usable credential.
    """
    from stepup import allauth_mfa

    if not accepts_webauthn(factors):
        raise no_credential()
    try:
        challenge = ceremony_challenge(digest)
    except ValueError:  # not a digest stepup made: nothing can be bound to it (fail closed)
        raise _expired() from None
    # One relying party per ceremony: the first source (django-otp-webauthn, then allauth) with a credential.
    options = _otp_options(request, user, challenge) if available() else None
    if options is None and allauth_available():
        options = allauth_mfa.webauthn_options(request, user, challenge)
    if options is None:
        raise no_credential()
    save_ceremony(request, user, Ceremony(AUTHENTICATE, challenge, challenge_id, digest))
    return options


def _otp_options(request: HttpRequest, user: AbstractBaseUser, challenge: bytes) -> dict[str, Any] | None:
    """The request options for the user's django-otp-webauthn credentials; ``None`` without any."""
    from django_otp_webauthn.models import as_credential_descriptors
    from webauthn import generate_authentication_options
    from webauthn.helpers import options_to_json_dict
    from webauthn.helpers.structs import UserVerificationRequirement

    credentials = usable_credentials(user)
    if not credentials.exists():
        return None
    helper = _helper(request)
    kwargs = helper.get_generate_authentication_options_kwargs(user=user, require_user_verification=True)
    kwargs.update(
        challenge=challenge,
        user_verification=UserVerificationRequirement.REQUIRED,
        allow_credentials=as_credential_descriptors(credentials.order_by("-last_used_at", "pk")),
    )
    options = options_to_json_dict(generate_authentication_options(**kwargs))
    options["extensions"] = helper.get_authentication_extensions()
    return dict(options)


def complete_authentication(
    request: HttpRequest,
    user: AbstractBaseUser,
    credential: object,
    *,
    challenge_id: str | None,
    factors: tuple[str, ...],
    digest: str | None,
) -> Any:
    """Check a signed assertion against the subject's ceremony; the credential (a django-otp device).

    Call it inside the verification's transaction, with the user's state row
    locked (:func:`stepup.throttling.lock_user`): attempts of one user are then
    serialised, and the sign counter is read and written by one at a time.

    :param credential: the ``PublicKeyCredential`` as JSON (a dict, or its text).
    :raises CeremonyError: when anything is wrong; ``checked`` is true when a
        signature was checked and failed.
    """
    ceremony = claim_ceremony(request, user, AUTHENTICATE)
    if not available() and not allauth_available():
        raise no_credential()
    if ceremony is None or ceremony.challenge_id != challenge_id or ceremony.digest != digest:
        raise _expired()
    if not commits_to(ceremony.challenge, digest):
        raise _expired()
    if not accepts_webauthn(factors):
        raise no_credential()
    data = _credential_json(credential)
    if allauth_available():
        from stepup import allauth_mfa

        if allauth_mfa.owns_credential(user, data):
            authenticator = allauth_mfa.check_webauthn(request, user, ceremony.challenge, data)
            if authenticator is None:
                raise _refused()
            return allauth_mfa.passkey_used(request, authenticator)
        if not available():
            raise _refused()  # not one of this user's passkeys
    return _complete_otp(request, user, ceremony, data)


def _complete_otp(
    request: HttpRequest, user: AbstractBaseUser, ceremony: Ceremony, data: dict[str, Any]
) -> Any:
    """Check an assertion by one of the user's django-otp-webauthn credentials; the credential."""
    from django_otp_webauthn.exceptions import CredentialNotFound, CredentialUserMismatch
    from webauthn.helpers import bytes_to_base64url, parse_authentication_credential_json
    from webauthn.helpers.exceptions import WebAuthnException

    try:
        parsed = parse_authentication_credential_json(data)
    except (WebAuthnException, ValueError, TypeError, KeyError):
        raise _invalid() from None
    device = usable_credentials(user).filter(credential_id_sha256=_credential_hash(parsed.raw_id)).first()
    if device is None:
        # Not one of this user's usable credentials: another user's, removed, or unconfirmed.
        raise _refused()
    state = {"challenge": bytes_to_base64url(ceremony.challenge), "require_user_verification": True}
    try:
        verified = _helper(request).authenticate_complete(user, state, data)
    except (CredentialNotFound, CredentialUserMismatch, WebAuthnException, ValueError, TypeError, KeyError):
        raise _refused() from None
    if verified.pk != device.pk:  # pragma: no cover - the helper looked up the same credential id
        raise _refused()
    return verified


def _credential_json(credential: object) -> dict[str, Any]:
    import json

    if isinstance(credential, str):
        if len(credential) > MAX_CREDENTIAL_JSON:
            raise _invalid()
        try:
            credential = json.loads(credential)
        except (ValueError, RecursionError):
            raise _invalid() from None
    if not isinstance(credential, dict):
        raise _invalid()
    return credential


def _credential_hash(raw_id: bytes) -> str:
    from django_otp_webauthn.utils import get_credential_model

    return str(get_credential_model().get_credential_id_sha256(raw_id))


# --- registration --------------------------------------------------------------------------


def begin_registration(request: HttpRequest, user: AbstractBaseUser) -> dict[str, Any]:
    """The ``PublicKeyCredentialCreationOptions`` (JSON) for a new passkey of ``user``, UV required."""
    from webauthn import generate_registration_options
    from webauthn.helpers import base64url_to_bytes, options_to_json_dict
    from webauthn.helpers.structs import AuthenticatorSelectionCriteria, UserVerificationRequirement

    helper = _helper(request)
    kwargs = helper.get_generate_registration_options_kwargs(user=user)
    kwargs["authenticator_selection"] = AuthenticatorSelectionCriteria(
        user_verification=UserVerificationRequirement.REQUIRED,
        resident_key=helper.get_discoverable_credentials_preference(),
    )
    options = options_to_json_dict(generate_registration_options(**kwargs))
    options["extensions"] = helper.get_registration_extensions()
    challenge = base64url_to_bytes(options["challenge"])
    save_ceremony(request, user, Ceremony(REGISTER, challenge))
    return options


def complete_registration(
    request: HttpRequest, user: AbstractBaseUser, credential: object, name: object
) -> Any:
    """Check an attestation against the subject's registration ceremony; the new credential.

    :param name: what the user called it (cut to :data:`MAX_NAME` characters).
    :raises CeremonyError: when the ceremony is gone or the attestation is refused.
    """
    from django.db import IntegrityError
    from django_otp_webauthn.exceptions import OTPWebAuthnApiError
    from webauthn.helpers import bytes_to_base64url
    from webauthn.helpers.exceptions import WebAuthnException

    ceremony = claim_ceremony(request, user, REGISTER)
    if ceremony is None:
        raise _expired()
    data = _credential_json(credential)
    state = {"challenge": bytes_to_base64url(ceremony.challenge), "require_user_verification": True}
    try:
        with transaction.atomic():
            device = _helper(request).register_complete(user, state, data)
    except (OTPWebAuthnApiError, WebAuthnException, IntegrityError, ValueError, TypeError, KeyError):
        raise CeremonyError(
            "invalid_credential", _("That passkey or security key could not be added. Try again.")
        ) from None
    label = name.strip()[:MAX_NAME] if isinstance(name, str) else ""
    device.name = label or str(_("Passkey"))
    device.save(update_fields=["name"])
    return device


# --- the verification attempt ----------------------------------------------------------------


def verify_assertion(request: HttpRequest, target: Any, credential: object) -> Any:
    """Check a passkey assertion for ``target`` and record the verification: a verification ``Result``.

    The same attempt as a typed code (:func:`stepup.flows.verification.verify`):
    the user's state row locked, the per-user lockout in force, a refused
    signature counted as a failure, and on success the same recording (grant,
    single-request grant for a one-shot challenge, decision log, signal).
    """
    from dataclasses import replace

    from stepup import throttling
    from stepup.flows import verification as flow

    user = flow.authenticated_user(request)
    with transaction.atomic():
        state = throttling.lock_user(user)
        lockout = throttling.user_lockout(state)
        if lockout is not None:
            result = flow.Result(flow.LOCKED, "locked", flow.retry_message(lockout), throttle=lockout)
        else:
            try:
                device = complete_authentication(
                    request,
                    user,
                    credential,
                    challenge_id=target.id,
                    factors=target.challenge.factors,
                    digest=target.one_shot_digest,
                )
            except CeremonyError as exc:
                result = _failure(state, exc)
            else:
                throttling.record_success(state)
                choice = WebAuthnFactor().choice_for(device)
                result = flow.Result(flow.VERIFIED, "verified", choice=choice, checked=True)
    if result.ok:
        return replace(result, stepup_token=flow._succeeded(request, user, target, result))
    flow._failed(request, user, target, result)
    return result


def _failure(state: Any, exc: CeremonyError) -> Any:
    from stepup import throttling
    from stepup.flows import verification as flow

    if not exc.checked:
        return flow.Result(flow.INVALID, exc.code, str(exc.message), field="credential")
    lockout = throttling.record_failure(state)
    if lockout is not None:
        return flow.Result(flow.LOCKED, "locked", flow.retry_message(lockout), throttle=lockout, checked=True)
    return flow.Result(flow.FAILED, exc.code, str(exc.message), field="credential", checked=True)


# --- the factor kind ---------------------------------------------------------------------


class WebAuthnFactor(Factor):
    """``webauthn``: a passkey or security key, from django-otp-webauthn and/or ``allauth.mfa``.

    Its choices are the user's passkeys from the configured sources. A
    passkey is not proved by a form's fields: :meth:`begin` makes the
    ceremony's options (``webauthn-begin`` does the same for the page's
    script), and the signed assertion completes through
    :func:`verify_assertion` (the verify page's ``credential`` field,
    ``webauthn-complete``), which records success and failure exactly as the
    flow does for every kind. :meth:`verify` therefore refuses (fail closed).
    """

    kind = "webauthn"
    label = _("Passkey or security key")
    begins = True
    device_models = ("django_otp_webauthn.webauthncredential",)
    secret_fields = ("credential",)
    failure_field = "credential"
    failure_message = _("Your passkey could not be used. Try again.")

    def choices(self, user: AbstractBaseUser) -> list[Choice]:
        if not (available() or allauth_available()):
            return []
        return super().choices(user)

    def begin(self, request: HttpRequest, user: AbstractBaseUser, choice: Choice, target: Target) -> Begun:
        try:
            options = begin_authentication(
                request,
                user,
                challenge_id=target.id,
                factors=target.challenge.factors,
                digest=target.one_shot_digest,
            )
        except CeremonyError as exc:
            return Begun(False, exc.code, str(exc.message))
        return Begun(True, "started", data=options)

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        return False
