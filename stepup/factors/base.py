"""The factor interface: what each factor kind offers a user, how it starts, how it completes.

One :class:`Factor` subclass per kind (``totp``, ``email``, ``password``, …).
The verify page, the JSON API, the ``401`` challenge, enrolment redirects,
throttling and the decision log all ask the registry
(:mod:`stepup.factors.registry`) instead of knowing kinds themselves.

A factor is stateless; it is asked for:

- :meth:`Factor.choices` — the user's usable *choices* for this kind (one
  per device, or one for a kind without devices such as ``password``);
- :meth:`Factor.begin` — for a kind with :attr:`Factor.begins`, the step
  that must come first (send the email code, start a WebAuthn ceremony).
  Only ever called for a ``POST``; never on page load;
- :meth:`Factor.verify` — whether the form's cleaned data proves the factor;
- :attr:`Factor.label`, :attr:`Factor.implied`, :meth:`Factor.get_form_class`
  and :attr:`Factor.template_name` — how it is shown.

Everything around a call (locking the user's row, the per-user lockout, the
decision log, the signals, the grant) is the flow's
(:mod:`stepup.flows.verification`), identical for every kind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from django import forms
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.http import HttpRequest
    from django_stubs_ext import StrOrPromise

    from stepup.flows.verification import Target
    from stepup.forms import FactorForm
    from stepup.throttling import Throttle


@dataclass(frozen=True, eq=False)
class Choice:
    """One way a user can verify now: one of their devices, or a kind without devices.

    :ivar factor: the :class:`Factor` that verifies it.
    :ivar id: what the form's and the API's ``device`` field carries: a
        device's ``persistent_id``, or the kind itself for a kind without
        devices (``password``).
    :ivar name: the device's name, as the user gave it (may be empty).
    :ivar device: the authenticator itself: a django-otp
        :class:`~django_otp.models.Device` (or an object with the same
        ``verify_is_allowed``/``verify_token`` methods, from another source);
        ``None`` for a kind without devices.
    :ivar detail: something to show beside the label, e.g. a masked email address.
    """

    factor: Factor
    id: str
    name: str = ""
    device: Any = None
    detail: str = ""

    @property
    def kind(self) -> str:
        return self.factor.kind

    @property
    def label(self) -> str:
        kind = str(self.factor.label)
        return f"{kind}: {self.name}" if self.name else kind


@dataclass(frozen=True)
class Begun:
    """What :meth:`Factor.begin` did.

    :ivar ok: ``True`` when the step started (code sent, ceremony begun).
    :ivar code: a machine-readable code for the API: ``sent``, ``started``,
        ``throttled``, ``not_needed``, …
    :ivar message: a sentence for the user (translated).
    :ivar data: JSON-compatible data for the client (e.g. WebAuthn request
        options); never a secret.
    :ivar throttle: when refused for a cooldown, until when.
    """

    ok: bool
    code: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    throttle: Throttle | None = None


class Factor:
    """The base class of every factor kind. Subclass it and register the class (``STEPUP["FACTORS"]``).

    :cvar kind: the name policies use in ``factors:`` (``[a-z0-9_]+``).
    :cvar step_name: the verify page's section this kind is offered in (default:
        its kind); kinds that share a form share a step (the code kinds: ``code``).
    :cvar label: what the user sees, translatable (``gettext_lazy``).
    :cvar implied: whether a policy that omits ``factors`` accepts this kind.
        ``password`` is not.
    :cvar begins: whether a step must start before :meth:`verify` can
        succeed (:meth:`begin`).
    :cvar device_models: model labels (``app_label.modelname``, lower case)
        of the authenticators this kind verifies, as the sources
        (:mod:`stepup.factors.sources`) list them.
    :cvar form_class: dotted path or class of the default form for this kind's
        step; ``STEPUP["FORMS"][step]`` overrides it.
    :cvar secret_fields: form fields that must never reach a log.
    :cvar failure_message: the error for a refused attempt.
    """

    kind: ClassVar[str] = ""
    step_name: ClassVar[str] = ""
    label: ClassVar[StrOrPromise] = ""
    implied: ClassVar[bool] = True
    begins: ClassVar[bool] = False
    device_models: ClassVar[tuple[str, ...]] = ()
    form_class: ClassVar[str | type[forms.Form]] = "stepup.forms.CodeForm"
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)
    failure_field: ClassVar[str | None] = "token"
    failure_message: ClassVar[StrOrPromise] = _("That code is not valid. Check it and try again.")

    def available(self) -> bool:
        """Whether this kind can be used in this project (e.g. its package is installed)."""
        return True

    @property
    def step(self) -> str:
        """The verify page's section (and ``STEPUP["FORMS"]`` key) of this kind."""
        return self.step_name or self.kind

    @property
    def template_name(self) -> str:
        """The include that renders this kind's step on the verify page."""
        return f"stepup/factors/{self.step}.html"

    # --- what is offered -----------------------------------------------------------

    def owns(self, device: Any) -> bool:
        """Whether ``device`` (from a source) is one of this kind."""
        kind = getattr(device, "stepup_kind", None)  # an authenticator of another source names its kind
        if isinstance(kind, str):
            return kind == self.kind
        meta = getattr(device, "_meta", None)
        label = getattr(meta, "label_lower", None) or getattr(device, "stepup_model", None)
        return label in self.device_models

    def choices(self, user: AbstractBaseUser) -> list[Choice]:
        """The user's usable choices of this kind (default: their confirmed devices it owns)."""
        from stepup.factors.sources import authenticators

        return [self.choice_for(device) for device in authenticators(user) if self.owns(device)]

    def choice_for(self, device: Any) -> Choice:
        return Choice(self, str(device.persistent_id), str(getattr(device, "name", "") or ""), device)

    def selected_by(self, data: Mapping[str, Any]) -> bool:
        """Whether a request that names no ``device`` is meant for this kind (``password``: its field)."""
        return False

    def get_form_class(self) -> type[FactorForm]:
        """The form for this kind's step: ``STEPUP["FORMS"][step]``, else :attr:`form_class`."""
        from stepup.factors.registry import form_class_for

        return form_class_for(self)

    def hint(self, choices: Sequence[Choice]) -> str:
        """What to do, in a sentence, for the choices offered (may be empty)."""
        return ""

    # --- how it starts -------------------------------------------------------------------

    def begin(self, request: HttpRequest, user: AbstractBaseUser, choice: Choice, target: Target) -> Begun:
        """Start the step that must come first. Only called for a ``POST``, with the user's row locked."""
        return Begun(False, "not_needed", str(_("This factor needs no first step.")))

    # --- how it completes --------------------------------------------------------------

    def locked_choice(self, request: HttpRequest, user: AbstractBaseUser, choice: Choice) -> Choice | None:
        """``choice`` reloaded for update (so two uses of one code can't both succeed); ``None`` if gone.

        The default reloads a device through its source; a kind without devices keeps ``choice``.
        """
        if choice.device is None:
            return choice
        from stepup.factors.sources import locked_authenticator

        device = locked_authenticator(request, user, choice.id)
        if device is None or not self.owns(device):
            return None
        return replace(choice, device=device)

    def throttle(self, choice: Choice) -> Throttle | None:
        """The choice's own throttle, if it refuses verification now (django-otp's, for a device)."""
        from stepup.throttling import device_throttle

        return device_throttle(choice.device) if choice.device is not None else None

    def verify(
        self,
        request: HttpRequest,
        user: AbstractBaseUser,
        choice: Choice,
        data: Mapping[str, Any],
        target: Target,
    ) -> bool:
        """Whether ``data`` (the form's ``cleaned_data``) proves the factor.

        Called with the user's row locked and after :meth:`throttle` allowed
        the attempt; a refused attempt must count towards the choice's own
        throttle (django-otp devices do so themselves). The per-user count is
        the flow's.
        """
        raise NotImplementedError

    def after_success(self, request: HttpRequest, choice: Choice) -> None:
        """Called once the verification is recorded in a session: a django-otp device is logged in
        (``django_otp.login``, so ``request.user.is_verified()`` holds), as ``otp_required`` expects."""
        from django_otp.models import Device

        if getattr(request, "session", None) is not None and isinstance(choice.device, Device):
            import django_otp

            django_otp.login(request, choice.device)
