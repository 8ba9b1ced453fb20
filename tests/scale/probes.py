"""Views and instrumentation inside the scale tests' server processes.

The probe views touch no database, so that what a request costs, and how it
behaves while the database is down, is stepup's doing alone. ``/probe/stats/``
reports how many SQL statements this process ran, counted by an execute
wrapper on every connection.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from stepup import require_stepup, store

_lock = threading.Lock()
QUERIES: Counter[str] = Counter()


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    with _lock:
        QUERIES["total"] += 1
        if "stepup_policysetstate" in sql:
            QUERIES["version"] += 1
        elif '"stepup_policy"' in sql:
            QUERIES["policies"] += 1
        elif '"stepup_grant"' in sql:
            QUERIES["grants"] += 1
    return execute(sql, params, many, context)


def _instrument(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


connection_created.connect(_instrument, dispatch_uid="tests.scale.probes")
for _connection in connections.all(initialized_only=True):
    _instrument(None, _connection)


def open_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran open")


@csrf_exempt
def guarded(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran guarded")


@csrf_exempt
@require_stepup("scale.action")
def action(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ran action")


def stats(request: HttpRequest) -> HttpResponse:
    with _lock:
        counts = dict(QUERIES)
        if request.GET.get("reset"):
            QUERIES.clear()
    current = store._store._set  # what this process enforces now, without loading anything
    return JsonResponse(
        {
            "pid": os.getpid(),
            "queries": counts,
            "version": current.version if current is not None else None,
            "policies": sorted(current.specs) if current is not None else [],
        }
    )
