//! The real dashboard in a real terminal (tmux): it draws, answers keys,
//! quits, finishes its exports and gives the terminal back.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use dmaprof_e2e::{Tmux, disk_scratch_dir, dmaprof_bin};

fn wait_file(p: &Path, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} never written", p.display());
}

#[test]
fn dashboard_draws_answers_keys_and_restores_the_terminal_on_quit() {
    let _serial = dmaprof_e2e::probe_lock();
    let dir = disk_scratch_dir();
    let d = dir.path().display().to_string();
    // The test file first, so the run starts at once.
    assert!(
        Command::new(dmaprof_bin())
            .args([
                "run",
                "--headless",
                "--mode",
                "pread",
                "--size",
                "64M",
                "--chunk",
                "1M",
                "--dir",
                &d
            ])
            .output()
            .unwrap()
            .status
            .success()
    );
    let status = dir.path().join("status");
    let csv = dir.path().join("calls.csv");
    let cmd = format!(
        "{} run --mode pread --mode pread-direct --size 64M --chunk 1M --iterations 100000 --cache warm --dir {d} --csv {}; echo EXIT=$? > {}; sleep 60",
        dmaprof_bin().display(),
        csv.display(),
        status.display()
    );
    let Some(t) = Tmux::start(&cmd) else { return };
    let screen = t.wait_for("per-call latency", 30);
    assert!(
        screen.contains("dmaprof  running pread") && screen.contains("> pread"),
        "{screen}"
    );
    assert!(
        t.alternate_screen(),
        "the dashboard uses the alternate screen"
    );

    t.keys("Tab");
    t.wait_for("CPU cost", 10);
    t.keys("Tab");
    t.wait_for("block layer", 10);
    t.keys("Right");
    t.wait_for("> pread-direct", 10);
    t.keys("?");
    t.wait_for("pause / resume the display", 10);
    t.keys("?");
    t.keys("p");
    t.wait_for("[display paused]", 10);
    t.keys("p");

    t.keys("q");
    assert_eq!(
        wait_file(&status, 30).trim(),
        "EXIT=130",
        "quitting mid-run is an interruption"
    );
    assert!(!t.alternate_screen(), "terminal restored");
    let after = t.wait_for("alloc ms", 10);
    assert!(
        after.contains("pread"),
        "the summary table is printed on the normal screen:\n{after}"
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert!(
        rows.lines().count() > 1 && rows.ends_with('\n'),
        "the CSV is complete"
    );
}

#[test]
fn a_finished_run_waits_for_q_then_exits_0() {
    let dir = disk_scratch_dir();
    let d = dir.path().display().to_string();
    let status = dir.path().join("status");
    let cmd = format!(
        "{} run --mode pread --size 8M --chunk 1M --dir {d}; echo EXIT=$? > {}; sleep 60",
        dmaprof_bin().display(),
        status.display()
    );
    let Some(t) = Tmux::start(&cmd) else { return };
    t.wait_for("dmaprof  finished", 60);
    assert!(!status.exists(), "the dashboard stays until the user quits");
    t.keys("q");
    assert_eq!(wait_file(&status, 30).trim(), "EXIT=0");
    assert!(!t.alternate_screen());
}

#[test]
fn not_a_terminal_means_headless() {
    let _serial = dmaprof_e2e::probe_lock();
    // Output captured (a pipe): no dashboard, the table on stdout.
    let dir = disk_scratch_dir();
    let out = Command::new(dmaprof_bin())
        .args([
            "run", "--mode", "pread", "--size", "4M", "--chunk", "1M", "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("alloc ms") && !stdout.contains("\u{1b}[?1049h"),
        "{stdout}"
    );
}

#[test]
fn trace_dashboard_shows_a_traced_process_calls_live() {
    if !dmaprof_e2e::require_bpf("trace dashboard") {
        return;
    }
    let dir = disk_scratch_dir();
    let data = dir.path().join("d.bin");
    std::fs::write(&data, vec![3u8; 1 << 20]).unwrap();
    let (go, stop, status) = (
        dir.path().join("go"),
        dir.path().join("stop"),
        dir.path().join("status"),
    );
    // 4 KiB preads until told to stop, so the dashboard has a live row.
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import os, sys, time
deadline = time.time() + 120
while not os.path.exists("{g}"):
    if time.time() > deadline:
        sys.exit("no go file in 120 s")
    time.sleep(0.02)
fd = os.open("{d}", os.O_RDONLY)
while not os.path.exists("{s}") and time.time() < deadline:
    for i in range(100):
        os.pread(fd, 4096, (i % 256) * 4096)
    time.sleep(0.01)
"#,
            g = go.display(),
            d = data.display(),
            s = stop.display()
        ))
        .spawn()
        .expect("python3");
    let cmd = format!(
        "{} trace --pid {}; echo EXIT=$? > {}; sleep 60",
        dmaprof_bin().display(),
        child.id(),
        status.display()
    );
    let Some(t) = Tmux::start(&cmd) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    t.wait_for(&format!("pid {}", child.id()), 60);
    std::fs::write(&go, b"").unwrap();
    // The first (selected) row of the modes table: the traced preads.
    let screen = t.wait_for("> pread", 30);
    assert!(t.alternate_screen(), "{screen}");
    assert!(screen.contains("pid "), "{screen}");
    // The traced process ends: the trace ends with it and waits for q.
    std::fs::write(&stop, b"").unwrap();
    assert!(child.wait().unwrap().success());
    t.wait_for("finished", 30);
    assert!(!status.exists(), "the dashboard stays until the user quits");
    t.keys("q");
    assert_eq!(wait_file(&status, 30).trim(), "EXIT=0");
    assert!(!t.alternate_screen(), "terminal restored");
}

#[test]
fn the_profile_panel_shows_the_selected_modes_kernel_functions_live() {
    if !dmaprof_e2e::require_bpf("live profile panel") {
        return;
    }
    let _serial = dmaprof_e2e::probe_lock();
    let dir = disk_scratch_dir();
    let d = dir.path().display().to_string();
    let status = dir.path().join("status");
    let cmd = format!(
        "{} run --mode pread --mode pread-direct --size 64M --chunk 1M --iterations 100000 --cache warm --profile --dir {d}; echo EXIT=$? > {}; sleep 60",
        dmaprof_bin().display(),
        status.display()
    );
    let Some(t) = Tmux::start(&cmd) else { return };
    t.wait_for("per-call latency", 120);
    for _ in 0..3 {
        t.keys("Tab");
    }
    // Page-cache preads copy out of filemap_read; direct ones go through
    // iomap's direct-I/O path: both named while the run goes.
    let screen = t.wait_for("filemap_read", 60);
    assert!(
        screen.contains("top kernel functions: pread ") && screen.contains("samples at 999 Hz"),
        "{screen}"
    );
    t.keys("Right");
    t.wait_for("top kernel functions: pread-direct", 10);
    let screen = t.wait_for("iomap_dio_rw", 60);
    assert!(!screen.contains("filemap_read"), "{screen}");
    t.keys("q");
    assert_eq!(wait_file(&status, 30).trim(), "EXIT=130");
    assert!(!t.alternate_screen(), "terminal restored");
}
