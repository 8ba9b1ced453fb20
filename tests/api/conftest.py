"""Fixtures for the API tests: users, devices, tokens, DRF clients, policies, the RFC 7235 parser."""

from __future__ import annotations

from typing import Any

import pytest

from tests.otp import code, wrong_code  # noqa: F401  (re-exported for the tests)
from tests.paths import API_DECIDE, API_STATUS, API_VERIFY  # noqa: F401  (re-exported)
from tests.rfc9470 import parse_challenge, rfc9470_params  # noqa: F401  (re-exported for the tests)


@pytest.fixture(autouse=True)
def _api_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.api.urls"
