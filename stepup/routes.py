"""The project's URL routes as stepup sees them: names, views, methods, actions, policies."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from stepup.policy.engine import PolicySet, compile_policies, glob_matches
from stepup.policy.model import PolicyError, PolicyFile


@dataclass(frozen=True)
class Route:
    pattern: str
    name: str
    view: str
    methods: tuple[str, ...]  # empty: not known (any)
    action: str | None
    policies: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "name": self.name,
            "view": self.view,
            "methods": list(self.methods) or ["*"],
            "action": self.action,
            "policies": list(self.policies),
        }

    def as_text(self) -> str:
        methods = ",".join(self.methods) or "*"
        action = self.action or "-"
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


def _methods(callback: Callable[..., Any]) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if isinstance(actions, dict):
        return tuple(sorted(m.upper() for m in actions))
    cls = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if cls is None:
        return ()
    return tuple(
        m.upper() for m in getattr(cls, "http_method_names", ()) if m != "options" and hasattr(cls, m)
    )


def _view_path(callback: Callable[..., Any]) -> str:
    target = getattr(callback, "view_class", None) or getattr(callback, "cls", None) or callback
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def collect_routes(policy_set: PolicySet, urlconf: str | None = None) -> list[Route]:
    routes = []
    for pattern, name, callback in _walk(get_resolver(urlconf).url_patterns):
        action = declared_action(callback)
        ids: set[str] = set()
        if name:
            ids.update(p.id for p in policy_set.policies_for_url(name))
        if action:
            ids.update(p.id for p in policy_set.policies_for_action(action))
        routes.append(
            Route(pattern, name, _view_path(callback), _methods(callback), action, tuple(sorted(ids)))
        )
    return routes


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


def uncovered_actions(policy_file: PolicyFile, urlconf: str | None = None) -> list[str]:
    """Actions that views declare but no enabled, enforce-mode policy names."""
    policy_set = compile_policies(policy_file.policies)
    actions = {declared_action(cb) for _, _, cb in _walk(get_resolver(urlconf).url_patterns)}
    return sorted(a for a in actions if a and not policy_set.covers_action(a))


def uncovered_routes(routes: Sequence[Route], patterns: Sequence[str]) -> list[Route]:
    """Routes named like one of ``patterns`` that no policy can apply to."""
    return [
        r
        for r in routes
        if r.name and any(fnmatch.fnmatchcase(r.name, p) for p in patterns) and not r.policies
    ]
