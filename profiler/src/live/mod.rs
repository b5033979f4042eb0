//! The live dashboard of `dmaprof run`: state fed by the workload (bounded,
//! whatever the run length) and a UI thread that draws it with the
//! `dashboards` views and handles keys.
pub mod state;
pub mod tui;
