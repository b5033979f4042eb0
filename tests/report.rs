//! `dmaprof report` rendered by a real browser: Debian's Chromium, headless,
//! loads the page from disk, takes a screenshot (not blank) and dumps the
//! DOM it built, whose figures must equal the results JSON's.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use dmaprof_e2e::{disk_scratch_dir, dmaprof_bin, require_bpf, succeeded, under_ci};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium(test: &str) -> Option<PathBuf> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM.into());
    }
    assert!(
        !under_ci(),
        "{test}: {CHROMIUM} missing (cargo xtask setup installs it) and CI=true forbids skipping"
    );
    eprintln!("SKIP {test}: {CHROMIUM} missing; run `cargo xtask setup`");
    None
}

/// Chromium headless on a file: as root it needs --no-sandbox; its own
/// profile directory keeps runs apart.
fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn run_json(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let _serial = dmaprof_e2e::probe_lock();
    let json = dir.join(name);
    succeeded(
        Command::new(dmaprof_bin())
            .args(["run", "--mode", "pread", "--mode", "pread-direct"])
            .args(["--size", "16M", "--chunk", "512K", "--iterations", "3"])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .arg("--json")
            .arg(&json)
            .arg("--headless"),
    );
    json
}

/// Every `<td data-mode= data-field= data-value=>text</td>` of the DOM.
fn figures(dom: &str) -> Vec<(String, String, String, String)> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        let at = tag.find(&key).unwrap() + key.len();
        tag[at..at + tag[at..].find('"').unwrap()].to_string()
    };
    dom.split("<td ")
        .skip(1)
        .filter(|cell| cell.starts_with("data-mode"))
        .map(|cell| {
            let (tag, rest) = cell.split_once('>').unwrap();
            let text = rest.split_once("</td>").unwrap().0.to_string();
            (
                attr(tag, "data-mode"),
                attr(tag, "data-field"),
                attr(tag, "data-value"),
                text,
            )
        })
        .collect()
}

#[test]
fn the_report_renders_in_chromium_with_every_plot_and_the_jsons_figures() {
    let test = "the_report_renders_in_chromium_with_every_plot_and_the_jsons_figures";
    if !require_bpf(test) {
        return;
    }
    let Some(browser) = chromium(test) else {
        return;
    };
    let dir = disk_scratch_dir();
    let base = run_json(dir.path(), "base.json", &[]);
    let cand = run_json(dir.path(), "cand.json", &["--profile"]);
    let html = dir.path().join("report.html");
    succeeded(
        Command::new(dmaprof_bin())
            .arg("report")
            .arg(&cand)
            .arg("--baseline")
            .arg(&base)
            .arg("-o")
            .arg(&html),
    );
    check_report(&browser, &html, &cand, true);
}

