"""Exceptions raised by enforcement; one place (the middleware / handler) turns them into responses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepup.policy.model import Decision


class StepUpRequired(Exception):
    """The request needs a fresh second factor before it may proceed.

    :ivar decision: the :class:`~stepup.Decision` that asked for step-up.
    :ivar action: the declared action, if any.
    :ivar attributes: the transaction attributes the decision was made on.
    :ivar digest: what a single-request grant answering it is bound to
        (:func:`stepup.grants.attributes_digest`); ``None`` to derive it from
        the action, URL name and attributes.
    """

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
