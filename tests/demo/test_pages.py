from __future__ import annotations

import pytest
from django.urls import reverse

from project.demo.models import BillingProfile
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

PAGES = [
    "demo:home",
    "demo:billing",
    "demo:billing-update",
    "demo:transfer",
    "demo:reports",
    "demo:access",
    "stepup:devices",
]


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", PAGES)
def test_pages_render_for_a_signed_in_user(logged_in, name):
    response = logged_in.get(reverse(name))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'aria-current="page"' in page
    assert "demo/app.css" in page


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert 'name="username"' in response.content.decode()


def test_signing_in_lands_on_the_dashboard(client, user):
    response = client.post(reverse("login"), {"username": "erin", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("demo:home")
    assert "Welcome, erin" in response.content.decode()


def test_sign_out_is_a_post_form(logged_in):
    page = logged_in.get(reverse("demo:home")).content.decode()
    assert f'method="post" action="{reverse("logout")}"' in page
    logged_in.post(reverse("logout"))
    assert logged_in.get(reverse("demo:home")).status_code == 302


def test_admin_link_only_for_staff(client, make_user):
    client.force_login(make_user("plain"))
    assert reverse("admin:index") not in client.get(reverse("demo:home")).content.decode()
    client.force_login(make_user("staffer", is_staff=True))
    assert reverse("admin:index") in client.get(reverse("demo:home")).content.decode()


def test_dashboard_explains_the_policies(logged_in):
    page = logged_in.get(reverse("demo:home")).content.decode()
    for action in ("billing.update", "payments.transfer", "reports.download", "access.modify"):
        assert action in page


def test_dashboard_offers_no_step_up_badge_where_the_user_can_only_be_denied(client, make_user):
    """An auditor may never change billing, transfers or access: those cards say so, not "Step-up"."""
    client.force_login(make_user("ivy", "auditor"))
    cards = client.get(reverse("demo:home")).content.decode().split('class="card action-card"')[1:]
    by_title = {card.split("</a></h2>")[0].rsplit(">", 1)[-1]: card for card in cards}
    for title in ("Billing details", "Transfers", "Team access"):
        assert "Not for your role" in by_title[title] and "badge-lock" not in by_title[title], title
    assert "badge-lock" in by_title["Reports"] and "Not for your role" not in by_title["Reports"]
    client.force_login(make_user("fred", "finance"))
    page = client.get(reverse("demo:home")).content.decode()
    assert "Not for your role" not in page.split("Team access")[0]  # finance may change billing and pay


def test_billing_offers_auditors_no_edit_button(client, make_user):
    client.force_login(make_user("ivy", "auditor"))
    page = client.get(reverse("demo:billing")).content.decode()
    assert "Not for your role" in page and reverse("demo:billing-update") not in page
    client.force_login(make_user("fred", "finance"))
    page = client.get(reverse("demo:billing")).content.decode()
    assert "Not for your role" not in page and reverse("demo:billing-update") in page


def test_dashboard_asks_a_user_without_a_device_to_set_one_up(logged_in, totp):
    assert "Set up a second factor" not in logged_in.get(reverse("demo:home")).content.decode()
    totp.delete()
    assert "Set up a second factor" in logged_in.get(reverse("demo:home")).content.decode()


def test_billing_shows_the_users_profile(logged_in, user):
    BillingProfile.objects.create(
        user=user,
        company_name="Initech",
        billing_email="ap@initech.example",
        card_last4="1234",
        address="4120 Freidrich Lane",
    )
    page = logged_in.get(reverse("demo:billing")).content.decode()
    assert "Initech" in page and "1234" in page


def test_billing_without_a_profile_offers_to_add_one(logged_in):
    assert "No billing details yet" in logged_in.get(reverse("demo:billing")).content.decode()


def test_team_access_lists_memberships_read_only_for_non_admins(logged_in):
    page = logged_in.get(reverse("demo:access")).content.decode()
    assert "erin" in page and "Only admins can change it" in page
    assert 'name="op"' not in page


def test_team_access_shows_buttons_to_admins(client, make_user):
    client.force_login(make_user("root", "admins"))
    page = client.get(reverse("demo:access")).content.decode()
    assert 'name="op" value="grant"' in page and 'name="op" value="revoke"' in page


def test_only_admins_may_change_team_access(logged_in, user):
    data = {"user": "erin", "group": "admins", "op": "grant"}
    response = logged_in.post(reverse("demo:access"), data)
    assert response.status_code == 403
    assert not user.groups.filter(name="admins").exists()
