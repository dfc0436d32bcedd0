-- Alerting (issue 8): transition history, current state, outbox, evaluator progress, regression
-- baselines, and the flush notification the evaluator listens to. See docs/alerts.md.

-- Every alert transition ever recorded. (alert_id, state) identifies a transition: the firing
-- and the resolved event of one episode share the alert_id.
CREATE TABLE alerts (
    alert_id        text NOT NULL,
    state           text NOT NULL CHECK (state IN ('firing', 'resolved')),
    rule            text NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    service         text NOT NULL,
    -- The rule's key: kind, then the key fields, joined by '|' (opaque; use labels).
    alert_key       text NOT NULL,
    -- Key fields (service, endpoint, method, query_hash, query_type, instance) plus the rule's
    -- configured labels.
    labels          jsonb NOT NULL,
    observed_value  double precision NOT NULL,
    threshold       double precision NOT NULL,
    clear_threshold double precision NOT NULL,
    -- The rollup window whose rows caused the transition.
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    transitioned_at timestamptz NOT NULL,
    message         text NOT NULL,
    PRIMARY KEY (alert_id, state)
);
CREATE INDEX alerts_service_time ON alerts (service, window_start);
CREATE INDEX alerts_rule_time ON alerts (rule, window_start);

-- The current phase of every (rule, key) that is not inactive, per evaluator group. The
-- evaluator rebuilds its state from here after a restart or a hand-over.
CREATE TABLE alert_state (
    group_id      text NOT NULL,
    rule          text NOT NULL,
    alert_key     text NOT NULL,
    labels        jsonb NOT NULL,
    phase         text NOT NULL CHECK (phase IN ('pending', 'firing')),
    -- Set while firing.
    alert_id      text,
    -- Pending: start of the first breaching window. Firing: start of the window it fired in.
    since         timestamptz NOT NULL,
    -- Pending: consecutive breaching windows. Firing: consecutive clear windows.
    window_count  integer NOT NULL,
    -- Consecutive windows without data (no row, or too few events to judge).
    missing_windows integer NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, rule, alert_key),
    CHECK ((phase = 'firing') = (alert_id IS NOT NULL))
);

-- The last window the evaluator of a group judged, committed with the transitions it caused.
CREATE TABLE alert_progress (
    group_id          text PRIMARY KEY,
    last_window_start timestamptz NOT NULL,
    last_window_end   timestamptz NOT NULL,
    -- The evaluator process that committed it.
    evaluated_by      text NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Transitions waiting for (or done with) publication to the alerts topic, in commit order.
-- The relay publishes unsent rows in seq order, keyed by alert_id, and sets sent_at after the
-- broker acknowledged them.
CREATE TABLE alert_outbox (
    seq        bigserial PRIMARY KEY,
    alert_id   text NOT NULL,
    state      text NOT NULL,
    -- The AlertEvent, Avro in the Confluent wire format: exactly the bytes published.
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX alert_outbox_unsent ON alert_outbox (seq) WHERE sent_at IS NULL;

-- Regression baselines (rule 'regression'): per series and window, the median of the same
-- statistic in the same window of the previous days. Written by the evaluator for the windows
-- it judges; analysts may read them.
CREATE TABLE alert_baselines (
    kind         text NOT NULL CHECK (kind IN ('query', 'request')),
    service      text NOT NULL,
    -- query_hash for queries, endpoint for requests.
    target       text NOT NULL,
    -- query_type for queries, method for requests.
    variant      text NOT NULL,
    window_start timestamptz NOT NULL,
    -- The statistic, e.g. 'p95'.
    statistic    text NOT NULL,
    baseline_us  double precision NOT NULL,
    -- Days of history the median is over.
    days         integer NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, service, target, variant, window_start)
);

-- Wakes the evaluator after each committed flush (the pipeline updates consumer_offsets in
-- every flush transaction; notifications are delivered at commit, one per transaction).
CREATE FUNCTION perfstream_notify_flush() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('perfstream_flush', '');
    RETURN NULL;
END $$;

CREATE TRIGGER consumer_offsets_notify_flush
    AFTER INSERT OR UPDATE ON consumer_offsets
    FOR EACH STATEMENT EXECUTE FUNCTION perfstream_notify_flush();
