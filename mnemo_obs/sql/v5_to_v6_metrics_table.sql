-- mnemo_obs schema: the `metrics` table, one row per measurement (a request, a gauge).
-- Idempotent: every statement can run again on a migrated database and change nothing.
-- gen_random_uuid() is built in since PostgreSQL 13.

CREATE TABLE IF NOT EXISTS metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    metric_type VARCHAR(50) NOT NULL,
    metric_name VARCHAR(100) NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    metadata JSONB DEFAULT '{}'::jsonb,
    CONSTRAINT valid_metric_type CHECK (
        metric_type IN ('api', 'redis', 'postgres', 'system', 'cache')
    )
);

-- "WHERE metric_type = 'api' AND timestamp > NOW() - INTERVAL '1 hour'": the summary's filter.
CREATE INDEX IF NOT EXISTS idx_metrics_type_time ON metrics (metric_type, timestamp DESC);
-- Retention walks this one: "timestamp < NOW() - INTERVAL '30 days'".
CREATE INDEX IF NOT EXISTS idx_metrics_time ON metrics (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_metrics_name ON metrics (metric_name);
CREATE INDEX IF NOT EXISTS idx_metrics_type_name_time
    ON metrics (metric_type, metric_name, timestamp DESC);

COMMENT ON TABLE metrics IS
    'Performance metrics (api, redis, postgres, system, cache) written by mnemo_obs';
COMMENT ON COLUMN metrics.timestamp IS 'When the measurement started (UTC)';
COMMENT ON COLUMN metrics.metric_type IS 'Source: api, redis, postgres, system or cache';
COMMENT ON COLUMN metrics.metric_name IS 'What was measured: for api rows, the route template';
COMMENT ON COLUMN metrics.value IS 'The measurement; for api rows, the latency in milliseconds';
COMMENT ON COLUMN metrics.metadata IS
    'Context as JSON; for api rows: endpoint, method, status_code, trace_id';
