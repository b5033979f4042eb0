//! The ring buffer's per-call events as `dmaprof trace` reports them: a name
//! per kind of call, counts per kind, and the agent's own cost.
use std::{borrow::Cow, collections::BTreeMap};

use profiler_common::call::{
    CallEvent, EVENT_CFR_HANDLER, EVENT_COPY_RANGE, EVENT_EXPORTER, EVENT_IOCTL, EVENT_PREAD,
    EVENT_URING, FileCallEvent, FileId,
};
use serde::Serialize;

use super::files::FileView;
use crate::mechanism::Mechanism;

use profiler_common::uapi::{
    DMA_BUF_IOCTL_RW_FILE, DMA_BUF_IOCTL_SYNC, RW_FLAGS_DIRECT, RW_FLAGS_OP_MASK, RW_FLAGS_READ,
    RW_FLAGS_WRITE,
};

/// The short kind column of the CSV.
pub fn kind(e: &CallEvent) -> &'static str {
    match e.kind {
        EVENT_IOCTL => "ioctl",
        EVENT_EXPORTER => "rw_file",
        EVENT_PREAD => "pread",
        EVENT_COPY_RANGE => "copy_range",
        EVENT_CFR_HANDLER => "cfr_dmabuf",
        EVENT_URING => "io_uring",
        _ => "unknown",
    }
}

/// The kernel interface of the call.
pub fn mechanism(e: &CallEvent) -> Mechanism {
    match (e.kind, e.what) {
        (EVENT_IOCTL, DMA_BUF_IOCTL_RW_FILE) | (EVENT_EXPORTER, _) => Mechanism::RwFileIoctl,
        (EVENT_PREAD, _) => Mechanism::Pread,
        (EVENT_COPY_RANGE | EVENT_CFR_HANDLER, _) => Mechanism::CopyFileRange,
        (EVENT_URING, _) => Mechanism::IoUring,
        _ => Mechanism::Ioctl,
    }
}

/// RW_FILE flags as text: `READ|DIRECT`, `WRITE`, unknown bits in hex.
pub fn rw_flags(flags: u32) -> String {
    let mut parts = vec![match flags & RW_FLAGS_OP_MASK {
        RW_FLAGS_READ => "READ".to_string(),
        RW_FLAGS_WRITE => "WRITE".to_string(),
        op => format!("op {op}"),
    }];
    if flags & RW_FLAGS_DIRECT != 0 {
        parts.push("DIRECT".into());
    }
    let rest = flags & !(RW_FLAGS_OP_MASK | RW_FLAGS_DIRECT);
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// An io_uring opcode's name (the kernel's `io_uring_get_opcode`), for
/// the opcodes of file I/O; others by number.
pub fn uring_op(op: u32) -> Cow<'static, str> {
    match op {
        0 => "NOP".into(),
        1 => "READV".into(),
        2 => "WRITEV".into(),
        3 => "FSYNC".into(),
        4 => "READ_FIXED".into(),
        5 => "WRITE_FIXED".into(),
        22 => "READ".into(),
        23 => "WRITE".into(),
        op => format!("op {op}").into(),
    }
}

/// A negative return's errno name (`ENOTTY`), or "" for a success.
pub fn errno_name(ret: i64) -> String {
    match i32::try_from(-ret) {
        Ok(n) if ret < 0 => match nix::errno::Errno::from_raw(n) {
            nix::errno::Errno::UnknownErrno => format!("errno {n}"),
            e => format!("{e:?}"),
        },
        _ => String::new(),
    }
}

/// What a headless trace line adds after the numbers: an RW_FILE or
/// copy_file_range request decoded, its file and dma-buf, and the errno name
/// of a failure.
pub fn decoded(e: &CallEvent, file: Option<&FileView>) -> String {
    let mut s = String::new();
    if is_request(e) {
        let r = &e.rw;
        let flags = request_flags(e);
        s = format!(
            "{}fd={} file_offset={} buf_offset={} buf_len={}",
            if flags.is_empty() {
                " ".to_string()
            } else {
                format!(" {flags} ")
            },
            r.fd,
            r.file_offset,
            r.buf_offset,
            r.buf_len
        );
    }
    if let Some(f) = file {
        s.push_str(&format!(
            " file={} dev={}:{} ino={}",
            f.path, f.major, f.minor, f.ino
        ));
    }
    if let Some(b) = dma_buf(e) {
        s.push_str(&format!(" dma-buf {}", b.exporter));
        if !b.name.is_empty() {
            s.push_str(&format!(" name={}", b.name));
        }
        s.push_str(&format!(" size={} ino={}", b.size, b.ino));
    }
    if e.ret < 0 {
        s.push(' ');
        s.push_str(&errno_name(e.ret));
    }
    s
}

