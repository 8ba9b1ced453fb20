"""``FACTOR_SOURCES`` checks on the main test settings, where ``allauth.mfa`` is not installed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_checks import check_ids


def test_allauth_named_without_allauth_mfa_installed(settings: Any) -> None:
    found = check_ids({"STEPUP": {**settings.STEPUP, "FACTOR_SOURCES": ["allauth"]}}, settings)
    assert "stepup.E020" in found and "'allauth.mfa' is not in INSTALLED_APPS" in found


@pytest.mark.parametrize("sources", [[], "allauth", ["django-otp"], ["django_otp", "webauthn"], None])
def test_factor_sources_must_name_known_sources(settings: Any, sources: Any) -> None:
    assert "stepup.E022" in check_ids({"STEPUP": {**settings.STEPUP, "FACTOR_SOURCES": sources}}, settings)


def test_the_default_source_is_django_otp(settings: Any) -> None:
    from stepup.conf import conf

    assert conf.FACTOR_SOURCES == ("django_otp",)
    assert "stepup." not in check_ids(
        {"STEPUP": {**settings.STEPUP, "FACTOR_SOURCES": ["django_otp"]}}, settings
    )
