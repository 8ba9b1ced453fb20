"""The device pages: list, rename and remove second factors, and enrol each kind.

Thin: each kind's flow lives in its own module. Every page acts on the
signed-in user's own devices only, and every change is a CSRF-protected POST.

Once a user has a confirmed factor, adding another (or replacing the backup
codes) is the action ``stepup.devices.add`` and removing one is
``stepup.devices.remove``; both are enforced on every request of their pages,
GET included, so the step-up comes before the form and ``next`` after it is a
page that answers GET. The first factor needs no step-up: there is nothing
to step up with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp.models import Device

from stepup import enforce
from stepup.devices import device_kind
from stepup.enrolment import backup_codes, email, impact, totp
from stepup.enrolment.devices import (
    confirmed_kinds,
    find_own_device,
    has_confirmed_device,
    kind_label,
    list_devices,
    lock_user,
    remove_device,
    rename_device,
)
from stepup.enrolment.forms import (
    AuthenticatorForm,
    CodeForm,
    DeviceNameForm,
    EmailAddressForm,
    RemoveForm,
)
from stepup.flows.verification import is_safe_url
from stepup.policy.builtins import DEVICES_ADD_ACTION, DEVICES_REMOVE_ACTION
from stepup.store import get_policy_set

GET_POST = require_http_methods(["GET", "POST"])
PASSKEY_URL_NAME = "stepup:webauthn-register"
ADDED_MEANWHILE = gettext_noop("You added a second factor meanwhile. Confirm it's you, then try again.")
NONE_LEFT = gettext_noop("You have no second factor now. Sensitive actions will ask you to set one up.")


# --- guards ----------------------------------------------------------------------------


def _guard_add(request: HttpRequest, kind: str) -> bool:
    """Step-up before adding a factor when the user has one; whether the user had one.

    Otherwise a stolen session could add the thief's own phone and then pass
    every other step-up. ``enforce`` raises; stepup's middleware turns that
    into the challenge.
    """
    if not has_confirmed_device(request.user):  # type: ignore[arg-type]
        return False
    enforce(request, DEVICES_ADD_ACTION, {"kind": kind})
    return True


def _guard_remove(request: HttpRequest, device: Device) -> None:
    enforce(request, DEVICES_REMOVE_ACTION, {"device": device.name})


def _confirm_first_or_guarded(request: HttpRequest, guarded: bool) -> bool:
    """Under the user's lock: may the confirmation go ahead as checked before it?

    A user who had no factor when :func:`_guard_add` looked (so wasn't asked
    to step up) but has one now (another tab, another session) must start
    again, and is then asked.
    """
    lock_user(request.user)  # type: ignore[arg-type]
    return guarded or not has_confirmed_device(request.user)  # type: ignore[arg-type]


# --- helpers ---------------------------------------------------------------------------


def next_url(request: HttpRequest) -> str:
    """Where to go once enrolled (stepup sends users here with ``next``), when it is safe."""
    url = request.POST.get("next") or request.GET.get("next") or ""
    return url if is_safe_url(request, url) else ""


def _with_next(request: HttpRequest, url: str) -> str:
    nxt = next_url(request)
    return f"{url}?{urlencode({'next': nxt})}" if nxt else url


def passkey_url() -> str | None:
    """The passkey registration page, when the project includes it."""
    try:
        return reverse(PASSKEY_URL_NAME)
    except NoReverseMatch:
        return None


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context.setdefault("next", next_url(request))
    context.setdefault("devices_url", _with_next(request, reverse("stepup:devices")))
    return render(request, f"stepup/devices/{template}", context, status=status)


# --- the list ----------------------------------------------------------------------------


@login_required
@never_cache
@require_http_methods(["GET"])
def devices(request: HttpRequest) -> HttpResponse:
    user = request.user
    pending_app = totp.pending_device(user, request.session)  # type: ignore[arg-type]
    return _render(
        request,
        "list.html",
        {
            "devices": list_devices(user),  # type: ignore[arg-type]
            "passkey_url": passkey_url(),
            "email_available": email.available(),
            "pending_app": pending_app is not None,
        },
    )


# --- authenticator app -------------------------------------------------------------------


@login_required
@never_cache
@GET_POST
def authenticator(request: HttpRequest) -> HttpResponse:
    """GET: start or continue; POST ``step=start``: a new key and QR code; else confirm a code."""
    guarded = _guard_add(request, "totp")
    user, session = request.user, request.session
    start_form, code_form = AuthenticatorForm(), CodeForm(label=_("Code from your app"))
    if request.method == "POST" and request.POST.get("step") == "start":
        start_form = AuthenticatorForm(request.POST)
        if start_form.is_valid():
            totp.start(user, session, start_form.cleaned_data["name"])  # type: ignore[arg-type]
            return redirect(_with_next(request, reverse("stepup:devices-authenticator")))
    elif request.method == "POST":
        code_form = CodeForm(request.POST, label=_("Code from your app"))
        if totp.pending_device(user, session) is None:  # type: ignore[arg-type]
            messages.error(request, _("There is no authenticator app waiting to be confirmed. Start again."))
            return redirect(_with_next(request, reverse("stepup:devices-authenticator")))
        if code_form.is_valid():
            return _confirm_authenticator(request, code_form, guarded)
    pending = totp.pending(user, session)  # type: ignore[arg-type]
    context = {"pending": pending, "start_form": start_form, "form": code_form}
    return _render(request, "authenticator.html", context)


def _confirm_authenticator(request: HttpRequest, form: CodeForm, guarded: bool) -> HttpResponse:
    user = request.user
    with transaction.atomic():
        if not _confirm_first_or_guarded(request, guarded):
            messages.error(request, _(ADDED_MEANWHILE))
            return redirect(_with_next(request, reverse("stepup:devices-authenticator")))
        device = totp.confirm(user, request.session, form.cleaned_data["token"])  # type: ignore[arg-type]
        first = device is not None and not guarded
        codes = backup_codes.replace(user) if first else None  # type: ignore[arg-type]
    if device is None:
        form.add_error("token", _("That code did not match. Enter the newest code your app shows."))
        pending = totp.pending(user, request.session)  # type: ignore[arg-type]
        context = {"pending": pending, "start_form": AuthenticatorForm(), "form": form}
        return _render(request, "authenticator.html", context)
    if codes is not None:  # the first factor: backup codes come with it, shown this once
        return _show_codes(request, codes, first=True)
    messages.success(request, _("Your authenticator app is set up."))
    return redirect(next_url(request) or reverse("stepup:devices"))


# --- backup codes ----------------------------------------------------------------------


@login_required
@never_cache
@GET_POST
def backup_codes_view(request: HttpRequest) -> HttpResponse:
    """GET: what backup codes are, and a button; POST: a new set, shown once (the old set stops working)."""
    guarded = _guard_add(request, "static")
    if request.method == "GET":
        return _render(request, "backup_codes.html", {"has_codes": _has_codes(request)})
    with transaction.atomic():
        if not _confirm_first_or_guarded(request, guarded):
            messages.error(request, _(ADDED_MEANWHILE))
            return redirect(_with_next(request, reverse("stepup:devices-backup-codes")))
        codes = backup_codes.replace(request.user)  # type: ignore[arg-type]
    return _show_codes(request, codes, first=False)


def _has_codes(request: HttpRequest) -> bool:
    return any(row.kind == "static" for row in list_devices(request.user))  # type: ignore[arg-type]


def _show_codes(request: HttpRequest, codes: list[str], *, first: bool) -> HttpResponse:
    text = backup_codes.as_text(codes, request.get_host())
    context = {"codes": codes, "download": text, "first": first}
    response = _render(request, "backup_codes_new.html", context)
    response["Cache-Control"] = "no-store, private"
    return response


# --- email -------------------------------------------------------------------------------


@login_required
@never_cache
@GET_POST
def email_view(request: HttpRequest) -> HttpResponse:
    """GET: the address or code form; POST ``step``: start, resend, confirm (codes are sent on POST only)."""
    if not email.available():
        raise Http404(_("Email codes are not enabled on this site."))
    guarded = _guard_add(request, "email")
    user, session = request.user, request.session
    address_form, code_form = EmailAddressForm(), CodeForm(label=_("Code from the email"))
    step = request.POST.get("step") if request.method == "POST" else None
    pending = email.pending_device(user, session)  # type: ignore[arg-type]
    here = _with_next(request, reverse("stepup:devices-email"))
    if step == "start":
        address_form = EmailAddressForm(request.POST)
        if address_form.is_valid():
            address = address_form.cleaned_data["email"]
            if email.start(user, session, address)[1]:  # type: ignore[arg-type]
                sent_to = _("We sent a code to %(address)s.") % {"address": email.masked(address)}
                messages.info(request, sent_to)
            return redirect(here)
    elif step == "resend" and pending is not None:
        if email.send(pending):
            messages.info(request, _("We sent a new code."))
        else:
            messages.error(request, _("Please wait a minute before asking for another code."))
        return redirect(here)
    elif step == "confirm":
        code_form = CodeForm(request.POST, label=_("Code from the email"))
        if pending is None:
            messages.error(request, _("There is no email address waiting to be confirmed. Start again."))
            return redirect(here)
        if code_form.is_valid():
            with transaction.atomic():
                if not _confirm_first_or_guarded(request, guarded):
                    messages.error(request, _(ADDED_MEANWHILE))
                    return redirect(here)
                device = email.confirm(user, session, code_form.cleaned_data["token"])  # type: ignore[arg-type]
            if device is not None:
                messages.success(request, _("Your email address is set up as a second factor."))
                return redirect(next_url(request) or reverse("stepup:devices"))
            code_form.add_error("token", _("That code did not match, or it has expired. Ask for a new one."))
    address = getattr(pending, "email", None) or ""
    context = {
        "pending": pending,
        "masked": email.masked(address) if pending is not None else "",
        "address_form": address_form,
        "form": code_form,
    }
    return _render(request, "email.html", context)


# --- rename and remove -------------------------------------------------------------------


def _posted(request: HttpRequest) -> Any:
    """The POST data for a bound form (an empty POST too), ``None`` on GET."""
    return request.POST if request.method == "POST" else None


def _own_device_or_404(request: HttpRequest, device_id: str) -> Device:
    device = find_own_device(request.user, device_id)  # type: ignore[arg-type]
    if device is None:
        raise Http404(_("No such device."))
    return device


@login_required
@never_cache
@GET_POST
def rename(request: HttpRequest, device_id: str) -> HttpResponse:
    device = _own_device_or_404(request, device_id)
    form = DeviceNameForm(_posted(request), initial={"name": device.name})
    if request.method == "POST" and form.is_valid():
        rename_device(device, form.cleaned_data["name"])
        messages.success(request, _("Renamed to “%(name)s”.") % {"name": device.name})
        return redirect("stepup:devices")
    return _render(request, "rename.html", {"device": device, "form": form})


@login_required
@never_cache
@GET_POST
def remove(request: HttpRequest, device_id: str) -> HttpResponse:
    """GET: what removing the device means; POST: remove it. Both after a step-up.

    The warning is worked out again under the user's lock when the removal
    happens: two removals at once can't each leave the user "one other" factor.
    """
    device = _own_device_or_404(request, device_id)
    _guard_remove(request, device)
    if request.method != "POST":
        return _render(request, "remove.html", _removal(request, device))
    with transaction.atomic():
        lock_user(request.user)  # type: ignore[arg-type]
        context = _removal(request, device)
        if not context["form"].is_valid():
            return _render(request, "remove.html", context)
        remove_device(device)
    messages.success(request, _("Removed “%(name)s”.") % {"name": device.name})
    if not has_confirmed_device(request.user):  # type: ignore[arg-type]
        messages.warning(request, _(NONE_LEFT))
    return HttpResponseRedirect(reverse("stepup:devices"))


def _removal(request: HttpRequest, device: Device) -> dict[str, Any]:
    """What removing ``device`` would make impossible, and the form that confirms it."""
    user = request.user
    lost = impact.lost_actions(
        user,  # type: ignore[arg-type]
        get_policy_set(),
        confirmed_kinds(user),  # type: ignore[arg-type]
        confirmed_kinds(user, without=device),  # type: ignore[arg-type]
    )
    last = not any(row.persistent_id != device.persistent_id for row in list_devices(user))  # type: ignore[arg-type]
    form = RemoveForm(_posted(request), must_acknowledge=bool(lost) or last)
    kind = kind_label(device_kind(device))
    return {"device": device, "kind": kind, "form": form, "lost": lost, "last": last}