/// A call's dma-buf, as read at the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmaBufView {
    pub exporter: String,
    /// Its own name (DMA_BUF_SET_NAME), "" when unset.
    pub name: String,
    pub size: u64,
    pub ino: u64,
}

/// The dma-buf of a call; None for other calls or when nothing was read.
pub fn dma_buf(e: &CallEvent) -> Option<DmaBufView> {
    if !has_dma_buf(e) {
        return None;
    }
    let b = &e.buf;
    Some(DmaBufView {
        exporter: c_field(&b.exporter),
        name: c_field(&b.name),
        size: b.size,
        ino: b.ino,
    })
}

/// Whether the event carries a dma-buf (pread and io_uring events never
/// write theirs: it holds whatever the ring did).
pub fn has_dma_buf(e: &CallEvent) -> bool {
    !matches!(e.kind, EVENT_PREAD | EVENT_URING) && (e.buf.size != 0 || e.buf.ino != 0)
}

/// A NUL-terminated kernel string, kept to what a CSV field holds unquoted
/// and a headless line keeps as one token.
fn c_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != ',' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether the event is an RW_FILE request (the ioctl or its exporter call).
pub fn is_rw_file(e: &CallEvent) -> bool {
    mechanism(e) == Mechanism::RwFileIoctl
}

/// Whether the event carries a request in `rw`: RW_FILE, or a
/// copy_file_range (spelled as RW_FILE when one side is a dma-buf; between
/// regular files: the input's fd and offset, the output's offset in
/// `buf_offset`, no flags).
pub fn is_request(e: &CallEvent) -> bool {
    is_rw_file(e) || mechanism(e) == Mechanism::CopyFileRange
}

/// The request's flags decoded, "" for a copy_file_range between regular files.
pub fn request_flags(e: &CallEvent) -> String {
    if mechanism(e) == Mechanism::CopyFileRange && e.rw.flags == 0 {
        String::new()
    } else {
        rw_flags(e.rw.flags)
    }
}

/// Which way the call moved data: "read" (file -> memory), "write", or
/// "none" (a SYNC ioctl, a copy between regular files, other opcodes).
pub fn direction(e: &CallEvent) -> &'static str {
    let by_flags = |flags: u32| match flags & RW_FLAGS_OP_MASK {
        RW_FLAGS_READ => "read",
        RW_FLAGS_WRITE => "write",
        _ => "none",
    };
    match e.kind {
        EVENT_PREAD => "read",
        EVENT_URING => {
            let op = uring_op(e.what);
            if op.contains("READ") {
                "read"
            } else if op.contains("WRITE") {
                "write"
            } else {
                "none"
            }
        }
        _ if is_request(e) => by_flags(e.rw.flags),
        _ => "none",
    }
}

/// The row name in the dashboard: one row per kind of call.
pub fn name(e: &CallEvent) -> Cow<'static, str> {
    match (e.kind, e.what) {
        (EVENT_IOCTL, DMA_BUF_IOCTL_RW_FILE) => "ioctl RW_FILE".into(),
        (EVENT_IOCTL, DMA_BUF_IOCTL_SYNC) => "ioctl SYNC".into(),
        (EVENT_IOCTL, w) => format!("ioctl {w:#x}").into(),
        (EVENT_EXPORTER, _) => "rw_file (exporter)".into(),
        (EVENT_PREAD, _) => "pread".into(),
        (EVENT_COPY_RANGE, 0) => "copy_file_range".into(),
        (EVENT_COPY_RANGE, _) => "copy_file_range dma-buf".into(),
        (EVENT_CFR_HANDLER, _) => "copy_file_range (dma-buf handler)".into(),
        (EVENT_URING, op) => format!("io_uring {}", uring_op(op)).into(),
        _ => "unknown".into(),
    }
}

