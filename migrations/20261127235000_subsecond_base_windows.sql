-- Base windows shorter than a second are labelled in milliseconds ('500ms').
ALTER TABLE query_rollups DROP CONSTRAINT query_rollups_resolution_check,
    ADD CONSTRAINT query_rollups_resolution_check CHECK (resolution ~ '^[1-9][0-9]*(ms|s|m|h|d)$');
ALTER TABLE request_rollups DROP CONSTRAINT request_rollups_resolution_check,
    ADD CONSTRAINT request_rollups_resolution_check CHECK (resolution ~ '^[1-9][0-9]*(ms|s|m|h|d)$');
ALTER TABLE resource_rollups DROP CONSTRAINT resource_rollups_resolution_check,
    ADD CONSTRAINT resource_rollups_resolution_check CHECK (resolution ~ '^[1-9][0-9]*(ms|s|m|h|d)$');
