"""Falcon resources: the summary (behind an optional bearer token) and the health check."""

from __future__ import annotations

import hmac
import math
import os
import re
from typing import TYPE_CHECKING, Any

import falcon
import falcon.uri

from .collectors.api import MAX_PERIOD_HOURS
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .collectors import MetricsCollector
    from .writer import MetricsWriter

TOKEN_ENV = "MNEMO_OBS_TOKEN"
DEFAULT_PREFIX = "/api/monitoring/advanced"

# RFC 6750's b64token: what may follow "Bearer " in an Authorization header.
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def resolve_token(token: str | None) -> str | None:
    """Return ``token``, else ``$MNEMO_OBS_TOKEN``, else None (routes open).

    Raises:
        ConfigurationError: an explicit empty token, or one that cannot be
            sent as a bearer token (RFC 6750 characters only).
    """
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
        source = f"${TOKEN_ENV}"
    else:
        source = "token"
    if token is None:
        return None
    if not _TOKEN_RE.fullmatch(token):
        raise ConfigurationError(
            f"{source} must be a non-empty bearer token (letters, digits and -._~+/ "
            "followed by optional =); pass None for open routes"
        )
    return token


class _BearerCheck:
    """Constant-time check of ``Authorization: Bearer <token>``; no token means open."""

    def __init__(self, token: str | None) -> None:
        self._expected = token.encode("ascii") if token else None

    def __call__(self, req: falcon.Request) -> None:
        if self._expected is None:
            return
        scheme, _, credentials = (req.get_header("Authorization") or "").partition(" ")
        given = credentials.strip().encode("latin-1", errors="replace")
        # compare_digest even for a wrong scheme, so timing says nothing of which failed.
        matches = hmac.compare_digest(given, self._expected)
        if scheme.lower() != "bearer" or not matches:
            raise falcon.HTTPUnauthorized(
                title="Unauthorized",
                description="send the monitoring token as 'Authorization: Bearer <token>'",
                challenges=['Bearer realm="mnemo_obs"'],
            )


class Query:
    """A request's query string, checked strictly: every parameter known, given once, valid.

    Blank values are kept (``service=`` selects the rows of no service).
    Every mistake is a 400 whose JSON body names the parameter.
    """

    def __init__(self, req: falcon.Request, allowed: tuple[str, ...]) -> None:
        self._params = falcon.uri.parse_query_string(req.query_string, keep_blank=True)
        unknown = sorted(set(self._params) - set(allowed))
        if unknown:
            raise falcon.HTTPInvalidParam(
                f"Unknown parameter; this route takes {', '.join(allowed)}.", unknown[0]
            )

    def text(self, name: str) -> str | None:
        """The parameter as given (None when absent)."""
        raw = self._params.get(name)
        if isinstance(raw, list):
            raise falcon.HTTPInvalidParam("It was given more than once.", name)
        return raw

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A finite number in (low, high]."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise falcon.HTTPInvalidParam(f"{raw!r} is not a number.", name) from None
        if not math.isfinite(value) or not low < value <= high:
            raise falcon.HTTPInvalidParam(
                f"It must be a finite number > {low:g} and <= {high:g}, got {raw!r}.", name
            )
        return value

    def integer(self, name: str, default: int | None, low: int, high: int) -> int | None:
        """An integer in [low, high]."""
        raw = self.text(name)
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
            raise falcon.HTTPInvalidParam(
                f"It must be a whole number from {low} to {high}, got {raw!r}.", name
            )
        return int(raw)

    def period_hours(self) -> float:
        """``period_hours``: a finite number in (0, 720], default 1."""
        return self.number("period_hours", 1.0, 0.0, MAX_PERIOD_HOURS)


def parse_period_hours(req: falcon.Request) -> float:
    """The ``period_hours`` query parameter: a finite number in (0, 720], default 1.

    Raises:
        falcon.HTTPInvalidParam: text, NaN, infinities, 0, negatives, over
            720, or the parameter given more than once (400, JSON body).
    """
    return Query(req, ("period_hours",)).period_hours()


class SummaryResource:
    """``GET {prefix}/summary``: api, redis, postgres and system sections plus the writer's stats.

    Args:
        collector: the :class:`MetricsCollector` that reads the sections
            (it caches them for its ``cache_ttl``).
        writer: the :class:`MetricsWriter` whose ``stats()`` go in
            ``"writer"``, so dropped rows are visible; None gives null.
        token: bearer token the request must carry; defaults to
            ``$MNEMO_OBS_TOKEN``; unset means open. The summary reveals host
            details (memory, disk, connection counts), so set one in
            production.
    """

    def __init__(
        self,
        collector: MetricsCollector,
        *,
        writer: MetricsWriter | None = None,
        token: str | None = None,
    ) -> None:
        self._collector = collector
        self._writer = writer
        self._check = _BearerCheck(resolve_token(token))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the summary for ``?period_hours=`` (default 1) and ``?service=``."""
        self._check(req)
        query = Query(req, ("period_hours", "service"))
        hours = query.period_hours()
        writer = self._writer
        body: dict[str, Any] = dict(
            self._collector.collect_all(hours, query.text("service"), fleet=writer is not None)
        )
        # This process's books, and every process's from the samplers' rows.
        fleet = body.pop("fleet", None)
        body["writer"] = {**writer.stats(), "fleet": fleet} if writer is not None else None
        resp.media = body
        # Host details and live figures: no shared cache should keep them.
        resp.cache_control = ["no-store"]


class HealthResource:
    """``GET /health``: ``{"status": "ok"}`` while the process serves requests; always open."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer ok; checks nothing else, so a load balancer never drops a live process."""
        resp.media = {"status": "ok"}