/// Bytes the call moved: what pread returned; for the exporter, its count
/// (the lab kernel's rw_file returns it, docs/rw-file.md) or, when it
/// returned 0 as the seed's v2 does for a full transfer, what was asked;
/// none for failed calls and ioctls.
pub fn bytes(e: &CallEvent) -> u64 {
    match e.kind {
        EVENT_PREAD | EVENT_COPY_RANGE | EVENT_CFR_HANDLER => e.ret.max(0) as u64,
        // Data opcodes' results are bytes; others' are not.
        EVENT_URING if uring_op(e.what).contains("READ") || uring_op(e.what).contains("WRITE") => {
            e.ret.max(0) as u64
        }
        EVENT_EXPORTER if e.ret > 0 => e.ret as u64,
        EVENT_EXPORTER if e.ret == 0 => e.len,
        _ => 0,
    }
}

pub const CSV_COLUMNS: &[&str] = &[
    "start_ns",
    "pid",
    "tid",
    "kind",
    "what",
    "bytes_asked",
    "ret",
    "duration_ns",
    "mechanism",
    "errno",
    "rw_flags",
    "rw_fd",
    "file_offset",
    "buf_offset",
    "buf_len",
    "dmabuf_exporter",
    "dmabuf_size",
    "dmabuf_ino",
    "file_path",
    "file_dev",
    "file_ino",
    "dmabuf_name",
];

pub fn csv_header(out: &mut impl std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))
}

