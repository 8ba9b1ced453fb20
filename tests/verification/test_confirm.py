"""An interrupted POST: after verification it is shown for one click, never replayed."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from unittest.mock import ANY

import pytest
from django.test import Client

from tests.verification import urls as test_urls
from tests.verification.conftest import VERIFY, code, save_challenge

pytestmark = pytest.mark.django_db

POSTED = {"amount": ["5000"], "account": ["DE89370400440532013000"], "tag": ["a", "b<script>"]}


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, list[str]] = {}
        self.retype: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a.get("action") or ""
        elif tag == "input" and a.get("type") == "hidden":
            self.fields.setdefault(a["name"] or "", []).append(a.get("value") or "")
        elif tag == "input" and a.get("type") == "password":
            assert "value" not in a  # a field to type again never comes filled in
            self.retype.append(a.get("name") or "")


def form_of(html: str) -> tuple[str, dict[str, list[str]]]:
    """The form's action and hidden fields, as a browser would submit them."""
    parser = _Form()
    parser.feed(html)
    return parser.action, parser.fields


def retyped_of(html: str) -> list[str]:
    """The names of the fields the confirm form asks to type again (secrets it did not keep)."""
    parser = _Form()
    parser.feed(html)
    return parser.retype


def csrf_token_of(page: Any) -> str:
    return form_of(page.content.decode())[1]["csrfmiddlewaretoken"][0]


def interrupted(client: Client, **overrides: Any) -> str:
    return save_challenge(client, method="POST", post=POSTED, **overrides)


def test_confirm_page_shows_the_saved_fields_and_does_nothing(logged_in: Client, totp: Any) -> None:
    challenge_id = interrupted(logged_in)
    response = logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id, "next": "/pay/"})
    assert response.status_code == 200
    assert response.templates[0].name == "stepup/confirm.html"
    html = response.content.decode()
    assert '<form method="post" action="/pay/">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<input type="hidden" name="amount" value="5000">' in html
    assert '<input type="hidden" name="tag" value="a">' in html
    assert 'value="b&lt;script&gt;"' in html and "<script>" not in html
    assert "<dt>account</dt><dd>DE89370400440532013000</dd>" in html
    assert "<script" not in html
    assert test_urls.CALLS == []
    assert response["X-Frame-Options"] == "DENY"


def test_the_confirm_form_submits_with_a_fresh_csrf_token(csrf_client: Client, totp: Any) -> None:
    challenge_id = interrupted(csrf_client)
    csrf_client.get(VERIFY)
    token = csrf_client.cookies["csrftoken"].value
    page = csrf_client.post(
        VERIFY, {"token": code(totp), "challenge": challenge_id, "csrfmiddlewaretoken": token}
    )
    assert page.status_code == 200 and test_urls.CALLS == []
    action, fields = form_of(page.content.decode())
    assert fields.pop("csrfmiddlewaretoken") != [token]  # a freshly masked token, not the old one
    assert fields == POSTED
    done = csrf_client.post(action, {**fields, "csrfmiddlewaretoken": csrf_token_of(page)})
    assert done.status_code == 200
    assert [{k: v for k, v in call.items() if k != "csrfmiddlewaretoken"} for call in test_urls.CALLS] == [
        POSTED
    ]


def test_a_secret_saved_by_an_older_version_is_asked_again_never_shown(logged_in: Client, totp: Any) -> None:
    challenge_id = save_challenge(logged_in, post={"pwd": ["hunter2"], "amount": ["5"]})
    html = logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id}).content.decode()
    assert "hunter2" not in html
    assert form_of(html)[1] == {"csrfmiddlewaretoken": [ANY], "amount": ["5"]}
    assert retyped_of(html) == ["pwd"]


def test_fields_to_type_again_are_labelled_and_explained(logged_in: Client, totp: Any) -> None:
    challenge_id = save_challenge(logged_in, post={"amount": ["5"]}, post_secrets=["user[pwd]", "pin", "pin"])
    html = logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id}).content.decode()
    assert retyped_of(html) == ["user[pwd]", "pin", "pin"]
    assert '<label for="stepup-retype-1">user[pwd]</label>' in html
    assert 'id="stepup-retype-1" name="user[pwd]" autocomplete="off"' in html
    assert "not kept" in html and "type them again" in html


@pytest.mark.parametrize("secrets", [None, "pwd", [3, None], {"pwd": 1}])
def test_malformed_secret_names_are_ignored(logged_in: Client, totp: Any, secrets: Any) -> None:
    challenge_id = save_challenge(logged_in, post={"amount": ["5"]}, post_secrets=secrets)
    html = logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id}).content.decode()
    assert retyped_of(html) == [] and form_of(html)[1]["amount"] == ["5"]


@pytest.mark.parametrize("path", ["//evil.com/pay/", "https://evil.com/pay/", "javascript:alert(1)", None])
def test_a_foreign_path_is_never_a_form_target(logged_in: Client, totp: Any, path: str | None) -> None:
    challenge_id = interrupted(logged_in, path=path)
    response = logged_in.post(VERIFY, {"token": code(totp), "challenge": challenge_id})
    assert response.status_code == 303
    # An interrupted POST that can't be presented is never redone as a GET of its "next":
    # the user goes back to the form's page (none known here: the site's home page).
    assert response["Location"] == "/"


def test_failed_verification_shows_no_confirmation(logged_in: Client, totp: Any) -> None:
    challenge_id = interrupted(logged_in)
    response = logged_in.post(VERIFY, {"token": "000000x", "challenge": challenge_id})
    assert response.templates[0].name == "stepup/verify.html"
    assert 'name="amount"' not in response.content.decode()
