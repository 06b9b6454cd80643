"""The dashboard: one HTML page, its CSS and JS modules and a vendored chart library.

:func:`mnemo_obs.install` serves it at ``dashboard_path`` (``/monitoring``).
Everything it shows comes from the JSON routes, called from the browser
with the token; the page itself holds no data.
"""

from __future__ import annotations

from .resources import DEFAULT_PATH, SECURITY_HEADERS, Dashboard, check_path

__all__ = ["DEFAULT_PATH", "SECURITY_HEADERS", "Dashboard", "check_path"]