/// Run by the lab suite (`cargo xtask test`) on the results JSON of its
/// `bench --table all --profile` in the patched kernel (DMAPROF_LAB_RESULTS)
/// against the same bench on the stock kernel (DMAPROF_LAB_BASELINE, when
/// set); DMAPROF_REPORT_SCREENSHOT keeps the screenshot.
#[test]
#[ignore = "the lab suite runs it on a lab bench's results (DMAPROF_LAB_RESULTS)"]
fn a_lab_benchs_report_renders_in_chromium() {
    let results = PathBuf::from(
        std::env::var_os("DMAPROF_LAB_RESULTS")
            .expect("DMAPROF_LAB_RESULTS: a lab bench's results"),
    );
    let browser = chromium("a_lab_benchs_report_renders_in_chromium").expect("chromium");
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let baseline = std::env::var_os("DMAPROF_LAB_BASELINE");
    let mut report = Command::new(dmaprof_bin());
    report.arg("report").arg(&results).arg("-o").arg(&html);
    if let Some(b) = &baseline {
        report.arg("--baseline").arg(b);
    }
    succeeded(&mut report);
    let shot = check_report(&browser, &html, &results, baseline.is_some());
    if let Some(keep) = std::env::var_os("DMAPROF_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// Chromium loads the report: every section and plot is there, the DOM's
/// figures are the JSON's, the screenshot is not blank. Returns the
/// screenshot's path (beside the page).
fn check_report(browser: &Path, html: &Path, json: &Path, with_baseline: bool) -> PathBuf {
    let dir = html.parent().unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    for external in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<link",
        "<script src",
    ] {
        assert!(!page.contains(external), "the page fetches: {external}");
    }

    let profile = dir.join("chromium-profile");
    let url = format!("file://{}", html.display());
    let dom = succeeded(headless(browser, &profile).arg("--dump-dom").arg(&url));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for section in [
        "The seed's table",
        "Throughput per mode",
        "Call latency",
        "Where each mode's time goes",
        "Bandwidth over time",
        "Block device latency",
        "Flame graphs",
    ] {
        assert!(
            dom.contains(&format!("<h2>{section}")),
            "no section {section}"
        );
    }
    // Six plots drawn (throughput, CDF, phases, bandwidth, block, change),
    // each with its axes' text, and a flame graph per profiled bucket.
    let plots = dom.matches("<div class=\"plot\"><svg").count();
    assert_eq!(plots, 5 + usize::from(with_baseline), "inline SVG plots");
    for caption in [
        "Call latency CDF per mode",
        "Block requests",
        "alloc / transfer / sync / free",
        "Bandwidth over each pass",
    ] {
        assert!(dom.contains(caption), "no plot captioned {caption}");
    }
    assert!(dom.contains("data:image/svg+xml;base64,"), "no flame graph");

    // The figures in the page are the JSON's, exactly in data-value and
    // rounded in the text.
    let results: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let cells = figures(&dom);
    let modes = results["modes"].as_array().unwrap();
    assert_eq!(cells.len(), modes.len() * 9, "{cells:?}");
    for (mode, field, value, text) in &cells {
        let m = modes
            .iter()
            .find(|m| m["summary"]["mode"] == mode.as_str())
            .unwrap_or_else(|| panic!("mode {mode} not in the JSON"));
        let want = m["summary"][field].as_f64().unwrap();
        let shown: f64 = value.parse().unwrap();
        assert_eq!(shown, want, "{mode} {field}: page {shown}, JSON {want}");
        let rounded: f64 = text.parse().unwrap();
        assert!(
            (rounded - want).abs() <= 0.5 + want.abs() * 1e-12,
            "{mode} {field}: text {text}, JSON {want}"
        );
    }

    let shot = dir.join("shot.png");
    succeeded(
        headless(browser, &profile)
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1100,5200")
            .arg(&url),
    );
    let (share, colours) = ink(&shot);
    assert!(
        share > 0.05,
        "screenshot nearly blank: {share:.3} of pixels not white"
    );
    assert!(colours > 20, "screenshot has {colours} colours");
    shot
}

/// The share of pixels that are not white, and how many colours there are.
fn ink(png_path: &Path) -> (f64, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let inked = pixels
        .iter()
        .filter(|p| p[..3].iter().any(|&c| c < 240))
        .count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    (inked as f64 / pixels.len() as f64, colours.len())
}

#[test]
fn report_refuses_another_schema_and_an_unwritable_path_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"schema": "something/else", "modes": []}"#).unwrap();
    let out = dir.path().join("report.html");
    for (args, cause) in [
        (
            vec![
                other.display().to_string(),
                "-o".into(),
                out.display().to_string(),
            ],
            "not a dmaprof results file",
        ),
        (
            vec![
                dir.path().join("missing.json").display().to_string(),
                "-o".into(),
                out.display().to_string(),
            ],
            "No such file",
        ),
        (
            vec![
                other.display().to_string(),
                "-o".into(),
                dir.path().join("no/such/dir/r.html").display().to_string(),
            ],
            "-o ",
        ),
    ] {
        let o = Command::new(dmaprof_bin())
            .arg("report")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(cause), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?}: a report was written");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "only other.json: {names:?}");
}
