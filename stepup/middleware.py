"""``StepUpMiddleware``: enforce URL-name policies, and answer ``StepUpRequired`` raised in views.

Install it after ``SessionMiddleware``, ``AuthenticationMiddleware`` and
``django_otp.middleware.OTPMiddleware`` (system checks say so otherwise).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse

from stepup import audit, pending
from stepup.decorators import ENFORCED_ATTR
from stepup.enforcement import enforce_url, url_policies_may_apply
from stepup.exceptions import StepUpDenied, StepUpError, StepUpRequired
from stepup.responses import is_drf_view, refusal_response, view_class
from stepup.state import STATE_ATTR, state

PERMISSION_PATH = "stepup.permissions.StepUpPermission"
APIVIEW_PATH = "rest_framework.views.APIView"


def _is_stepup_permission(permission: Any) -> bool:
    """Whether a DRF ``permission_classes`` entry always runs ``StepUpPermission``.

    A class (or subclass) does; ``A & B`` does when either side does; ``A | B``
    and ``~A`` may skip it, so they don't count. DRF is never imported.
    """
    mro = getattr(permission, "__mro__", None)
    if mro is not None:
        return any(f"{k.__module__}.{k.__qualname__}" == PERMISSION_PATH for k in mro)
    operator = getattr(getattr(permission, "operator_class", None), "__name__", "")
    if operator == "AND":
        return _is_stepup_permission(getattr(permission, "op1_class", None)) or _is_stepup_permission(
            getattr(permission, "op2_class", None)
        )
    return False


def declares_action(view_func: Callable[..., Any]) -> bool:
    """Whether the view enforces its own action (decorator, mixin or DRF permission).

    Such a view includes the URL-name policies in its own decision, so the
    middleware stays out. A DRF view counts only when ``StepUpPermission``
    runs for *every* request: it is among the permission classes the view is
    built with (``as_view(permission_classes=…)`` replaces the class's), and
    ``get_permissions()`` is DRF's own (an override, as ViewSets use to pick
    permissions per action, may leave it out). Otherwise the middleware
    enforces the URL-name policies itself.
    """
    if getattr(view_func, ENFORCED_ATTR, False):
        return True
    cls = view_class(view_func)
    if cls is None:
        return False
    if getattr(cls, ENFORCED_ATTR, False):
        return True
    initkwargs = getattr(view_func, "view_initkwargs", None) or {}
    permissions = initkwargs.get("permission_classes", getattr(cls, "permission_classes", None))
    return any(_is_stepup_permission(p) for p in permissions or ()) and _drf_get_permissions(cls)


def _drf_get_permissions(cls: type) -> bool:
    """Whether ``cls.get_permissions`` is DRF's own (instantiating ``permission_classes``)."""
    owner = next((k for k in cls.__mro__ if "get_permissions" in vars(k)), None)
    return owner is not None and f"{owner.__module__}.{owner.__qualname__}" == APIVIEW_PATH


def _saved_anything(request: HttpRequest) -> bool:
    pending = getattr(request, STATE_ATTR, None)  # most requests never needed one: none is made here
    return pending is not None and bool(pending.saved_challenges or pending.deferred_rows)


def _after_the_view(request: HttpRequest) -> None:
    """Save again what a rolled-back request transaction took with it (see each function)."""
    pending.keep_saved_challenges(request)
    audit.write_deferred_rows(request)


class StepUpMiddleware:
    """Enforce the policies that target URL names, for views that declare no action.

    A view that declares an action (``@require_stepup``, ``StepUpRequiredMixin``,
    ``StepUpPermission``) has the URL-name policies included in its own
    decision, so the middleware stays out and nothing is challenged twice.
    ``StepUpRequired`` raised by ``enforce()`` inside a view is turned into
    the challenge response here. Once the view is done, challenges and
    decision-log rows that a rolled-back request transaction took with it
    (``ATOMIC_REQUESTS``) are saved again. Sync and async capable.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._is_async:
            return self.__acall__(request)
        audit.defer_rows(request)
        response = self.get_response(request)
        if _saved_anything(request):
            _after_the_view(request)
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        audit.defer_rows(request)
        response = await self.get_response(request)  # type: ignore[misc]
        if _saved_anything(request):
            await sync_to_async(_after_the_view)(request)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not url_policies_may_apply(request):
            return None  # no policy can target this route (most requests): nothing more is read
        if declares_action(view_func):
            return None
        client: Any = request
        if is_drf_view(view_func) and not request.user.is_authenticated:
            from stepup.permissions import authenticated_request  # DRF is installed: this is its view

            client = authenticated_request(request, view_func)
        try:
            enforce_url(client)
        except StepUpError as exc:
            return refusal_response(client, exc)
        state(request).view_started = True  # no enforcement point of its own comes before the view's code
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, (StepUpRequired, StepUpDenied)):  # enforce() in the view's own code
            return refusal_response(request, exception)
        return None  # anything else, the policy store failing in the view included, is a server error
