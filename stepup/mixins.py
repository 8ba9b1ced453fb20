"""``StepUpRequiredMixin``: enforce a declared action before a class-based view's handler runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.views import View

from stepup.decorators import guard, validate_action
from stepup.presentation import Presentation, make
from stepup.state import state


class StepUpRequiredMixin:
    """Require the policies for :attr:`stepup_action` before ``dispatch`` calls the handler.

    Put it first among the bases so it runs before any other ``dispatch``::

        class AccessSettingsView(StepUpRequiredMixin, UpdateView):
            stepup_action = "access.modify"

            def get_stepup_attributes(self):
                return {"team": self.kwargs["team"]}

    Async views (every handler ``async def``) are supported. Set
    :attr:`stepup_bind_request` to bind single-request grants to the whole
    request (see :func:`stepup.require_stepup`).

    What the verify page shows (see :mod:`stepup.presentation`):
    :attr:`stepup_labels` names the attributes in people's words,
    :meth:`get_stepup_display` gives their values as people read them,
    :attr:`stepup_form_url` names the page holding the form (default: the
    ``Referer``) and :attr:`stepup_download` says the view answers with a file.
    """

    stepup_action: str | None = None
    stepup_bind_request: bool = False
    stepup_labels: Mapping[str, Any] | None = None
    stepup_form_url: str | None = None
    stepup_download: bool = False
    _stepup_enforced = True  # read by the middleware through ``view_func.view_class``

    request: HttpRequest

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a class where ``View`` comes first: its ``dispatch`` would skip ours."""
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        if View in mro and mro.index(View) < mro.index(StepUpRequiredMixin):
            raise ImproperlyConfigured(
                f"{cls.__name__}: put StepUpRequiredMixin before the view classes in its bases, "
                "or its dispatch() never runs"
            )

    def get_stepup_action(self) -> str:
        """The action to enforce; defaults to :attr:`stepup_action`."""
        if self.stepup_action is None:
            raise ImproperlyConfigured(f"{type(self).__name__} needs stepup_action or get_stepup_action()")
        return validate_action(self.stepup_action, "stepup_action")

    def get_stepup_attributes(self) -> Mapping[str, Any]:
        """Transaction attributes for ``attrs`` conditions; ``{}`` by default."""
        return {}

    def get_stepup_display(self, attributes: Mapping[str, Any]) -> Mapping[str, Any]:
        """The attributes' values as the verify page shows them; ``{}`` (the raw values) by default."""
        return {}

    def get_stepup_presentation(self) -> Presentation:
        return make(
            self.stepup_labels,
            lambda request, attributes: self.get_stepup_display(attributes),
            self.stepup_form_url,
            self.stepup_download,
            where=type(self).__name__,
        )

    def _stepup_guard(self, request: HttpRequest) -> HttpResponse | None:
        action, attributes = self.get_stepup_action(), self.get_stepup_attributes()
        presentation = self.get_stepup_presentation()
        refused = guard(request, action, attributes, self.stepup_bind_request, presentation)
        if refused is None:
            state(request).view_started = True
        return refused

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "view_is_async", False):
            return self._adispatch(request, *args, **kwargs)
        refused = self._stepup_guard(request)
        if refused is not None:
            return refused
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    async def _adispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refused = await sync_to_async(self._stepup_guard)(request)
        if refused is not None:
            return refused
        return await super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
