"""django-stepup: policy-as-code step-up authentication for Django.

The public API, imported lazily so that ``import stepup`` (and the pure
``stepup.policy`` package) works before Django is configured and never
imports Django REST framework:

- :func:`require_stepup` — decorator for function views (sync or async).
- :class:`StepUpRequiredMixin` — for class-based views.
- :func:`decide` — the :class:`Decision` for a request and an action.
- :func:`enforce` — raise :class:`StepUpRequired` or :class:`StepUpDenied` unless allowed.
- :class:`StepUpError` — the base of every refusal: :class:`StepUpRequired`,
  :class:`StepUpDenied` (a ``PermissionDenied`` too), :class:`PolicyStoreUnavailable`
  and :class:`NoticesUnavailable`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepup.exceptions import (
    NoticesUnavailable,
    PolicyStoreUnavailable,
    StepUpDenied,
    StepUpError,
    StepUpRequired,
)
from stepup.policy.model import Decision

if TYPE_CHECKING:
    from stepup.decorators import require_stepup
    from stepup.enforcement import decide, enforce
    from stepup.mixins import StepUpRequiredMixin

__all__ = [
    "Decision",
    "NoticesUnavailable",
    "PolicyStoreUnavailable",
    "StepUpDenied",
    "StepUpError",
    "StepUpRequired",
    "StepUpRequiredMixin",
    "decide",
    "enforce",
    "require_stepup",
]

_LAZY = {
    "require_stepup": "stepup.decorators",
    "StepUpRequiredMixin": "stepup.mixins",
    "decide": "stepup.enforcement",
    "enforce": "stepup.enforcement",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stepup' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)
