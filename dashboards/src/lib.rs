//! dmaprof's ratatui views: pure rendering from a snapshot model that the
//! agent fills, so every view is testable with ratatui's TestBackend and no
//! kernel. The views arrive with the live TUI (see the project's issues).
