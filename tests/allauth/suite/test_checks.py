"""System checks with allauth.mfa installed."""

from __future__ import annotations

from typing import Any

from tests.test_checks import check_ids


def test_the_allauth_settings_pass(settings: Any) -> None:
    assert "stepup." not in check_ids({}, settings)


def test_a_dummy_cache_would_let_a_totp_code_be_replayed(settings: Any) -> None:
    dummy = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    assert "stepup.E021" in check_ids({"CACHES": dummy}, settings)


def test_an_insecure_webauthn_origin_is_reported(settings: Any) -> None:
    assert "stepup.W020" in check_ids({"MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN": True}, settings)
