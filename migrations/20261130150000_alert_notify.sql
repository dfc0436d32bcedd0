-- Alert notifications (issue 15): deliveries of outbox transitions to Alertmanager and webhook
-- targets, and the notifier's position in the outbox. See docs/alerts.md, "Notifications".

-- One row per (target, transition) the routes sent there. The notifier delivers a target's rows
-- in seq order; a failed attempt sets next_attempt_at (backoff) and last_error.
CREATE TABLE alert_deliveries (
    -- The target's configured name (`[[notify.targets]] name`).
    target          text NOT NULL,
    -- The alert_outbox row delivered (its payload is the transition).
    seq             bigint NOT NULL,
    alert_id        text NOT NULL,
    state           text NOT NULL CHECK (state IN ('firing', 'resolved')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set when the target answered 2xx; NULL while pending.
    delivered_at    timestamptz,
    -- The last failure (HTTP status or connection error), kept after a later success.
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, seq),
    -- A transition goes to a target once, whatever the outbox holds: (alert_id, state) is the
    -- dedup id.
    UNIQUE (target, alert_id, state)
);
CREATE INDEX alert_deliveries_pending ON alert_deliveries (target, seq) WHERE delivered_at IS NULL;

-- How far the notifier has routed the outbox (one row per evaluator group).
CREATE TABLE alert_notify_progress (
    group_id   text PRIMARY KEY,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
