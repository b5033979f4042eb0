//! Headless results: per-call CSV, per-mode summary CSV, and the JSON
//! results document that `dmaprof compare` reads back.
pub mod atomic;
pub mod calls_csv;
pub mod results;
