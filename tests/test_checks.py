"""System checks, through `manage.py check` as a user runs them."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError


def check_ids(settings_changes, settings) -> str:
    for name, value in settings_changes.items():
        setattr(settings, name, value)
    try:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    except SystemCheckError as exc:
        return str(exc)
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_default_settings_pass(settings):
    assert "stepup." not in check_ids({}, settings)


@pytest.mark.parametrize(
    ("changes", "check_id", "words"),
    [
        ({"STEPUP": {"DEFALT_MAX_AGE": 3}}, "stepup.E002", "DEFALT_MAX_AGE"),
        ({"STEPUP": "nope"}, "stepup.E001", "must be a dict"),
        ({"STEPUP": {"DEFAULT_MAX_AGE": -1}}, "stepup.E004", "DEFAULT_MAX_AGE"),
        ({"STEPUP": {"TRUSTED_PROXIES": ["10.0.0.0/33"]}}, "stepup.E005", "10.0.0.0/33"),
        ({"STEPUP": {"TRUSTED_PROXIES": "10.0.0.0/8"}}, "stepup.E005", "list of CIDRs"),
        ({"STEPUP": {"POLICY_FILES": ["/does/not/exist.yaml"]}}, "stepup.E009", "/does/not/exist.yaml"),
        ({"STEPUP": {"POLICY_FILES": "/x.yaml"}}, "stepup.E008", "list of paths"),
        (
            {"SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies"},
            "stepup.W002",
            "signed_cookies",
        ),
        ({"STEPUP": {"ACR_VALUES": {"sms": "urn:acr:sms"}}}, "stepup.E011", "'sms' is not a factor kind"),
        ({"STEPUP": {"ACR_VALUES": {"totp": 'urn:"x"'}}}, "stepup.E011", "can't be sent in acr_values"),
        ({"STEPUP": {"ACR_VALUES": {"totp": "two words"}}}, "stepup.E011", "can't be sent in acr_values"),
        ({"STEPUP": {"ACR_VALUES": ["totp"]}}, "stepup.E011", "must be a dict"),
        ({"STEPUP": {"SECRET_FIELDS": "pin"}}, "stepup.E012", "must be a list of field names"),
        ({"STEPUP": {"SECRET_FIELDS": ["pin", "--"]}}, "stepup.E012", "'--' is not a field name"),
        ({"STEPUP": {"SECRET_FIELDS": [None]}}, "stepup.E012", "None is not a field name"),
        ({"STEPUP": {"NOTICES": "redis"}}, "stepup.E015", 'it must be "cache" or "database"'),
        (
            {"STEPUP": {"NOTICES": "database"}},
            "stepup.E016",
            "the database 'default' is sqlite, not PostgreSQL",
        ),
        ({"STEPUP": {"CACHE": "nowhere"}}, "stepup.W003", "'nowhere', which is not in CACHES"),
    ],
)
def test_misconfiguration_is_reported(settings, changes, check_id, words):
    output = check_ids(changes, settings)
    assert check_id in output
    assert words in output


def test_missing_middleware_is_a_warning(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "stepup.middleware.StepUpMiddleware"]
    assert "stepup.W001" in check_ids({}, settings)


@pytest.mark.parametrize(
    ("dropped", "words"),
    [
        ("django.middleware.security.SecurityMiddleware", "HTTPS redirects and security headers"),
        ("django.middleware.csrf.CsrfViewMiddleware", "CSRF protection of the verify form"),
    ],
)
def test_dropping_djangos_protective_middleware_is_a_warning(settings, dropped, words):
    """A MIDDLEWARE list copied from an example that left Django's own out (docs/install.md shows insertion)."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != dropped]
    output = check_ids({}, settings)
    assert "stepup.W005" in output and words in output and dropped in output


def test_middleware_order(settings):
    middleware = [m for m in settings.MIDDLEWARE if m != "stepup.middleware.StepUpMiddleware"]
    settings.MIDDLEWARE = ["stepup.middleware.StepUpMiddleware", *middleware]
    output = check_ids({}, settings)
    assert "stepup.E007" in output
    assert "must come after 'django.contrib.auth.middleware.AuthenticationMiddleware'" in output


def test_missing_otp_middleware(settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "django_otp.middleware.OTPMiddleware"]
    assert "stepup.E006" in check_ids({}, settings)


def test_missing_required_app(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "simple_history"]
    assert "stepup.E003" in check_ids({}, settings)


@pytest.mark.django_db
def test_the_models_and_their_migrations_agree() -> None:
    """A model change without its migration fails here, not on a user's database (stepup's own and
    the test project's: PostgreSQL and MariaDB refuse an unmigrated app's foreign key to a user)."""
    out = StringIO()
    try:
        call_command("makemigrations", "stepup", "shop", check=True, dry_run=True, stdout=out)
    except SystemExit as exc:
        pytest.fail(f"makemigrations would write a migration ({exc.code}):\n{out.getvalue()}")


def test_a_cache_alias_is_not_checked_when_the_database_carries_the_notices(settings, monkeypatch):
    from stepup import notices

    monkeypatch.setattr(notices, "database_notices_problem", lambda alias: None)  # as on PostgreSQL
    output = check_ids({"STEPUP": {"NOTICES": "database", "CACHE": "nowhere"}}, settings)
    assert "stepup." not in output


def test_psycopg2_cannot_carry_database_notices(monkeypatch):
    from types import SimpleNamespace

    from stepup import notices

    fake = SimpleNamespace(vendor="postgresql", Database=SimpleNamespace(__name__="psycopg2"))
    monkeypatch.setattr("django.db.connections", {"pg2": fake})  # what notices looks databases up in
    assert "psycopg2" in (notices.database_notices_problem("pg2") or "")
    assert notices.database_notices("pg2", interval=1.0) is None  # the store polls the database
    assert "no database 'missing'" in (notices.database_notices_problem("missing") or "")
