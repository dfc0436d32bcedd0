//! perfstream-kafka (being built).
