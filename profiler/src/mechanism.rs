//! The kernel interface a call goes through, one name per mechanism, shared
//! by the workload's calls and the traced ones (the `mechanism` column of
//! the per-call and trace CSVs, and of the results' summaries).
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "pread")]
    Pread,
    #[serde(rename = "pwrite")]
    Pwrite,
    /// read(2)/write(2) against a CPU mapping of the buffer.
    #[serde(rename = "mmap-read")]
    MmapRead,
    #[serde(rename = "mmap-write")]
    MmapWrite,
    #[serde(rename = "sendfile")]
    Sendfile,
    /// DMA_BUF_IOCTL_RW_FILE (the seed's v2), and its exporter callback.
    #[serde(rename = "rw_file-ioctl")]
    RwFileIoctl,
    #[serde(rename = "copy_file_range")]
    CopyFileRange,
    #[serde(rename = "io_uring")]
    IoUring,
    /// Any other dma-buf ioctl (SYNC, ...).
    #[serde(rename = "ioctl")]
    Ioctl,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pread => "pread",
            Mechanism::Pwrite => "pwrite",
            Mechanism::MmapRead => "mmap-read",
            Mechanism::MmapWrite => "mmap-write",
            Mechanism::Sendfile => "sendfile",
            Mechanism::RwFileIoctl => "rw_file-ioctl",
            Mechanism::CopyFileRange => "copy_file_range",
            Mechanism::IoUring => "io_uring",
            Mechanism::Ioctl => "ioctl",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_ones() {
        for m in [
            Mechanism::Pread,
            Mechanism::Pwrite,
            Mechanism::MmapRead,
            Mechanism::MmapWrite,
            Mechanism::Sendfile,
            Mechanism::RwFileIoctl,
            Mechanism::CopyFileRange,
            Mechanism::IoUring,
            Mechanism::Ioctl,
        ] {
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
    }
}
