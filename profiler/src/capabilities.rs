//! Which modes this machine can run, and why not. `dmaprof doctor` and
//! `dmaprof run --mode all` use these same checks.
use std::path::Path;

use crate::{
    dma_buf::{self, RwFileSupport},
    workload::mode::{BufferKind, Direction, Mode},
};

/// Direct I/O's alignment where statx does not report the file's own
/// (STATX_DIOALIGN, Linux 6.1+): 4 KiB satisfies every logical block size
/// up to 4 KiB.
pub const DIRECT_ALIGN_UNREPORTED: u64 = 4096;

/// Facts gathered once and shared by every mode's check.
#[derive(Debug, Clone)]
pub struct Facts {
    pub heap: String,
    pub heap_present: bool,
    pub udmabuf: bool,
    pub rw_file: RwFileSupport,
    pub rw_file_detail: String,
    /// Whether O_DIRECT works on the file (or its directory): the alignment
    /// of offsets and lengths it needs there, or why it does not work.
    pub o_direct: Result<u64, String>,
    /// Whether io_uring with registered buffers works, or why not (tried).
    pub io_uring: Result<(), String>,
    /// Whether copy_file_range(2) moves data into a heap dma-buf (v4), or
    /// why not (tried with one page).
    pub cfr_heap: Result<(), String>,
    /// The same into a udmabuf.
    pub cfr_udmabuf: Result<(), String>,
}

impl Facts {
    /// `path` is the data file (or, for writes, the directory it goes to).
    pub fn gather(heap: &str, path: &Path) -> Facts {
        let heap_path = dma_buf::heap_path(heap);
        let heap_present = heap_path.exists();
        let (rw_file, rw_file_detail) = if heap_present {
            dma_buf::probe_rw_file(&heap_path).unwrap_or_else(|e| (RwFileSupport::Unknown, e))
        } else {
            (
                RwFileSupport::Unknown,
                format!("no dma-heap {}", heap_path.display()),
            )
        };
        let udmabuf = Path::new(dma_buf::UDMABUF_DEV).exists();
        let cfr_heap = if heap_present {
            dma_buf::probe_copy_file_range(Some(&heap_path))
        } else {
            Err(format!("no dma-heap {}", heap_path.display()))
        };
        let cfr_udmabuf = if udmabuf {
            dma_buf::probe_copy_file_range(None)
        } else {
            Err(format!("no {}", dma_buf::UDMABUF_DEV))
        };
        Facts {
            heap: heap.to_string(),
            heap_present,
            udmabuf,
            rw_file,
            rw_file_detail,
            o_direct: crate::fsinfo::o_direct(path)
                .map(|d| d.align.unwrap_or(DIRECT_ALIGN_UNREPORTED)),
            io_uring: crate::workload::probe_io_uring(),
            cfr_heap,
            cfr_udmabuf,
        }
    }

    /// Ok, or the reason `mode` cannot run in `direction` here.
    pub fn check(&self, mode: Mode, direction: Direction) -> Result<(), String> {
        if !mode.directions().contains(&direction) {
            return Err(format!("{mode} does not do {direction}s"));
        }
        match mode.buffer() {
            BufferKind::Heap if !self.heap_present => {
                return Err(format!(
                    "no dma-heap {} (kernel without CONFIG_DMABUF_HEAPS_SYSTEM, or another --heap)",
                    dma_buf::heap_path(&self.heap).display()
                ));
            }
            BufferKind::Udmabuf if !self.udmabuf => {
                return Err(format!(
                    "no {} (kernel without CONFIG_UDMABUF)",
                    dma_buf::UDMABUF_DEV
                ));
            }
            _ => {}
        }
        if matches!(mode, Mode::RwFile | Mode::RwFileDirect)
            && self.rw_file != RwFileSupport::Supported
        {
            return Err(match self.rw_file {
                RwFileSupport::NotSupported => {
                    format!(
                        "kernel does not support DMA_BUF_IOCTL_RW_FILE (ENOTTY): {}",
                        self.rw_file_detail
                    )
                }
                RwFileSupport::NoExporterCallback => {
                    format!(
                        "heap `{}` has no rw_file callback: {}",
                        self.heap, self.rw_file_detail
                    )
                }
                _ => format!(
                    "DMA_BUF_IOCTL_RW_FILE support unknown: {}",
                    self.rw_file_detail
                ),
            });
        }
        if mode.copy_file_range() {
            let tried = match mode.buffer() {
                BufferKind::Udmabuf => &self.cfr_udmabuf,
                _ => &self.cfr_heap,
            };
            if let Err(why) = tried {
                return Err(format!(
                    "kernel does not copy_file_range into a dma-buf (v4): {why}"
                ));
            }
        }
        if mode.uring()
            && let Err(why) = &self.io_uring
        {
            return Err(format!(
                "io_uring with registered buffers does not work here: {why}"
            ));
        }
        if mode.direct()
            && let Err(why) = &self.o_direct
        {
            return Err(format!("O_DIRECT does not work here: {why}"));
        }
        Ok(())
    }
}
