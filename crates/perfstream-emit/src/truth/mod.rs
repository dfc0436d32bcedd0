//! The truth file: exact expected aggregates of the acknowledged events, computed here from the
//! raw values, independently of perfstream-window (the code under test). Format and definitions
//! in `docs/truth-format.md`.

mod builder;
mod figures;
mod file;

pub use builder::{TruthBuilder, labels, truth_of};
pub use figures::{
    PERCENTILE_DEFINITION, QUANTILES, exact_quantile, ppm_of, ratio_ppm, window_start,
};
pub use file::*;
