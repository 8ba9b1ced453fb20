"""The whole passkey step-up of an API client authenticated by a token, against the demo's transfer API.

What docs/api.md tells a client to do: the ``401`` names a challenge, ``webauthn-begin``
gives the options for it, the authenticator signs them, ``webauthn-complete`` answers
with a step-up token, and the refused request goes through once with it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.shop.models import Transfer
from tests.webauthn.authenticator import SoftAuthenticator, unb64url
from tests.webauthn.conftest import BEGIN, COMPLETE, post_json

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("synced_policies")]

TRANSFERS = "/api/transfers/"
TRANSFER = {"amount": "5000.00", "account": "DE89370400440532013000"}


@pytest.fixture
def synced_policies(db: Any) -> None:
    """The demo's policy file, synced as ``manage.py stepup sync`` would."""
    from stepup.conf import conf
    from stepup.sync import load, sync

    sync(load(conf.POLICY_FILES), reason="tests/webauthn")


@pytest.fixture
def api(user: Any) -> dict[str, str]:
    """The headers of a client authenticated by alice's API token (no session, no CSRF)."""
    return {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=user).key}"}


def step_up(
    client: Client, passkey: SoftAuthenticator, challenge: str, headers: dict[str, str]
) -> tuple[int, str]:
    """One passkey ceremony for ``challenge``: the WebAuthn challenge's length and the new step-up token."""
    begun = post_json(client, BEGIN, {"challenge": challenge}, **headers)
    assert begun.status_code == 200, begun.content
    options = begun.json()["publicKey"]
    assert options["userVerification"] == "required"
    done = post_json(
        client, COMPLETE, {"challenge": challenge, "credential": passkey.get(options)}, **headers
    )
    assert done.status_code == 200, done.content
    answer = done.json()
    assert answer["verified"] is True and answer["factor"] == "webauthn"
    return len(unb64url(options["challenge"])), str(answer["stepup_token"])


def test_a_token_client_steps_up_with_a_passkey_for_one_transfer(
    passkey: SoftAuthenticator, api: dict[str, str]
) -> None:
    client = Client(enforce_csrf_checks=True)
    headers = dict(api)
    lengths = []
    for _ in range(3):  # the demo's policies may ask twice: a recent factor, then the one-shot approval
        response = post_json(client, TRANSFERS, TRANSFER, **headers)
        if response.status_code != 401:
            break
        assert response.json()["code"] == "stepup_required"
        length, token = step_up(client, passkey, response.json()["challenge"], api)
        lengths.append(length)
        headers = {**api, "HTTP_STEPUP_TOKEN": token}
    assert response.status_code == 201, response.content
    assert lengths[-1] == 64, "the approval of the transfer was a signature over nonce + transaction digest"
    assert Transfer.objects.count() == 1

    # The approval was for that transfer, once: the same again, or another account, asks again.
    assert post_json(client, TRANSFERS, TRANSFER, **headers).status_code == 401
    other = {**TRANSFER, "account": "GB82WEST12345698765432"}
    assert post_json(client, TRANSFERS, other, **headers).status_code == 401
    assert Transfer.objects.count() == 1


def test_a_token_client_cannot_complete_a_ceremony_begun_by_another_credential(
    passkey: SoftAuthenticator, api: dict[str, str], other_user: Any
) -> None:
    client = Client()
    challenge = post_json(client, TRANSFERS, TRANSFER, **api).json()["challenge"]
    options = post_json(client, BEGIN, {"challenge": challenge}, **api).json()["publicKey"]
    mallory = {"HTTP_AUTHORIZATION": f"Token {Token.objects.create(user=other_user).key}"}
    stolen = post_json(
        client, COMPLETE, {"challenge": challenge, "credential": passkey.get(options)}, **mallory
    )
    assert stolen.status_code == 400 and stolen.json()["verified"] is False
    # The ceremony is still alice's to complete (mallory's client never saw it).
    done = post_json(client, COMPLETE, {"challenge": challenge, "credential": passkey.get(options)}, **api)
    assert done.status_code == 200, json.dumps(done.json())
