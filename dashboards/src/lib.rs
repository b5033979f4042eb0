//! dmaprof's ratatui views: pure rendering from a snapshot model that the
//! agent fills. No I/O, no clocks, no kernel: every view is a function of a
//! [`model::Snapshot`], tested with ratatui's `TestBackend`.
pub mod format;
pub mod model;
pub mod views;

pub use model::Snapshot;
pub use views::render;
