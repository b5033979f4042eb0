//! The io_uring modes' pass: up to --queue-depth I/Os in flight, each one a
//! call of the pass. A call's time is its I/O's submission to the reaping
//! of its completion; the CPU and kernel counters between two reapings go
//! to the first call completed at the second (the others of that reaping
//! get none), so the pass's sums stay exact while single calls overlap. At depth 1 each call is one
//! io_uring_enter that submits and waits, pread's shape.
use std::{collections::VecDeque, fs::File, sync::atomic::Ordering, time::Instant};

use super::{
    BufferUse, CallRecord, KernelCall, Observer, PassCtx, RunError,
    buffers::Buffer,
    call_mode,
    check::ReadCheck,
    chunk_len,
    cputime::CpuMark,
    failed, fill_sources,
    mode::Direction,
    paths::uring::{Io, Ring},
};

/// An I/O queued or in flight.
struct Flight {
    call: usize,
    io: Io,
    /// Bytes already moved (a short completion is resubmitted for the rest).
    done: u64,
    start: Option<Instant>,
}

pub(super) fn transfer_all(
    ctx: &PassCtx,
    file: &File,
    bufs: &mut [Buffer],
    ring: &mut Ring,
    check: &mut ReadCheck,
    obs: &mut dyn Observer,
) -> Result<Vec<CallRecord>, RunError> {
    let (cfg, mode) = (ctx.cfg, ctx.mode);
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let count = cfg.size.div_ceil(cfg.chunk) as usize;
    let reuse = cfg.buffers == BufferUse::Reuse;
    // Reused buffers free for the next I/O; distinct: call i uses buffer i.
    let mut free: VecDeque<u16> = (0..bufs.len() as u16).collect();
    let mut flights: Vec<Flight> = Vec::new();
    let mut records: Vec<Option<CallRecord>> = Vec::with_capacity(count);
    let mut completions = Vec::new();
    let mut next = 0usize;
    let mut cpu_mark = CpuMark::now();
    let mut mark = Instant::now();
    let mut counters = ctx.kernel.and_then(|k| k.read());
    loop {
        // Fill the queue, unless stopping (what is in flight completes).
        while flights.len() < cfg.queue_depth as usize
            && next < count
            && !ctx.stop.load(Ordering::Relaxed)
        {
            let len = chunk_len(cfg, next as u64);
            let off = next as u64 * cfg.chunk;
            // An unaligned direct tail goes buffered, alone: O_DIRECT is
            // cleared only once nothing is in flight.
            if call_mode_changes(ctx, len) && !flights.is_empty() {
                break;
            }
            call_mode(cfg, mode, file, len)?;
            let index = if reuse {
                let Some(i) = free.pop_front() else { break };
                if cfg.direction == Direction::Write {
                    fill_sources(mode, off, std::slice::from_mut(&mut bufs[i as usize]))?;
                }
                i
            } else {
                next as u16
            };
            flights.push(Flight {
                call: next,
                io: Io {
                    index,
                    offset: off,
                    len,
                },
                done: 0,
                start: None,
            });
            records.push(None);
            next += 1;
        }
        if flights.is_empty() {
            break;
        }
        // Queue what is new; its clock starts at the submission.
        for f in flights.iter_mut().filter(|f| f.start.is_none()) {
            ring.queue(cfg.direction, file, f.io, f.done, f.call as u64)
                .map_err(|e| failed(mode, "queueing an io_uring I/O", e))?;
        }
        let submitted = Instant::now();
        for f in flights.iter_mut().filter(|f| f.start.is_none()) {
            f.start = Some(submitted);
        }
        completions.clear();
        ring.submit_and_wait(&mut completions)
            .map_err(|e| failed(mode, "io_uring_enter", e))?;
        let reaped = Instant::now();
        let cpu_now = CpuMark::now();
        let cpu = cpu_now.since(&cpu_mark);
        cpu_mark = cpu_now;
        let after = ctx.kernel.and_then(|k| k.read());
        let wall_between = (reaped - mark).as_nanos() as u64;
        mark = reaped;
        let mut kernel = match (&counters, &after) {
            (Some(b), Some(a)) => Some(KernelCall::between(b, a, wall_between)),
            _ => None,
        };
        counters = after;
        let probed = kernel.is_some();
        let mut ended = Vec::new();
        for &(tag, res) in &completions {
            let at = flights
                .iter()
                .position(|f| f.call as u64 == tag)
                .ok_or_else(|| failed(mode, "io_uring", format!("unknown completion {tag}")))?;
            let f = &mut flights[at];
            if res < 0 {
                let e = std::io::Error::from_raw_os_error(-res);
                return Err(failed(
                    mode,
                    &format!("call {} at file offset {}", f.call, f.io.offset),
                    e,
                ));
            }
            if res == 0 {
                return Err(failed(
                    mode,
                    &format!("call {} at file offset {}", f.call, f.io.offset),
                    format!(
                        "file ended at offset {} ({} of {} bytes moved)",
                        f.io.offset + f.done,
                        f.done,
                        f.io.len
                    ),
                ));
            }
            f.done += res as u64;
            if f.done < f.io.len {
                // Short: the rest goes again, the call's clock running.
                ring.queue(cfg.direction, file, f.io, f.done, tag)
                    .map_err(|e| failed(mode, "queueing an io_uring I/O", e))?;
                continue;
            }
            ended.push(flights.swap_remove(at));
        }
        let mut cpu = Some(cpu);
        for f in ended {
            check
                .call_ended(&mut bufs[f.io.index as usize], f.io.offset, f.io.len)
                .map_err(|e| failed(mode, "verification", format!("call {}: {e}", f.call)))?;
            if reuse {
                free.push_back(f.io.index);
            }
            let start = f.start.expect("submitted");
            let rec = CallRecord {
                mode,
                direction: cfg.direction,
                iteration: ctx.iteration,
                index: f.call as u32,
                file_offset: f.io.offset,
                bytes: f.io.len,
                start_ns: (start - ctx.epoch).as_nanos() as u64,
                wall_ns: (reaped - start).as_nanos() as u64,
                cpu: cpu.take().unwrap_or_default(),
                tid,
                kernel: kernel.take().or(probed.then(KernelCall::default)),
                buffers: cfg.buffers,
            };
            obs.on_call(&rec);
            records[f.call] = Some(rec);
        }
    }
    // Calls end out of order; the pass lists them in file order, up to the
    // first one not made (a stop).
    Ok(records.into_iter().map_while(|r| r).collect())
}

/// Whether the call of `len` bytes is an unaligned direct tail.
fn call_mode_changes(ctx: &PassCtx, len: u64) -> bool {
    ctx.cfg.direct_align != 0 && !len.is_multiple_of(ctx.cfg.direct_align)
}