/// One row: start in kernel monotonic ns; `what` is the ioctl command (hex),
/// the RW_FILE flags or the pread fd; then the mechanism, the errno name of
/// a failure, for RW_FILE and copy_file_range the request decoded, the
/// dma-buf and the file (empty for other calls). Integers through itoa: at
/// a million rows a second `write!`'s formatting machinery was most of the
/// agent's time per event.
pub fn csv_row(
    out: &mut impl std::io::Write,
    e: &CallEvent,
    file: Option<&FileView>,
) -> std::io::Result<()> {
    let mut n = itoa::Buffer::new();
    for v in [e.start_ns, e.tgid as u64, e.tid as u64] {
        out.write_all(n.format(v).as_bytes())?;
        out.write_all(b",")?;
    }
    out.write_all(kind(e).as_bytes())?;
    write!(out, ",{:#x},", e.what)?;
    out.write_all(n.format(e.len).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(n.format(e.ret).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(n.format(e.duration_ns).as_bytes())?;
    out.write_all(b",")?;
    out.write_all(mechanism(e).name().as_bytes())?;
    out.write_all(b",")?;
    out.write_all(errno_name(e.ret).as_bytes())?;
    if is_request(e) {
        // `|` joins the flags: no comma, no quoting needed.
        write!(out, ",{},", request_flags(e))?;
        out.write_all(n.format(e.rw.fd).as_bytes())?;
        for v in [e.rw.file_offset, e.rw.buf_offset, e.rw.buf_len] {
            out.write_all(b",")?;
            out.write_all(n.format(v).as_bytes())?;
        }
    } else {
        out.write_all(b",,,,,")?;
    }
    let buf = dma_buf(e);
    match &buf {
        Some(b) => {
            write!(out, ",{},", b.exporter)?;
            out.write_all(n.format(b.size).as_bytes())?;
            out.write_all(b",")?;
            out.write_all(n.format(b.ino).as_bytes())?;
        }
        None => out.write_all(b",,,")?,
    }
    match file {
        Some(f) => write!(out, ",{},{}:{},{}", f.path, f.major, f.minor, f.ino)?,
        None => out.write_all(b",,,")?,
    }
    match &buf {
        Some(b) => writeln!(out, ",{}", b.name),
        None => out.write_all(b",\n"),
    }
}

/// CPU time of this process so far (user, system), from getrusage.
pub fn own_cpu_s() -> (f64, f64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is a valid out-pointer.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// What a trace session saw and what it cost (`dmaprof trace --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceSummary {
    pub pid: Option<u32>,
    pub seconds: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub by_kind: BTreeMap<String, u64>,
    pub lost: super::session::Lost,
    /// CPU the agent (this process) used while tracing.
    pub agent_user_s: f64,
    pub agent_sys_s: f64,
    pub agent_cpu_per_million_events_s: Option<f64>,
    pub probes: Vec<super::session::Attached>,
    /// Each probe program's runs and run time (BPF run-time statistics;
    /// None when they could not be enabled).
    pub probe_costs: Option<Vec<super::session::ProgramCost>>,
    /// The probes' run time per traced call, ns, and as a share of the
    /// traced calls' own time, %.
    pub probe_ns_per_event: Option<f64>,
    pub probe_pct_of_call_time: Option<f64>,
    /// Sum of the traced calls' durations, ns.
    pub call_ns: u64,
    /// With `--profile`: every ioctl and pread event, kept for the
    /// profile's time line (the exporter's calls run inside an ioctl's).
    #[serde(skip)]
    pub kept: Option<Vec<CallEvent>>,
    /// The stack profile (`--profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::profile::Profile>,
}

impl TraceSummary {
    pub fn count(&mut self, e: &CallEvent) {
        self.events += 1;
        self.call_ns += e.duration_ns;
        // The exporter's and the handler's calls run inside an ioctl's or a
        // copy_file_range's; io_uring requests overlap at depth > 1 and run partly elsewhere:
        // not a span of the submitting thread's time line.
        if let Some(kept) = &mut self.kept
            && e.kind != EVENT_EXPORTER
            && e.kind != EVENT_CFR_HANDLER
            && e.kind != EVENT_URING
        {
            kept.push(*e);
        }
        // No allocation per event: the kind's entry exists after its first.
        match self.by_kind.get_mut(kind(e)) {
            Some(n) => *n += 1,
            None => {
                self.by_kind.insert(kind(e).to_string(), 1);
            }
        }
    }

    /// Closes the books: rates from the elapsed time and the CPU used since `cpu0`.
    pub fn finish(&mut self, seconds: f64, cpu0: (f64, f64)) {
        let (u, s) = own_cpu_s();
        self.seconds = seconds;
        self.events_per_s = self.events as f64 / seconds.max(1e-9);
        self.agent_user_s = u - cpu0.0;
        self.agent_sys_s = s - cpu0.1;
        self.agent_cpu_per_million_events_s = (self.events > 0)
            .then(|| (self.agent_user_s + self.agent_sys_s) / self.events as f64 * 1e6);
    }

    /// Closes the probes' books with their per-program costs.
    pub fn set_probe_costs(&mut self, costs: Option<Vec<super::session::ProgramCost>>) {
        let total: Option<u64> = costs.as_ref().map(|c| c.iter().map(|c| c.run_ns).sum());
        self.probe_ns_per_event = total.map(|ns| crate::metrics::per(ns, self.events));
        self.probe_pct_of_call_time = total
            .filter(|_| self.call_ns > 0)
            .map(|ns| crate::metrics::per(ns, self.call_ns) * 100.0);
        self.probe_costs = costs;
    }

    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let cpu = self.agent_user_s + self.agent_sys_s;
        format!(
            "{} events in {:.1} s ({:.0}/s{}{}); lost: {}; agent CPU {:.2} s ({:.0}% of a core{}){}",
            self.events,
            self.seconds,
            self.events_per_s,
            if kinds.is_empty() { "" } else { ": " },
            kinds.join(", "),
            self.lost,
            cpu,
            cpu / self.seconds.max(1e-9) * 100.0,
            match self.agent_cpu_per_million_events_s {
                Some(c) => format!(", {c:.2} s per million events"),
                None => String::new(),
            },
            match self.probe_ns_per_event {
                Some(ns) => format!("; probes {ns:.0} ns per event"),
                None => String::new(),
            }
        )
    }
}

/// The next event of the ring, its space handed back to the producers at once.
pub fn next_event(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> Option<Traced> {
    loop {
        let item = ring.next()?;
        if item.len() >= size_of::<FileCallEvent>() {
            // SAFETY: the kernel side wrote one FileCallEvent in this record.
            let e = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const FileCallEvent) };
            return Some(Traced {
                call: e.call,
                file: Some(e.file),
            });
        }
        if item.len() >= size_of::<CallEvent>() {
            // SAFETY: the kernel side wrote one CallEvent in this record.
            let call = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const CallEvent) };
            return Some(Traced { call, file: None });
        }
    }
}

