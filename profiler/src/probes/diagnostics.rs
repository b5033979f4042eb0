//! Messages the eBPF programs send through aya-log (failure paths only:
//! a full map, a request that could not be tracked). Collected here and
//! shown to the user at the end of a run, never lost silently.
use std::sync::Mutex;

/// At most this many messages are kept; the rest are counted.
const MAX_KEPT: usize = 100;

static MESSAGES: Mutex<(Vec<String>, u64)> = Mutex::new((Vec::new(), 0));

/// A `log::Log` that keeps what aya-log forwards from the kernel.
pub struct Collector;

impl log::Log for Collector {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let mut m = MESSAGES.lock().unwrap_or_else(|e| e.into_inner());
        if m.0.len() < MAX_KEPT {
            m.0.push(format!("{}: {}", record.level(), record.args()));
        } else {
            m.1 += 1;
        }
    }

    fn flush(&self) {}
}

/// Takes the messages collected so far, and how many were dropped.
pub fn take() -> (Vec<String>, u64) {
    let mut m = MESSAGES.lock().unwrap_or_else(|e| e.into_inner());
    (std::mem::take(&mut m.0), std::mem::take(&mut m.1))
}
