//! The memory each mode moves data into or out of: anonymous memory, a
//! dma-heap dma-buf, or a memfd exported through udmabuf.
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use super::mode::BufferKind;
use crate::{dma_buf, mapping::Mapping};

pub enum Buffer {
    Anon(Mapping),
    /// A dma-buf and, for modes that touch it with the CPU, its mapping.
    Heap {
        dmabuf: OwnedFd,
        map: Option<Mapping>,
        len: usize,
    },
    /// The memfd (whose mapping the CPU paths use), its dma-buf, the mapping.
    Udmabuf {
        memfd: File,
        dmabuf: OwnedFd,
        map: Mapping,
    },
}

impl Buffer {
    /// Allocates one buffer the way a real user of the path would; this is
    /// what the "alloc" phase times.
    pub fn alloc(
        kind: BufferKind,
        len: u64,
        heap: Option<&File>,
        map_heap: bool,
    ) -> io::Result<Buffer> {
        let len_usize = usize::try_from(len).map_err(|_| io::Error::other("buffer too large"))?;
        match kind {
            BufferKind::Anon => Ok(Buffer::Anon(Mapping::anonymous(len_usize)?)),
            BufferKind::Heap => {
                let heap = heap.ok_or_else(|| io::Error::other("no dma-heap opened"))?;
                let dmabuf = dma_buf::heap_alloc(heap, len)?;
                let map = if map_heap {
                    Some(Mapping::shared(&dmabuf, len_usize)?)
                } else {
                    None
                };
                Ok(Buffer::Heap {
                    dmabuf,
                    map,
                    len: len_usize,
                })
            }
            BufferKind::Udmabuf => {
                let memfd = dma_buf::sealed_memfd(len)?;
                let dmabuf = dma_buf::udmabuf_create(&memfd, len)?;
                let map = Mapping::shared(&memfd, len_usize)?;
                Ok(Buffer::Udmabuf { memfd, dmabuf, map })
            }
        }
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Buffer::Anon(m) | Buffer::Udmabuf { map: m, .. } => m.len() as u64,
            Buffer::Heap { len, .. } => *len as u64,
        }
    }

    /// The dma-buf fd (a heap's or a udmabuf's), for RW_FILE and copy_file_range.
    pub fn dmabuf(&self) -> Option<&OwnedFd> {
        match self {
            Buffer::Heap { dmabuf, .. } | Buffer::Udmabuf { dmabuf, .. } => Some(dmabuf),
            Buffer::Anon(_) => None,
        }
    }

    /// The memfd, for sendfile.
    pub fn memfd(&self) -> Option<&File> {
        match self {
            Buffer::Udmabuf { memfd, .. } => Some(memfd),
            _ => None,
        }
    }

    /// Raw pointer and length of the CPU mapping, for read()/write() calls
    /// made while the caller holds the dma-buf SYNC bracket.
    pub fn cpu_bytes(&mut self) -> io::Result<&mut [u8]> {
        match self {
            Buffer::Anon(m) | Buffer::Udmabuf { map: m, .. } => Ok(m.as_mut_slice()),
            Buffer::Heap { map: Some(m), .. } => Ok(m.as_mut_slice()),
            Buffer::Heap { map: None, .. } => Err(io::Error::other("dma-buf not mapped")),
        }
    }

    /// Runs `f` over the buffer's bytes with CPU access set up correctly
    /// (mapping a dma-buf on demand, SYNC_START/SYNC_END around it). Used
    /// outside the timed region: filling write sources and verifying reads.
    pub fn with_bytes<R>(&mut self, write: bool, f: impl FnOnce(&mut [u8]) -> R) -> io::Result<R> {
        match self {
            Buffer::Anon(m) | Buffer::Udmabuf { map: m, .. } => Ok(f(m.as_mut_slice())),
            Buffer::Heap { dmabuf, map, len } => {
                if map.is_none() {
                    *map = Some(Mapping::shared(dmabuf, *len)?);
                }
                let m = map.as_mut().expect("mapped above");
                let fd = dmabuf.as_raw_fd();
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                dma_buf::with_cpu_access(&borrowed, write, || f(m.as_mut_slice()))
            }
        }
    }
}
