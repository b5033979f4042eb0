//! The lab: Debian's linux-source-6.12 plus the project's own patches
//! (DMA_BUF_IOCTL_RW_FILE and a system-heap rw_file), booted under QEMU
//! with an initramfs and a disk image this xtask writes itself.
mod disk;
mod initramfs;
mod kernel;
mod stock;
mod suite;
mod vm;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

pub use kernel::Variant;
pub use suite::test_suite;

#[derive(Subcommand)]
pub enum Command {
    /// Build (or reuse from the cache) the patched lab kernel; prints its path.
    Kernel {
        /// Debian's stock 6.12 kernel instead (downloaded once, not rebuilt).
        #[arg(long, conflicts_with = "kasan")]
        stock: bool,
        /// The patched debug kernel with KASAN (its own source tree and cache).
        #[arg(long)]
        kasan: bool,
    },
    /// Boot the lab kernel and run a shell command in the guest (cwd: the
    /// ext4 test disk at /mnt; `dmaprof` is on PATH). Exits with its status.
    Run {
        /// Boot Debian's stock 6.12 kernel (no RW_FILE) instead of the patched one.
        #[arg(long, conflicts_with = "kasan")]
        stock: bool,
        /// Boot the patched debug kernel with KASAN.
        #[arg(long)]
        kasan: bool,
        /// Kill the guest after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Attach the guest's console to this terminal (to watch dmaprof's
        /// dashboard in the lab); no output capture, no timeout.
        #[arg(long)]
        interactive: bool,
        /// The command, e.g. `cargo xtask lab run -- dmaprof doctor`.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The lab test suite, patched and stock kernels (builds the kernel first if needed).
    Test {
        /// The patched kernel with KASAN (about 2.7x slower under TCG; not in CI).
        #[arg(long)]
        kasan: bool,
    },
}

pub fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Kernel { stock, kasan } => {
            let k = pick(stock, kasan)?;
            println!("{}", k.bzimage.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            stock,
            kasan,
            timeout,
            interactive,
            command,
        } => {
            let kernel = pick(stock, kasan)?;
            // The lab test binaries too (/lab/NAME), to run one test by hand.
            let guest = suite::guest_files(suite::LAB_TESTS)?;
            if interactive {
                let status = vm::run_interactive(&kernel, &guest, &command.join(" "))?;
                return Ok(ExitCode::from(status.clamp(0, 255) as u8));
            }
            let out = vm::run(&kernel, &guest, &command.join(" "), timeout)?;
            print!("{}", out.output);
            eprintln!(
                "lab: guest command exited {} (kernel {}, boot to command: {:.1}s)",
                out.status, kernel.key, out.boot_secs
            );
            Ok(ExitCode::from(out.status.clamp(0, 255) as u8))
        }
        Command::Test { kasan } => {
            let mut phases = crate::cmd::Phases::default();
            let result = test_suite(&mut phases, variant(kasan));
            eprint!("{}", phases.summary());
            result.map(|()| ExitCode::SUCCESS)
        }
    }
}

fn variant(kasan: bool) -> kernel::Variant {
    if kasan {
        kernel::Variant::Kasan
    } else {
        kernel::Variant::Debug
    }
}

/// The kernel a lab command boots: stock, or the patched one (with KASAN).
fn pick(stock: bool, kasan: bool) -> Result<kernel::Kernel> {
    if stock {
        stock::ensure()
    } else {
        kernel::ensure_variant(variant(kasan))
    }
}

/// For `cargo xtask bench`: the cached kernel, the guest files, one guest run.
pub fn kernel_for_bench() -> Result<kernel::Kernel> {
    kernel::ensure()
}

pub fn guest_files_for_bench() -> Result<vm::GuestFiles> {
    suite::guest_files(&[])
}

pub fn run_for_bench(
    kernel: &kernel::Kernel,
    files: &vm::GuestFiles,
    script: &str,
) -> Result<String> {
    // The guest disk in host memory: lab figures without the host disk's drift.
    let out = vm::run_disk_in_memory(kernel, files, script, 1800)?;
    anyhow::ensure!(
        out.status == 0,
        "guest script failed ({}):\n{}",
        out.status,
        out.output
    );
    Ok(out.output)
}
