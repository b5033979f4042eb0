//! The files the probes name, as a person reads them: the dentry names read
//! at the call (leaf first, up to the file's filesystem root) joined under
//! the mount point of the file's device. The names and the device come from
//! the kernel at the call; only the mount point is looked up here, in this
//! process's /proc/self/mountinfo (read once, again when a device is new).
use std::collections::HashMap;

use profiler_common::call::{FILE_PATH_DEPTH, FileId};

/// A file of a traced call, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    /// Absolute when its mount point is known and the walk reached the
    /// filesystem's root; otherwise `[dev M:m]/...` or `.../name`.
    pub path: String,
    pub major: u32,
    pub minor: u32,
    pub ino: u64,
}

/// Mount points by device (major, minor), of mounts of a filesystem's root.
#[derive(Debug, Default)]
pub struct Mounts {
    by_dev: HashMap<(u32, u32), String>,
    loaded: bool,
    /// Devices looked for since the last read of mountinfo: one that is
    /// not mounted here (a memfd's internal tmpfs) must not cost a read of
    /// mountinfo per event.
    looked_for: std::collections::HashSet<(u32, u32)>,
}

impl Mounts {
    pub fn new() -> Mounts {
        Mounts::default()
    }

    fn load(&mut self) {
        self.loaded = true;
        self.looked_for.clear();
        let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        self.by_dev = parse_mountinfo(&text);
    }

    fn mount_point(&mut self, dev: (u32, u32)) -> Option<&str> {
        // Read again for a device not seen before (it may be newly mounted).
        if !self.loaded || (!self.by_dev.contains_key(&dev) && !self.looked_for.contains(&dev)) {
            self.load();
        }
        self.looked_for.insert(dev);
        self.by_dev.get(&dev).map(String::as_str)
    }

    /// `id` decoded; None when the call named no file.
    pub fn view(&mut self, id: &FileId) -> Option<FileView> {
        if id.depth == 0 && id.ino == 0 {
            return None;
        }
        let (major, minor) = crate::probes::block::dev_major_minor(id.dev);
        let depth = (id.depth as usize).min(FILE_PATH_DEPTH);
        let mut names: Vec<String> = id.names[..depth]
            .iter()
            .map(|n| {
                let end = n.iter().position(|&c| c == 0).unwrap_or(n.len());
                String::from_utf8_lossy(&n[..end]).into_owned()
            })
            .collect();
        if id.complete != 0 {
            names.pop(); // the filesystem root's own name, "/"
        }
        names.reverse();
        let within = names.join("/");
        let path = if id.complete == 0 {
            format!(".../{within}")
        } else {
            match self.mount_point((major, minor)) {
                Some("/") => format!("/{within}"),
                Some(mp) => format!("{mp}/{within}"),
                None => format!("[dev {major}:{minor}]/{within}"),
            }
        };
        Some(FileView {
            path: csv_safe(&path),
            major,
            minor,
            ino: id.ino,
        })
    }
}

/// Kept to what a CSV field holds unquoted.
fn csv_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c == ',' || c.is_control() { '_' } else { c })
        .collect()
}

/// mountinfo lines: `id parent major:minor root mount-point ...`; the mounts
/// of a filesystem's root (root "/"), first one per device.
fn parse_mountinfo(text: &str) -> HashMap<(u32, u32), String> {
    let mut by_dev = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(dev), Some(root), Some(mp)) = (f.get(2), f.get(3), f.get(4)) else {
            continue;
        };
        let Some((ma, mi)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        if *root == "/" {
            by_dev.entry((ma, mi)).or_insert_with(|| unescape(mp));
        }
    }
    by_dev
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(names: &[&str], complete: bool, dev: u32) -> FileId {
        let mut f = FileId {
            ino: 12,
            dev,
            depth: names.len() as u32,
            complete: complete as u32,
            ..Default::default()
        };
        for (i, n) in names.iter().enumerate() {
            f.names[i][..n.len()].copy_from_slice(n.as_bytes());
        }
        f
    }

    #[test]
    fn paths_join_the_names_under_the_mount_point() {
        let mut m = Mounts {
            by_dev: parse_mountinfo(
                "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                 30 22 7:0 / /mnt/my\\040disk rw - ext4 /dev/loop0 rw\n\
                 31 22 7:0 /sub /elsewhere rw - ext4 /dev/loop0 rw\n",
            ),
            loaded: true,
            looked_for: Default::default(),
        };
        let loop0 = 7 << 20;
        let v = m.view(&id(&["data.bin", "/"], true, loop0)).unwrap();
        assert_eq!(v.path, "/mnt/my disk/data.bin");
        assert_eq!((v.major, v.minor, v.ino), (7, 0, 12));
        let root = 254 << 20;
        let v = m.view(&id(&["f", "tmp", "var", "/"], true, root)).unwrap();
        assert_eq!(v.path, "/var/tmp/f");
        let v = m
            .view(&id(&["f", "e", "d", "c", "b", "a"], false, root))
            .unwrap();
        assert_eq!(v.path, ".../a/b/c/d/e/f");
        let v = m.view(&id(&["x", "/"], true, (9 << 20) | 3)).unwrap();
        assert_eq!(v.path, "[dev 9:3]/x");
        assert_eq!(m.view(&FileId::default()), None);
    }
}
