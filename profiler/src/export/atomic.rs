//! Output files written atomically, on tempfile's `NamedTempFile`: rows go
//! to a temporary file created next to the destination (O_CREAT | O_EXCL
//! with a random name, so a planted symlink is never followed), renamed over
//! the destination when the run ends (`persist`), so readers see either the
//! old file or a complete new one. Dropped uncommitted, it is removed.
use std::{
    fs::Permissions,
    io::{self, BufWriter, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use tempfile::NamedTempFile;

pub struct AtomicFile {
    dest: PathBuf,
    out: BufWriter<NamedTempFile>,
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
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.dmaprof-"))
            .suffix(".tmp")
            // What a plain create gives (umask applies), not tempfile's 0600.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(&dir)?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            out: BufWriter::new(tmp),
        })
    }

    pub fn writer(&mut self) -> &mut BufWriter<NamedTempFile> {
        &mut self.out
    }

    /// Flushes, fsyncs and renames into place.
    pub fn commit(self) -> io::Result<()> {
        let tmp = self.out.into_inner().map_err(|e| e.into_error())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.dest).map(drop).map_err(|e| e.error)
    }

    pub fn dest(&self) -> &Path {
        &self.dest
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
