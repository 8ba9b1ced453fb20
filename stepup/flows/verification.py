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

Why one module of a little over 500 lines: the form, the API and the passkey
flow share this one path from a submitted answer to a grant (lock, throttle,
verify, record, signal), which is the part to audit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from django import forms
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.shortcuts import resolve_url
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from stepup import audit, grants, pending, throttling
from stepup.challenge import Challenge
from stepup.factors import registry
from stepup.factors.base import Choice, Factor
from stepup.signals import stepup_failed, stepup_verified
from stepup.throttling import Throttle

_CHALLENGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_DEVICE_ID = 200
_UNUSABLE_DEVICE = _("That device can't be used here. Choose another.")

CODE_STEP = "code"
"""The step the typed-code kinds (``totp``, ``hotp``, ``static``) share on the verify page."""

VERIFIED = "verified"
INVALID = "invalid"
FAILED = "failed"
THROTTLED = "throttled"
LOCKED = "locked"
STARTED = "started"


# --- what is being authorized ---------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a verification authorizes: a pending challenge, or nothing in particular.

    :ivar id: the challenge id, ``None`` for a generic verification.
    :ivar challenge: the pending :class:`~stepup.challenge.Challenge`; for a
        generic verification, one that asks for nothing in particular.
    """

    id: str | None = None
    challenge: Challenge = dataclasses.field(default_factory=Challenge)

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


# --- what the user is offered ---------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One section of the verify page: a factor's step, its form and the choices it offers.

    Kinds that share a form (the code kinds: one device list, one code field)
    share a step; its template is ``stepup/factors/<step>.html``.
    """

    name: str
    factor: Factor
    choices: tuple[Choice, ...]
    form: forms.Form

    @property
    def template_name(self) -> str:
        return f"stepup/factors/{self.name}.html"


def step_forms(user: AbstractBaseUser, target: Target, bound: Result | None = None) -> list[Step]:
    """The verify page's sections for ``user`` and ``target``, in the registry's order.

    :param bound: the result of a ``POST``; its step shows the bound form with its errors.
    """
    groups: dict[str, list[Choice]] = {}
    for choice in registry.usable_choices(user, target.challenge.factors):
        groups.setdefault(choice.factor.step, []).append(choice)
    steps = []
    for name, choices in groups.items():
        factor = choices[0].factor
        form = bound.form if bound is not None and bound.form is not None and bound.step == name else None
        if form is None:
            form = factor.get_form_class()(choices=choices, auto_id=auto_id(name))
        steps.append(Step(name, factor, tuple(choices), form))
    return steps


def auto_id(step: str) -> str:
    """Element ids for a step's fields: ``stepup-token`` for the code step, ``stepup-<step>-…`` otherwise."""
    return "stepup-%s" if step == CODE_STEP else f"stepup-{step}-%s"


