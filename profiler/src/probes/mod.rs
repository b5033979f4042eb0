//! The eBPF side as user space sees it: the embedded object, how each
//! mechanism attaches, and one module per probe family.
pub mod attach;
pub mod block;
pub mod diagnostics;
pub mod events;
pub mod files;
pub mod lost;
pub mod object;
pub mod profile;
pub mod report;
pub mod session;
