//! perfstream-alerts (being built).