/// A traced call and, for the calls that name one, the file read at the call.
pub struct Traced {
    pub call: CallEvent,
    pub file: Option<FileId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_every_column_and_names_follow_the_kind() {
        let e = CallEvent {
            kind: EVENT_PREAD,
            tgid: 7,
            tid: 8,
            what: 3,
            ret: 4096,
            start_ns: 10,
            duration_ns: 1500,
            len: 4096,
            rw: Default::default(),
            buf: Default::default(),
        };
        let mut out = Vec::new();
        csv_row(&mut out, &e, None).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert_eq!(row, "10,7,8,pread,0x3,4096,4096,1500,pread,,,,,,,,,,,,,\n");
        assert_eq!(row.trim().split(',').count(), CSV_COLUMNS.len());
        assert_eq!(name(&e), "pread");
        assert_eq!(bytes(&e), 4096);
        let ioctl = CallEvent {
            kind: EVENT_IOCTL,
            what: DMA_BUF_IOCTL_RW_FILE,
            ret: -25,
            ..e
        };
        assert_eq!(name(&ioctl), "ioctl RW_FILE");
        assert_eq!(bytes(&ioctl), 0);
        // An RW_FILE request, decoded; a failure named.
        let request = CallEvent {
            rw: profiler_common::uapi::RwFileArgs {
                flags: RW_FLAGS_READ | RW_FLAGS_DIRECT,
                fd: 5,
                file_offset: 1 << 20,
                buf_offset: 4096,
                buf_len: 8192,
            },
            ..ioctl
        };
        let mut out = Vec::new();
        let file = FileView {
            path: "/mnt/data.bin".into(),
            major: 7,
            minor: 0,
            ino: 12,
        };
        csv_row(&mut out, &request, Some(&file)).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert!(
            row.ends_with(
                ",rw_file-ioctl,ENOTTY,READ|DIRECT,5,1048576,4096,8192,,,,/mnt/data.bin,7:0,12,\n"
            ),
            "{row}"
        );
        assert_eq!(row.trim().split(',').count(), CSV_COLUMNS.len());
        assert_eq!(
            decoded(&request, Some(&file)),
            " READ|DIRECT fd=5 file_offset=1048576 buf_offset=4096 buf_len=8192 \
             file=/mnt/data.bin dev=7:0 ino=12 ENOTTY"
        );
        // A copy_file_range into a dma-buf reads as the same request.
        let copy = CallEvent {
            kind: EVENT_COPY_RANGE,
            ret: 8192,
            ..request
        };
        assert_eq!(mechanism(&copy), Mechanism::CopyFileRange);
        assert_eq!(name(&copy), "copy_file_range dma-buf");
        assert_eq!(bytes(&copy), 8192);
        assert!(decoded(&copy, None).starts_with(" READ|DIRECT fd=5 "));
        // The exporter's call carries its dma-buf.
        let mut exporter_name = [0u8; 16];
        exporter_name[..6].copy_from_slice(b"system");
        let call = CallEvent {
            kind: EVENT_EXPORTER,
            ret: 8192,
            buf: profiler_common::call::DmaBufId {
                size: 1 << 20,
                ino: 77,
                exporter: exporter_name,
                name: [0; 32],
            },
            ..request
        };
        let mut out = Vec::new();
        csv_row(&mut out, &call, None).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert!(row.ends_with(",8192,system,1048576,77,,,,\n"), "{row}");
        assert_eq!(row.trim().split(',').count(), CSV_COLUMNS.len());
        assert!(decoded(&call, None).ends_with(" dma-buf system size=1048576 ino=77"));
        assert_eq!(rw_flags(RW_FLAGS_WRITE | 0x100), "WRITE|0x100");
        assert_eq!(rw_flags(7), "op 7");
        assert_eq!(errno_name(-9), "EBADF");
        assert_eq!(errno_name(0), "");
        let mut s = TraceSummary::default();
        s.count(&e);
        s.count(&ioctl);
        s.count(&e);
        assert_eq!(s.events, 3);
        assert_eq!(s.by_kind["pread"], 2);
        assert_eq!(s.by_kind["ioctl"], 1);

        // The exporter: the lab kernel's count, the seed's 0 for "all of
        // it", nothing for a failure.
        let exporter = |ret| CallEvent {
            kind: EVENT_EXPORTER,
            ret,
            len: 1 << 20,
            ..e
        };
        assert_eq!(bytes(&exporter(4096)), 4096, "a short READ at EOF");
        assert_eq!(bytes(&exporter(0)), 1 << 20, "the seed's success");
        assert_eq!(bytes(&exporter(-16)), 0, "EBUSY moved nothing");
    }
}
