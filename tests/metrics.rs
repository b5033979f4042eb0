//! `--metrics-addr` against a real Prometheus (Debian's, installed by
//! `cargo xtask setup`): started on loopback with a generated config and a
//! temporary data directory, scraping dmaprof every second; the figures are
//! read back through PromQL, and every query of the Grafana dashboard is
//! evaluated there. Prometheus is killed and its directory removed when the
//! test ends, failed or not.
use std::{
    collections::BTreeSet,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dmaprof_e2e::{KillOnDrop, disk_scratch_dir, dmaprof_bin, probe_lock, require_bpf, under_ci};
use profiler::export::{openmetrics::duration_buckets, results::Results};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A free loopback port (bound then released; nothing else here takes ports).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server of its own; killed, and its data removed, on drop.
struct Prometheus {
    _child: KillOnDrop,
    dir: tempfile::TempDir,
    url: String,
    http: ureq::Agent,
}

impl Prometheus {
    fn start(test: &str, target_port: u16) -> Option<Prometheus> {
        if !Path::new(PROMETHEUS).exists() {
            assert!(
                !under_ci(),
                "{test}: {PROMETHEUS} missing (cargo xtask setup installs it) and CI=true forbids skipping"
            );
            eprintln!("SKIP {test}: {PROMETHEUS} missing; run `cargo xtask setup`");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: dmaprof\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let p = Prometheus {
            _child: KillOnDrop(child),
            dir,
            url: format!("http://127.0.0.1:{port}"),
            http,
        };
        p.wait_for("ready", |p| {
            p.http
                .get(format!("{}/-/ready", p.url))
                .call()
                .is_ok_and(|r| r.status() == 200)
        });
        Some(p)
    }

    /// Polls `cond` until it holds (a state change, not a fixed sleep);
    /// fails with Prometheus's log after a minute.
    fn wait_for(&self, what: &str, cond: impl Fn(&Prometheus) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "prometheus: {what} not seen in 60 s; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// An instant query: Ok(result vector) or Err(Prometheus's error).
    fn try_query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let mut r = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
            .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap())
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn query(&self, expr: &str) -> Vec<Value> {
        self.try_query(expr)
            .unwrap_or_else(|e| panic!("query `{expr}`: {e}"))
    }

    /// The single value of a query that yields one series.
    fn scalar(&self, expr: &str) -> f64 {
        let r = self.query(expr);
        assert_eq!(r.len(), 1, "`{expr}` gave {r:?}");
        r[0]["value"][1].as_str().unwrap().parse().unwrap()
    }
}

/// A scrape test's start: BPF allowed, the probe tests serialised, a port
/// for dmaprof and a Prometheus scraping it (None: skipped, said why).
fn scraping(test: &str) -> Option<(dmaprof_e2e::ProbeLock, u16, Prometheus)> {
    if !require_bpf(test) {
        return None;
    }
    let serial = probe_lock();
    let port = free_port();
    let prom = Prometheus::start(test, port)?;
    Some((serial, port, prom))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

#[test]
fn prometheus_scrapes_the_calls_and_every_dashboard_query_evaluates() {
    let Some((_serial, dmaprof_port, prom)) =
        scraping("prometheus_scrapes_the_calls_and_every_dashboard_query_evaluates")
    else {
        return;
    };
    let dir = disk_scratch_dir();
    let json = dir.path().join("r.json");
    let out = dmaprof_e2e::succeeded(
        Command::new(dmaprof_bin())
            .args(["run", "--mode", "pread", "--mode", "pread-direct"])
            .args(["--size", "64M", "--chunk", "256K", "--iterations", "2"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .args(["--headless", "--metrics-linger", "60"])
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{dmaprof_port}")),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!(
            "metrics at http://127.0.0.1:{dmaprof_port}/metrics"
        )),
        "{log}"
    );
    // The scrape after the run's end carries the final figures.
    prom.wait_for("dmaprof_session_ended 1", |p| {
        p.try_query("dmaprof_session_ended == 1")
            .is_ok_and(|r| !r.is_empty())
    });
    let results: Results = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let buckets = duration_buckets();
    for m in &results.modes {
        let s = &m.summary;
        let mode = s.mode.name();
        let sel = format!(r#"mode="{mode}",direction="read",exporter="none",process="dmaprof""#);
        let calls = prom.scalar(&format!(
            "sum(dmaprof_call_duration_seconds_count{{{sel}}})"
        ));
        assert_eq!(calls as u64, s.calls, "{mode}: calls");
        let bytes = prom.scalar(&format!("sum(dmaprof_call_bytes_total{{{sel}}})"));
        assert_eq!(bytes as u64, s.bytes, "{mode}: bytes");
        // PromQL's median interpolates inside the bucket that holds dmaprof's.
        let p50 = s.lat_p50_us / 1e6;
        let hi = buckets
            .iter()
            .position(|b| *b >= p50)
            .expect("p50 under 10 s");
        let (lo_s, hi_s) = (if hi == 0 { 0.0 } else { buckets[hi - 1] }, buckets[hi]);
        let q = prom.scalar(&format!(
            "histogram_quantile(0.5, sum by (le) (dmaprof_call_duration_seconds_bucket{{{sel}}}))"
        ));
        assert!(
            q >= lo_s * (1.0 - 1e-9) && q <= hi_s * (1.0 + 1e-9),
            "{mode}: PromQL p50 {q} s outside dmaprof's p50 bucket [{lo_s}, {hi_s}] (p50 {p50} s)"
        );
    }
    let lost = prom.query("dmaprof_lost_events_total");
    assert!(lost.len() >= 4, "lost events by reason: {lost:?}");
    // pread-direct's passes went to the disk: the block counter saw them.
    let direct = results
        .modes
        .iter()
        .find(|m| m.summary.mode.name() == "pread-direct")
        .unwrap();
    let block_read = prom.scalar(r#"sum(dmaprof_block_bytes_total{op="read"})"#);
    assert!(
        block_read as u64 >= direct.summary.bytes,
        "block reads {block_read} < pread-direct's {}",
        direct.summary.bytes
    );
    assert!(prom.scalar("sum(dmaprof_probe_runs_total)") > 0.0);

    check_dashboard(&prom);
}

#[test]
fn trace_serves_each_traced_call_to_prometheus() {
    let Some((_serial, port, prom)) = scraping("trace_serves_each_traced_call_to_prometheus")
    else {
        return;
    };
    let dir = disk_scratch_dir();
    let (data, go) = (dir.path().join("d.bin"), dir.path().join("go"));
    std::fs::write(&data, vec![1u8; 64 << 10]).unwrap();
    let script = format!(
        "import os, time\n\
         deadline = time.time() + 300\n\
         while not os.path.exists('{g}'):\n    assert time.time() < deadline, 'no go file'\n    time.sleep(0.05)\n\
         fd = os.open('{d}', os.O_RDONLY)\n\
         for i in range(12):\n    assert len(os.pread(fd, 1000, i * 1000)) == 1000\n",
        g = go.display(),
        d = data.display()
    );
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "--headless",
        "--metrics-linger",
        "60",
        "--metrics-addr",
        addr.as_str(),
    ];
    let (mut child, tracer, log) = dmaprof_e2e::traced_python(&script, &args);
    std::fs::write(&go, b"").unwrap();
    assert!(child.wait().unwrap().success());
    let out = tracer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", log.join().unwrap());
    prom.wait_for("dmaprof_session_ended 1", |p| {
        p.try_query("dmaprof_session_ended == 1")
            .is_ok_and(|r| !r.is_empty())
    });
    let sel = r#"mode="pread",direction="read",exporter="none",process="python3""#;
    let calls = prom.scalar(&format!(
        "sum(dmaprof_call_duration_seconds_count{{{sel}}})"
    ));
    assert_eq!(calls, 12.0);
    let bytes = prom.scalar(&format!("sum(dmaprof_call_bytes_total{{{sel}}})"));
    assert_eq!(bytes, 12_000.0);
}

/// Every panel's and variable's query of dashboards/grafana/dmaprof.json
/// evaluates without error, and names only metrics dmaprof exported.
fn check_dashboard(prom: &Prometheus) {
    let path = repo_root().join("dashboards/grafana/dmaprof.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let exported: BTreeSet<String> = prom
        .query(r#"group by (__name__) ({__name__=~"dmaprof_.+"})"#)
        .iter()
        .map(|s| s["metric"]["__name__"].as_str().unwrap().to_string())
        .collect();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    let mut exprs: Vec<(String, String)> = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        exprs.push((
            format!("variable {}", v["name"]),
            label_values_as_promql(v["query"]["query"].as_str().unwrap()),
        ));
    }
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            exprs.push((
                format!("panel {}", p["title"]),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for (what, expr) in &exprs {
        let expr = grafana_variables(expr);
        if let Err(e) = prom.try_query(&expr) {
            panic!("{what}: `{expr}`: {e}");
        }
        for name in metric_names(&expr) {
            assert!(
                exported.contains(&name),
                "{what}: `{name}` is not a metric dmaprof exports ({exported:?})"
            );
        }
    }
}

/// Grafana's `label_values(metric, label)` as the PromQL that lists them.
fn label_values_as_promql(q: &str) -> String {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(): {q}"));
    let (metric, label) = inner.rsplit_once(',').unwrap();
    format!("group by ({}) ({})", label.trim(), metric.trim())
}

/// Grafana's variables as their "All" values and typical intervals.
fn grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$instance", ".*")
        .replace("$mode", ".*")
}

/// The `dmaprof_*` names an expression refers to, base metric names for
/// a histogram's series included.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("dmaprof_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn a_metrics_address_that_cannot_be_served_is_refused_before_any_work() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let dir = disk_scratch_dir();
    let json = dir.path().join("r.json");
    for (addr, cause) in [
        (taken_addr.as_str(), "in use"),
        ("localhost:9477", "not IP:PORT"),
        // TEST-NET-1: no interface here has it.
        ("192.0.2.1:9477", "assign requested address"),
    ] {
        let out = Command::new(dmaprof_bin())
            .args(["run", "--mode", "pread", "--size", "1M", "--headless"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--json")
            .arg(&json)
            .args(["--metrics-addr", addr])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {err}");
        assert_eq!(err.lines().count(), 1, "{addr}: one line: {err}");
        assert!(err.contains(addr) && err.contains(cause), "{addr}: {err}");
        assert!(!json.exists(), "{addr}: results written");
        let made: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(made.is_empty(), "{addr}: files made: {made:?}");
    }
}
