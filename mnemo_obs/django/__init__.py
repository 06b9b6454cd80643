"""Django: a recording middleware and the monitoring URLs, configured from ``settings.MNEMO_OBS``.

.. code-block:: python

    # settings.py
    MIDDLEWARE = ["mnemo_obs.django.MetricsMiddleware", ...]  # first
    MNEMO_OBS = {"dsn": "postgresql://...", "token": "..."}

    # urls.py
    path("monitoring/", include("mnemo_obs.django.urls")),

Only this package needs Django; ``import mnemo_obs`` never loads it.
"""

from __future__ import annotations

from .config import get_monitoring
from .middleware import MetricsMiddleware

__all__ = ["MetricsMiddleware", "get_monitoring"]
