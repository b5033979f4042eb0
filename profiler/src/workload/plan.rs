//! From command-line arguments to a checked run configuration: the file,
//! the modes that can run here (and why others cannot), and every bad input
//! turned into one clear line before any data moves.
use std::{path::PathBuf, sync::atomic::AtomicBool};

use super::{
    BufferUse, CacheMode, Config, RunError, datafile,
    mode::{ALL_MODES, Direction, Mode, parse_size},
    resources,
};
use crate::capabilities::Facts;

/// The seed's buffers: 32 MiB (the text is what `--help` shows).
pub const DEFAULT_CHUNK: u64 = 32 << 20;
pub const DEFAULT_CHUNK_TEXT: &str = "32M";
pub const DEFAULT_SIZE: u64 = 256 << 20;
pub const DEFAULT_HEAP: &str = "system";
/// --queue-depth's bound (the ring's entries).
pub const MAX_QUEUE_DEPTH: u32 = 4096;
/// Buffers one io_uring can register (the kernel's IORING_MAX_REG_BUFFERS).
pub const MAX_REGISTERED_BUFFERS: u64 = 1 << 14;

/// What to run: the command line's workload options and the planner's input.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// I/O path to measure; repeat for several. `all` (the default) runs
    /// every mode this machine supports for the direction and lists the
    /// others with the reason. Modes: pread, pread-direct, dmabuf-read,
    /// rw-file, rw-file-direct, udmabuf-read, udmabuf-direct-read,
    /// udmabuf-sendfile, udmabuf-direct-sendfile, pwrite, pwrite-direct, dmabuf-write,
    /// uring-direct, udmabuf-uring-direct.
    #[arg(long = "mode", value_name = "MODE")]
    pub modes: Vec<String>,
    /// read: file -> buffer (restore); write: buffer -> file (save).
    #[arg(long, value_enum, default_value = "read")]
    pub direction: Direction,
    /// Read: the source file (default: a dmaprof test file in --dir, made
    /// once). Write: the destination (one mode only); never overwritten
    /// unless dmaprof created it or --force is given.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Scratch directory for dmaprof's test and output files
    /// [default: $DMAPROF_DIR or /var/tmp/dmaprof].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Bytes to move per pass (K, M, G suffixes) [default: the file's size; 256M for dmaprof's files].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Bytes per buffer and per call, as in the seed (32 MiB buffers).
    #[arg(long, value_parser = parse_size, default_value = DEFAULT_CHUNK_TEXT)]
    pub chunk: u64,
    /// Passes per mode; modes are interleaved within each iteration.
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// dma-heap to allocate dma-bufs from (/dev/dma_heap/NAME).
    #[arg(long, default_value = DEFAULT_HEAP)]
    pub heap: String,
    /// Page-cache state at the start of each read pass: cold drops the file's
    /// pages (posix_fadvise DONTNEED), warm reads the file once first.
    #[arg(long, value_enum, default_value = "cold")]
    pub cache: CacheMode,
    /// Skip verifying the data moved (verification runs outside the timed calls).
    #[arg(long = "no-verify", action = clap::ArgAction::SetFalse)]
    pub verify: bool,
    /// Allow overwriting a write destination that dmaprof did not create.
    #[arg(long)]
    pub force: bool,
    /// distinct: a fresh buffer per call, a pass's buffers allocated up front
    /// (the seed's work, a model loader's); reuse: one warm buffer per mode
    /// for every call and pass (fio's work; reads are then verified call by
    /// call, outside the timed calls).
    #[arg(long, value_enum, default_value = "distinct")]
    pub buffers: BufferUse,
    /// I/Os in flight in the io_uring modes (1: one at a time, like pread,
    /// the like-for-like baseline; 1 to 4096). Each call's latency is its
    /// I/O's submission to completion; a pass's transfer time is the time
    /// any of its I/Os was in flight.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub queue_depth: u32,
}

/// Modes that cannot run here, with the reason.
pub type Skipped = Vec<(Mode, String)>;

#[derive(Debug)]
pub struct Plan {
    pub config: Config,
    pub skipped: Skipped,
    /// Things the user should know (file created, reused ...).
    pub notes: Vec<String>,
}

fn input(msg: impl Into<String>) -> RunError {
    RunError::Input(msg.into())
}

fn mib(n: u64) -> String {
    if n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
}

