//! pread/pwrite into anonymous memory (the baselines), or into a udmabuf's
//! memfd mapping. With an O_DIRECT fd these are the direct variants.
use std::{fs::File, io, os::unix::fs::FileExt};

/// Reads exactly `len` bytes at `offset`; end of file first is an error.
pub fn read(file: &File, buf: &mut [u8], offset: u64, len: u64) -> io::Result<()> {
    let buf = &mut buf[..len as usize];
    let mut done = 0usize;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "file ended at offset {} ({} of {len} bytes read)",
                        offset + done as u64,
                        done
                    ),
                ));
            }
            n => done += n,
        }
    }
    Ok(())
}

pub fn write(file: &File, buf: &[u8], offset: u64, len: u64) -> io::Result<()> {
    file.write_all_at(&buf[..len as usize], offset)
}
