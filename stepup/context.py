"""Turning a request into the facts the policy engine decides on.

Each enforcement point turns the request into its :class:`RequestContext`
once (:func:`get_context`, kept in the request's :func:`~stepup.state.state`)
and hands that down. The facts that do not depend on the action (user, URL
name, method, client IP, roles, session age, verification ages) are read from
the request the first time a decision needs them, at most once per request;
:meth:`RequestContext.input` then adds the action, attributes and
single-request grants of one decision.

Building a context reads nothing: a request that no policy can match costs
no query at all.

Client IP (``origin`` conditions)
---------------------------------

The client IP is ``REMOTE_ADDR``, unless ``REMOTE_ADDR`` is inside one of
``STEPUP["TRUSTED_PROXIES"]``: then it is the rightmost ``X-Forwarded-For``
address that is not itself a trusted proxy. A header sent by any other peer
is ignored, so spoofing it changes nothing.

When a trusted proxy sends no usable header (missing, empty, a malformed
entry before the first untrusted hop, or only trusted hops) the IP is
*unknown* (``None``), never the proxy's own address. The engine treats every
``origin`` condition on an unknown IP as holding, which is the strict choice
for both forms: ``origin: {not_in: [office]}`` (an office exemption) still
demands step-up, and ``origin: {in: [...]}`` still applies. Falling back to the
proxy's address would instead place the client *inside* the network the
proxy lives in — typically the very office range an exemption names.

An IPv4-mapped address (``::ffff:a.b.c.d``) is that IPv4 address, for the
proxies and the policies (:func:`stepup.policy.conditions.canonical_ip`). Other
IPv6 forms that carry an IPv4 address (6to4, NAT64, Teredo …) stay as they
are here: a proxy is never trusted for what its address carries, and the
``origin`` condition reads them both ways
(:func:`stepup.policy.conditions.origin_readings`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.urls import Resolver404, ResolverMatch, resolve
from django.utils.functional import LazyObject, empty

from stepup import grants
from stepup.conf import conf
from stepup.policy.conditions import canonical_ip
from stepup.policy.engine import ANY_METHOD
from stepup.policy.model import Decision, Input, IPAddress
from stepup.state import RequestState, state

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

AnyUser = AbstractBaseUser | AnonymousUser


def http_request(request: Any) -> HttpRequest:
    """The Django request behind ``request`` (a DRF ``Request`` wraps one in ``_request``)."""
    if isinstance(request, HttpRequest):
        return request
    inner = getattr(request, "_request", None)
    if isinstance(inner, HttpRequest):
        return inner
    raise TypeError(f"expected an HttpRequest, got {type(request).__name__}")


# --- URL name -----------------------------------------------------------------


def resolver_match(request: HttpRequest) -> ResolverMatch | None:
    """``request.resolver_match``, or the path resolved here (a view called directly)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        try:
            match = resolve(request.path_info, urlconf=getattr(request, "urlconf", None))
        except Resolver404:
            return None
    return match


def url_name(request: HttpRequest) -> str | None:
    """The namespaced URL name of the request's route (``admin:auth_user_change``), or ``None``.

    Taken from ``request.resolver_match``, which Django resolves from
    ``request.path_info``; without one (a view called directly), the path is
    resolved here. Unnamed routes have no name: their dotted view path is
    never used as one.
    """
    return match_name(resolver_match(request))


def match_name(match: ResolverMatch | None) -> str | None:
    """The namespaced URL name of a resolved route, or ``None`` (see :func:`url_name`)."""
    if match is None or not match.url_name:
        return None
    if not match.namespaces:
        return match.url_name
    return ":".join([*match.namespaces, match.url_name])


PLAIN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
"""Methods every view tells apart, and policies name as themselves."""
HANDLED_BY_CLASS_VIEWS = frozenset({"OPTIONS", "TRACE"})
"""Methods a class-based view answers without calling another method's handler."""


