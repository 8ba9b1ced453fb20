"""The signals stepup sends, for other code to hook.

Each is sent once per event, after the event is stored in the decision log
(:mod:`stepup.audit`) and logged to the ``stepup`` logger; a receiver's
exception propagates to the request, as with any Django signal. Apart from
``request`` itself, no argument holds a submitted code.

``stepup_challenged(sender, request, user, decision, action, attributes)``
    An authenticated request needs a step-up (sent before the ``302`` to
    ``stepup:verify`` or the ``401``). ``sender``: the view being enforced
    (``request.resolver_match.func``), else the :mod:`stepup.enforcement`
    module. ``request``: the request (a DRF ``Request`` when enforced by
    ``StepUpPermission``). ``user``: ``request.user``. ``decision``: the
    :class:`stepup.Decision` (``outcome`` ``"step_up"``, ``max_age``,
    ``factors``, ``policies``, ``reasons``, ``version``). ``action``: the
    declared action, ``None`` for URL-name policies alone. ``attributes``: the
    transaction attributes the view supplied (as given, not redacted).
    Anonymous requests are sent to the login page without this signal.
``stepup_denied(sender, request, user, decision, action, attributes)``
    A ``deny`` policy refused the request (sent before the ``403``); the
    arguments are those of ``stepup_challenged``, ``decision.outcome`` is
    ``"deny"``. Sent for anonymous requests too (``user`` is then an
    ``AnonymousUser``).
``stepup_verified(sender, request, user, factor, device)``
    A second factor was verified. ``sender``:
    :func:`stepup.flows.verification.verify` (the HTML form and the JSON API
    alike). ``factor``: the factor kind (``"totp"``, ``"static"`` …).
    ``device``: the django-otp device that verified.
``stepup_failed(sender, request, user, factor, device, locked)``
    A verification attempt was refused: a wrong code, unusable input, a
    throttled device or the per-user lockout. ``factor`` and ``device`` are
    ``None`` when no device was chosen yet. ``locked`` is true while the
    per-user lockout is in force, including for the failure that started it.

Shadow-mode decisions and allowed requests are recorded in the decision log
and the ``stepup`` logger only; they send no signal.

stepup's own receivers, which keep its state consistent, are in
:mod:`stepup.receivers`.
"""

from __future__ import annotations

from django.dispatch import Signal

stepup_challenged = Signal()
stepup_verified = Signal()
stepup_failed = Signal()
stepup_denied = Signal()
