//! Output files written atomically: rows go to an unnamed file (O_TMPFILE)
//! in the destination's directory, which gets a name only when the run
//! ends: linked in under a random temporary name and renamed over the
//! destination, so readers see either the old file or a complete new one.
//! Dropped uncommitted, or the process killed (SIGKILL, the OOM killer),
//! the unnamed file is freed by the kernel and nothing is left behind; a
//! name exists only between the link and the rename. Where the filesystem
//! has no O_TMPFILE, tempfile's named temporary file (O_CREAT | O_EXCL
//! with a random name, so a planted symlink is never followed) stands in,
//! and a killed process leaves it. (tempfile's own unnamed files cannot be
//! given a name afterwards, hence the open(2) here.)
use std::{
    ffi::CString,
    fs::{File, OpenOptions, Permissions},
    io::{self, BufWriter, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{OpenOptionsExt, PermissionsExt},
        io::AsRawFd,
    },
    path::{Path, PathBuf},
};

use tempfile::NamedTempFile;

pub struct AtomicFile {
    dest: PathBuf,
    out: BufWriter<File>,
    /// Some when the filesystem had no O_TMPFILE.
    named: Option<NamedTempFile>,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("directory {} does not exist", dir.display()),
            ));
        }
        if dest.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", dest.display()),
            ));
        }
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            // What a plain create gives (umask applies).
            .mode(0o666)
            .custom_flags(libc::O_TMPFILE)
            .open(&dir);
        let (file, named) = match unnamed {
            Ok(f) => (f, None),
            Err(e) if no_tmpfile(&e) => {
                let named = tempfile::Builder::new()
                    .prefix(&temp_prefix(dest))
                    .suffix(".tmp")
                    // What a plain create gives (umask applies), not tempfile's 0600.
                    .permissions(Permissions::from_mode(0o666))
                    .tempfile_in(&dir)?;
                (named.as_file().try_clone()?, Some(named))
            }
            Err(e) => return Err(e),
        };
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            out: BufWriter::new(file),
            named,
        })
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        &mut self.out
    }

    /// Flushes, fsyncs and puts the file in place.
    pub fn commit(self) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        if let Some(named) = self.named {
            return named.persist(&self.dest).map(drop).map_err(|e| e.error);
        }
        let dir = match self.dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        for attempt in 0..16 {
            let tmp = temp_name(&self.dest, dir, attempt);
            match link_unnamed(&file, &tmp) {
                Ok(()) => {
                    return std::fs::rename(&tmp, &self.dest).inspect_err(|_| {
                        let _ = std::fs::remove_file(&tmp);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("no free temporary name"))
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

/// `.NAME.dmaprof-XXXXXX.tmp` beside `dest`: hidden, and named after what
/// it becomes.
fn temp_prefix(dest: &Path) -> String {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.dmaprof-")
}

/// A name for the link: random, never an existing entry (linkat(2) does
/// not replace or follow one: EEXIST, and another name is tried).
fn temp_name(dest: &Path, dir: &Path, attempt: u32) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!(
        "{}{}-{nanos:08x}{attempt}.tmp",
        temp_prefix(dest),
        std::process::id()
    ))
}

/// Filesystems without O_TMPFILE answer one of these.
fn no_tmpfile(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL) | Some(libc::ENOENT)
    )
}

/// Gives the unnamed `file` the name `to`: linkat(2) by /proc/self/fd
/// (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
fn link_unnamed(file: &File, to: &Path) -> io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
    let to = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the file name"))?;
    // SAFETY: two valid C strings.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Writes a whole file atomically.
pub fn write(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.writer().write_all(bytes)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_planted_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let dest = dir.path().join("out.csv");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        write(&dest, b"a,b\n").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&dest).unwrap(), b"a,b\n");
        assert!(
            !std::fs::symlink_metadata(&dest)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn uncommitted_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.json");
        std::fs::write(&dest, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.writer().write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_file_has_no_name_so_a_killed_process_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.csv");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.writer().write_all(b"rows\n").unwrap();
        f.writer().flush().unwrap();
        let names = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(),
            Vec::<std::ffi::OsString>::new(),
            "nothing named yet"
        );
        f.commit().unwrap();
        assert_eq!(names(), ["out.csv"]);
        assert_eq!(std::fs::read(&dest).unwrap(), b"rows\n");
    }

    #[test]
    fn committed_files_have_the_usual_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.csv");
        write(&dest, b"x\n").unwrap();
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        // Readable by others as a plain create is under the usual umask
        // (tempfile alone would make it 0600).
        let umask = unsafe { libc::umask(0o022) };
        unsafe { libc::umask(umask) };
        assert_eq!(mode & 0o777, 0o666 & !umask, "{mode:o}");
    }

    #[test]
    fn refuses_missing_directories() {
        assert!(AtomicFile::create(Path::new("/nonexistent/dir/out.csv")).is_err());
    }
}
