-- mnemo_obs rollups: aggregates of the api rows per minute up to per day, for reads of
-- constant cost at any table size. The metrics table itself is unchanged.
-- Idempotent: every statement can run again on a migrated database and change nothing.
--
-- The writer copies each batch into metrics_rollups_pending too, in the batch's own
-- transaction. A background job turns pending rows into per-minute rollup rows (and
-- deletes them, in one transaction), merges rows that share a key, and rolls each
-- width into the next (minute, quarter hour, hour, six hours, day); a row it has
-- rolled into its parent is marked
-- rolled_up. Reads add the pending rows to the rollups, and count a rollup row when
-- its bucket is in the window and it is not rolled up, or its parent starts before
-- the window: raw rows and rollups never disagree.

CREATE TABLE IF NOT EXISTS metrics_rollups (
    width INTEGER NOT NULL,              -- seconds the bucket spans: 60, 900, 3600, 21600, 86400
    bucket TIMESTAMPTZ NOT NULL,         -- its start (UTC)
    level SMALLINT NOT NULL,             -- 0: whole service, 1: endpoint and method, 2: and status
    service TEXT NOT NULL DEFAULT '',    -- '' when the app names none
    endpoint TEXT NOT NULL DEFAULT '',   -- '' at level 0
    method TEXT NOT NULL DEFAULT '',     -- '' at level 0
    status_code INTEGER NOT NULL DEFAULT 0,  -- 0 at levels 0 and 1
    count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,         -- status_code >= 400
    sum_ms DOUBLE PRECISION NOT NULL,
    min_ms DOUBLE PRECISION NOT NULL,
    max_ms DOUBLE PRECISION NOT NULL,
    bins INTEGER[] NOT NULL,             -- latency histogram: its non-empty bins, ascending...
    counts BIGINT[] NOT NULL,            -- ...and their counts
    slowest_ms DOUBLE PRECISION,         -- the slowest request of the row (an exemplar)
    slowest_trace_id TEXT,
    slowest_at TIMESTAMPTZ,
    slowest_status INTEGER,
    rolled_up BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT valid_rollup_width CHECK (width IN (60, 900, 3600, 21600, 86400)),
    CONSTRAINT valid_rollup_level CHECK (level IN (0, 1, 2))
);

-- Rows written and not yet aggregated: the columns of the writer's COPY, no index.
CREATE TABLE IF NOT EXISTS metrics_rollups_pending (
    timestamp TIMESTAMPTZ NOT NULL,
    metric_type VARCHAR(50) NOT NULL,
    metric_name VARCHAR(100) NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    metadata JSONB
);

-- Reads: one level and width, a range of buckets.
CREATE INDEX IF NOT EXISTS idx_metrics_rollups_read ON metrics_rollups (level, width, bucket);
-- Rows not rolled up yet: most of what reads add up, and the background job's work.
CREATE INDEX IF NOT EXISTS idx_metrics_rollups_live
    ON metrics_rollups (level, bucket) WHERE NOT rolled_up;

-- covered_since: since when every api row has its rollups; raw rows older than this
-- (written before the upgrade, or by other tools) need `mnemo-obs rollup --rebuild`.
-- purged_before: the latest retention cutoff of api rows; raw rows are complete after it.
CREATE TABLE IF NOT EXISTS metrics_rollups_state (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    covered_since TIMESTAMPTZ NOT NULL,
    purged_before TIMESTAMPTZ
);
-- An empty table is covered from the start; rows already there need a rebuild.
INSERT INTO metrics_rollups_state (covered_since)
SELECT CASE WHEN EXISTS (SELECT 1 FROM metrics WHERE metric_type = 'api')
            THEN now() ELSE '-infinity' END
ON CONFLICT DO NOTHING;

COMMENT ON TABLE metrics_rollups IS
    'Aggregates of the api rows of metrics per minute to per day, written by mnemo_obs';
COMMENT ON TABLE metrics_rollups_pending IS
    'Rows of metrics written and not yet in metrics_rollups (a background job moves them)';
COMMENT ON TABLE metrics_rollups_state IS
    'Since when metrics_rollups covers every api row (mnemo-obs rollup --rebuild moves it back)';
