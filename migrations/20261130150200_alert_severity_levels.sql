-- Severity levels (issue 15, section 2): a rule with a critical_threshold escalates its firing
-- alert to critical with one more 'firing' row of the same alert_id, severity 'critical'. A
-- transition is therefore identified by (alert_id, state, severity); without critical
-- thresholds the severity of an alert never changes and (alert_id, state) still identifies it.
ALTER TABLE alerts DROP CONSTRAINT alerts_pkey;
ALTER TABLE alerts ADD PRIMARY KEY (alert_id, state, severity);

-- Whether the firing phase escalated (escalation is one way within an episode).
ALTER TABLE alert_state ADD COLUMN critical boolean NOT NULL DEFAULT false;

-- A target gets each (alert_id, state, severity) once.
ALTER TABLE alert_deliveries ADD COLUMN severity text NOT NULL DEFAULT '';
ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_target_alert_id_state_key;
ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_target_alert_id_state_severity_key
    UNIQUE (target, alert_id, state, severity);
