//! A newc cpio archive written directly (no cpio tool, no root): the guest's
//! whole userland is busybox, our binaries and the shared libraries they need.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::cmd;

enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

#[derive(Default)]
pub struct Initramfs {
    entries: BTreeMap<String, Entry>,
}

impl Initramfs {
    fn add_parents(&mut self, path: &str) {
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries.entry(acc.clone()).or_insert(Entry::Dir);
        }
    }

    pub fn dir(&mut self, path: &str) {
        self.add_parents(path);
        self.entries
            .insert(path.trim_start_matches('/').to_string(), Entry::Dir);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.add_parents(path);
        self.entries.insert(
            path.trim_start_matches('/').to_string(),
            Entry::File { data, mode },
        );
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.add_parents(path);
        self.entries.insert(
            path.trim_start_matches('/').to_string(),
            Entry::Symlink(target.into()),
        );
    }

    /// Copies a host file in, following symlinks.
    pub fn copy(&mut self, guest_path: &str, host: &Path, mode: u32) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.file(guest_path, data, mode);
        Ok(())
    }

    /// Copies a dynamically linked executable and every library `ldd` names.
    pub fn executable(&mut self, guest_path: &str, host: &Path) -> Result<()> {
        self.copy(guest_path, host, 0o755)?;
        for lib in shared_libraries(host)? {
            let guest = lib.to_string_lossy().into_owned();
            if !self.entries.contains_key(guest.trim_start_matches('/')) {
                self.copy(&guest, &lib, 0o755)?;
            }
        }
        Ok(())
    }

    pub fn write(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (name, entry)) in self.entries.iter().enumerate() {
            let (mode, data): (u32, &[u8]) = match entry {
                Entry::Dir => (0o040755, &[]),
                Entry::File { data, mode } => (0o100000 | mode, data),
                Entry::Symlink(t) => (0o120777, t.as_bytes()),
            };
            header(&mut out, ino as u32 + 1, mode, name, data.len());
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        header(&mut out, 0, 0, "TRAILER!!!", 0);
        out
    }
}

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, name: &str, size: usize) {
    let nlink = if mode & 0o040000 != 0 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        size as u32,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Libraries (and the dynamic loader) an executable needs, from `ldd`.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let text = cmd::output(Command::new("ldd").arg(exe))?;
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("{}: {line}", exe.display());
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_valid_newc() {
        let mut fs = Initramfs::default();
        fs.file("/bin/x", b"abc".to_vec(), 0o755);
        fs.symlink("/bin/sh", "busybox");
        let bytes = fs.write();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("bin/x\0") && text.contains("TRAILER!!!\0") && text.contains("abc"));
        // "bin" was created as a parent directory before its children.
        assert!(text.find("bin\0").unwrap() < text.find("bin/x\0").unwrap());
    }
}
