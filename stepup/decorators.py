"""``@require_stepup``: enforce a declared action before a function view runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from stepup.enforcement import enforce_before_view
from stepup.exceptions import StepUpError, StepUpRequired
from stepup.presentation import Display, Presentation, make
from stepup.responses import refusal_response
from stepup.state import state

Attributes = Callable[..., Mapping[str, Any]]
View = TypeVar("View", bound=Callable[..., Any])

ACTION_ATTR = "stepup_action"
ENFORCED_ATTR = "_stepup_enforced"
"""Set on views and view classes that enforce their own action; the middleware skips them."""


def guard(
    request: HttpRequest,
    action: str,
    attributes: Mapping[str, Any] | None,
    bind_request: bool = False,
    presentation: Presentation | None = None,
) -> HttpResponse | None:
    """Enforce ``action``; ``None`` when the view may run, else the response to send instead."""
    try:
        enforce_before_view(request, action, attributes, bind_request=bind_request)
    except StepUpError as exc:
        if isinstance(exc, StepUpRequired) and exc.presentation is None:
            exc.presentation = presentation
        return refusal_response(request, exc)
    return None


def validate_action(action: object, name: str) -> str:
    if callable(action):
        raise TypeError(f'{name} needs an action name: use @{name}("billing.update"), not @{name}.')
    if not isinstance(action, str) or not action:
        raise TypeError(f"{name}: the action must be a non-empty string, got {action!r}.")
    return action


def require_stepup(
    action: str,
    attributes: Attributes | None = None,
    *,
    bind_request: bool = False,
    labels: Mapping[str, Any] | None = None,
    display: Display | None = None,
    form_url: str | None = None,
    download: bool = False,
) -> Callable[[View], View]:
    """Require the policies for ``action`` to be met before the view runs.

    Works on sync and async function views, with or without the middleware::

        @require_stepup("billing.update")
        def update_billing(request): ...

        @require_stepup("payments.transfer",
                        attributes=lambda request, *a, **kw: {"amount": request.POST.get("amount")})
        async def transfer(request): ...

    :param action: the declared action name the policies match.
    :param attributes: ``attributes(request, *args, **kwargs) -> dict`` of
        transaction attributes for ``attrs`` conditions (called before the view).
    :param bind_request: bind a single-request grant (``max_age: 0``) to the
        whole request — method, path, query string and every body field — not
        only to the action and the attributes.
    :param labels: attribute and form-field names to the words the verify
        and confirm pages show, e.g. ``{"amount": _("Amount")}``.
    :param display: ``display(request, attributes) -> dict`` of the
        attributes' values as people read them (what is decided and bound
        stays the raw values).
    :param form_url: the page holding the form a refused ``POST`` comes from
        (URL name or path); default: the request's ``Referer`` on this site.
    :param download: the view answers with a file: after verification, a
        page says so and starts the download.
    :raises TypeError: used without parentheses or without an action name.
    """
    action = validate_action(action, "require_stepup")
    if attributes is not None and not callable(attributes):
        raise TypeError("require_stepup: attributes must be a callable (request, *args, **kwargs) -> dict.")
    presentation = make(labels, display, form_url, download)

    def decorator(view: View) -> View:
        # Stacked on another @require_stepup, the view's own code starts only after that one's check.
        innermost = not getattr(view, ENFORCED_ATTR, False)

        def check(request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]) -> HttpResponse | None:
            attrs = attributes(request, *args, **kwargs) if attributes is not None else {}
            refused = guard(request, action, attrs, bind_request, presentation)
            if refused is None and innermost:
                state(request).view_started = True
            return refused

        wrapper: Callable[..., Any]
        if iscoroutinefunction(view):

            async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = await sync_to_async(check)(request, args, kwargs)
                if refused is not None:
                    return refused
                return await view(request, *args, **kwargs)

        else:

            def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = check(request, args, kwargs)
                if refused is not None:
                    return refused
                return view(request, *args, **kwargs)

        wrapped = wraps(view)(wrapper)
        setattr(wrapped, ACTION_ATTR, action)
        setattr(wrapped, ENFORCED_ATTR, True)
        return wrapped  # type: ignore[return-value]

    return decorator
