//! The I/O paths dmaprof drives. Mode names are part of the CSV/JSON contract.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::mechanism::Mechanism;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// file -> buffer ("restore", model loading)
    Read,
    /// buffer -> file ("save", snapshots)
    Write,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Read => "read",
            Direction::Write => "write",
        })
    }
}

/// Where the data lands (or comes from) in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferKind {
    /// Anonymous memory, page-aligned, touched at allocation.
    Anon,
    /// A dma-buf from a dma-heap.
    Heap,
    /// A memfd wrapped by udmabuf.
    Udmabuf,
}

/// One I/O path. The names are the modes' names on the command line and in exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    #[serde(rename = "pread")]
    Pread,
    #[serde(rename = "pread-direct")]
    PreadDirect,
    #[serde(rename = "dmabuf-read")]
    DmabufRead,
    #[serde(rename = "rw-file")]
    RwFile,
    #[serde(rename = "rw-file-direct")]
    RwFileDirect,
    #[serde(rename = "udmabuf-read")]
    UdmabufRead,
    #[serde(rename = "udmabuf-direct-read")]
    UdmabufDirectRead,
    #[serde(rename = "udmabuf-sendfile")]
    UdmabufSendfile,
    #[serde(rename = "udmabuf-direct-sendfile")]
    UdmabufDirectSendfile,
    #[serde(rename = "pwrite")]
    Pwrite,
    #[serde(rename = "pwrite-direct")]
    PwriteDirect,
    #[serde(rename = "dmabuf-write")]
    DmabufWrite,
    #[serde(rename = "uring-direct")]
    UringDirect,
    #[serde(rename = "udmabuf-uring-direct")]
    UdmabufUringDirect,
    /// copy_file_range(2) between the file and a dma-heap dma-buf (v4).
    #[serde(rename = "cfr")]
    Cfr,
    #[serde(rename = "cfr-direct")]
    CfrDirect,
    /// copy_file_range(2) between the file and a udmabuf (v4).
    #[serde(rename = "udmabuf-cfr")]
    UdmabufCfr,
    #[serde(rename = "udmabuf-cfr-direct")]
    UdmabufCfrDirect,
}