def matching_method(request: HttpRequest) -> str:
    """The method policies are matched on.

    - ``HEAD`` is ``GET``: Django serves ``HEAD`` with the ``GET`` view.
    - ``GET``, ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` are themselves.
    - ``OPTIONS`` and ``TRACE`` are themselves for a class-based view (Django's
      ``View`` and DRF's ``APIView`` answer them with ``options()`` or ``405``,
      never with the ``get``/``post`` handler).
    - ``OPTIONS`` and ``TRACE`` sent to a function view (which runs its one
      body whatever the method), and every other method (``PROPFIND``, made-up
      ones), are :data:`~stepup.policy.engine.ANY_METHOD`, which every
      policy's ``methods`` matches (fail closed).

    Override headers (``X-HTTP-Method-Override``, ``_method``) are ignored.
    """
    method = (request.method or "GET").upper()
    if method == "HEAD":
        return "GET"
    if method in PLAIN_METHODS:
        return method
    if method in HANDLED_BY_CLASS_VIEWS and _is_class_view(request):
        return method
    return ANY_METHOD


def _is_class_view(request: HttpRequest) -> bool:
    match = resolver_match(request)
    func = match.func if match is not None else None
    cls = getattr(func, "view_class", None) or getattr(func, "cls", None)
    return isinstance(cls, type)


# --- client IP ---------------------------------------------------------------


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@lru_cache(maxsize=1024)
def _parse_ip(text: str) -> IPAddress | None:
    """``text`` as an address in its canonical form (cached: the same few peers ask on every request)."""
    try:
        return canonical_ip(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: tuple[str, ...]) -> bool:
    return any(address in net for net in _networks(proxies) if net.version == address.version)


def client_ip(request: HttpRequest) -> IPAddress | None:
    """The client IP as the policies see it; ``None`` when unknown (see the module doc)."""
    peer = _parse_ip(str(request.META.get("REMOTE_ADDR") or ""))
    proxies = tuple(str(p) for p in conf.TRUSTED_PROXIES)
    if peer is None or not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    for entry in reversed(forwarded.split(",")):
        hop = _parse_ip(entry)
        if hop is None:
            return None
        if not _trusted(hop, proxies):
            return hop
    return None


# --- lazy facts ---------------------------------------------------------------


class LazyMapping(Mapping[str, float]):
    """A read-only mapping computed by ``load`` on first access."""

    def __init__(self, load: Callable[[], Mapping[str, float]]) -> None:
        self._load: Callable[[], Mapping[str, float]] | None = load
        self._data: Mapping[str, float] = {}

    def _get(self) -> Mapping[str, float]:
        if self._load is not None:
            self._data, self._load = self._load(), None
        return self._data

    @property
    def loaded(self) -> bool:
        return self._load is None

    def plain(self) -> Mapping[str, float]:
        """The mapping itself once loaded (quicker to read), else this lazy one."""
        return self._data if self._load is None else self

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def user_roles(user: AnyUser) -> frozenset[str]:
    """Group names plus ``authenticated``, ``staff`` and ``superuser`` from the user's flags."""
    if not user.is_authenticated:
        return frozenset()
    groups = getattr(user, "groups", None)
    names = groups.values_list("name", flat=True) if groups is not None else ()
    return flag_roles(user) | frozenset(names)


def flag_roles(user: AnyUser) -> frozenset[str]:
    """The roles read from the user's flags alone (no query): ``authenticated``, ``staff``, ``superuser``."""
    if not user.is_authenticated:
        return frozenset()
    roles = {"authenticated"}
    if getattr(user, "is_staff", False):
        roles.add("staff")
    if getattr(user, "is_superuser", False):
        roles.add("superuser")
    return frozenset(roles)


class _Once:
    """A callable that calls ``load`` the first time and returns that result ever after."""

    def __init__(self, load: Callable[[], frozenset[str]]) -> None:
        self._load = load
        self._value: frozenset[str] | None = None
        self.calls = 0

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def __call__(self) -> frozenset[str]:
        if self._value is None:
            self.calls += 1
            self._value = self._load()
        return self._value


# --- the per-request context ---------------------------------------------------

_NONE: frozenset[str] = frozenset()