/// `stop` ends the making of a test file early (Ctrl-C).
pub fn plan(args: &Args, stop: &AtomicBool) -> Result<Plan, RunError> {
    check_numbers(args)?;
    if let Some(size) = args.size {
        // Before anything is written: a pass holds all its buffers at once.
        resources::check_memory(size, resources::available_memory()).map_err(input)?;
    }
    let mut notes = Vec::new();
    let dir = args.dir.clone().unwrap_or_else(datafile::default_dir);
    let (file, size, seed, write_to) = match args.direction {
        Direction::Read => {
            let (file, size, seed) = read_source(args, &dir, &mut notes, stop)?;
            (file, size, seed, Vec::new())
        }
        Direction::Write => {
            let (dir, dest) = write_target(args, &dir)?;
            (dir, args.size.unwrap_or(DEFAULT_SIZE), None, dest)
        }
    };
    let facts = Facts::gather(&args.heap, &file);
    let (modes, skipped) = choose_modes(args, &facts)?;
    let direct_align = facts.o_direct.clone().unwrap_or(0);
    if let Some(note) = buffered_tail_note(&modes, size, args.chunk, direct_align) {
        notes.push(note);
    }
    if args.size.is_none() {
        resources::check_memory(size, resources::available_memory()).map_err(input)?;
    }
    resources::check_fds(&modes, size.div_ceil(args.chunk), resources::fd_limit())
        .map_err(input)?;
    let calls = size.div_ceil(args.chunk);
    if let Some(m) = modes.iter().find(|m| m.uring())
        && args.buffers == BufferUse::Distinct
        && calls > MAX_REGISTERED_BUFFERS
    {
        return Err(input(format!(
            "mode {m} registers each of a pass's {calls} buffers with io_uring, which takes at most {MAX_REGISTERED_BUFFERS}: use a larger --chunk or --buffers reuse"
        )));
    }
    if write_to.len() == 1 && modes.len() > 1 {
        return Err(input(
            "--file with --direction write names one destination: give exactly one --mode",
        ));
    }
    let write_to = write_to.into_iter().map(|p| (modes[0], p)).collect();
    Ok(Plan {
        config: Config {
            modes,
            direction: args.direction,
            file,
            write_to,
            size,
            chunk: args.chunk,
            iterations: args.iterations,
            heap: args.heap.clone(),
            cache: args.cache,
            verify: args.verify,
            force: args.force,
            buffers: args.buffers,
            queue_depth: args.queue_depth,
            seed,
            direct_align,
        },
        skipped,
        notes,
    })
}

fn check_numbers(args: &Args) -> Result<(), RunError> {
    if args.chunk == 0 {
        return Err(input("--chunk must be greater than 0"));
    }
    if args.size == Some(0) {
        return Err(input("--size must be greater than 0"));
    }
    if args.iterations == 0 {
        return Err(input("--iterations must be at least 1"));
    }
    if !(1..=MAX_QUEUE_DEPTH).contains(&args.queue_depth) {
        return Err(input(format!(
            "--queue-depth must be between 1 and {MAX_QUEUE_DEPTH}"
        )));
    }
    Ok(())
}

/// Write passes: the directory the destinations go to, and the one
/// destination named with --file (checked: a regular file dmaprof made,
/// or --force).
fn write_target(args: &Args, dir: &std::path::Path) -> Result<(PathBuf, Vec<PathBuf>), RunError> {
    let Some(f) = &args.file else {
        std::fs::create_dir_all(dir).map_err(|e| input(format!("--dir {}: {e}", dir.display())))?;
        return Ok((dir.to_path_buf(), Vec::new()));
    };
    if f.is_dir() {
        return Err(input(format!("--file {} is a directory", f.display())));
    }
    let parent = f
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(input(format!(
            "--file {}: directory {} does not exist",
            f.display(),
            parent.display()
        )));
    }
    if let Ok(meta) = std::fs::metadata(f)
        && !meta.is_file()
    {
        return Err(input(format!(
            "--file {} is not a regular file (a device, FIFO or socket); dmaprof writes only regular files, even with --force",
            f.display()
        )));
    }
    if f.exists() && datafile::owner_seed(f).is_none() && !args.force {
        return Err(input(format!(
            "--file {} exists and was not created by dmaprof (use --force to overwrite it)",
            f.display()
        )));
    }
    Ok((parent.to_path_buf(), vec![f.clone()]))
}

