"""The verification flow: prove a second factor, for a pending challenge or generically.

The HTML form (:func:`stepup.views.verify`) and the JSON API
(:class:`stepup.api.VerifyAPIView`) both call :func:`verify`; nothing about
checking a code lives in the views.

What a verification authorizes is always read from the server-side
challenge (:func:`stepup.pending.get_challenge`), never from the request: the
client only names the challenge by its random id. Without a valid challenge
id the verification is generic (any factor) and records verification ages
only, never a single-request grant.

Devices are looked up only among the user's own confirmed devices of a kind
the challenge accepts, and each code is checked against the one chosen
device (``verify_is_allowed()`` then ``verify_token()``), never against all
of them: ``django_otp.match_token`` would spend a guess, and a throttle
increment, on every device.

Signals (sender: :func:`verify`): ``stepup_verified(request, user, factor,
device)`` after each success; ``stepup_failed(request, user, factor, device,
locked)`` after every refused attempt — ``factor`` and ``device`` are
``None`` when no device was chosen yet, ``locked`` is true while the per-user
lockout is in force (including the failure that started it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import django_otp
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp.models import Device

from stepup import audit, grants, pending, throttling
from stepup.challenge import Challenge
from stepup.devices import code_devices, device_kind, load_for_verify
from stepup.signals import stepup_failed, stepup_verified
from stepup.throttling import Throttle

KIND_LABELS: dict[str, str] = {
    "totp": "Authenticator app",
    "hotp": "Hardware token",
    "static": "Backup code",
    "email": "Email code",
    "webauthn": "Security key",
}

MAX_TOKEN_LENGTH = 64
_TOKEN = re.compile(rf"[!-~]{{1,{MAX_TOKEN_LENGTH}}}")  # printable ASCII, no spaces
_DIGITS = re.compile(r"[0-9]+")
NUMERIC_KINDS = frozenset({"totp", "hotp"})
"""Factor kinds whose codes are digits only (see :func:`_require_token`)."""
_CHALLENGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_DEVICE_ID = 200
_MAX_RAW_TOKEN = 1024
_UNUSABLE_DEVICE = "That device can't be used here. Choose another."

VERIFIED = "verified"
INVALID = "invalid"
FAILED = "failed"
THROTTLED = "throttled"
LOCKED = "locked"


# --- what is being authorized ---------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a verification authorizes: a pending challenge, or nothing in particular.

    :ivar id: the challenge id, ``None`` for a generic verification.
    :ivar challenge: the pending :class:`~stepup.challenge.Challenge`; for a
        generic verification, one that asks for nothing in particular.
    """

    id: str | None = None
    challenge: Challenge = field(default_factory=Challenge)

    @property
    def descriptions(self) -> tuple[str, ...]:
        return self.challenge.descriptions

    @property
    def attributes(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.challenge.attrs.items())

    @property
    def one_shot_digest(self) -> str | None:
        """The digest to bind a single-request grant to, when the challenge needs one."""
        return self.challenge.digest if self.challenge.one_shot else None

    def audit_fields(self) -> dict[str, Any]:
        """The decision-log fields that say what was being authorized."""
        challenge = self.challenge
        fields: dict[str, Any] = {
            "action": challenge.action,
            "policies": list(challenge.policies),
            "attrs": dict(challenge.attrs),
        }
        if challenge.url_name is not None:
            fields["url_name"] = challenge.url_name
        return fields


def load_target(request: HttpRequest, challenge_id: object) -> Target:
    """The :class:`Target` named by ``challenge_id``; generic when it is unknown or expired."""
    if not isinstance(challenge_id, str) or not _CHALLENGE_ID.fullmatch(challenge_id):
        return Target()
    found = pending.get_challenge(request, challenge_id)
    return Target(challenge_id, Challenge.from_dict(found)) if found is not None else Target()


# --- devices --------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceChoice:
    """One device as the form offers it."""

    persistent_id: str
    kind: str
    name: str

    @property
    def label(self) -> str:
        kind = KIND_LABELS.get(self.kind, self.kind)
        return f"{kind}: {self.name}" if self.name else kind


def device_choices(devices: list[Any]) -> list[DeviceChoice]:
    return [DeviceChoice(d.persistent_id, device_kind(d) or "", str(d.name or "")) for d in devices]


