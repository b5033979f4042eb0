//! The one way dmaprof stops early. SIGINT and SIGTERM (through tokio), the
//! dashboard's `q` and a failed output all raise the same `Stop`; the
//! workload checks it between calls, the test-file writer between blocks,
//! and the async loops (`trace`, the dashboard) wait on it.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    runtime::Runtime,
    signal::unix::{SignalKind, signal},
    sync::Notify,
};

#[derive(Clone, Default)]
pub struct Stop {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// A stop raised by SIGINT or SIGTERM. The handlers are installed before
    /// this returns, so a signal that comes later never kills dmaprof with a
    /// temporary file left behind.
    pub fn on_signals(rt: &Runtime) -> std::io::Result<Stop> {
        let stop = Stop::default();
        let _enter = rt.enter();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let raised = stop.clone();
        rt.spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            raised.request();
        });
        Ok(stop)
    }

    pub fn request(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn requested(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// For blocking code that polls between units of work.
    pub fn flag(&self) -> &AtomicBool {
        &self.inner.flag
    }

    /// Resolves once the stop is raised (at once if it already was).
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// The agent's runtime: one worker for signals, the dashboard and the
/// ring-buffer loop; the workload keeps the main thread to itself.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dmaprof-agent")
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_requested() {
        let rt = runtime().unwrap();
        let stop = Stop::default();
        let waiter = {
            let s = stop.clone();
            rt.spawn(async move { s.wait().await })
        };
        assert!(!stop.requested());
        stop.request();
        rt.block_on(waiter).unwrap();
        // Already raised: returns at once.
        rt.block_on(stop.wait());
        assert!(stop.flag().load(Ordering::SeqCst));
    }
}
