"""The test project's URLs plus the probes of :mod:`tests.scale.probes`."""

from django.urls import path

from tests.scale import probes
from tests.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("probe/open/", probes.open_view, name="scale-open"),
    path("probe/guarded/", probes.guarded, name="scale-guarded"),
    path("probe/action/", probes.action, name="scale-action"),
    path("probe/stats/", probes.stats, name="scale-stats"),
    *project_urlpatterns,
]
