"""The project's URL routes as stepup sees them: names, views, methods, actions, policies."""

from __future__ import annotations

import ast
import difflib
import fnmatch
import functools
import inspect
import textwrap
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from stepup.policy.engine import PolicySet, glob_matches
from stepup.policy.model import PolicyError, PolicyFile, PolicySpec


@dataclass(frozen=True)
class Route:
    pattern: str
    name: str
    view: str
    methods: tuple[str, ...]  # empty: not known (any)
    action: str | None
    policies: tuple[str, ...]
    enforced: tuple[str, ...] = ()  # those of ``policies`` in enforce mode (the others are shadow)
    in_code: tuple[str, ...] = ()  # actions the view's own code passes to enforce() or decide()

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "name": self.name,
            "view": self.view,
            "methods": list(self.methods) or ["*"],
            "action": self.action,
            "actions_in_code": list(self.in_code),
            "policies": list(self.policies),
        }

    def as_text(self) -> str:
        methods = ",".join(self.methods) or "*"
        action = self.action or "-"
        if self.in_code:
            action += f" (in code: {','.join(self.in_code)})"
        policies = ",".join(self.policies) or "-"
        return (
            f"/{self.pattern}  name={self.name or '-'}  view={self.view}  "
            f"methods={methods}  action={action}  policies={policies}"
        )


def _walk(
    patterns: Sequence[Any], prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str, Callable[..., Any]]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}{entry.namespace}:"
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else ""
            yield prefix + str(entry.pattern), name, entry.callback


def declared_action(callback: Callable[..., Any]) -> str | None:
    """The action a view declares: decorator stamp, mixin or DRF view attribute."""
    action = getattr(callback, "stepup_action", None)
    if action is None:
        cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        action = getattr(cls, "stepup_action", None)
    return action if isinstance(action, str) else None


ENFORCING_CALLS = frozenset({"enforce", "decide"})


def actions_in_code(callback: Callable[..., Any]) -> tuple[str, ...]:
    """The actions a view's own code passes to ``enforce()`` or ``decide()``, as far as they can be read.

    An action written as a string, or as a module-level string constant, in
    the view function (or any method of the view class), or in a function of
    the same module that it calls (two calls deep), counts; one computed at
    run time, or enforced in another module, can't be seen.
    """
    target = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    found: list[str] = []
    _collect(target if target is not None else inspect.unwrap(callback), found, set(), depth=2)
    return tuple(found)


def _collect(target: Any, found: list[str], seen: set[Any], depth: int) -> None:
    if target in seen:
        return
    seen.add(target)
    actions, callees = _read_source(target)
    found.extend(a for a in actions if a not in found)
    if depth > 0:
        for callee in callees:
            _collect(callee, found, seen, depth - 1)


