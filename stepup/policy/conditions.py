"""The ``when`` conditions of a policy, compiled: roles, origin, session age and attributes.

Each condition evaluates an :class:`~stepup.policy.model.Input` to held or
not, with a note when it holds only because a fact is unknown or of the
wrong type (fail closed: missing data never loosens a rule). Client IPs are
read in one canonical form, and an IPv6 address that carries an IPv4 one is
held to IPv4 CIDRs too.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stepup.policy.model import NUMBER_MAX_LENGTH, Input, IPAddress, as_number

logger = logging.getLogger("stepup.policy")


# --- values -----------------------------------------------------------------


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 40


def _shown(value: Any) -> str:
    """``repr(value)``, short enough for a log line, for any value (an int too long to print too)."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an int with more digits than Python will print
        return f"<{type(value).__name__}>"


def _same(value: Any, operand: Any) -> bool | None:
    """Equality as the policy language defines it; ``None`` when the types can't be compared."""
    if isinstance(operand, bool) or isinstance(value, bool):
        return value is operand if isinstance(value, bool) and isinstance(operand, bool) else None
    number = as_number(operand)
    if number is not None:
        other = as_number(value)
        return None if other is None else other == number
    if isinstance(operand, str) and isinstance(value, str):
        return value == operand
    return None


def canonical_ip(address: IPAddress) -> IPAddress:
    """``address``, or the IPv4 address it is when IPv4-mapped (``::ffff:a.b.c.d``).

    A dual-stack socket reports an IPv4 peer in that form: it is that IPv4
    client, for policies and ``TRUSTED_PROXIES`` alike.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_BITS = 0xFFFFFFFF


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that carry one.

    IPv4-compatible (``::a.b.c.d``, not ``::`` or ``::1``), 6to4
    (``2002::/16``), NAT64's well-known prefix (``64:ff9b::/96``) and Teredo
    (``2001::/32``: the client's address). NAT64 network-specific prefixes,
    ``64:ff9b:1::/48`` included, can't be decoded without knowing their
    length, and are left as they are.
    """
    value = int(address)
    if (value >> 32 == 0 and value > 1) or address in _NAT64:
        return ipaddress.IPv4Address(value & _IPV4_BITS)
    if address.sixtofour is not None:
        return address.sixtofour
    return address.teredo[1] if address.teredo is not None else None


def origin_readings(address: IPAddress) -> tuple[IPAddress, ...]:
    """What an ``origin`` condition checks for ``address``: itself, and any IPv4 address it carries."""
    address = canonical_ip(address)
    embedded = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return (address,) if embedded is None else (address, embedded)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}
_SYMBOL = {
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "eq": "==",
    "ne": "!=",
    "in": "in",
    "not_in": "not in",
}


# --- conditions -------------------------------------------------------------

# A condition evaluates to (held, note): ``note`` explains a fail-closed hold.
Result = tuple[bool, str | None]


class Condition:
    field: str = ""

    def evaluate(self, inp: Input) -> Result:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class RolesCondition(Condition):
    __slots__ = ("field", "op", "roles")

    def __init__(self, op: str, roles: Iterable[str]) -> None:
        self.field = f"when.roles.{op}"
        self.op = op
        self.roles = frozenset(roles)

    def evaluate(self, inp: Input) -> Result:
        have = inp.get_roles()
        if self.op == "any_of":
            return (not self.roles.isdisjoint(have), None)
        if self.op == "all_of":
            return (self.roles <= have, None)
        return (self.roles.isdisjoint(have), None)

    def describe(self) -> str:
        return f"roles {self.op.replace('_', ' ')} {sorted(self.roles)}"


@functools.lru_cache(maxsize=1024)  # big policy sets name the same few networks many times
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


