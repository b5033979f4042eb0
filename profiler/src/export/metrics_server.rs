//! `--metrics-addr HOST:PORT`: serves `/metrics` (OpenMetrics text) with
//! axum on the agent's runtime. Only the address given is bound: an IP and
//! a port, no name resolution, no other port tried. Once the run or trace
//! ends the endpoint stays up until it has been scraped once more (at most
//! `--metrics-linger` seconds), so the final figures reach the scraper.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use tokio::{
    runtime::Runtime,
    sync::{oneshot, watch},
    task::JoinHandle,
};

use super::openmetrics::Metrics;
use crate::{cli::MetricsArgs, stop::Stop};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint while it serves; dropping it stops the server.
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub addr: SocketAddr,
    /// Scrapes that began once the figures were final.
    final_scrapes: watch::Sender<u64>,
    linger: Duration,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    final_scrapes: watch::Sender<u64>,
}

/// Binds the address now (a port in use is refused before any work) and
/// serves; None without `--metrics-addr`.
pub fn start(rt: &Runtime, a: &MetricsArgs) -> Result<Option<Endpoint>, String> {
    let Some(text) = a.metrics_addr.as_deref() else {
        return Ok(None);
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("--metrics-addr {text}: not IP:PORT (e.g. 127.0.0.1:9477; names are not resolved)")
    })?;
    if !(a.metrics_linger.is_finite() && a.metrics_linger >= 0.0) {
        return Err("--metrics-linger must be a number of seconds, 0 or more".into());
    }
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
    let listener = {
        let _enter = rt.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("--metrics-addr {addr}: {e}"))?
    };
    let metrics = Arc::new(Metrics::new(a.max_label_values as usize));
    let (final_scrapes, _) = watch::channel(0u64);
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Served {
            metrics: metrics.clone(),
            final_scrapes: final_scrapes.clone(),
        });
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = rt.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            eprintln!("dmaprof: metrics endpoint: {e}");
        }
    });
    eprintln!("dmaprof: metrics at http://{bound}/metrics");
    Ok(Some(Endpoint {
        metrics,
        addr: bound,
        final_scrapes,
        linger: Duration::from_secs_f64(a.metrics_linger),
        shutdown: Some(shutdown),
        server,
    }))
}

async fn scrape(State(s): State<Served>) -> impl IntoResponse {
    // Read before encoding: a scrape counted final has the final figures.
    let ended = s.metrics.ended();
    let body = s.metrics.encode();
    if ended {
        s.final_scrapes.send_modify(|n| *n += 1);
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

impl Endpoint {
    /// Marks the figures final, waits for a scrape of them (at most the
    /// linger, or until Ctrl-C), then stops the server once its responses
    /// are sent.
    pub fn finish(mut self, rt: &Runtime, stop: &Stop) {
        self.metrics.set_ended();
        if !self.linger.is_zero() && !stop.requested() {
            eprintln!(
                "dmaprof: waiting up to {:.0} s for a last scrape of http://{}/metrics",
                self.linger.as_secs_f64(),
                self.addr
            );
            let mut rx = self.final_scrapes.subscribe();
            rt.block_on(async {
                tokio::select! {
                    _ = tokio::time::timeout(self.linger, rx.wait_for(|n| *n > 0)) => {}
                    _ = stop.wait() => {}
                }
            });
        }
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        let server = &mut self.server;
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        });
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}
