//! Checking what a read moved, without changing what the next call does.
//!
//! A reused buffer is overwritten by the next call, so it is checked as soon
//! as its call ends, outside the timed region. Against dmaprof's own file
//! that is the pattern, computed in memory. Against a file the user gave,
//! reading the file then would leave the next range in the page cache
//! (readahead), and the next O_DIRECT call paid for it: measured at up to
//! 8x slower. So a call's bytes are digested then (XXH3, in memory) and the
//! file is read for the reference digests only after the pass, with
//! O_DIRECT where the file takes it (no page cache at all), before the next
//! pass prepares the cache again.
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
};

use profiler_common::pattern;
use xxhash_rust::xxh3::xxh3_64;

use super::{Config, buffers::Buffer};
use crate::mapping::Mapping;

/// How the reads of one pass are checked, call by call.
pub enum ReadCheck {
    /// Not checked here: verification is off, the pass writes, or its
    /// buffers are distinct (checked together after the pass).
    Later,
    /// Against dmaprof's pattern (the file's seed).
    Pattern(u64),
    /// Digests of what each call read: (file offset, length, XXH3-64).
    Digests(Vec<(u64, u64, u64)>),
}

impl ReadCheck {
    pub fn for_pass(cfg: &Config) -> ReadCheck {
        use super::{BufferUse, mode::Direction};
        match (cfg.verify, cfg.buffers, cfg.direction, cfg.seed) {
            (true, BufferUse::Reuse, Direction::Read, Some(seed)) => ReadCheck::Pattern(seed),
            (true, BufferUse::Reuse, Direction::Read, None) => ReadCheck::Digests(Vec::new()),
            _ => ReadCheck::Later,
        }
    }

    /// A call that read `len` bytes of the file at `off` into `buf` ended.
    pub fn call_ended(&mut self, buf: &mut Buffer, off: u64, len: u64) -> Result<(), String> {
        let digests = match self {
            ReadCheck::Later => return Ok(()),
            ReadCheck::Pattern(seed) => return check_bytes(Some(*seed), None, buf, off, len),
            ReadCheck::Digests(d) => d,
        };
        let digest = buf
            .with_bytes(false, |bytes| xxh3_64(&bytes[..len as usize]))
            .map_err(|e| e.to_string())?;
        digests.push((off, len, digest));
        Ok(())
    }

    /// After the pass: each digest against the file's bytes.
    pub fn finish(&self, cfg: &Config) -> Result<(), String> {
        let ReadCheck::Digests(digests) = self else {
            return Ok(());
        };
        let mut reference = Reference::open(cfg)?;
        for &(off, len, digest) in digests {
            let want = reference.digest(off, len)?;
            if want != digest {
                return Err(format!(
                    "the {len} bytes read at file offset {off} differ from the file's \
                     (XXH3 {digest:016x}, the file's {want:016x})"
                ));
            }
        }
        Ok(())
    }
}

/// The first `len` bytes of `buf` against the file at `off`: dmaprof's
/// pattern when the file has a seed, else `reference` read there (after
/// the pass: distinct buffers are checked together then).
pub fn check_bytes(
    seed: Option<u64>,
    reference: Option<&File>,
    buf: &mut Buffer,
    off: u64,
    len: u64,
) -> Result<(), String> {
    let bad = buf
        .with_bytes(false, |bytes| {
            let bytes = &bytes[..len as usize];
            match (seed, reference) {
                (Some(seed), _) => pattern::first_mismatch(seed, off, bytes),
                (None, Some(reference)) => {
                    let mut want = vec![0u8; bytes.len()];
                    match reference.read_exact_at(&mut want, off) {
                        Ok(()) => bytes.iter().zip(&want).position(|(a, b)| a != b),
                        Err(_) => Some(0),
                    }
                }
                (None, None) => None,
            }
        })
        .map_err(|e| e.to_string())?;
    match bad {
        Some(at) => Err(format!(
            "differs from the file at offset {}",
            off + at as u64
        )),
        None => Ok(()),
    }
}

/// The file read for reference, O_DIRECT where its alignment allows.
struct Reference {
    buffered: File,
    direct: Option<File>,
    align: u64,
    /// Page-aligned (an anonymous mapping), grown as needed.
    buf: Option<Mapping>,
}

impl Reference {
    fn open(cfg: &Config) -> Result<Reference, String> {
        let buffered = File::open(&cfg.file).map_err(|e| e.to_string())?;
        let direct = (cfg.direct_align != 0)
            .then(|| {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&cfg.file)
                    .ok()
            })
            .flatten();
        Ok(Reference {
            buffered,
            direct,
            align: cfg.direct_align.max(1),
            buf: None,
        })
    }

    fn digest(&mut self, off: u64, len: u64) -> Result<u64, String> {
        let size = len.next_multiple_of(4096) as usize;
        if self.buf.as_ref().is_none_or(|m| m.len() < size) {
            self.buf = Some(Mapping::anonymous(size).map_err(|e| e.to_string())?);
        }
        let bytes = &mut self.buf.as_mut().expect("allocated above").as_mut_slice()[..size];
        let aligned = off.is_multiple_of(self.align) && len.is_multiple_of(self.align);
        match (&self.direct, aligned) {
            (Some(direct), true) => direct.read_exact_at(&mut bytes[..len as usize], off),
            // After the pass: the page cache it fills is the next pass's to prepare.
            _ => self.buffered.read_exact_at(&mut bytes[..len as usize], off),
        }
        .map_err(|e| format!("reading the file at offset {off} for reference: {e}"))?;
        Ok(xxh3_64(&bytes[..len as usize]))
    }
}
