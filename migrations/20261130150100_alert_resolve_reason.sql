-- Why an alert resolved (issue 15): 'cleared' (past the clear threshold, or an absent series
-- reporting again), 'no_data' (more than no_data_windows windows without data: its
-- observed_value means nothing), 'rule_disabled'. NULL for firing rows and rows written before.
ALTER TABLE alerts ADD COLUMN resolve_reason text
    CHECK (resolve_reason IN ('cleared', 'no_data', 'rule_disabled'));
