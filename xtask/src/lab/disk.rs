//! The guest's test disk: an ext4 image holding files of known content
//! (profiler_common::pattern), made without mounting (`mke2fs -d`), cached,
//! and copied for each boot so write tests start from the same state.
use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};
use profiler_common::pattern;

use crate::cmd;

/// Seed of every lab data file's pattern; the guest tests use the same one.
pub const SEED: u64 = pattern::LAB_SEED;
/// Files on the disk: name and size. Bump VERSION when this changes.
pub const FILES: &[(&str, u64)] = &[("data-256m.bin", 256 << 20), ("data-4m.bin", 4 << 20)];
const VERSION: u32 = 3;
/// Room for the data files and one 256 MiB output per write mode.
const IMAGE_SIZE: &str = "3G";

/// Returns a fresh copy of the cached image for one boot.
pub fn fresh_copy(dest: &std::path::Path) -> Result<()> {
    let image = ensure()?;
    cmd::run(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&image)
            .arg(dest),
    )
}

fn ensure() -> Result<PathBuf> {
    let dir = cmd::cache_dir().join(format!("lab/disk-v{VERSION}"));
    let image = dir.join("disk.img");
    if image.exists() {
        return Ok(image);
    }
    let staging = dir.join("files");
    std::fs::create_dir_all(&staging)?;
    let mut buf = vec![0u8; 1 << 20];
    for (name, size) in FILES {
        let mut data = Vec::with_capacity(*size as usize);
        for off in (0..*size).step_by(buf.len()) {
            pattern::fill_aligned(SEED, off, &mut buf);
            data.extend_from_slice(&buf);
        }
        let path = staging.join(name);
        std::fs::write(&path, &data).with_context(|| format!("writing {name}"))?;
        mark_as_dmaprof(&path)?;
    }
    let tmp = dir.join("disk.img.tmp");
    cmd::run(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-L", "dmaprof-lab", "-d"])
            .arg(&staging)
            .arg("-F")
            .arg(&tmp)
            .arg(IMAGE_SIZE),
    )?;
    std::fs::rename(&tmp, &image)?;
    std::fs::remove_dir_all(&staging)?;
    Ok(image)
}

/// The mark `dmaprof run` looks for (workload::datafile): it then verifies
/// reads against the pattern instead of a reference read. mke2fs -d copies xattrs.
fn mark_as_dmaprof(path: &std::path::Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let value = format!("{SEED:x}");
    // SAFETY: valid C strings and buffer.
    let rc = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"user.dmaprof.seed".as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        anyhow::bail!(
            "setxattr {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
