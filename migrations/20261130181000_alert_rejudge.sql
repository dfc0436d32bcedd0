-- Late corrections re-judge (issue 15, section 5). Every statement that inserts or updates
-- base-tier rollup rows records the windows it touched in rollup_changes, in the same
-- transaction (statement triggers with transition tables: a few rows per flush, whatever its
-- size). The alert evaluator reads the rows at the start of a round, judges again every window
-- it had already judged that one of them names, and deletes the rows it read in the
-- transaction that commits the new decisions. A change committed after that read is still in
-- the table at the next round: no correction is missed, whatever the commit order of flushes
-- and evaluator.
--
-- Rows are recorded only while an evaluator has committed in the last day
-- (alert_progress.updated_at), so a deployment without alerts does not fill the table.

CREATE TABLE rollup_changes (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'query', 'request' or 'resource'.
    kind         text NOT NULL,
    resolution   text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    changed_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION perfstream_note_rollup_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM alert_progress WHERE updated_at > now() - interval '1 day') THEN
        INSERT INTO rollup_changes (kind, resolution, window_start, window_end)
        SELECT DISTINCT TG_ARGV[0], n.resolution, n.window_start, n.window_end
        FROM changed_rows n
        WHERE n.resolution NOT IN ('1h', '1d');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER query_rollups_note_insert AFTER INSERT ON query_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('query');
CREATE TRIGGER query_rollups_note_update AFTER UPDATE ON query_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('query');
CREATE TRIGGER request_rollups_note_insert AFTER INSERT ON request_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('request');
CREATE TRIGGER request_rollups_note_update AFTER UPDATE ON request_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('request');
CREATE TRIGGER resource_rollups_note_insert AFTER INSERT ON resource_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('resource');
CREATE TRIGGER resource_rollups_note_update AFTER UPDATE ON resource_rollups
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION perfstream_note_rollup_changes('resource');

-- A resolve caused by a re-judge: the corrected data does not keep the alert firing.
ALTER TABLE alerts DROP CONSTRAINT alerts_resolve_reason_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_resolve_reason_check
    CHECK (resolve_reason IN ('cleared', 'no_data', 'rule_disabled', 'corrected'));