@dataclass(eq=False)
class RequestContext:
    """The action-independent facts of one request, each read when first needed."""

    request: HttpRequest
    user: AnyUser
    pending: RequestState = field(repr=False)
    """The request's :class:`~stepup.state.RequestState` (the one holding this context)."""
    allowed: dict[tuple[Any, ...], Decision] = field(default_factory=dict)
    """Decisions already allowed in this request, by action and attributes (``_Check.key``)."""
    own_view: bool | None = None
    """Whether the route is one of stepup's own views (``is_stepup_view``), once known."""
    given_user: object = field(default=None, repr=False)
    """``request.user`` as the context was built for (perhaps Django's lazy proxy of :attr:`user`)."""
    _held_none: object = field(default=None, init=False, repr=False)
    """The grants read (``RequestState.grants``) that :meth:`one_shot` found holding no one-shot grant."""

    @cached_property
    def authenticated(self) -> bool:
        return bool(self.user.is_authenticated)  # a user object's for good: a new user, a new context

    @cached_property
    def match(self) -> ResolverMatch | None:
        return resolver_match(self.request)

    @cached_property
    def url_name(self) -> str | None:
        return match_name(self.match)

    @cached_property
    def method(self) -> str:
        return matching_method(self.request)

    @cached_property
    def origin(self) -> IPAddress | None:
        return client_ip(self.request)

    @cached_property
    def session_age(self) -> float | None:
        return grants.session_age(self.request, self.user) if self.authenticated else None

    @cached_property
    def roles(self) -> _Once:
        return _Once(lambda: user_roles(self.user))

    @cached_property
    def verified(self) -> LazyMapping:
        return LazyMapping(lambda: _verification_ages(self.request, self.user))

    def one_shot(self, digest: str | Callable[[], str]) -> frozenset[str]:
        """Factor kinds holding an unused single-request grant for ``digest``.

        ``digest`` may be a function, called only when the subject holds any
        single-request grant at all (most requests: none, and no digest to work out).
        """
        loaded = self.pending.grants
        if loaded is not None and loaded is self._held_none:
            return _NONE  # the grants read for this user, already found to hold none (for any digest)
        if not self.authenticated:
            return _NONE
        user: AbstractBaseUser = self.user  # type: ignore[assignment]  # authenticated: not anonymous
        if callable(digest):
            if not grants.holds_one_shot(self.request, user):
                self._held_none = self.pending.grants
                return _NONE
            digest = digest()
        return grants.one_shot_kinds(self.request, user, digest)

    def input(
        self, action: str | None, url: str | None, attrs: Mapping[str, Any], digest: str | Callable[[], str]
    ) -> Input:
        """The engine input for one decision on this request (``digest``: see :meth:`one_shot`)."""
        # Positional, in Input's field order (quicker than keywords on this per-decision path):
        # action, url, method, roles, origin, session_age, verified, one_shot, and attrs, the
        # caller's own copy (stepup.enforcement._Check), which the engine only reads.
        return Input(
            action,
            url,
            self.method,
            self.roles,
            self.origin,
            self.session_age,
            self.verified.plain(),
            self.one_shot(digest),
            attrs,
        )


def _verification_ages(request: HttpRequest, user: AnyUser) -> Mapping[str, float]:
    if not isinstance(user, AbstractBaseUser) or not user.is_authenticated:
        return {}
    return grants.verification_ages(request, user)


def request_user(request: Any) -> AnyUser:
    user = getattr(request, "user", None)
    return user if user is not None else AnonymousUser()


def get_context(request: Any) -> RequestContext:
    """The context of ``request`` (a DRF ``Request`` works too), built on first use.

    It is built again when ``request.user`` changed since (a login inside the
    request, or a DRF view's own authentication).
    """
    given = getattr(request, "user", None)
    pending = state(request)
    context = pending.context
    if context is None or context.given_user is not given:
        user = _unwrapped(given) if given is not None else AnonymousUser()
        context = pending.context = RequestContext(http_request(request), user, pending, given_user=given)
    return context


def _unwrapped(user: Any) -> AnyUser:
    """``request.user`` without the lazy proxies around it (``SimpleLazyObject``).

    Every attribute read through the proxy is a Python call or two, and a
    protected request reads the user's about a hundred times.
    """
    while isinstance(user, LazyObject):  # django-otp's proxy wraps the auth middleware's
        if user._wrapped is empty:
            user._setup()
        user = user._wrapped
    return user
