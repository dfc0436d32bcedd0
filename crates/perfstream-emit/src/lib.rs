//! perfstream-emit (being built).
