"""Admin wording (issue 17, polish): policy history names a sync's file and commit under
"Changed by" instead of "None"; the decision log's event column says what happened once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from stepup.models import Policy
from stepup.policy.loader import load_files
from stepup.sync import sync
from tests.audit.test_admin_policies import POLICY_FILE

pytestmark = pytest.mark.django_db


def changed_by(html: str) -> list[str]:
    """The "Changed by" cells of the history table (the column after "Comment")."""
    table = html.split('id="change-history"', 1)[1].split("</table>", 1)[0]
    header = re.findall(r"<th scope=\"col\">(.*?)</th>", table)
    index = header.index("Changed by")
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row, re.S) for row in rows]
    return [re.sub(r"<[^>]+>|\s+", " ", c[index]).strip() for c in cells if len(c) > index]


def test_history_names_the_sync_not_none(admin_client: Client) -> None:
    sync(load_files([POLICY_FILE]), reason="initial sync", commit="abc123")
    row = Policy.objects.get(policy_id="billing-update")
    html = admin_client.get(f"/admin/stepup/policy/{row.pk}/history/").content.decode()
    cells = changed_by(html)
    assert cells and all(c.startswith("stepup sync of ") and c.endswith("(commit abc123)") for c in cells), (
        cells
    )
    assert "None" not in cells


def test_history_names_the_admin_user_who_made_a_change(admin_client: Client, admin_user: Any) -> None:
    sync(load_files([POLICY_FILE]), reason="initial sync", commit="abc123")
    row = Policy.objects.get(policy_id="billing-update")
    row.max_age = 60
    row._history_user = admin_user  # type: ignore[attr-defined]
    row.save()
    html = admin_client.get(f"/admin/stepup/policy/{row.pk}/history/").content.decode()
    assert changed_by(html)[0] == admin_user.get_username()