# --- the attempt ----------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """The outcome of one verification attempt, or of a step's start (:func:`begin`).

    :ivar status: ``verified``, ``started`` (:func:`begin` did its step),
        ``invalid`` (the input was unusable; nothing was checked), ``failed``
        (a factor was checked and refused), ``throttled`` (the device's own
        throttle or cooldown) or ``locked`` (the per-user lockout).
    :ivar code: a machine-readable code for the API: ``verified``, ``sent``,
        ``no_device``, ``invalid_device``, ``invalid_token``,
        ``invalid_password``, ``invalid_input``, ``throttled``, ``cooldown``, ``locked``.
    :ivar message: a sentence for the user.
    :ivar field: the form field the message belongs to (``device``, ``token``, …), if any.
    :ivar choice: the choice the attempt used, once one was chosen.
    :ivar form: the bound form of the chosen step (to render its errors).
    :ivar throttle: for ``throttled`` and ``locked``, until when.
    :ivar checked: ``True`` when a factor was actually checked.
    :ivar data: what :func:`begin` hands the client (e.g. ``sent_to``).
    :ivar stepup_token: after a verification by a client authenticated by a
        credential (not a session), the step-up token its grants now belong
        to (see :mod:`stepup.grants`).
    """

    status: str
    code: str
    message: str = ""
    field: str | None = None
    choice: Choice | None = None
    form: forms.Form | None = None
    throttle: Throttle | None = None
    checked: bool = False
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    stepup_token: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == VERIFIED

    @property
    def factor(self) -> str | None:
        return self.choice.kind if self.choice is not None else None

    @property
    def device(self) -> Any:
        return self.choice.device if self.choice is not None else None

    @property
    def step(self) -> str | None:
        return self.choice.factor.step if self.choice is not None else None


class _Invalid(Exception):
    def __init__(self, code: str, message: Any, field: str | None, form: forms.Form | None = None) -> None:
        super().__init__(str(message))
        self.code = code
        self.message = str(message)
        self.field = field
        self.form = form
        self.choice: Choice | None = None


def authenticated_user(request: HttpRequest) -> AbstractBaseUser:
    """``request.user``, or ``PermissionDenied`` for an anonymous request (fail closed)."""
    user = getattr(request, "user", None)
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated:
        raise PermissionDenied("authentication required")
    return user


def verify(request: HttpRequest, target: Target, data: Mapping[str, Any]) -> Result:
    """Check the factor ``data`` names and, on success, record the verification.

    ``data`` is what the client posted: ``device`` (a choice's id; may be
    left out when the user has one device, or for ``password`` when
    ``password`` is given) and the chosen kind's fields (``token``,
    ``password``, …), validated by that kind's form.

    The attempt runs in one transaction with the user's
    :class:`~stepup.models.UserState` row locked, so parallel attempts are
    serialised and counted exactly. On success: the verification is recorded
    (:func:`stepup.grants.record_verification`, which rotates the session
    key; with a single-request grant when the challenge needs one), the
    factor's :meth:`~stepup.factors.Factor.after_success` runs (a django-otp
    device is logged in), the per-user failure count is reset, a ``verified``
    event is logged, ``stepup_verified`` is sent and the challenge is
    dropped. Otherwise a ``failed`` (and, on lockout, a ``locked``) event is
    logged and ``stepup_failed`` is sent. Nothing typed reaches a log.
    """
    user = authenticated_user(request)
    with transaction.atomic():
        result = _attempt(request, user, target, data)
    if result.ok:
        result = replace(result, stepup_token=_succeeded(request, user, target, result))
    else:
        _failed(request, user, target, result)
    return result


def begin(request: HttpRequest, target: Target, data: Mapping[str, Any]) -> Result:
    """Start the chosen factor's first step (send the email code, …); only ever for a ``POST``.

    Refused during the per-user lockout, and for a kind without a first step.
    ``status`` is ``started`` when it was done, ``throttled`` while the
    device's cooldown runs.
    """
    user = authenticated_user(request)
    with transaction.atomic():
        state = throttling.lock_user(user)
        lockout = throttling.user_lockout(state)
        if lockout is not None:
            return Result(LOCKED, "locked", retry_message(lockout), throttle=lockout)
        try:
            choice, form = _chosen(request, user, target, data, validate=False)
        except _Invalid as exc:
            return Result(INVALID, exc.code, exc.message, field=exc.field, form=exc.form, choice=exc.choice)
        if not choice.factor.begins:
            message = gettext("This factor needs no first step. Enter it directly.")
            return Result(INVALID, "not_needed", message, field="device", choice=choice, form=form)
        begun = choice.factor.begin(request, user, choice, target)
    status = STARTED if begun.ok else (THROTTLED if begun.throttle is not None else INVALID)
    return Result(status, begun.code, begun.message, choice=choice, throttle=begun.throttle, data=begun.data)


def _attempt(request: HttpRequest, user: AbstractBaseUser, target: Target, data: Mapping[str, Any]) -> Result:
    state = throttling.lock_user(user)
    lockout = throttling.user_lockout(state)
    if lockout is not None:
        return Result(LOCKED, "locked", retry_message(lockout), throttle=lockout)
    try:
        choice, form = _chosen(request, user, target, data, validate=True)
    except _Invalid as exc:
        return Result(INVALID, exc.code, exc.message, field=exc.field, form=exc.form, choice=exc.choice)
    factor = choice.factor
    throttle = factor.throttle(choice)
    if throttle is not None:
        return Result(
            THROTTLED, "throttled", retry_message(throttle), choice=choice, form=form, throttle=throttle
        )
    if factor.verify(request, user, choice, form.cleaned_data, target):
        throttling.record_success(state)
        return Result(VERIFIED, "verified", choice=choice, form=form, checked=True)
    lockout = throttling.record_failure(state)
    if lockout is not None:
        message = retry_message(lockout)
        return Result(LOCKED, "locked", message, choice=choice, form=form, throttle=lockout, checked=True)
    code = f"invalid_{factor.failure_field}" if factor.failure_field else "invalid_input"
    message = str(factor.failure_message)
    return Result(FAILED, code, message, field=factor.failure_field, choice=choice, form=form, checked=True)


def _chosen(
    request: HttpRequest, user: AbstractBaseUser, target: Target, data: Mapping[str, Any], *, validate: bool
) -> tuple[Choice, forms.Form]:
    """The choice ``data`` names among the user's usable ones, reloaded for update, and its bound form."""
    choices = registry.usable_choices(user, target.challenge.factors)
    if not choices:
        raise _Invalid("no_device", gettext("You have no device that can confirm this."), None)
    chosen = _select(choices, data)
    siblings = [c for c in choices if c.factor.step == chosen.factor.step]
    form = chosen.factor.get_form_class()(
        _with_device(data, chosen.id), choices=siblings, auto_id=auto_id(chosen.factor.step)
    )
    if validate and not form.is_valid():
        raise _form_error(form, chosen)
    if not validate:
        form.full_clean()  # only the device is needed; other errors don't stop a first step
        if "device" in form.errors:
            raise _form_error(form, chosen)
    # Reloaded with SELECT ... FOR UPDATE so that two parallel uses of one code can't both succeed.
    locked = chosen.factor.locked_choice(request, user, chosen)
    if locked is None:
        raise _Invalid("invalid_device", _UNUSABLE_DEVICE, "device", form)
    return locked, form


