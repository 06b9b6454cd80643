"""The monitoring URLs: ``path("monitoring/", include("mnemo_obs.django.urls"))``.

Every path under the include goes to the monitoring app: ``summary``,
``endpoints``, ``timeseries``, ``slowest``, ``health``, ``logs`` and
``logs/stream`` (and the dashboard where this version has one).
"""

from __future__ import annotations

from django.urls import re_path

from .views import monitoring

app_name = "mnemo_obs"
urlpatterns = [re_path(r"^(?P<path>.*)\Z", monitoring, name="monitoring")]