pub const ALL_MODES: [Mode; 18] = [
    Mode::Pread,
    Mode::PreadDirect,
    Mode::DmabufRead,
    Mode::RwFile,
    Mode::RwFileDirect,
    Mode::UdmabufRead,
    Mode::UdmabufDirectRead,
    Mode::UdmabufSendfile,
    Mode::UdmabufDirectSendfile,
    Mode::Pwrite,
    Mode::PwriteDirect,
    Mode::DmabufWrite,
    Mode::UringDirect,
    Mode::UdmabufUringDirect,
    Mode::Cfr,
    Mode::CfrDirect,
    Mode::UdmabufCfr,
    Mode::UdmabufCfrDirect,
];

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pread => "pread",
            Mode::PreadDirect => "pread-direct",
            Mode::DmabufRead => "dmabuf-read",
            Mode::RwFile => "rw-file",
            Mode::RwFileDirect => "rw-file-direct",
            Mode::UdmabufRead => "udmabuf-read",
            Mode::UdmabufDirectRead => "udmabuf-direct-read",
            Mode::UdmabufSendfile => "udmabuf-sendfile",
            Mode::UdmabufDirectSendfile => "udmabuf-direct-sendfile",
            Mode::Pwrite => "pwrite",
            Mode::PwriteDirect => "pwrite-direct",
            Mode::DmabufWrite => "dmabuf-write",
            Mode::UringDirect => "uring-direct",
            Mode::UdmabufUringDirect => "udmabuf-uring-direct",
            Mode::Cfr => "cfr",
            Mode::CfrDirect => "cfr-direct",
            Mode::UdmabufCfr => "udmabuf-cfr",
            Mode::UdmabufCfrDirect => "udmabuf-cfr-direct",
        }
    }

    pub fn parse(name: &str) -> Option<Mode> {
        ALL_MODES.into_iter().find(|m| m.name() == name)
    }

    /// The directions a mode supports. `rw-file*` do both (READ and WRITE
    /// ops), so do the io_uring modes (READ_FIXED and WRITE_FIXED) and the
    /// copy_file_range ones (file -> buffer and buffer -> file).
    pub fn directions(self) -> &'static [Direction] {
        match self {
            Mode::RwFile
            | Mode::RwFileDirect
            | Mode::UringDirect
            | Mode::UdmabufUringDirect
            | Mode::Cfr
            | Mode::CfrDirect
            | Mode::UdmabufCfr
            | Mode::UdmabufCfrDirect => &[Direction::Read, Direction::Write],
            Mode::Pwrite | Mode::PwriteDirect | Mode::DmabufWrite => &[Direction::Write],
            _ => &[Direction::Read],
        }
    }

    /// Whether the file is accessed with direct I/O (O_DIRECT or RW_FLAGS_DIRECT).
    pub fn direct(self) -> bool {
        matches!(
            self,
            Mode::PreadDirect
                | Mode::RwFileDirect
                | Mode::UdmabufDirectRead
                | Mode::UdmabufDirectSendfile
                | Mode::PwriteDirect
                | Mode::UringDirect
                | Mode::UdmabufUringDirect
                | Mode::CfrDirect
                | Mode::UdmabufCfrDirect
        )
    }

    /// Through copy_file_range(2) into or out of a dma-buf (v4).
    pub fn copy_file_range(self) -> bool {
        self.mechanism() == Mechanism::CopyFileRange
    }

    /// Through io_uring with registered buffers, up to --queue-depth in flight.
    pub fn uring(self) -> bool {
        matches!(self, Mode::UringDirect | Mode::UdmabufUringDirect)
    }

    /// The same path through the page cache (a direct mode's buffered twin;
    /// the io_uring modes' is themselves on an fd without O_DIRECT).
    pub fn buffered(self) -> Mode {
        match self {
            Mode::PreadDirect => Mode::Pread,
            Mode::RwFileDirect => Mode::RwFile,
            Mode::UdmabufDirectRead => Mode::UdmabufRead,
            Mode::UdmabufDirectSendfile => Mode::UdmabufSendfile,
            Mode::PwriteDirect => Mode::Pwrite,
            Mode::CfrDirect => Mode::Cfr,
            Mode::UdmabufCfrDirect => Mode::UdmabufCfr,
            other => other,
        }
    }

    /// Whether the fd itself is opened with O_DIRECT (RW_FILE asks per call instead).
    pub fn opens_o_direct(self) -> bool {
        self.direct() && self != Mode::RwFileDirect
    }

    pub fn buffer(self) -> BufferKind {
        match self {
            Mode::Pread
            | Mode::PreadDirect
            | Mode::Pwrite
            | Mode::PwriteDirect
            | Mode::UringDirect => BufferKind::Anon,
            Mode::DmabufRead
            | Mode::DmabufWrite
            | Mode::RwFile
            | Mode::RwFileDirect
            | Mode::Cfr
            | Mode::CfrDirect => BufferKind::Heap,
            Mode::UdmabufRead
            | Mode::UdmabufDirectRead
            | Mode::UdmabufSendfile
            | Mode::UdmabufDirectSendfile
            | Mode::UdmabufUringDirect
            | Mode::UdmabufCfr
            | Mode::UdmabufCfrDirect => BufferKind::Udmabuf,
        }
    }
}

impl Mode {
    /// The kernel interface its calls go through.
    pub fn mechanism(self) -> Mechanism {
        match self {
            Mode::Pread | Mode::PreadDirect | Mode::UdmabufRead | Mode::UdmabufDirectRead => {
                Mechanism::Pread
            }
            Mode::Pwrite | Mode::PwriteDirect => Mechanism::Pwrite,
            Mode::DmabufRead => Mechanism::MmapRead,
            Mode::DmabufWrite => Mechanism::MmapWrite,
            Mode::RwFile | Mode::RwFileDirect => Mechanism::RwFileIoctl,
            Mode::UdmabufSendfile | Mode::UdmabufDirectSendfile => Mechanism::Sendfile,
            Mode::UringDirect | Mode::UdmabufUringDirect => Mechanism::IoUring,
            Mode::Cfr | Mode::CfrDirect | Mode::UdmabufCfr | Mode::UdmabufCfrDirect => {
                Mechanism::CopyFileRange
            }
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses "4096", "4K", "32M", "32MiB", "1G" (powers of two).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 4096, 4K, 32M, 1G)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use K, M, G)")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in ALL_MODES {
            assert_eq!(Mode::parse(m.name()), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
        }
        assert_eq!(Mode::parse("nope"), None);
    }

    #[test]
    fn every_direct_mode_has_a_buffered_twin_on_the_same_buffers() {
        for m in ALL_MODES {
            let b = m.buffered();
            // io_uring's is itself, on the fd with O_DIRECT cleared.
            assert!(!b.direct() || (b == m && m.uring()), "{m} -> {b}");
            assert_eq!(b.buffer(), m.buffer(), "{m} -> {b}");
            assert_eq!(b.directions(), m.directions(), "{m} -> {b}");
            if !m.direct() {
                assert_eq!(b, m);
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