def _select(choices: list[Choice], data: Mapping[str, Any]) -> Choice:
    device_id = data.get("device")
    if device_id is None or device_id == "":
        claimed = [c for c in choices if c.factor.selected_by(data)]
        if claimed:
            return claimed[0]
        devices = [c for c in choices if c.device is not None] or choices
        if len(devices) != 1:
            raise _Invalid("invalid_device", gettext("Choose the device you want to use."), "device")
        return devices[0]
    wanted = device_id if isinstance(device_id, str) and len(device_id) <= _MAX_DEVICE_ID else None
    chosen = next((c for c in choices if c.id == wanted), None)
    if chosen is None:
        raise _Invalid("invalid_device", _UNUSABLE_DEVICE, "device")
    return chosen


def _with_device(data: Mapping[str, Any], device_id: str) -> Mapping[str, Any]:
    """``data`` with ``device`` set to the chosen choice (which may have been implied)."""
    if isinstance(data, QueryDict):
        copy = data.copy()
        copy["device"] = device_id
        return copy
    return {**data, "device": device_id}


_FIELD_CODES = {"device": "invalid_device", "token": "invalid_token", "password": "invalid_password"}


def _form_error(form: forms.Form, choice: Choice) -> _Invalid:
    """The first of a bound form's errors, as an :class:`_Invalid` that carries the form."""
    name, errors = next(iter(form.errors.as_data().items()))
    field = None if name == NON_FIELD_ERRORS else name
    code = _FIELD_CODES.get(name, "invalid_input")
    invalid = _Invalid(code, " ".join(str(m) for e in errors for m in e.messages), field, form)
    invalid.choice = choice
    return invalid


def retry_message(throttle: Throttle) -> str:
    """When the user may try again, in words (in the active language and time zone)."""
    what = (
        gettext("Too many failed attempts: verification is locked.")
        if throttle.locked
        else gettext("Too many failed attempts with this device.")
    )
    seconds = throttle.retry_after()
    if seconds is None or throttle.until is None:
        return f"{what} " + gettext("Try again later.")
    if seconds < 120 or not timezone.is_aware(throttle.until):
        return f"{what} " + gettext("Try again in %(duration)s.") % {"duration": _duration(seconds)}
    local = timezone.localtime(throttle.until)  # the active time zone: the user's, where the site sets it
    when = gettext("Try again in %(duration)s (at %(time)s).") % {
        "duration": _duration(seconds),
        "time": f"{local:%H:%M}",
    }
    return f"{what} {when}"


def _duration(seconds: int) -> str:
    if seconds < 120:
        return ngettext("%(count)d second", "%(count)d seconds", seconds) % {"count": seconds}
    minutes = (seconds + 59) // 60
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}


def _succeeded(request: HttpRequest, user: AbstractBaseUser, target: Target, result: Result) -> str | None:
    factor = result.factor or ""
    token = grants.record_verification(request, user, factor, one_shot_digest=target.one_shot_digest)
    if token is None and result.choice is not None:  # a session; an API credential has no session to mark
        result.choice.factor.after_success(request, result.choice)
    audit.record_event(request, "verified", factor=factor, outcome="verified", **target.audit_fields())
    stepup_verified.send(sender=verify, request=request, user=user, factor=factor, device=result.device)
    if target.id is not None:
        pending.drop_challenge(request, target.id)
    return token


def _failed(request: HttpRequest, user: AbstractBaseUser, target: Target, result: Result) -> None:
    fields = {"factor": result.factor or "", **target.audit_fields()}
    if result.checked or result.status != LOCKED:
        outcome = result.code if result.status != LOCKED else "invalid_token"
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
