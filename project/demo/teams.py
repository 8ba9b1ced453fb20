"""Team access: who is in which of the groups Acme Billing manages."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Group, User

MANAGED_GROUPS = ("finance", "auditor", "admins")
ADMIN_GROUP = "admins"


@dataclass(frozen=True)
class Cell:
    group: str
    member: bool


@dataclass(frozen=True)
class Row:
    username: str
    cells: tuple[Cell, ...]


def can_manage_access(user: User | AnonymousUser) -> bool:
    """Superusers and members of the ``admins`` group may change memberships."""
    return user.is_superuser or user.groups.filter(name=ADMIN_GROUP).exists()


def membership_table() -> list[Row]:
    """One row per active user, one cell per managed group, in a stable order."""
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    return [_row(user) for user in users.prefetch_related("groups")]


def _row(user: User) -> Row:
    names = {group.name for group in user.groups.all()}
    return Row(user.get_username(), tuple(Cell(name, name in names) for name in MANAGED_GROUPS))


def set_membership(user: User, group: Group, member: bool) -> bool:
    """Add or remove ``user`` from ``group``; return whether anything changed."""
    if user.groups.filter(pk=group.pk).exists() == member:
        return False
    if member:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    return True
