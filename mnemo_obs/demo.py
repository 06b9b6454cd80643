"""The Falcon app of ``mnemo-obs serve``: a few routes that give the summary something to show."""

from __future__ import annotations

import logging
import time

import falcon

# Lines for the live logs to show (with the request's trace id).
log = logging.getLogger("mnemo_obs.demo")

# Sleeps are capped so a typo in a demo URL cannot hold a worker thread for long.
MAX_SLEEP_MS = 2000


class Index:
    """``GET /``: what to try."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {
            "service": "mnemo_obs demo",
            "routes": ["/items/{item_id}", "/slow?ms=120", "/boom", "/health"],
        }


class Item:
    """``GET /items/{item_id}``: a route with a URI parameter; ids above 1000 are 404."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: int) -> None:
        if item_id > 1000:
            raise falcon.HTTPNotFound(description=f"no item {item_id}")
        resp.media = {"id": item_id, "name": f"item {item_id}"}


class Slow:
    """``GET /slow?ms=N``: answers after N milliseconds (default 100), for the percentiles."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ms = req.get_param_as_int("ms", min_value=0, max_value=MAX_SLEEP_MS, default=100)
        log.info("sleeping %d ms", ms)
        time.sleep(ms / 1000)
        resp.media = {"slept_ms": ms}


class Boom:
    """``GET /boom``: raises, so the summary has a 500 to count."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        log.error("about to fail on purpose")
        raise RuntimeError("boom: the demo's deliberate failure")


def make_app() -> falcon.App:
    """The demo app, without mnemo_obs: ``serve`` installs it like any user would."""
    app = falcon.App()
    app.add_route("/", Index())
    app.add_route("/items/{item_id:int}", Item())
    app.add_route("/slow", Slow())
    app.add_route("/boom", Boom())
    return app
