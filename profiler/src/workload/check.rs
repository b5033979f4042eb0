//! Checking what a read moved, without changing what the next call does.
//!
//! A reused buffer is overwritten by the next call, so it can only be
//! looked at between calls, and looking costs the next call: reading 1 MiB
//! of it (a digest) moves its cache lines to this CPU, and the next call,
//! when a CPU copies into the buffer (a loop device, the page cache, a
//! bounce buffer), then pays to take them back. Measured on ext4 over a
//! RAM-backed loop device, O_DIRECT 1 MiB calls: a full digest between
//! calls put p50 up by 20-50%, a 100 us spin in its place or one cache
//! line per page not at all (`docs/bench-report.md`). And reading the file
//! for reference then left the next range in the page cache (readahead):
//! the next O_DIRECT call up to 8x slower.
//!
//! So between calls only a sample is looked at: the first cache line of
//! every page of the call's bytes and its last line, digested (XXH3). Every
//! byte is checked after the pass, untimed: each call is made again, the
//! same mode into the same buffer from a freshly opened file, and its bytes
//! compared in full with dmaprof's pattern or with the file read for
//! reference (O_DIRECT where the file takes it: no page cache at all); the
//! timed call's sample must match the same reference. The next pass
//! prepares the page cache again.
use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileExt, OpenOptionsExt},
};

use profiler_common::pattern;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::{Config, buffers::Buffer};
use crate::mapping::Mapping;

/// The sample's unit: one cache line, at the start of every page.
const LINE: usize = 64;
const PAGE: usize = 4096;

/// How the reads of one pass are checked, call by call.
pub enum ReadCheck {
    /// Not checked here: verification is off, the pass writes, or its
    /// buffers are distinct (checked together after the pass).
    Later,
    /// Reads into a reused buffer: each call's sample digest, as
    /// (file offset, length, digest), checked and replayed after the pass.
    Sampled(Vec<(u64, u64, u64)>),
}

/// Makes one call of the pass again, untimed: `len` bytes of the file at
/// `off` into the buffer, the way the pass's mode moves them.
pub type Replay<'a> = dyn FnMut(&mut Buffer, u64, u64) -> io::Result<()> + 'a;

impl ReadCheck {
    pub fn for_pass(cfg: &Config) -> ReadCheck {
        use super::{BufferUse, mode::Direction};
        match (cfg.verify, cfg.buffers, cfg.direction) {
            (true, BufferUse::Reuse, Direction::Read) => ReadCheck::Sampled(Vec::new()),
            _ => ReadCheck::Later,
        }
    }

    /// A call that read `len` bytes of the file at `off` into `buf` ended.
    pub fn call_ended(&mut self, buf: &mut Buffer, off: u64, len: u64) -> Result<(), String> {
        let ReadCheck::Sampled(samples) = self else {
            return Ok(());
        };
        let digest = buf
            .with_bytes(false, |bytes| sample_digest(&bytes[..len as usize]))
            .map_err(|e| e.to_string())?;
        samples.push((off, len, digest));
        Ok(())
    }

    /// After the pass: every call made again into `buf` by `replay` and
    /// its bytes checked in full, and each timed call's sample against the
    /// same reference.
    pub fn finish(
        &self,
        cfg: &Config,
        buf: &mut Buffer,
        replay: &mut Replay,
    ) -> Result<(), String> {
        let ReadCheck::Sampled(samples) = self else {
            return Ok(());
        };
        let mut reference = Reference::open(cfg)?;
        for &(off, len, sampled) in samples {
            replay(buf, off, len)
                .map_err(|e| format!("making the call at file offset {off} again: {e}"))?;
            let want = reference.bytes(off, len)?;
            let bad = buf
                .with_bytes(false, |got| {
                    got[..want.len()].iter().zip(want).position(|(a, b)| a != b)
                })
                .map_err(|e| e.to_string())?;
            if let Some(at) = bad {
                return Err(format!(
                    "the call at file offset {off}, made again: its buffer differs from the \
                     file at offset {}",
                    off + at as u64
                ));
            }
            if sample_digest(want) != sampled {
                return Err(format!(
                    "the timed call at file offset {off} read bytes that differ from the \
                     file's (the first line of each page and the last, {len} bytes)"
                ));
            }
        }
        Ok(())
    }
}

/// XXH3 over the first line of every page of `bytes` and its last line.
fn sample_digest(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    for at in (0..bytes.len()).step_by(PAGE) {
        h = xxh3_64_with_seed(&bytes[at..(at + LINE).min(bytes.len())], h);
    }
    xxh3_64_with_seed(&bytes[bytes.len().saturating_sub(LINE)..], h)
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

/// The file's bytes for reference: dmaprof's pattern when the file has a
/// seed, else the file read, O_DIRECT where its alignment allows.
struct Reference {
    seed: Option<u64>,
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
            seed: cfg.seed,
            buffered,
            direct,
            align: cfg.direct_align.max(1),
            buf: None,
        })
    }

    fn bytes(&mut self, off: u64, len: u64) -> Result<&[u8], String> {
        let size = len.next_multiple_of(PAGE as u64) as usize;
        if self.buf.as_ref().is_none_or(|m| m.len() < size) {
            self.buf = Some(Mapping::anonymous(size).map_err(|e| e.to_string())?);
        }
        let bytes = &mut self.buf.as_mut().expect("allocated above").as_mut_slice()[..len as usize];
        if let Some(seed) = self.seed {
            pattern::fill(seed, off, bytes);
            return Ok(bytes);
        }
        let aligned = off.is_multiple_of(self.align) && len.is_multiple_of(self.align);
        match (&self.direct, aligned) {
            (Some(direct), true) => direct.read_exact_at(bytes, off),
            // After the pass: the page cache it fills is the next pass's to prepare.
            _ => self.buffered.read_exact_at(bytes, off),
        }
        .map_err(|e| format!("reading the file at offset {off} for reference: {e}"))?;
        Ok(bytes)
    }
}
