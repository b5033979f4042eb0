//! What stands behind a path: block device, filesystem, and whether O_DIRECT
//! works there. Direct-I/O modes mean nothing on a filesystem that refuses it.
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct FsInfo {
    pub path: PathBuf,
    /// "major:minor" of the device holding the path.
    pub device: String,
    /// Kernel name of the block device (e.g. "vda"), if it is one.
    pub block_device: Option<String>,
    pub fs_type: Option<String>,
    pub mount_point: Option<String>,
    pub o_direct: bool,
    /// Why O_DIRECT does not work, or how it was checked.
    pub o_direct_detail: String,
}

pub fn inspect(path: &Path) -> Result<FsInfo> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let device = format!("{major}:{minor}");
    let block_device = std::fs::read_link(format!("/sys/dev/block/{device}"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let (mount_point, fs_type) = mount_of(&device).unzip();
    let (o_direct, o_direct_detail) = match o_direct(path) {
        Ok(how) => (true, how),
        Err(why) => (false, why),
    };
    Ok(FsInfo {
        path: path.to_path_buf(),
        device,
        block_device,
        fs_type,
        mount_point,
        o_direct,
        o_direct_detail,
    })
}

/// Whether O_DIRECT works at `path`, found by doing it: an aligned 4 KiB
/// read of a file, or a scratch file written and read back in a directory.
/// Ok says how it was checked, Err why it does not work.
pub fn o_direct(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (ok, detail) = if meta.is_dir() {
        check_direct_in_dir(path)
    } else {
        check_direct_on_file(path, meta.len())
    };
    if ok { Ok(detail) } else { Err(detail) }
}

/// The mount point and filesystem type of a device, from /proc/self/mountinfo.
fn mount_of(device: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(2) != Some(&device) {
            return None;
        }
        let sep = fields.iter().position(|f| *f == "-")?;
        Some((fields.get(4)?.to_string(), fields.get(sep + 1)?.to_string()))
    })
}

/// One aligned 4 KiB buffer for O_DIRECT probes.
struct Aligned(Box<[u8]>, usize);
impl Aligned {
    fn new() -> Aligned {
        let raw = vec![0u8; 8192].into_boxed_slice();
        let off = raw.as_ptr().align_offset(4096);
        Aligned(raw, off)
    }
    fn buf(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + 4096]
    }
}

fn open_direct(path: &Path, write: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

fn check_direct_on_file(path: &Path, len: u64) -> (bool, String) {
    let file = match open_direct(path, false) {
        Ok(f) => f,
        Err(e) => return (false, format!("open(O_DIRECT) failed: {e}")),
    };
    if len < 4096 {
        return (
            true,
            "open(O_DIRECT) accepted; file too short for a 4 KiB read".into(),
        );
    }
    let mut buf = Aligned::new();
    match file.read_at(buf.buf(), 0) {
        Ok(_) => (true, "4 KiB aligned O_DIRECT read succeeded".into()),
        Err(e) => (false, format!("aligned O_DIRECT read failed: {e}")),
    }
}

fn check_direct_in_dir(dir: &Path) -> (bool, String) {
    let probe = dir.join(format!(".dmaprof-odirect-{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        let file = open_direct(&probe, true)?;
        let mut buf = Aligned::new();
        buf.buf().fill(0x5a);
        file.write_at(buf.buf(), 0)?;
        let mut back = Aligned::new();
        file.read_at(back.buf(), 0)?;
        if back.buf() != buf.buf() {
            return Err(io::Error::other("read back different bytes"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => (
            true,
            "4 KiB aligned O_DIRECT write + read of a scratch file succeeded".into(),
        ),
        Err(e) => (false, format!("O_DIRECT on a scratch file failed: {e}")),
    }
}
