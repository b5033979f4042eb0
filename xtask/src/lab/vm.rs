//! Boots the lab kernel under QEMU (TCG: KVM is not available for guests
//! here), runs one shell command, and returns what it printed and its status.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use super::{disk, initramfs::Initramfs, kernel::Kernel};
use crate::cmd;

const BEGIN: &str = "@@DMAPROF-LAB-BEGIN@@";
const END: &str = "@@DMAPROF-LAB-END@@ rc=";
/// The guest's whole kernel log follows, up to DMESG_END: the console shows
/// warnings and worse (loglevel=5), dmesg every level.
const DMESG: &str = "@@DMAPROF-LAB-DMESG@@";
const DMESG_END: &str = "@@DMAPROF-LAB-DMESG-END@@";

/// Files to put into the guest: (guest path, host path).
pub struct GuestFiles {
    pub executables: Vec<(String, PathBuf)>,
}

pub struct VmOutput {
    /// What the command printed (between the markers).
    pub output: String,
    /// Everything on the console, kernel messages included.
    pub console: String,
    /// The guest's kernel log after the command (`dmesg`), every level.
    pub dmesg: String,
    pub status: i32,
    /// Seconds from QEMU start to the command starting.
    pub boot_secs: f64,
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/lab
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# The stock kernel's disk and filesystem drivers are modules (in order).
if [ -f /modules ]; then
    for m in $(cat /modules); do
        insmod /lib/modules/$m.ko || echo "lab: insmod $m failed"
    done
fi
mount -t ext4 /dev/vda /mnt || echo "lab: mounting /dev/vda on /mnt failed"
cd /mnt
echo "@@DMAPROF-LAB-BEGIN@@"
if [ -e /interactive ]; then
    # `lab run --interactive`: the serial console is the user's terminal.
    export TERM=xterm-256color
    stty rows 34 cols 110
    sh /cmd 2>&1
else
    # stdin is not a terminal: dmaprof runs headless, as in CI.
    sh /cmd < /dev/null 2>&1
fi
rc=$?
echo "@@DMAPROF-LAB-END@@ rc=$rc"
echo "@@DMAPROF-LAB-DMESG@@"
dmesg
echo "@@DMAPROF-LAB-DMESG-END@@"
cd /
sync
umount /mnt
poweroff -f
"#;

fn build_initramfs(
    kernel: &Kernel,
    files: &GuestFiles,
    command: &str,
    interactive: bool,
) -> Result<Vec<u8>> {
    let mut fs = Initramfs::default();
    for d in [
        "/dev", "/proc", "/sys", "/tmp", "/mnt", "/bin", "/usr/bin", "/lab",
    ] {
        fs.dir(d);
    }
    fs.copy("/bin/busybox", Path::new("/bin/busybox"), 0o755)
        .context("busybox-static is needed for the guest: run `cargo xtask setup`")?;
    // `sh` before `busybox --install` has run (the guest command runs under it).
    fs.symlink("/bin/sh", "busybox");
    fs.file("/init", INIT.as_bytes().to_vec(), 0o755);
    fs.file("/cmd", format!("{command}\n").into_bytes(), 0o644);
    if interactive {
        fs.file("/interactive", Vec::new(), 0o644);
    }
    for (guest, host) in &files.executables {
        fs.executable(guest, host)?;
    }
    let mut order = String::new();
    for module in &kernel.modules {
        let name = module.file_stem().unwrap().to_string_lossy();
        fs.copy(&format!("/lib/modules/{name}.ko"), module, 0o644)?;
        order.push_str(&format!("{name}\n"));
    }
    if !order.is_empty() {
        fs.file("/modules", order.into_bytes(), 0o644);
    }
    Ok(fs.write())
}

pub fn run(
    kernel: &Kernel,
    files: &GuestFiles,
    command: &str,
    timeout_secs: u64,
) -> Result<VmOutput> {
    let work = cmd::cache_dir().join("lab/run");
    run_under(&work, kernel, files, command, timeout_secs)
}

/// As `run`, with the guest's disk image in host memory (/dev/shm): the
/// benchmarks' guest disk, whose speed does not drift with the host's disk.
pub fn run_disk_in_memory(
    kernel: &Kernel,
    files: &GuestFiles,
    command: &str,
    timeout_secs: u64,
) -> Result<VmOutput> {
    run_under(
        Path::new("/dev/shm/dmaprof-lab"),
        kernel,
        files,
        command,
        timeout_secs,
    )
}

fn run_under(
    root: &Path,
    kernel: &Kernel,
    files: &GuestFiles,
    command: &str,
    timeout_secs: u64,
) -> Result<VmOutput> {
    let work = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&work)?;
    let mut result = run_in(&work, kernel, files, command, timeout_secs);
    // A guest that exits before its init started the command (seen now and
    // then under TCG, early in boot) ran nothing: boot it once more, and say so.
    if let Err(e) = &result
        && e.to_string().contains(SILENT)
    {
        eprintln!("lab: {e}; booting the guest once more");
        result = run_in(&work, kernel, files, command, timeout_secs);
    }
    let _ = std::fs::remove_dir_all(&work);
    // The root too once no other run uses it (remove_dir fails while not empty).
    let _ = std::fs::remove_dir(root);
    result
}

const SILENT: &str = "guest exited before starting the command";

