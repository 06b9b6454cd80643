"""``mnemo-obs serve`` without --token: the live logs get a token of their own, printed."""

from __future__ import annotations

import json
import re
import signal

from .test_serve import get, serving, stop

STREAM_LINE = re.compile(r'curl -N -H "Authorization: Bearer ([A-Za-z0-9_-]+)" (\S+/logs/stream)')


def test_serve_makes_a_token_for_the_logs_only(dsn: str) -> None:
    with serving("--dsn", dsn, env={"MNEMO_OBS_TOKEN": "", "MNEMO_OBS_REDIS_URL": ""}) as (
        proc,
        base,
    ):
        assert proc.stdout is not None
        while not (match := STREAM_LINE.search(proc.stdout.readline())):
            pass
        token, stream_url = match.groups()
        assert len(token) >= 32
        assert "Bearer" not in stream_url and token not in stream_url  # never in a URL
        # The summary stays open; the logs need the printed token.
        assert get(f"{base}/api/monitoring/advanced/summary")[0] == 200
        assert get(f"{base}/api/monitoring/advanced/logs")[0] == 401
        assert get(f"{base}/slow?ms=1")[0] == 200
        status, body = get(f"{base}/api/monitoring/advanced/logs?logger=mnemo_obs.demo", token)
        assert status == 200
        records = json.loads(body)["records"]
        assert [r["message"] for r in records] == ["sleeping 1 ms"]
        assert records[0]["trace_id"]
        code, _out, _err = stop(proc, signal.SIGTERM)
        assert code == 0
