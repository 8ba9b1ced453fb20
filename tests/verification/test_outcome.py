"""After verification: no GET of a POST-only view, downloads, reopened and expired challenges,
and attributes in people's words (stepup.outcome, stepup.presentation)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from stepup import binding
from stepup.models import DecisionLog, Policy
from tests.verification import outcome_urls
from tests.verification.conftest import VERIFY, code, wrong_code

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _outcome_urls(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.verification.outcome_urls"
    outcome_urls.CALLS.clear()
    yield
    outcome_urls.CALLS.clear()


@pytest.fixture(autouse=True)
def policies(db: Any) -> None:
    for policy_id, action, max_age in (
        ("uploads", "files.upload", 300),
        ("reports", "reports.download", 300),
        ("transfers", "payments.transfer", 0),
    ):
        Policy.objects.create(
            policy_id=policy_id,
            description=f"{action} needs a second factor.",
            actions=[action],
            decision="step_up",
            max_age=max_age,
        )


def challenged(response: Any) -> tuple[str, str, dict[str, list[str]]]:
    assert response.status_code == 302, response
    location = urlsplit(response["Location"])
    assert location.path == VERIFY
    query = parse_qs(location.query, keep_blank_values=True)
    return response["Location"], query["challenge"][0], query


def verify(client: Client, challenge_id: str, token: str) -> Any:
    return client.post(VERIFY, {"challenge": challenge_id, "token": token})


# --- 1. a refused POST that can't be presented again ------------------------------------------


def upload(client: Client, url: str = "/upload/", referer: str | None = "http://testserver/files/") -> Any:
    data = {"title": "Q3", "file": SimpleUploadedFile("q3.pdf", b"%PDF-1.4")}
    headers = {"HTTP_REFERER": referer} if referer else {}
    return client.post(url, data, **headers)


def test_a_refused_upload_goes_back_to_its_form_page_told_to_submit_again(
    logged_in: Client, totp: Any
) -> None:
    _, challenge_id, query = challenged(upload(logged_in))
    assert query["back"] == ["/files/"]
    done = verify(logged_in, challenge_id, code(totp))
    assert done.status_code == 303
    assert done["Location"] == "/files/"  # never a GET of the POST-only /upload/ (a 405)
    page = logged_in.get(done["Location"])
    assert page.status_code == 200
    assert "Fill it in and submit it again." in page.content.decode()
    assert outcome_urls.CALLS == []
    assert (
        logged_in.post("/upload/", {"title": "Q3", "file": SimpleUploadedFile("q3.pdf", b"x")}).status_code
        == 200
    )
    assert outcome_urls.CALLS == ["upload"]


def test_a_view_may_name_its_form_page(logged_in: Client, totp: Any) -> None:
    _, challenge_id, _ = challenged(
        upload(logged_in, "/upload/named/", referer="http://testserver/elsewhere/")
    )
    done = verify(logged_in, challenge_id, code(totp))
    assert done["Location"] == "/files/"


@pytest.mark.parametrize(
    "referer",
    [None, "https://evil.example/files/", "http://testserver//evil.example/", "javascript:alert(1)"],
)
def test_without_a_usable_referer_the_user_goes_home_not_to_the_post_only_view(
    logged_in: Client, totp: Any, referer: str | None
) -> None:
    _, challenge_id, query = challenged(upload(logged_in, referer=referer))
    assert query["back"] == [""]
    done = verify(logged_in, challenge_id, code(totp))
    assert done.status_code == 303 and done["Location"] == "/"
    messages = [str(m) for m in get_messages(done.wsgi_request)]
    assert any("submit it again" in m for m in messages)


# --- 2. downloads --------------------------------------------------------------------------


def test_a_download_lands_on_a_done_page_that_starts_it(logged_in: Client, totp: Any) -> None:
    _, challenge_id, _ = challenged(logged_in.get("/download/", HTTP_REFERER="http://testserver/files/"))
    done = verify(logged_in, challenge_id, code(totp))
    assert done.status_code == 303
    assert done["Location"] == f"{VERIFY}?challenge={challenge_id}"
    page = logged_in.get(done["Location"])
    html = page.content.decode()
    assert page.templates[0].name == "stepup/done.html"
    assert '<a href="/download/" data-stepup-autostart>' in html
    assert '<script type="module" src="/static/stepup/autostart.js"></script>' in html
    assert "Your download starts now." in html and 'name="token"' not in html
    assert '<a href="/files/">' in html
    file = logged_in.get("/download/")
    assert file.status_code == 200 and file["Content-Disposition"].startswith("attachment")
    again = logged_in.get(done["Location"])  # reloaded: no second automatic download
    assert "data-stepup-autostart" not in again.content.decode()
    assert "already confirmed" in again.content.decode()


def test_pressing_verify_again_with_the_spent_code_is_no_failure(logged_in: Client, totp: Any) -> None:
    _, challenge_id, _ = challenged(logged_in.get("/download/"))
    token = code(totp)
    assert verify(logged_in, challenge_id, token).status_code == 303
    again = verify(logged_in, challenge_id, token)
    assert again.status_code == 200
    assert again.templates[0].name == "stepup/done.html"
    assert not DecisionLog.objects.filter(event="failed").exists()
    assert not DecisionLog.objects.filter(event="verified").count() > 1


# --- 3. context after success or expiry ----------------------------------------------------


def test_reopening_the_verify_url_after_success_says_already_confirmed(logged_in: Client, totp: Any) -> None:
    data = {"account": "DE89370400440532013000", "address": "", "operation": "", "password": ""}
    url, challenge_id, _ = challenged(logged_in.post("/labelled/", data))
    assert verify(logged_in, challenge_id, code(totp)).status_code == 200  # the confirm page
    page = logged_in.get(url)
    html = page.content.decode()
    assert page.templates[0].name == "stepup/done.html"
    assert "You already confirmed this request." in html and 'name="token"' not in html


def test_signing_in_again_after_the_session_ended_says_the_request_expired(
    client: Client, user: Any, totp: Any
) -> None:
    client.force_login(user)
    url, _, _ = challenged(upload(client))
    client.logout()  # the session ends mid-challenge
    to_login = client.get(url)
    assert to_login.status_code == 302 and to_login["Location"].startswith("/accounts/login/")
    client.force_login(user)  # signed in again: a new session, without the challenge
    page = client.get(url)
    html = page.content.decode()
    assert page.templates[0].name == "stepup/expired.html"
    assert "This request expired" in html and 'name="token"' not in html
    assert '<a href="/files/">Start again</a>' in html  # the form's page, not the POST-only /upload/


def test_a_stale_done_record_from_another_challenge_does_not_cover_a_pending_one(
    logged_in: Client, totp: Any
) -> None:
    _, first, _ = challenged(logged_in.get("/download/"))
    verify(logged_in, first, code(totp))
    _, second, _ = challenged(logged_in.post("/labelled/", {"account": "X"}))
    assert first != second
    page = logged_in.get(f"{VERIFY}?challenge={second}")
    assert page.templates[0].name == "stepup/verify.html"
    assert verify(logged_in, second, wrong_code(totp)).templates[0].name == "stepup/verify.html"
    assert DecisionLog.objects.filter(event="failed").count() == 1


# --- 4. attributes in people's words ---------------------------------------------------------


TRANSFER = {
    "account": "DE89370400440532013000",
    "address": "Acme <b>GmbH</b>\nHauptstr. 1\n10115 Berlin",
    "operation": "grant",
    "password": "hunter2",
}


@pytest.mark.parametrize("url", ["/labelled/"])
def test_the_verify_page_shows_labels_and_display_values(logged_in: Client, totp: Any, url: str) -> None:
    verify_url, _, _ = challenged(logged_in.post(url, TRANSFER))
    html = logged_in.get(verify_url).content.decode()
    assert "<dt>Destination account</dt><dd>DE89 3704 0044 0532 0130 00</dd>" in html
    assert (
        "<dt>Billing address</dt><dd>Acme &lt;b&gt;GmbH&lt;/b&gt;<br>Hauptstr. 1<br>10115 Berlin</dd>" in html
    )
    assert "<dt>Change</dt><dd>Grant access</dd>" in html
    assert "hunter2" not in html and "shown?" not in html
    assert "not an attribute" not in html


@pytest.mark.parametrize("url", ["/labelled/mixin/", "/labelled/enforce/"])
def test_the_mixin_and_enforce_take_labels_and_display(logged_in: Client, totp: Any, url: str) -> None:
    verify_url, _, _ = challenged(logged_in.post(url, {"account": "DE89370400440532013000"}))
    html = logged_in.get(verify_url).content.decode()
    assert "<dt>Destination account</dt><dd>DE89 3704 0044 0532 0130 00</dd>" in html


def test_the_bound_values_are_the_raw_ones(logged_in: Client, totp: Any) -> None:
    from stepup.models import Grant

    _, challenge_id, _ = challenged(logged_in.post("/labelled/", TRANSFER))
    verify(logged_in, challenge_id, code(totp))
    raw_digest = binding.attributes_digest("payments.transfer", "labelled", TRANSFER)
    assert Grant.objects.filter(digest=raw_digest).exists()  # bound to the raw values, not the shown ones
    shown = {**TRANSFER, "account": "DE89 3704 0044 0532 0130 00", "operation": "Grant access"}
    assert challenged(logged_in.post("/labelled/", shown))  # what was shown does not fit the grant
    assert logged_in.post("/labelled/", TRANSFER).status_code == 200
    assert outcome_urls.CALLS == ["labelled"]


def test_the_confirm_page_labels_fields_and_keeps_line_breaks(logged_in: Client, totp: Any) -> None:
    _, challenge_id, _ = challenged(logged_in.post("/labelled/", {**TRANSFER, "note": "line 1\nline 2"}))
    page = verify(logged_in, challenge_id, code(totp))
    html = page.content.decode()
    assert page.templates[0].name == "stepup/confirm.html"
    assert "<dt>Destination account</dt><dd>DE89 3704 0044 0532 0130 00</dd>" in html
    assert "<dt>note</dt><dd>line 1<br>line 2</dd>" in html
    assert html.count("GmbH&lt;/b&gt;<br>") == 1  # shown once, with the attributes, not again as a field
    assert '<label for="stepup-retype-1">password</label>' in html


def test_labels_and_display_are_checked_when_the_view_is_declared() -> None:
    from stepup import require_stepup

    with pytest.raises(TypeError, match="labels"):
        require_stepup("x.y", labels=["amount"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="display"):
        require_stepup("x.y", display={"amount": "Amount"})  # type: ignore[arg-type]


# --- Cancel --------------------------------------------------------------------------------


def test_cancel_goes_back_to_where_the_user_came_from(logged_in: Client, totp: Any) -> None:
    url, _, _ = challenged(logged_in.get("/download/", HTTP_REFERER="http://testserver/files/"))
    assert '<a href="/files/">Cancel</a>' in logged_in.get(url).content.decode()


def test_cancel_without_a_referer_is_the_home_page_not_a_404(
    logged_in: Client, totp: Any, settings: Any
) -> None:
    settings.LOGIN_REDIRECT_URL = "/accounts/profile/"  # Django's default: a 404 in most projects
    url, _, _ = challenged(logged_in.get("/download/"))
    assert '<a href="/">Cancel</a>' in logged_in.get(url).content.decode()