class OriginCondition(Condition):
    __slots__ = ("cidrs", "field", "inside", "networks")

    def __init__(self, op: str, cidrs: Iterable[str]) -> None:
        self.field = f"when.origin.{op}"
        self.inside = op == "in"
        self.cidrs = tuple(cidrs)
        # (version, network as int, netmask as int): membership is one AND and one compare.
        self.networks = tuple(
            (net.version, int(net.network_address), int(net.netmask)) for net in map(_network, self.cidrs)
        )

    def evaluate(self, inp: Input) -> Result:
        """Holds when it holds for any reading of the client IP (:func:`origin_readings`).

        An IPv6 address that carries an IPv4 address is in an ``in`` list
        that holds either, and outside a ``not_in`` list that misses either:
        a spelling never escapes a rule, nor earns an exemption.
        """
        if inp.origin is None:
            return (True, "client IP unknown; condition treated as holding")
        address, *carried = origin_readings(inp.origin)
        held = self._contains(address) is self.inside
        if not carried or (self._contains(carried[0]) is self.inside) is held:
            return (held, None)
        return (True, f"client IP {address} carries {carried[0]}; condition holds for one of them")

    def _contains(self, address: IPAddress) -> bool:
        version, value = address.version, int(address)
        for net_version, network, mask in self.networks:
            if net_version == version and value & mask == network:
                return True
        return False

    def describe(self) -> str:
        return f"origin {'in' if self.inside else 'not in'} {list(self.cidrs)}"


class NumberCondition(Condition):
    """``session_age`` and numeric attribute comparisons."""

    __slots__ = ("compare", "field", "name", "op", "operand", "read")

    def __init__(self, field: str, name: str, op: str, operand: Any, read: Callable[[Input], Any]):
        self.field = field
        self.name = name
        self.op = op
        number = as_number(operand)
        if number is None:
            raise ValueError(f"{field}: {operand!r} is not a number")
        # Whole operands as int, the fast comparison (never a huge one: int(Decimal("1e999999999"))).
        whole = isinstance(number, int) or (
            number == number.to_integral_value() and number.adjusted() < NUMBER_MAX_LENGTH
        )
        self.operand = int(number) if whole else number
        self.compare = _COMPARE[op]
        self.read = read

    def evaluate(self, inp: Input) -> Result:
        raw = self.read(inp)
        if raw is None:
            return (True, f"{self.name} missing; condition treated as holding")
        value = as_number(raw)
        if value is None:
            return (True, f"{self.name}={_shown(raw)} is not a number; condition treated as holding")
        return (self.compare(value, self.operand), None)

    def describe(self) -> str:
        return f"{self.name} {_SYMBOL[self.op]} {self.operand}"


class EqualityCondition(Condition):
    """``eq``/``ne``/``in``/``not_in`` on a transaction attribute."""

    __slots__ = ("field", "name", "negate", "op", "operands")

    def __init__(self, field: str, name: str, op: str, operand: Any):
        self.field = field
        self.name = name
        self.op = op
        self.operands = tuple(operand) if op in ("in", "not_in") else (operand,)
        self.negate = op in ("ne", "not_in")

    def evaluate(self, inp: Input) -> Result:
        raw = inp.attrs.get(self.name)
        if raw is None:
            return (True, f"attrs.{self.name} missing; condition treated as holding")
        results = [_same(raw, operand) for operand in self.operands]
        if any(results):
            return (not self.negate, None)
        if all(r is None for r in results):
            return (
                True,
                f"attrs.{self.name}={_shown(raw)} has the wrong type; condition treated as holding",
            )
        return (self.negate, None)

    def describe(self) -> str:
        shown = list(self.operands) if self.op in ("in", "not_in") else self.operands[0]
        return f"attrs.{self.name} {_SYMBOL[self.op]} {shown!r}"


def _attr_reader(name: str) -> Callable[[Input], Any]:
    return lambda inp: inp.attrs.get(name)


def _session_age(inp: Input) -> Any:
    return inp.session_age


def compile_conditions(when: Mapping[str, Any]) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    for op, roles in when.get("roles", {}).items():
        conditions.append(RolesCondition(op, roles))
    for op, cidrs in when.get("origin", {}).items():
        conditions.append(OriginCondition(op, cidrs))
    for op, operand in when.get("session_age", {}).items():
        conditions.append(NumberCondition(f"when.session_age.{op}", "session_age", op, operand, _session_age))
    for name, ops in when.get("attrs", {}).items():
        for op, operand in ops.items():
            field = f"when.attrs.{name}.{op}"
            if op in _COMPARE:
                conditions.append(NumberCondition(field, f"attrs.{name}", op, operand, _attr_reader(name)))
            else:
                conditions.append(EqualityCondition(field, name, op, operand))
    # Cheap conditions first; roles may cost a query, so they go last.
    conditions.sort(key=lambda c: isinstance(c, RolesCondition))
    return tuple(conditions)
