//! What stands behind a path: block device, filesystem, and whether O_DIRECT
//! works there. Direct-I/O modes mean nothing on a filesystem that refuses it.
use std::{
    fs::{File, OpenOptions},
    io,
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    },
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
    /// Direct I/O's alignment of file offsets and lengths there, as
    /// statx(STATX_DIOALIGN) reports it (None: not reported).
    pub dio_align: Option<u64>,
}

/// Where O_DIRECT works: how that was checked, and the alignment the file
/// (or a scratch file in the directory) reports for it.
#[derive(Debug, Clone)]
pub struct DirectIo {
    pub how: String,
    pub align: Option<u64>,
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
    let (o_direct, o_direct_detail, dio_align) = match o_direct(path) {
        Ok(d) => (true, d.how, d.align),
        Err(why) => (false, why, None),
    };
    Ok(FsInfo {
        path: path.to_path_buf(),
        device,
        block_device,
        fs_type,
        mount_point,
        o_direct,
        o_direct_detail,
        dio_align,
    })
}

/// Whether O_DIRECT works at `path`, found by doing it: an aligned 4 KiB
/// read of a file, or a scratch file written and read back in a directory.
/// Ok says how it was checked and the alignment, Err why it does not work.
pub fn o_direct(path: &Path) -> Result<DirectIo, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_dir() {
        check_direct_in_dir(path)
    } else {
        check_direct_on_file(path, meta.len())
    }
}

/// The file's direct I/O alignment for offsets and lengths, from
/// statx(STATX_DIOALIGN) (Linux 6.1+; None where the kernel or the
/// filesystem does not report it).
pub fn dio_align(file: &File) -> Option<u64> {
    // SAFETY: statx fills the zeroed struct; the empty path names the fd.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut st,
        )
    };
    (rc == 0 && st.stx_mask & libc::STATX_DIOALIGN != 0 && st.stx_dio_offset_align > 0)
        .then_some(u64::from(st.stx_dio_offset_align))
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

fn check_direct_on_file(path: &Path, len: u64) -> Result<DirectIo, String> {
    let file = open_direct(path, false).map_err(|e| format!("open(O_DIRECT) failed: {e}"))?;
    let align = dio_align(&file);
    if len < 4096 {
        return Ok(DirectIo {
            how: "open(O_DIRECT) accepted; file too short for a 4 KiB read".into(),
            align,
        });
    }
    let mut buf = Aligned::new();
    match file.read_at(buf.buf(), 0) {
        Ok(_) => Ok(DirectIo {
            how: "4 KiB aligned O_DIRECT read succeeded".into(),
            align,
        }),
        Err(e) => Err(format!("aligned O_DIRECT read failed: {e}")),
    }
}

fn check_direct_in_dir(dir: &Path) -> Result<DirectIo, String> {
    let probe = dir.join(format!(".dmaprof-odirect-{}", std::process::id()));
    let result = (|| -> io::Result<Option<u64>> {
        let file = open_direct(&probe, true)?;
        let mut buf = Aligned::new();
        buf.buf().fill(0x5a);
        file.write_at(buf.buf(), 0)?;
        let mut back = Aligned::new();
        file.read_at(back.buf(), 0)?;
        if back.buf() != buf.buf() {
            return Err(io::Error::other("read back different bytes"));
        }
        Ok(dio_align(&file))
    })();
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(align) => Ok(DirectIo {
            how: "4 KiB aligned O_DIRECT write + read of a scratch file succeeded".into(),
            align,
        }),
        Err(e) => Err(format!("O_DIRECT on a scratch file failed: {e}")),
    }
}
