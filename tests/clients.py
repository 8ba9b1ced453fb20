"""Test clients shared by the suites."""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient


class CredentialClient(APIClient):
    """A DRF test client authenticated by a credential, that keeps no session.

    Like a real API client, it sends the ``stepup_token`` of its last
    successful ``api-verify`` back in the ``StepUp-Token`` header.
    """

    def request(self, **kwargs: Any) -> Any:
        response = super().request(**kwargs)
        body = response.json() if response.get("Content-Type", "").startswith("application/json") else None
        if isinstance(body, dict) and isinstance(body.get("stepup_token"), str):
            self._credentials["HTTP_STEPUP_TOKEN"] = body["stepup_token"]
        return response
