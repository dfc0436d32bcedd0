-- What a hash is: reports join query_rollups.query_hash to this.
CREATE TABLE query_catalog (
    query_hash      text PRIMARY KEY,
    query_type      text NOT NULL,
    -- Normalized statement text; the lexicographically smallest seen, NULL when never sent.
    normalized_text text,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL
);

-- The pipeline's progress per partition, written in the same transaction as the rollups it
-- covers. This, not Kafka's committed offsets, is what a restart resumes from.
CREATE TABLE consumer_offsets (
    group_id               text    NOT NULL,
    topic                  text    NOT NULL,
    partition              integer NOT NULL,
    -- Smallest offset still in an open window: seek here on assignment. NULL before the first flush.
    resume_offset          bigint,
    -- Position at the flush: events below it whose window had closed at applied_watermark are
    -- already in the tables.
    applied_through_offset bigint,
    applied_watermark      timestamptz,
    -- The process that claimed the partition, and the claim's number: progress updates are a
    -- compare-and-set on both, so a stalled former owner cannot overwrite its successor.
    owner                  text    NOT NULL,
    generation             bigint  NOT NULL,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Tier periods whose base rows changed since their tier row was last rebuilt. Written in the
-- flush transaction ('1h') and by the tiers job ('1d' when it rebuilds an hour).
CREATE TABLE tier_dirty (
    tier         text        NOT NULL CHECK (tier IN ('1h', '1d')),
    period_start timestamptz NOT NULL,
    marked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tier, period_start)
);