@functools.lru_cache(maxsize=1024)
def _read_source(target: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The actions ``target``'s source passes to enforce()/decide(), and the module's functions it calls."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(target)))
    except (OSError, TypeError, SyntaxError):
        return (), ()
    module = inspect.getmodule(target)
    names = vars(module) if module is not None else {}
    actions: list[str] = []
    callees: list[Any] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if called in ENFORCING_CALLS and len(node.args) >= 2:
            argument = node.args[1]
            value = argument.value if isinstance(argument, ast.Constant) else None
            if isinstance(argument, ast.Name):
                value = names.get(argument.id)
            if isinstance(value, str) and value:
                actions.append(value)
        elif isinstance(node.func, ast.Name):
            callee = names.get(node.func.id)
            if inspect.isfunction(callee) and callee.__module__ == getattr(module, "__name__", None):
                callees.append(callee)
    return tuple(actions), tuple(callees)


def _methods(callback: Callable[..., Any]) -> tuple[str, ...]:
    """The methods the view handles (``()``: every method, as a plain function view).

    A class-based view handles those it defines a handler for (``OPTIONS``
    left out), a DRF ViewSet those its routes map; Django's
    ``require_http_methods`` (``require_POST``, ``require_safe`` …) anywhere
    in the decorators narrows that down.
    """
    handled: tuple[str, ...] = ()
    actions = getattr(callback, "actions", None)
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if isinstance(actions, dict):
        handled = tuple(sorted(m.upper() for m in actions))
    elif cls is not None:
        handled = tuple(
            m.upper() for m in getattr(cls, "http_method_names", ()) if m != "options" and hasattr(cls, m)
        )
    required = _required_methods(callback)
    if required is None:
        return handled
    return tuple(m for m in handled if m in required) if handled else tuple(sorted(required))


@functools.cache
def _require_http_methods_code() -> frozenset[CodeType]:
    """The code of the wrappers Django's ``require_http_methods`` builds (sync and async)."""
    from django.views.decorators.http import require_http_methods

    def view(request: Any) -> Any: ...

    async def async_view(request: Any) -> Any: ...

    return frozenset(require_http_methods([])(v).__code__ for v in (view, async_view))


def _required_methods(callback: Callable[..., Any]) -> set[str] | None:
    """What Django's ``require_http_methods`` lets through to the view; ``None`` without that decorator."""
    required: set[str] | None = None
    func: Any = callback
    for _ in range(100):  # a __wrapped__ chain ends; a cycle must not hang the command
        if func is None:
            break
        if getattr(func, "__code__", None) in _require_http_methods_code():
            allowed = {str(m).upper() for m in inspect.getclosurevars(func).nonlocals["request_method_list"]}
            required = allowed if required is None else required & allowed
        func = getattr(func, "__wrapped__", None)
    return required


def _view_path(callback: Callable[..., Any]) -> str:
    target = getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def collect_routes(policy_set: PolicySet, urlconf: str | None = None) -> list[Route]:
    routes = []
    for pattern, name, callback in _walk(get_resolver(urlconf).url_patterns):
        action = declared_action(callback)
        in_code = tuple(a for a in actions_in_code(callback) if a != action)
        found: dict[str, PolicySpec] = {}
        if name:
            found.update((p.id, p) for p in policy_set.policies_for_url(name))
        for named in (action, *in_code):
            if named:
                found.update((p.id, p) for p in policy_set.policies_for_action(named))
        ids = tuple(sorted(found))
        enforced = tuple(i for i in ids if found[i].mode == "enforce")
        methods = _methods(callback)
        routes.append(Route(pattern, name, _view_path(callback), methods, action, ids, enforced, in_code))
    return routes


def code_actions(urlconf: str | None = None) -> set[str]:
    """Every action the URLconf's views declare or pass to ``enforce()``/``decide()`` in their code."""
    found: set[str] = set()
    for _, _, callback in _walk(get_resolver(urlconf).url_patterns):
        action = declared_action(callback)
        found.update(a for a in (action, *actions_in_code(callback)) if a)
    return found


def unknown_actions(policy_file: PolicyFile, urlconf: str | None = None) -> list[str]:
    """Warnings for policy actions that no action the code declares matches (a typo, say)."""
    known = sorted(code_actions(urlconf))
    warnings = []
    for spec in policy_file.policies:
        for pattern in spec.actions:
            if any(glob_matches(pattern, action) for action in known):
                continue
            close = difflib.get_close_matches(pattern, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            warnings.append(
                f"policy {spec.id!r} names action {pattern!r}, which no view declares or enforces "
                f"(decorator, mixin, DRF view, or enforce()/decide() in a view's code){hint}"
            )
    return warnings


def url_names(urlconf: str | None = None) -> set[str]:
    return {name for _, name, _ in _walk(get_resolver(urlconf).url_patterns) if name}


def check_against_urlconf(policy_file: PolicyFile, urlconf: str | None = None) -> list[PolicyError]:
    """Errors for ``urls:`` names (and test inputs' ``url``) that the URLconf does not have."""
    names = url_names(urlconf)
    errors = []
    for index, spec in enumerate(policy_file.policies):
        for pattern in spec.urls:
            if not any(glob_matches(pattern, name) for name in names):
                errors.append(
                    PolicyError(
                        spec.source,
                        spec.line,
                        f"policies[{index}].match.urls",
                        _unknown_url(pattern, names),
                    )
                )
    for index, test in enumerate(policy_file.tests):
        url = test.input.get("url")
        if url and url not in names:
            errors.append(
                PolicyError(test.source, test.line, f"tests[{index}].input.url", _unknown_url(url, names))
            )
    return errors


def _unknown_url(pattern: str, names: set[str]) -> str:
    close = difflib.get_close_matches(pattern, sorted(names), n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    kind = "pattern" if "*" in pattern else "URL name"
    return f"{kind} {pattern!r} names no route in the URLconf{hint} (see `manage.py stepup routes`)"


def uncovered_actions(policy_set: PolicySet, urlconf: str | None = None) -> list[str]:
    """Actions that views declare but no enabled, enforce-mode policy names."""
    return sorted(a for a in code_actions(urlconf) if not policy_set.covers_action(a))


def uncovered_routes(routes: Sequence[Route], patterns: Sequence[str]) -> list[Route]:
    """Routes named like one of ``patterns`` that no enabled, enforce-mode policy can apply to."""
    return [
        r
        for r in routes
        if r.name and any(fnmatch.fnmatchcase(r.name, p) for p in patterns) and not r.enforced
    ]


def idle_policies(policy_set: PolicySet, route: Route) -> list[str]:
    """The shadow and disabled policies that name ``route`` or its action: ``["id (shadow)", …]``.

    They enforce nothing, so they don't cover the route; the coverage gate says so.
    """
    found = []
    for spec in policy_set.specs.values():
        if spec.enabled and spec.mode == "enforce":
            continue
        named = any(glob_matches(p, route.name) for p in spec.urls if route.name) or any(
            glob_matches(p, route.action) for p in spec.actions if route.action
        )
        if named:
            found.append(f"{spec.id} ({'shadow' if spec.enabled else 'disabled'})")
    return found


# --- methods a policy leaves out --------------------------------------------------------------

UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class MethodGap:
    """A policy limited to some methods, on routes whose views take other unsafe methods too.

    ``routes`` holds, per route, the unsafe methods its view takes that the
    policy leaves out: requests with those reach the view without this policy.
    """

    policy: str
    methods: tuple[str, ...]
    routes: tuple[tuple[str, tuple[str, ...]], ...]

    def warning(self) -> str:
        by_methods: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for name, missing in self.routes:
            by_methods[missing].append(repr(name))
        groups = "; ".join(f"{', '.join(missing)} on {_some(names)}" for missing, names in by_methods.items())
        return (
            f"policy {self.policy!r} matches only {', '.join(self.methods)}, but views on its routes take "
            f"other unsafe methods too, which reach them without this policy: {groups}. Add those methods "
            "to match.methods, or leave methods out (every method)."
        )


def _some(names: list[str], shown: int = 5) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def method_gaps(policy_set: PolicySet, routes: Sequence[Route]) -> list[MethodGap]:
    """Enabled policies with ``methods`` whose routes' views take unsafe methods they don't list.

    The routes of a URL policy are those it names; those of an action policy
    are the routes whose view declares the action. ``routes`` and ``validate``
    warn about each (the policy still matches only the methods it lists).
    """
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for route in routes:
        taken = route.methods or UNSAFE_METHODS
        for policy_id in route.policies:
            spec = policy_set.specs[policy_id]
            if not spec.methods:
                continue
            missing = tuple(m for m in UNSAFE_METHODS if m in taken and m not in spec.methods)
            if missing:
                found[policy_id].append((route.name or f"/{route.pattern}", missing))
    return [
        MethodGap(policy_id, policy_set.specs[policy_id].methods, tuple(rows))
        for policy_id, rows in sorted(found.items())
    ]


# --- one view, several routes -------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """One route of a view: its pattern, its URL name (``""`` when unnamed) and its URL policies."""

    pattern: str
    name: str
    policies: tuple[str, ...]

    def describe(self) -> str:
        where = f"/{self.pattern}"
        if not self.name:
            return f"unnamed ({where})"
        covered = f"URL policies {', '.join(self.policies)}" if self.policies else "no URL policy"
        return f"{self.name!r} ({where}, {covered})"


@dataclass(frozen=True)
class PartlyCovered:
    """A view mounted under several routes whose URL-name policies differ (some may have none)."""

    view: str
    mounts: tuple[Mount, ...]

    def warning(self) -> str:
        routes = "; ".join(m.describe() for m in self.mounts)
        return (
            f"view {self.view} is mounted under several routes that URL-name policies do not cover "
            f"alike: {routes}. A URL policy applies to the names it lists only: name every "
            "route of the view in it, or declare an action on the view (@require_stepup, "
            "StepUpRequiredMixin, StepUpPermission) so that its policies apply wherever it is mounted."
        )


def _view_key(callback: Callable[..., Any]) -> Hashable:
    """What identifies one view across its routes (decorators and ``as_view()`` copies see through)."""
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if isinstance(cls, type):
        initkwargs = getattr(callback, "view_initkwargs", None) or {}
        actions = getattr(callback, "actions", None) or {}
        return (cls, repr(sorted(initkwargs.items())), repr(sorted(actions.items())))
    return inspect.unwrap(callback, stop=inspect.ismethod)  # a bound method: one ModelAdmin's view


def _url_policies(policy_set: PolicySet, name: str) -> tuple[str, ...]:
    return tuple(sorted(p.id for p in policy_set.policies_for_url(name))) if name else ()


def partly_covered_views(policy_set: PolicySet, urlconf: str | None = None) -> list[PartlyCovered]:
    """Views mounted under several routes (names, or no name) whose URL policies differ.

    URL-name policies are per name by design (``admin:auth_user_change`` is one
    route); a view mounted twice needs both names in its policy. ``routes`` and
    ``validate`` warn about each such view.
    """
    from stepup.enforcement import is_stepup_view

    groups: dict[Hashable, list[tuple[str, str, Callable[..., Any]]]] = defaultdict(list)
    for pattern, name, callback in _walk(get_resolver(urlconf).url_patterns):
        if is_stepup_view(callback):
            continue
        try:
            groups[_view_key(callback)].append((pattern, name, callback))
        except TypeError:  # an unhashable callable: can't be matched with its other routes
            continue
    found = []
    for mounts in groups.values():
        names = {name for _, name, _ in mounts}
        if len(names) < 2:
            continue
        rows = tuple(Mount(pattern, name, _url_policies(policy_set, name)) for pattern, name, _ in mounts)
        if len({m.policies for m in rows}) > 1:
            found.append(PartlyCovered(_view_path(mounts[0][2]), rows))
    return found