fn run_in(
    work: &Path,
    kernel: &Kernel,
    files: &GuestFiles,
    command: &str,
    timeout_secs: u64,
) -> Result<VmOutput> {
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, build_initramfs(kernel, files, command, false)?)?;
    let disk_img = work.join("disk.img");
    disk::fresh_copy(&disk_img)?;

    let start = Instant::now();
    let mut child = qemu(kernel, &initrd, &disk_img, "oops=panic")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (run `cargo xtask setup`)")?;

    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take().unwrap();
    // Bytes, not UTF-8 lines: firmware and early boot may print anything,
    // and one bad byte must not end the capture.
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches('\n')
                        .to_string();
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = start + Duration::from_secs(timeout_secs);
    let mut console = String::new();
    let mut output = String::new();
    let (mut began, mut status, mut boot_secs) = (false, None, 0.0);
    let (mut in_dmesg, mut dmesg) = (false, String::new());
    let mut saw_begin = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "lab guest hung: killed after {timeout_secs}s running `{command}`; last console lines:\n{}",
                tail(&console, 30)
            );
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(200))) {
            Ok((at, line)) => {
                let line = line.trim_end_matches('\r').to_string();
                console.push_str(&line);
                console.push('\n');
                if line.contains(BEGIN) {
                    began = true;
                    saw_begin = true;
                    boot_secs = (at - start).as_secs_f64();
                } else if let Some(rc) = line.split(END).nth(1) {
                    status = rc.trim().parse::<i32>().ok();
                    began = false;
                } else if line.contains(DMESG_END) {
                    in_dmesg = false;
                } else if line.contains(DMESG) {
                    in_dmesg = true;
                } else if in_dmesg {
                    dmesg.push_str(&line);
                    dmesg.push('\n');
                } else if began {
                    output.push_str(&line);
                    output.push('\n');
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let exit = child.wait()?;
    let _ = reader.join();
    if status.is_none() && !saw_begin {
        bail!("{SILENT} ({exit}); console:\n{}", tail(&console, 40));
    }
    let Some(status) = status else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!(
            "lab guest ended ({exit}) without finishing `{command}`; qemu: {}; last console lines:\n{}",
            err.trim(),
            tail(&console, 30)
        );
    };
    Ok(VmOutput {
        output,
        console,
        dmesg,
        status,
        boot_secs,
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The QEMU command line: TCG (no KVM for guests here), 2 CPUs, 2 GiB, the
/// serial console on stdio, the test disk on virtio.
fn qemu(kernel: &Kernel, initrd: &Path, disk_img: &Path, extra_cmdline: &str) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    // la57=off: a guest with 5-level paging under TCG now and then reset in
    // early boot, before printing anything (seen as a silent exit).
    // thread=single: with one host thread per vCPU, the guest's live code
    // patching (ftrace and BPF trampolines as probes attach and detach,
    // static keys) now and then crashed the other vCPU mid-instruction
    // (int3 / bad jump oopses in __schedule, sched_clock_cpu). One thread
    // runs both vCPUs round-robin: slower, but patching is atomic.
    c.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max,la57=off",
        "-smp",
        "2",
        "-m",
        "2G",
    ])
    .args([
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(&kernel.bzimage)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!(
        // loglevel=5: warnings (KERN_WARNING, lockdep's reports) reach the
        // console too, so a guest that dies before its dmesg is collected
        // still shows them.
        "console=ttyS0 loglevel=5 panic=-1 {extra_cmdline} {}",
        // Extra kernel parameters for debugging the lab (e.g. ignore_loglevel).
        std::env::var("DMAPROF_LAB_APPEND").unwrap_or_default()
    ))
    .arg("-drive")
    .arg(format!("file={},if=virtio,format=raw", disk_img.display()));
    c
}

/// Boots the guest with the serial console on this terminal, for watching
/// (and driving) dmaprof's dashboard in the lab. Returns QEMU's status.
pub fn run_interactive(kernel: &Kernel, files: &GuestFiles, command: &str) -> Result<i32> {
    let work = cmd::cache_dir()
        .join("lab/run")
        .join(format!("{}-tty", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let initrd = work.join("initramfs.cpio");
    std::fs::write(&initrd, build_initramfs(kernel, files, command, true)?)?;
    let disk_img = work.join("disk.img");
    disk::fresh_copy(&disk_img)?;
    let status = qemu(kernel, &initrd, &disk_img, "")
        .status()
        .context("starting qemu-system-x86_64")?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(status.code().unwrap_or(1))
}

/// Kernel complaints that fail a lab run even when the command succeeded:
/// warnings (lockdep's reports start with one), bugs (sleeping in atomic
/// context is one), oopses, list corruption, KASAN, each with the lines
/// around it so the report shows what the kernel said.
pub fn kernel_complaints(log: &str) -> Vec<String> {
    const BAD: [&str; 9] = [
        "WARNING:",
        "BUG:",
        "Oops",
        "Kernel panic",
        "Call Trace",
        "KASAN",
        "possible circular locking",
        "list_add corruption",
        "list_del corruption",
    ];
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    let mut shown_to = 0;
    for (i, l) in lines.iter().enumerate() {
        if i >= shown_to && BAD.iter().any(|b| l.contains(b)) {
            shown_to = (i + 25).min(lines.len());
            out.push(lines[i..shown_to].join("\n"));
        }
    }
    out
}
