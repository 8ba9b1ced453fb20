"""System checks: misconfiguration is reported by ``manage.py check``, never by a crash at import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from stepup.conf import DEFAULTS

MIDDLEWARE = "stepup.middleware.StepUpMiddleware"
REQUIRED_BEFORE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
)
REQUIRED_APPS = ("django_otp", "simple_history")


@register(Tags.security, Tags.compatibility)
def check_settings(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    raw = getattr(settings, "STEPUP", {})
    if not isinstance(raw, dict):
        return [Error(_("settings.STEPUP must be a dict."), id="stepup.E001")]
    for key in sorted(set(raw) - set(DEFAULTS)):
        errors.append(
            Error(
                _("Unknown key %(key)r in settings.STEPUP.") % {"key": key},
                hint=_("Allowed keys: %(keys)s.") % {"keys": ", ".join(sorted(DEFAULTS))},
                id="stepup.E002",
            )
        )
    errors.extend(_check_values(raw))
    for app in REQUIRED_APPS:
        if app not in settings.INSTALLED_APPS:
            errors.append(Error(_("%(app)r must be in INSTALLED_APPS.") % {"app": app}, id="stepup.E003"))
    errors.extend(_check_middleware(list(getattr(settings, "MIDDLEWARE", []) or [])))
    errors.extend(_check_session_engine())
    errors.extend(_check_policy_files(raw.get("POLICY_FILES", [])))
    errors.extend(_check_reload(raw))
    errors.extend(_check_allauth(raw))
    errors.extend(_check_factors(raw))
    return errors


def _check_factors(raw: dict[str, Any]) -> list[CheckMessage]:
    """``STEPUP["FACTORS"]``: each entry a :class:`stepup.factors.Factor` subclass with a valid kind."""
    from stepup.factors.registry import FactorConfigError, load_factor

    value = raw.get("FACTORS")
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        return [Error(_("STEPUP['FACTORS'] must be a list of dotted paths."), id="stepup.E030")]
    errors: list[CheckMessage] = []
    seen: set[str] = set()
    for entry in value:
        try:
            kind = load_factor(entry).kind
        except FactorConfigError as exc:
            errors.append(Error(f"STEPUP['FACTORS']: {exc}", id="stepup.E030"))
            continue
        if kind in seen:
            message = _("STEPUP['FACTORS']: kind %(kind)r is registered twice.") % {"kind": kind}
            errors.append(Error(message, id="stepup.E030"))
        seen.add(kind)
    return errors


def _check_allauth(raw: dict[str, Any]) -> list[CheckMessage]:
    """``"allauth"`` in ``FACTOR_SOURCES``: ``allauth.mfa`` installed, its replay and origin checks on."""
    from stepup import allauth_mfa

    sources = raw.get("FACTOR_SOURCES", DEFAULTS["FACTOR_SOURCES"])
    known = ("django_otp", "allauth")
    if not isinstance(sources, (list, tuple)) or not sources or any(s not in known for s in sources):
        return [
            Error(
                f"STEPUP['FACTOR_SOURCES'] must be a non-empty list of {' and '.join(map(repr, known))}.",
                id="stepup.E022",
            )
        ]
    if "allauth" not in sources:
        return []
    if not allauth_mfa.is_installed():
        return [
            Error(
                "STEPUP['FACTOR_SOURCES'] names 'allauth', but 'allauth.mfa' is not in INSTALLED_APPS.",
                hint="pip install 'django-stepup[allauth]' and add 'allauth', 'allauth.account' and "
                "'allauth.mfa' to INSTALLED_APPS (docs/factors.md, allauth.mfa), or drop 'allauth'.",
                id="stepup.E020",
            )
        ]
    return allauth_mfa.configuration_problems()


def _check_notices(kind: object) -> list[CheckMessage]:
    """What carries change notices: ``STEPUP["NOTICES"]`` (docs/operations.md)."""
    from stepup.notices import NOTICES_CHOICES, database_notices_problem
    from stepup.store import store_alias

    if kind not in NOTICES_CHOICES:
        return [
            Error(
                f'STEPUP[\'NOTICES\'] is {kind!r}; it must be "cache" or "database".',
                hint='"cache" sends change notices through STEPUP["CACHE"]; "database" through '
                "PostgreSQL's LISTEN/NOTIFY.",
                id="stepup.E015",
            )
        ]
    problem = database_notices_problem(store_alias()) if kind == "database" else None
    if problem is None:
        return []
    return [
        Error(
            f"STEPUP['NOTICES'] is \"database\", but {problem}.",
            hint="Use PostgreSQL through psycopg 3 for the database stepup writes policies to, or set "
            'STEPUP["NOTICES"] = "cache".',
            id="stepup.E016",
        )
    ]


def _check_reload(raw: dict[str, Any]) -> list[CheckMessage]:
    """The cache and intervals that carry policy changes between processes (docs/operations.md)."""
    kind = raw.get("NOTICES", DEFAULTS["NOTICES"])
    errors = _check_notices(kind)
    alias = raw.get("CACHE", DEFAULTS["CACHE"])
    if kind == "cache" and alias and alias not in getattr(settings, "CACHES", {"default": {}}):
        errors.append(
            Warning(
                _(
                    "STEPUP['CACHE'] is %(alias)r, which is not in CACHES: other processes learn of "
                    "policy changes only by polling the database every RELOAD_INTERVAL."
                )
                % {"alias": alias},
                hint=_("Name a shared cache (Redis) in CACHES, or set STEPUP['CACHE'] = None."),
                id="stepup.W003",
            )
        )
    for key in ("RELOAD_INTERVAL", "RESYNC_INTERVAL"):
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            message = _("STEPUP[%(key)r] must be a number of seconds >= 0.") % {"key": key}
            errors.append(Error(message, id="stepup.E010"))
    return errors


def _check_values(raw: dict[str, Any]) -> list[CheckMessage]:
    import ipaddress

    errors: list[CheckMessage] = []
    age = raw.get("DEFAULT_MAX_AGE", DEFAULTS["DEFAULT_MAX_AGE"])
    if isinstance(age, bool) or not isinstance(age, int) or age < 0:
        errors.append(
            Error(
                _("STEPUP['DEFAULT_MAX_AGE'] must be a whole number of seconds >= 0."),
                id="stepup.E004",
            )
        )
    proxies = raw.get("TRUSTED_PROXIES", [])
    if isinstance(proxies, str) or not isinstance(proxies, (list, tuple)):
        errors.append(Error(_("STEPUP['TRUSTED_PROXIES'] must be a list of CIDRs."), id="stepup.E005"))
    else:
        for cidr in proxies:
            try:
                ipaddress.ip_network(str(cidr))
            except ValueError as exc:
                errors.append(
                    Error(
                        _("STEPUP['TRUSTED_PROXIES']: %(cidr)r is not a CIDR (%(error)s).")
                        % {"cidr": cidr, "error": exc},
                        id="stepup.E005",
                    )
                )
    errors.extend(_check_acr_values(raw.get("ACR_VALUES", {})))
    errors.extend(_check_secret_fields(raw.get("SECRET_FIELDS", [])))
    errors.extend(_check_decision_log(raw))
    return errors


def _check_decision_log(raw: dict[str, Any]) -> list[CheckMessage]:
    """How allowed decisions are logged (docs/operations.md, "The decision log")."""
    errors: list[CheckMessage] = []
    rules = {
        "DECISION_LOG_ALLOWED": ("a number from 0 to 1", lambda v: 0 <= v <= 1),
        "DECISION_LOG_BATCH_SIZE": ("a whole number >= 1", lambda v: isinstance(v, int) and v >= 1),
        "DECISION_LOG_FLUSH_INTERVAL": ("a number of seconds >= 0", lambda v: v >= 0),
    }
    for key, (what, valid) in rules.items():
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
            errors.append(Error(f"STEPUP[{key!r}] must be {what}.", id="stepup.E013"))
    return errors


def _check_secret_fields(names: Any) -> list[CheckMessage]:
    """``SECRET_FIELDS`` is a list of names, each with a letter or digit to match on."""
    from stepup.audit import name_words

    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        return [Error(_("STEPUP['SECRET_FIELDS'] must be a list of field names."), id="stepup.E012")]
    return [
        Error(
            _("STEPUP['SECRET_FIELDS']: %(name)r is not a field name (a string with letters or digits).")
            % {"name": name},
            id="stepup.E012",
        )
        for name in names
        if not isinstance(name, str) or not name_words(name)
    ]


def _check_acr_values(mapping: Any) -> list[CheckMessage]:
    """``ACR_VALUES`` maps factor kinds to values a quoted, space-separated ``acr_values`` can carry."""
    from stepup.policy.model import factor_kinds
    from stepup.responses import ACR_VALUE

    if not isinstance(mapping, dict):
        message = _("STEPUP['ACR_VALUES'] must be a dict of factor kind -> ACR value.")
        return [Error(message, id="stepup.E011")]
    errors: list[CheckMessage] = []
    for kind, value in mapping.items():
        if kind not in factor_kinds():
            errors.append(
                Error(
                    _("STEPUP['ACR_VALUES']: %(kind)r is not a factor kind.") % {"kind": kind},
                    hint=_("Factor kinds: %(kinds)s.") % {"kinds": ", ".join(factor_kinds())},
                    id="stepup.E011",
                )
            )
        if not isinstance(value, str) or ACR_VALUE.fullmatch(value) is None:
            errors.append(
                Error(
                    _(
                        "STEPUP['ACR_VALUES'][%(kind)r]: %(value)r can't be sent in acr_values "
                        "(printable ASCII without spaces, quotes or backslashes)."
                    )
                    % {"kind": kind, "value": value},
                    id="stepup.E011",
                )
            )
    return errors


PROTECTIVE_MIDDLEWARE = {
    "django.middleware.security.SecurityMiddleware": gettext_lazy("HTTPS redirects and security headers"),
    "django.middleware.csrf.CsrfViewMiddleware": gettext_lazy(
        "CSRF protection of the verify form and the session API"
    ),
}


def _check_middleware(middleware: list[str]) -> list[CheckMessage]:
    return _check_protective_middleware(middleware) + _check_stepup_middleware(middleware)


def _check_protective_middleware(middleware: list[str]) -> list[CheckMessage]:
    return [
        Warning(
            _("%(name)r is not in MIDDLEWARE: the site has no %(what)s.") % {"name": name, "what": what},
            hint=_("Keep Django's own middleware and add stepup's beside it (docs/install.md, section 1)."),
            id="stepup.W005",
        )
        for name, what in PROTECTIVE_MIDDLEWARE.items()
        if name not in middleware
    ]


def _check_stepup_middleware(middleware: list[str]) -> list[CheckMessage]:
    if MIDDLEWARE not in middleware:
        missing: list[CheckMessage] = [
            Warning(
                _("%(name)r is not in MIDDLEWARE: policies that target URL names are not enforced.")
                % {"name": MIDDLEWARE},
                hint=_("Add it after django_otp.middleware.OTPMiddleware."),
                id="stepup.W001",
            )
        ]
        databases = getattr(settings, "DATABASES", {})
        atomic = sorted(alias for alias, db in databases.items() if db.get("ATOMIC_REQUESTS"))
        if atomic:
            missing.append(
                Warning(
                    _(
                        "ATOMIC_REQUESTS is on (%(databases)s) and %(name)r is not in MIDDLEWARE: "
                        "the decision log loses the challenges and denials of requests whose transaction "
                        "rolls back (enforce() raising in a view, every DRF refusal)."
                    )
                    % {"databases": ", ".join(atomic), "name": MIDDLEWARE},
                    hint=_("Add the middleware: it writes those rows once the view's transaction is over."),
                    id="stepup.W004",
                )
            )
        return missing
    errors: list[CheckMessage] = []
    position = middleware.index(MIDDLEWARE)
    for required in REQUIRED_BEFORE:
        if required not in middleware:
            message = _("%(name)r must be in MIDDLEWARE for stepup.") % {"name": required}
            errors.append(Error(message, id="stepup.E006"))
        elif middleware.index(required) > position:
            errors.append(
                Error(
                    _("%(name)r must come after %(required)r in MIDDLEWARE.")
                    % {"name": MIDDLEWARE, "required": required},
                    id="stepup.E007",
                )
            )
    return errors


def _check_session_engine() -> list[CheckMessage]:
    if getattr(settings, "SESSION_ENGINE", "") != "django.contrib.sessions.backends.signed_cookies":
        return []
    return [
        Warning(
            _(
                "SESSION_ENGINE is signed_cookies: a copy of a session cookie can't be revoked, so it stays "
                "logged in after logout. stepup's grants don't go with it (they are "
                "deleted at logout and move to a new subject at every verification), but the login does."
            ),
            hint=_("Use a server-side session backend (db, cache or cached_db)."),
            id="stepup.W002",
        )
    ]


def _check_policy_files(paths: Any) -> list[CheckMessage]:
    from pathlib import Path

    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)):
        return [Error(_("STEPUP['POLICY_FILES'] must be a list of paths."), id="stepup.E008")]
    errors: list[CheckMessage] = []
    for path in paths:
        try:
            Path(path).read_bytes()
        except OSError as exc:
            errors.append(
                Error(
                    _("Policy file %(path)r can't be read: %(error)s.")
                    % {"path": str(path), "error": exc.strerror or exc},
                    hint=_("Fix STEPUP['POLICY_FILES'] or create the file."),
                    id="stepup.E009",
                )
            )
    return errors
