"""Every refusal stepup raises, under one base: :class:`StepUpError`.

Enforcement raises them; one place (:mod:`stepup.responses`) turns them into
responses, and each adapter (decorator, mixin, middleware, DRF permission)
catches the base. :class:`stepup.permissions.StepUpRefused`, the DRF form of
a refusal, derives from it too, and lives beside DRF (``import stepup`` never
imports DRF).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied

if TYPE_CHECKING:
    from stepup.policy.model import Decision


class StepUpError(Exception):
    """The base of every refusal stepup raises."""


class StepUpRequired(StepUpError):
    """The request needs a fresh second factor before it may proceed.

    :ivar decision: the :class:`~stepup.Decision` that asked for step-up.
    :ivar action: the declared action, if any.
    :ivar attributes: the transaction attributes the decision was made on.
    :ivar digest: what a single-request grant answering it is bound to
        (:func:`stepup.binding.attributes_digest`); ``None`` to derive it from
        the action, URL name and attributes.
    :ivar presentation: how the refused request is shown to the person
        verifying it (a :class:`stepup.presentation.Presentation`), set by the
        enforcement point that caught it; ``None`` for none.
    """

    presentation: Any = None

    def __init__(
        self,
        decision: Decision,
        action: str | None = None,
        attributes: dict[str, Any] | None = None,
        url_name: str | None = None,
        digest: str | None = None,
    ) -> None:
        self.decision = decision
        self.action = action
        self.attributes = dict(attributes or {})
        self.url_name = url_name
        self.digest = digest
        super().__init__("; ".join(decision.reasons) or "step-up authentication required")


class StepUpDenied(StepUpError, PermissionDenied):
    """A ``deny`` decision (a ``PermissionDenied`` too, so Django answers it with 403)."""

    def __init__(self, decision: Decision, action: str | None, url_name: str | None) -> None:
        self.decision = decision
        self.action = action
        self.url_name = url_name
        super().__init__("; ".join(decision.reasons) or "denied by policy")


class PolicyStoreUnavailable(StepUpError, RuntimeError):
    """No policy set could be loaded, and there is no earlier good one to keep."""


class NoticesUnavailable(StepUpError, RuntimeError):
    """Change notices can't be read now: the policy store polls the database until they can."""
