-- Makes a re-sent flush idempotent. A flush whose COMMIT reply was lost (the connection broke
-- after Postgres committed) is retried by the pipeline with the same content; without this, its
-- merged rows would be added a second time.
--
-- The number of the last flush committed for the partition within the current claim: 0 right
-- after a claim (claim_partition resets it with every new generation), then 1, 2, ... The
-- progress compare-and-set of a flush requires flush_seq = its number - 1 and sets it to its
-- number; a flush refused because the same claim already holds its number (or a later one) was
-- already committed, and its retry is rolled back and reported as already applied.
ALTER TABLE consumer_offsets ADD COLUMN flush_seq bigint NOT NULL DEFAULT 0;
