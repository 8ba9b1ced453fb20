from __future__ import annotations

from django.apps import AppConfig


class StepUpConfig(AppConfig):
    name = "stepup"
    verbose_name = "Step-up authentication"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from stepup import allowed_log, audit, checks, receivers  # noqa: F401  (importing checks registers them)
        from stepup.factors import registry
        from stepup.policy.model import set_factor_provider

        set_factor_provider(registry)  # validate and the engine know exactly the registered kinds

        receivers.connect()
        allowed_log.connect()
        audit.connect_history_receivers()