/// The modes asked for (or every mode of the direction), each checked
/// against this machine: an explicit mode that cannot run is an error, one
/// of `all` is skipped with the reason.
fn choose_modes(args: &Args, facts: &Facts) -> Result<(Vec<Mode>, Skipped), RunError> {
    let explicit = !(args.modes.is_empty() || args.modes.iter().any(|m| m == "all"));
    let wanted: Vec<Mode> = if explicit {
        args.modes
            .iter()
            .map(|name| {
                Mode::parse(name).ok_or_else(|| {
                    let names: Vec<&str> = ALL_MODES.iter().map(|m| m.name()).collect();
                    input(format!(
                        "unknown mode `{name}` (modes: all, {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?
    } else {
        ALL_MODES
            .into_iter()
            .filter(|m| m.directions().contains(&args.direction))
            .collect()
    };
    let mut modes = Vec::new();
    let mut skipped = Vec::new();
    for mode in wanted {
        if modes.contains(&mode) {
            continue;
        }
        let check = facts
            .check(mode, args.direction)
            .and_then(|()| aligned_for(mode, args.chunk, facts));
        match check {
            Ok(()) => modes.push(mode),
            Err(why) if explicit => return Err(input(format!("mode {mode}: {why}"))),
            Err(why) => skipped.push((mode, why)),
        }
    }
    if modes.is_empty() {
        return Err(input("no mode can run here (see `dmaprof doctor`)"));
    }
    Ok((modes, skipped))
}

/// Direct modes move aligned chunks: the file's direct I/O alignment
/// (STATX_DIOALIGN) must divide --chunk. Only the last call may be shorter
/// and unaligned; it is moved buffered (`buffered_tail_note`).
fn aligned_for(mode: Mode, chunk: u64, facts: &Facts) -> Result<(), String> {
    match &facts.o_direct {
        Ok(align) if mode.direct() && !chunk.is_multiple_of(*align) => Err(format!(
            "--chunk {chunk} is not a multiple of {align}, the direct I/O alignment of this file"
        )),
        _ => Ok(()),
    }
}

/// Direct I/O cannot move a length that is not a multiple of the alignment,
/// so a run whose size leaves an unaligned last call moves that tail
/// buffered, as any user of these paths must; the run says so.
fn buffered_tail_note(modes: &[Mode], size: u64, chunk: u64, align: u64) -> Option<String> {
    let tail = size % chunk;
    let direct: Vec<&str> = modes
        .iter()
        .filter(|m| m.direct())
        .map(|m| m.name())
        .collect();
    (align > 0 && !tail.is_multiple_of(align) && !direct.is_empty()).then(|| {
        format!(
            "{}: the last call moves the unaligned {tail}-byte tail buffered (direct I/O needs multiples of {align} bytes here)",
            direct.join(", ")
        )
    })
}

/// The read source: the user's file, checked, or dmaprof's own test file
/// (made once, reused while it is dmaprof's and the right size).
fn read_source(
    args: &Args,
    dir: &std::path::Path,
    notes: &mut Vec<String>,
    stop: &AtomicBool,
) -> Result<(PathBuf, u64, Option<u64>), RunError> {
    match &args.file {
        Some(f) => {
            let meta =
                std::fs::metadata(f).map_err(|e| input(format!("--file {}: {e}", f.display())))?;
            if meta.is_dir() {
                return Err(input(format!(
                    "--file {} is a directory, not a file",
                    f.display()
                )));
            }
            if !meta.is_file() {
                return Err(input(format!(
                    "--file {} is not a regular file",
                    f.display()
                )));
            }
            std::fs::File::open(f).map_err(|e| input(format!("--file {}: {e}", f.display())))?;
            let len = meta.len();
            if len == 0 {
                return Err(input(format!("--file {} is empty", f.display())));
            }
            let size = args.size.unwrap_or(len);
            if size > len {
                return Err(input(format!(
                    "--size {} is larger than {} ({})",
                    mib(size),
                    f.display(),
                    mib(len)
                )));
            }
            let seed = datafile::owner_seed(f);
            if seed.is_none() && args.verify {
                notes.push(format!(
                    "{} is not a dmaprof test file: reads are verified against the file read again after each pass",
                    f.display()
                ));
            }
            Ok((f.clone(), size, seed))
        }
        None => {
            let size = args.size.unwrap_or(DEFAULT_SIZE);
            let path = dir.join(format!("dmaprof-data-{}.bin", size_label(size)));
            if !datafile::is_pattern_file(&path, size, datafile::DEFAULT_SEED) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| input(format!("--dir {}: {e}", dir.display())))?;
                resources::check_space(dir, size).map_err(input)?;
            }
            let created = datafile::ensure_pattern_file(&path, size, datafile::DEFAULT_SEED, stop)
                .map_err(|e| input(format!("test file {}: {e}", path.display())))?;
            notes.push(format!(
                "{} test file {} ({})",
                if created { "created" } else { "reusing" },
                path.display(),
                mib(size)
            ));
            Ok((path, size, Some(datafile::DEFAULT_SEED)))
        }
    }
}

/// "256M" for whole MiB, else the byte count: names dmaprof's test files.
fn size_label(size: u64) -> String {
    if size.is_multiple_of(1 << 20) {
        format!("{}M", size >> 20)
    } else {
        size.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `--help` shows and the value the planner uses are one.
    #[test]
    fn default_chunk_text_is_the_default_chunk() {
        assert_eq!(parse_size(DEFAULT_CHUNK_TEXT), Ok(DEFAULT_CHUNK));
    }
}
