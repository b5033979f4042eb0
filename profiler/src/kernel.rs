//! Facts about the running kernel and our privileges.
use std::{ffi::CStr, io};

pub fn release() -> String {
    // SAFETY: uname fills a plain struct of NUL-terminated arrays.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    unsafe { CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Privileges {
    pub euid: u32,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_admin: bool,
}

impl Privileges {
    pub fn current() -> Privileges {
        let eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let has = |cap: u32| eff & (1u64 << cap) != 0;
        Privileges {
            // SAFETY: geteuid cannot fail.
            euid: unsafe { libc::geteuid() },
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
            cap_sys_admin: has(CAP_SYS_ADMIN),
        }
    }

    /// Loading and attaching tracing programs needs CAP_BPF + CAP_PERFMON
    /// (or CAP_SYS_ADMIN on older kernels).
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    /// Ok, or "`what` needs root (or CAP_BPF + CAP_PERFMON)".
    pub fn require_tracing(&self, what: &str) -> Result<(), String> {
        if self.can_trace() {
            Ok(())
        } else {
            Err(format!("{what} needs {TRACING_PRIVILEGES}"))
        }
    }
}

/// What loading and attaching tracing programs takes, in every message that says so.
pub const TRACING_PRIVILEGES: &str = "root (or CAP_BPF + CAP_PERFMON)";

/// Loads the smallest valid program (socket filter: `r0 = 0; exit`) through
/// the raw bpf(2) syscall: the plainest answer to "is BPF usable here".
pub fn bpf_load_trivial() -> io::Result<()> {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    // mov64 r0, 0 ; exit
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: attr points to a valid, fully initialised bpf_attr prefix.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            size_of::<ProgLoad>() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a program fd we own.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it
/// (< 5.11). Failure is not fatal: newer kernels use memcg accounting.
pub fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain struct argument.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}
