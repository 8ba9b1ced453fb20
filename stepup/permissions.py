"""``StepUpPermission``: the same policies for Django REST framework views.

::

    from rest_framework.permissions import IsAuthenticated
    from rest_framework.views import APIView
    from stepup.permissions import StepUpPermission

    class TransferAPI(APIView):
        permission_classes = [IsAuthenticated, StepUpPermission]
        stepup_action = "payments.transfer"

        def get_stepup_attributes(self, request):
            return {"amount": request.data.get("amount")}

The decision is made by :func:`stepup.enforcement.enforce_before_view`, as for the
decorator, the mixin and the middleware; the answers are those of
:mod:`stepup.responses`. This module and the API views are the only ones that
import DRF (``import stepup`` never does).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from stepup.decorators import validate_action
from stepup.enforcement import enforce_before_view
from stepup.exceptions import StepUpError, StepUpRequired
from stepup.presentation import make
from stepup.responses import ApiRefusal, api_refusal
from stepup.state import state

__all__ = ["StepUpPermission", "StepUpRefused", "authenticated_request"]


class StepUpRefused(StepUpError, APIException):
    """A stepup refusal raised inside DRF: the status, JSON body and headers of an :class:`ApiRefusal`.

    It is deliberately not a ``NotAuthenticated``/``AuthenticationFailed``:
    DRF turns those into ``403`` when the first authentication class has no
    ``authenticate_header`` (``SessionAuthentication``). This one keeps its
    status, and DRF's exception handler sends its ``WWW-Authenticate``
    (``auth_header``) and ``Retry-After`` (``wait``) headers. The body is the
    contract's JSON as it is (``APIException`` would turn numbers into strings).

    :ivar refusal: the :class:`~stepup.responses.ApiRefusal` it carries.
    """

    def __init__(self, refusal: ApiRefusal) -> None:
        self.refusal = refusal
        self.status_code = refusal.status
        self.detail = refusal.body
        self.default_code = str(refusal.body.get("code", "error"))
        self.auth_header = refusal.headers.get("WWW-Authenticate")
        retry_after = refusal.headers.get("Retry-After")
        self.wait = int(retry_after) if retry_after else None

    def __str__(self) -> str:
        return str(self.refusal.body.get("detail") or self.refusal.body.get("code"))

    def get_codes(self) -> Any:
        return self.default_code

    def get_full_details(self) -> Any:
        return dict(self.refusal.body)


def _never_cache(view: Any) -> None:
    """Mark the response the view is about to send uncacheable (as stepup's other refusals are).

    DRF's exception handler (the project's own, maybe) builds the response and
    sends only ``WWW-Authenticate`` and ``Retry-After`` from the exception;
    ``APIView.finalize_response`` then adds ``view.headers`` to whatever it built.
    """
    marker = HttpResponse()
    add_never_cache_headers(marker)
    headers = dict(getattr(view, "headers", None) or {})
    headers.update({name: marker[name] for name in ("Cache-Control", "Expires") if name in marker})
    view.headers = headers


class StepUpPermission(BasePermission):
    """Enforce the step-up policies for the view's action before it runs.

    The action is ``view.get_stepup_action(request)`` when the view defines
    it, else ``view.stepup_action``; a view with neither is held to the
    policies that target its URL name only (so ``StepUpPermission`` can sit in
    ``DEFAULT_PERMISSION_CLASSES``). Transaction attributes come from
    ``view.get_stepup_attributes(request)`` (default: none); a view with
    ``stepup_bind_request = True`` binds single-request grants to the whole
    request (method, path, query string and ``request.data``). The verify
    page a client is sent to shows the attributes with the view's
    ``stepup_labels`` and ``get_stepup_display(request, attributes)`` (see
    :mod:`stepup.presentation`). Format suffixes
    (``.json``) and ``?format=`` reach the same decision: the URL name and the
    action are the same.

    - step-up needed: ``401`` with ``WWW-Authenticate: Bearer
      error="insufficient_user_authentication", error_description="…",
      max_age=N`` (RFC 9470; ``acr_values`` when ``STEPUP["ACR_VALUES"]`` maps
      the acceptable factor kinds) and the body ``{"code": "stepup_required",
      "max_age", "factors", "verify_url", "challenge"}``;
    - no device that could satisfy it: ``403 stepup_enroll_required``;
    - ``deny``: ``403`` ``{"code": "stepup_denied", …}``;
    - policies unavailable (an unsafe URL-only request): ``503``;
    - not logged in: refused like ``IsAuthenticated`` refuses.
    """

    message = "Step-up authentication is required."
    code = "stepup_required"

    def has_permission(self, request: Request, view: Any) -> bool:
        action = self.get_action(request, view)
        attributes = self.get_attributes(request, view)
        try:
            bind = getattr(view, "stepup_bind_request", False) is True
            enforce_before_view(request, action, attributes, bind_request=bind)
        except StepUpError as exc:
            if isinstance(exc, StepUpRequired) and not request.user.is_authenticated:
                return False  # DRF answers as for any unauthenticated request
            if isinstance(exc, StepUpRequired) and exc.presentation is None:
                exc.presentation = self.get_presentation(view)
            refusal = api_refusal(request, exc)
            _never_cache(view)
            raise StepUpRefused(refusal) from exc
        state(request).view_started = True
        return True

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return True  # decided once per request, in has_permission

    @staticmethod
    def get_action(request: Request, view: Any) -> str | None:
        """The view's declared action, or ``None`` (URL-name policies only)."""
        getter = getattr(view, "get_stepup_action", None)
        action = getter(request) if callable(getter) else getattr(view, "stepup_action", None)
        if action is None:
            return None
        return validate_action(action, f"{type(view).__name__}.stepup_action")

    @staticmethod
    def get_presentation(view: Any) -> Any:
        """How the verify page shows the view's attributes: ``stepup_labels``, ``get_stepup_display``."""
        display = getattr(view, "get_stepup_display", None)
        return make(
            getattr(view, "stepup_labels", None),
            display if callable(display) else None,
            where=type(view).__name__,
        )

    @staticmethod
    def get_attributes(request: Request, view: Any) -> Mapping[str, Any]:
        """The view's transaction attributes (``get_stepup_attributes(request)``), else none."""
        getter = getattr(view, "get_stepup_attributes", None)
        if not callable(getter):
            return {}
        attributes = getter(request)
        if not isinstance(attributes, Mapping):
            raise TypeError(
                f"{type(view).__name__}.get_stepup_attributes() must return a mapping, "
                f"got {type(attributes).__name__}"
            )
        return attributes


def authenticated_request(request: HttpRequest, view_func: Any) -> Request | HttpRequest:
    """``request`` as the DRF view ``view_func`` will see it: authenticated by the view's own classes.

    The middleware enforces URL-name policies before the view runs; for a DRF
    view that may not run :class:`StepUpPermission` itself (see
    :func:`stepup.middleware.declares_action`), a client authenticated by a
    token rather than the session is still anonymous then. Authenticating it
    the way the view will lets it meet those policies (and verify) like any
    other client. Anything unexpected leaves ``request`` as it is: an
    anonymous client, refused (fail closed).
    """
    cls = getattr(view_func, "cls", None)
    if not isinstance(cls, type):
        return request
    try:
        view = cls(**(getattr(view_func, "view_initkwargs", None) or {}))
        drf = Request(request, authenticators=view.get_authenticators())
        with suppress(APIException):  # DRF refuses the request itself; here it is anonymous
            drf.user  # noqa: B018  (authenticates)
    except Exception:
        return request
    return drf
