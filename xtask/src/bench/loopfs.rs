//! A block device whose speed does not drift, for benchmark figures that
//! have to resolve a few percent: ext4 on a loop device over a file in
//! /dev/shm (RAM). Block tracepoints fire on it like on any disk. It is set
//! up for one benchmark and always torn down (`Drop`), also when the
//! benchmark fails.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::cmd;

pub struct LoopFs {
    image: PathBuf,
    device: Option<String>,
    mount: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// `size_mib` of RAM-backed ext4, mounted at a fresh directory.
    pub fn new(size_mib: u64) -> Result<LoopFs> {
        let id = std::process::id();
        let mut fs = LoopFs {
            image: PathBuf::from(format!("/dev/shm/dmaprof-bench-{id}.img")),
            device: None,
            mount: PathBuf::from(format!("/var/tmp/dmaprof-bench-loop-{id}")),
            mounted: false,
        };
        std::fs::File::create(&fs.image)
            .and_then(|f| f.set_len(size_mib << 20))
            .with_context(|| format!("creating {}", fs.image.display()))?;
        let dev = cmd::output(
            Command::new("losetup")
                .arg("-f")
                .arg("--show")
                .arg(&fs.image),
        )
        .context("losetup (needs root)")?;
        fs.device = Some(dev.trim().to_string());
        cmd::output(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(dev.trim()))?;
        std::fs::create_dir_all(&fs.mount)?;
        cmd::output(Command::new("mount").arg(dev.trim()).arg(&fs.mount))?;
        fs.mounted = true;
        eprintln!(
            "bench: drift-free device {} (ext4 on a loop device over {}, {size_mib} MiB of RAM) at {}",
            dev.trim(),
            fs.image.display(),
            fs.mount.display()
        );
        Ok(fs)
    }

    pub fn dir(&self) -> &Path {
        &self.mount
    }

    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or("?")
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.mount).status();
        }
        if let Some(dev) = &self.device {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
        let _ = std::fs::remove_dir(&self.mount);
        let _ = std::fs::remove_file(&self.image);
    }
}