def input_mode(choices: list[DeviceChoice]) -> str:
    """``numeric`` for the code field unless a backup code (letters and digits) may be typed."""
    return "numeric" if all(c.kind in NUMERIC_KINDS for c in choices) else "text"


_CODE_SOURCES = {
    "totp": "the code from your authenticator app",
    "hotp": "the code from your authenticator app",
    "static": "one of your backup codes",
    "email": "the code we emailed you",
}


def code_hint(choices: list[DeviceChoice]) -> str:
    """What to type, for the devices offered: backup codes only where the decision accepts them."""
    sources = list(dict.fromkeys(_CODE_SOURCES.get(c.kind, "the code your device shows") for c in choices))
    if not sources:
        return ""
    text = sources[0] if len(sources) == 1 else ", ".join(sources[:-1]) + ", or " + sources[-1]
    return text[0].upper() + text[1:] + "."


# --- the attempt ----------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The outcome of one verification attempt.

    :ivar status: ``verified``, ``invalid`` (the input was unusable; no code
        was checked), ``failed`` (a code was checked and rejected),
        ``throttled`` (django-otp's throttle on the device) or ``locked``
        (the per-user lockout).
    :ivar code: a machine-readable code for the API: ``verified``,
        ``no_device``, ``invalid_device``, ``invalid_token``, ``throttled``, ``locked``.
    :ivar message: a sentence for the user.
    :ivar field: the form field the message belongs to (``device``, ``token``), if any.
    :ivar device: the device the attempt used, once one was chosen.
    :ivar throttle: for ``throttled`` and ``locked``, until when.
    :ivar checked: ``True`` when a code was actually checked by the device.
    :ivar stepup_token: after a verification by a client authenticated by a
        credential (not a session), the step-up token its grants now belong
        to (see :mod:`stepup.grants`).
    """

    status: str
    code: str
    message: str = ""
    field: str | None = None
    device: Any = None
    throttle: Throttle | None = None
    checked: bool = False
    stepup_token: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED

    @property
    def factor(self) -> str | None:
        return device_kind(self.device) if self.device is not None else None


class _Invalid(Exception):
    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def normalize_token(raw: object) -> str | None:
    """The code as a device may see it, or ``None`` when it can't be one.

    Surrounding whitespace and inner spaces (``"123 456"``) are removed;
    anything else that is not printable ASCII (full-width digits, control
    characters) or is longer than :data:`MAX_TOKEN_LENGTH` is refused before
    it reaches a device.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_RAW_TOKEN:
        return None
    token = raw.strip().replace(" ", "")
    return token if _TOKEN.fullmatch(token) else None


def authenticated_user(request: HttpRequest) -> AbstractBaseUser:
    """``request.user``, or ``PermissionDenied`` for an anonymous request (fail closed)."""
    user = getattr(request, "user", None)
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise PermissionDenied("authentication required")
    return user


def verify(request: HttpRequest, target: Target, device_id: object, token: object) -> Result:
    """Check ``token`` on the chosen device and, on success, record the verification.

    The attempt runs in one transaction with the user's
    :class:`~stepup.models.UserState` row locked, so parallel attempts are
    serialised and counted exactly. On success: the verification is recorded
    (:func:`stepup.grants.record_verification`, which rotates the session
    key; with a single-request grant when the challenge needs one), the
    device is logged in with django-otp, the per-user failure count is reset,
    a ``verified`` event is logged, ``stepup_verified`` is sent and the
    challenge is dropped. Otherwise a ``failed`` (and, on lockout, a
    ``locked``) event is logged and ``stepup_failed`` is sent.

    :param device_id: the chosen device's ``persistent_id``; may be empty when
        the user has exactly one usable device.
    :param token: the code as typed.
    """
    user = authenticated_user(request)
    with transaction.atomic():
        result = _attempt(request, user, target, device_id, token)
    if result.ok:
        result = replace(result, stepup_token=_succeeded(request, user, target, result))
    else:
        _failed(request, user, target, result)
    return result


def _attempt(
    request: HttpRequest, user: AbstractBaseUser, target: Target, device_id: object, raw_token: object
) -> Result:
    state = throttling.lock_user(user)
    lockout = throttling.user_lockout(state)
    if lockout is not None:
        return Result(LOCKED, "locked", retry_message(lockout), throttle=lockout)
    try:
        device = _select_device(request, user, target, device_id)
        token = _require_token(raw_token, device)
    except _Invalid as exc:
        return Result(INVALID, exc.code, exc.message, field=exc.field)
    throttle = throttling.device_throttle(device)
    if throttle is not None:
        return Result(THROTTLED, "throttled", retry_message(throttle), device=device, throttle=throttle)
    if _verify_token(device, token):
        throttling.record_success(state)
        return Result(VERIFIED, "verified", device=device, checked=True)
    lockout = throttling.record_failure(state)
    if lockout is not None:
        return Result(LOCKED, "locked", retry_message(lockout), device=device, throttle=lockout, checked=True)
    message = "That code is not valid. Check it and try again."
    return Result(FAILED, "invalid_token", message, field="token", device=device, checked=True)


def _verify_token(device: Any, token: str) -> bool:
    """``device.verify_token(token)``, with a backup code first read as it is now, and matched exactly.

    django-otp finds a backup code with a plain ``token_set.filter(token=token)``.
    On MySQL and MariaDB that read may be wrong twice over: under REPEATABLE READ
    it sees the snapshot of the transaction's first read, taken before the wait
    for the user's lock, where a code spent meanwhile is still there; and a
    case-insensitive collation finds ``alpha111`` for ``ALPHA111``. A locking
    read sees the latest rows, and the comparison is made here. A code that is
    not one of the device's fails as django-otp fails it: one more throttle step.
    """
    if isinstance(device, Device) and device_kind(device) == "static":
        codes = list(device.token_set.select_for_update().values_list("token", flat=True))
        if token not in codes:
            device.throttle_increment()
            return False
    return bool(device.verify_token(token))


def _select_device(request: HttpRequest, user: AbstractBaseUser, target: Target, device_id: object) -> Any:
    """The chosen device, loaded for update, if it is one of the user's usable devices."""
    devices = code_devices(user, target.challenge.factors)
    if not devices:
        raise _Invalid("no_device", "You have no device that can confirm this.", None)
    if device_id is None or device_id == "":
        if len(devices) != 1:
            raise _Invalid("invalid_device", "Choose the device you want to use.", "device")
        chosen = devices[0]
    else:
        wanted = device_id if isinstance(device_id, str) and len(device_id) <= _MAX_DEVICE_ID else None
        chosen = next((d for d in devices if d.persistent_id == wanted), None)
        if chosen is None:
            raise _Invalid("invalid_device", _UNUSABLE_DEVICE, "device")
    # Reload with SELECT ... FOR UPDATE so that two parallel uses of one code can't both succeed.
    device = load_for_verify(request, user, chosen.persistent_id)
    if device is None:
        raise _Invalid("invalid_device", _UNUSABLE_DEVICE, "device")
    return device


def _require_token(raw: object, device: Any) -> str:
    """The code exactly as ``device`` shows it, or :class:`_Invalid` (no guess is spent).

    An authenticator's code (TOTP, HOTP) is its digits, as many as the device
    shows: django-otp compares ``int(token)``, which would also take
    ``"123_456"``, ``"+123456"`` or ``"0123456"`` for ``123456``.
    """
    token = normalize_token(raw)
    if token is not None and device_kind(device) in NUMERIC_KINDS:
        digits = getattr(device, "digits", None)
        if not _DIGITS.fullmatch(token) or (isinstance(digits, int) and len(token) != digits):
            token = None
    if token is None:
        message = "Enter the code exactly as your device shows it."
        raise _Invalid("invalid_token", message, "token")
    return token


def retry_message(throttle: Throttle) -> str:
    """When the user may try again, in words."""
    what = (
        "Too many failed attempts: verification is locked."
        if throttle.locked
        else "Too many failed attempts with this device."
    )
    seconds = throttle.retry_after()
    if seconds is None or throttle.until is None:
        return f"{what} Try again later."
    if seconds < 120 or not timezone.is_aware(throttle.until):
        return f"{what} Try again in {_duration(seconds)}."
    local = timezone.localtime(throttle.until)  # the active time zone: the user's, where the site sets it
    return f"{what} Try again in {_duration(seconds)} (at {local:%H:%M})."


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minutes"


def _succeeded(request: HttpRequest, user: AbstractBaseUser, target: Target, result: Result) -> str | None:
    factor = result.factor or ""
    token = grants.record_verification(request, user, factor, one_shot_digest=target.one_shot_digest)
    if token is None and isinstance(result.device, Device):  # a session; an API credential has none to mark
        django_otp.login(request, result.device)
    audit.record_event(request, "verified", factor=factor, outcome="verified", **target.audit_fields())
    stepup_verified.send(sender=verify, request=request, user=user, factor=factor, device=result.device)
    if target.id is not None:
        pending.drop_challenge(request, target.id)
    return token


def _failed(request: HttpRequest, user: AbstractBaseUser, target: Target, result: Result) -> None:
    fields = {"factor": result.factor or "", **target.audit_fields()}
    if result.checked or result.status != LOCKED:
        outcome = "invalid_token" if result.checked else result.code
        audit.record_event(request, "failed", outcome=outcome, detail=result.message, **fields)
    if result.status == LOCKED:
        detail = "lockout started" if result.checked else "attempt during lockout"
        audit.record_event(request, "locked", outcome="locked", detail=detail, **fields)
    stepup_failed.send(
        sender=verify,
        request=request,
        user=user,
        factor=result.factor,
        device=result.device,
        locked=result.status == LOCKED,
    )


# --- where to go next -----------------------------------------------------------


def is_safe_url(request: HttpRequest, url: str) -> bool:
    """Whether redirecting to ``url`` keeps the user on this site.

    Stricter than Django's check alone: the URL must be path-absolute
    (``/…``) or an ``http(s)`` URL of this host, must not carry control
    characters, backslashes or surrounding whitespace, and its path must stay
    safe once percent-decoded (``%2F%2Fevil.com``, ``/%09/evil.com``), in
    case something on the way decodes it.
    """
    if not url or url != url.strip() or len(url) > 2000 or _odd_characters(url):
        return False
    decoded = unquote(re.split(r"[?#]", url, maxsplit=1)[0])
    if _odd_characters(decoded):
        return False
    hosts = {request.get_host(), *_exact_hosts()}
    secure = request.is_secure()
    if not all(
        url_has_allowed_host_and_scheme(candidate, allowed_hosts=hosts, require_https=secure)
        for candidate in (url, decoded)
    ):
        return False
    parts = urlsplit(url)
    return url.startswith("/") or (parts.scheme in ("http", "https") and bool(parts.netloc))


def _odd_characters(text: str) -> bool:
    """Backslashes and control characters: browsers and proxies read them in surprising ways."""
    return "\\" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _exact_hosts() -> set[str]:
    """``ALLOWED_HOSTS`` entries that name one host (no wildcard, no subdomain pattern)."""
    return {h for h in settings.ALLOWED_HOSTS if h and "*" not in h and not h.startswith(".")}


def success_url(request: HttpRequest, next_url: object) -> str:
    """``next_url`` when it is safe, else ``settings.LOGIN_REDIRECT_URL``."""
    if isinstance(next_url, str) and is_safe_url(request, next_url):
        return next_url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


# --- presenting an interrupted POST again -------------------------------------


@dataclass(frozen=True)
class Confirmation:
    """An interrupted POST to present for one click: where it goes and what it sends.

    :ivar fields: ``(name, value)`` pairs, in order, for the hidden inputs.
    :ivar shown: ``(label, value)`` pairs for the page: the fields the
        attributes do not already show, labelled as the view asked.
    :ivar retype: ``(name, label)`` of the secret fields that were not kept,
        for the user to type again.
    """

    path: str
    fields: tuple[tuple[str, str], ...]
    retype: tuple[tuple[str, str], ...]
    shown: tuple[tuple[str, str], ...] = ()


def confirmation(request: HttpRequest, target: Target) -> Confirmation | None:
    """The confirmation for ``target``'s interrupted POST, or ``None`` when there is none.

    The POST goes only to the challenge's own path, and only when that path
    is local; it is never replayed without the user's click. A secret-looking
    field is never put on the page, even from a challenge saved with one.
    """
    challenge = target.challenge
    post, path = challenge.post, challenge.path
    if post is None or path is None or not path.startswith("/") or not is_safe_url(request, path):
        return None
    kept, secrets = audit.split_secrets(post)
    fields = tuple((name, value) for name, values in kept.items() for value in values)
    labels, attrs = challenge.labels, challenge.attrs
    shown = tuple((labels.get(name, name), value) for name, value in fields if attrs.get(name) != value)
    retype = tuple((name, labels.get(name, name)) for name in (*challenge.post_secrets, *secrets))
    return Confirmation(path, fields, retype, shown)
