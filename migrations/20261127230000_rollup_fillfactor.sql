-- Leave room on each page so that merging a late correction into a row (an UPDATE of
-- non-indexed columns) can be a HOT update: no new index entries, less bloat.
ALTER TABLE query_rollups SET (fillfactor = 85);
ALTER TABLE request_rollups SET (fillfactor = 85);
ALTER TABLE resource_rollups SET (fillfactor = 85);
