//! perfstream-store (being built).
