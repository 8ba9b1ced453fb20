"""Settings for stepup, read from ``settings.STEPUP`` on every access.

Reading on access (never at import) keeps ``override_settings`` working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "POLICY_FILES": [],
    "DEFAULT_MAX_AGE": 300,
    "TRUSTED_PROXIES": [],
    "RELOAD_INTERVAL": 1.0,
    "CACHE": "default",
    "NOTICES": "cache",
    "RESYNC_INTERVAL": 30.0,
    "GRANT_CACHE": True,
    "ONE_SHOT_TTL": 300,
    "CHALLENGE_TTL": 900,
    "USER_FAILURE_LIMIT": 10,
    "USER_LOCKOUT_SECONDS": 900,
    "ENROLL_URL": None,
    "ACR_VALUES": {},
    "DECISION_LOG_RETENTION": 90,
    "DECISION_LOG_ALLOWED": 1.0,
    "DECISION_LOG_BATCH_SIZE": 100,
    "DECISION_LOG_FLUSH_INTERVAL": 1.0,
    "SECRET_FIELDS": [],
    "FACTORS": None,
    "FACTOR_SOURCES": ["django_otp"],
    "FORMS": {},
}
"""Every key ``settings.STEPUP`` may hold, with its default."""

DEVICES_URL_NAME = "stepup:devices"
"""``ENROLL_URL`` when the setting is absent and the project includes ``stepup.urls``."""


class StepUpSettings:
    @property
    def raw(self) -> dict[str, Any]:
        value = getattr(settings, "STEPUP", {})
        return value if isinstance(value, dict) else {}

    def _get(self, name: str) -> Any:
        return self.raw.get(name, DEFAULTS[name])

    @property
    def POLICY_FILES(self) -> list[Path]:
        return [Path(p) for p in self._get("POLICY_FILES")]

    @property
    def DEFAULT_MAX_AGE(self) -> int:
        return int(self._get("DEFAULT_MAX_AGE"))

    @property
    def TRUSTED_PROXIES(self) -> list[str]:
        return list(self._get("TRUSTED_PROXIES"))

    @property
    def RELOAD_INTERVAL(self) -> float:
        return float(self._get("RELOAD_INTERVAL"))

    @property
    def CACHE(self) -> str | None:
        """The cache alias that carries policy-change notices between processes (``None``: none)."""
        value = self._get("CACHE")
        return str(value) if value else None

    @property
    def NOTICES(self) -> str:
        """What carries change notices: ``"cache"`` (``CACHE``) or ``"database"`` (LISTEN/NOTIFY)."""
        return str(self._get("NOTICES"))

    @property
    def GRANT_CACHE(self) -> bool:
        """Whether a process keeps the lasting grants it read (:mod:`stepup.grant_cache`)."""
        return bool(self._get("GRANT_CACHE"))

    @property
    def RESYNC_INTERVAL(self) -> float:
        """With a shared cache, the longest a process trusts it before asking the database anyway."""
        return float(self._get("RESYNC_INTERVAL"))

    @property
    def ONE_SHOT_TTL(self) -> int:
        return int(self._get("ONE_SHOT_TTL"))

    @property
    def CHALLENGE_TTL(self) -> int:
        return int(self._get("CHALLENGE_TTL"))

    @property
    def USER_FAILURE_LIMIT(self) -> int:
        return int(self._get("USER_FAILURE_LIMIT"))

    @property
    def USER_LOCKOUT_SECONDS(self) -> int:
        return int(self._get("USER_LOCKOUT_SECONDS"))

    @property
    def ENROLL_URL(self) -> str | None:
        """Where a user with no usable factor sets one up; unset: ``stepup:devices`` when included."""
        if "ENROLL_URL" in self.raw:
            value = self.raw["ENROLL_URL"]
            return str(value) if value else None
        from django.urls import NoReverseMatch, reverse

        try:
            reverse(DEVICES_URL_NAME)
        except NoReverseMatch:
            return None
        return DEVICES_URL_NAME

    @property
    def ACR_VALUES(self) -> dict[str, str]:
        return dict(self._get("ACR_VALUES"))

    @property
    def DECISION_LOG_RETENTION(self) -> int:
        return int(self._get("DECISION_LOG_RETENTION"))

    @property
    def DECISION_LOG_ALLOWED(self) -> float:
        """The share of allowed decisions written to the decision log (1: all, 0: none)."""
        return min(1.0, max(0.0, float(self._get("DECISION_LOG_ALLOWED"))))

    @property
    def DECISION_LOG_BATCH_SIZE(self) -> int:
        """Allowed-decision rows a process buffers before writing them in one statement."""
        return max(1, int(self._get("DECISION_LOG_BATCH_SIZE")))

    @property
    def DECISION_LOG_FLUSH_INTERVAL(self) -> float:
        """Seconds an allowed-decision row may wait in the buffer (written after the next response)."""
        return max(0.0, float(self._get("DECISION_LOG_FLUSH_INTERVAL")))

    @property
    def SECRET_FIELDS(self) -> tuple[str, ...]:
        """Names of form fields and attributes to treat as secrets, besides the built-in ones."""
        value = self._get("SECRET_FIELDS")
        if isinstance(value, str):
            return (value,)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, (list, tuple)) else ()

    @property
    def FACTORS(self) -> list[Any]:
        """Dotted paths (or classes) of the registered factor kinds; ``None``: the built-in ones."""
        value = self._get("FACTORS")
        if value is None:
            from stepup.factors.registry import DEFAULT_FACTORS

            return list(DEFAULT_FACTORS)
        return list(value) if isinstance(value, (list, tuple)) else []

    @property
    def FACTOR_SOURCES(self) -> tuple[str, ...]:
        """Where users' authenticators come from: ``"django_otp"`` (default), ``"allauth"``, dotted paths."""
        value = self._get("FACTOR_SOURCES")
        if isinstance(value, str):
            return (value,)
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, (list, tuple)) else ()

    @property
    def FORMS(self) -> dict[str, Any]:
        """Factor kind -> dotted path (or class) of the form that replaces its default."""
        value = self._get("FORMS")
        return dict(value) if isinstance(value, dict) else {}


conf = StepUpSettings()
