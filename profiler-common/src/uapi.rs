//! The kernel interfaces dmaprof drives, spelled once for both sides: the
//! seed patch's `DMA_BUF_IOCTL_RW_FILE` (struct, flags, number), the dma-buf
//! SYNC ioctl, dma-heap allocation and udmabuf creation. Numbers come from
//! the kernel headers and the seed patch, since libc does not carry them;
//! the tests pin them to the values the kernel computes.
use core::mem::size_of;

/// `struct dma_buf_rw_file` from the seed patch (32 bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RwFileArgs {
    pub flags: u32,
    pub fd: i32,
    pub file_offset: u64,
    pub buf_offset: u64,
    pub buf_len: u64,
}

pub const RW_FLAGS_OP_MASK: u32 = 0xff;
/// file -> dma-buf ("restore").
pub const RW_FLAGS_READ: u32 = 1;
/// dma-buf -> file ("save").
pub const RW_FLAGS_WRITE: u32 = 2;
/// O_DIRECT-style transfer, bypassing the page cache.
pub const RW_FLAGS_DIRECT: u32 = 1 << 31;

/// `_IOC(dir, type, nr, size)` = dir << 30 | size << 16 | type << 8 | nr.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
pub const IOC_WRITE: u32 = 1;
pub const IOC_READ: u32 = 2;

/// The ioctl "type" byte of every dma-buf command.
pub const DMA_BUF_BASE: u8 = b'b';
/// `_IOC_TYPE` of dma-buf ioctls, as the ioctl probes compare it.
pub const DMA_BUF_IOCTL_TYPE: u32 = DMA_BUF_BASE as u32;
/// `_IOW('b', 4, struct dma_buf_rw_file)`.
pub const DMA_BUF_IOCTL_RW_FILE: u32 = ioc(IOC_WRITE, DMA_BUF_BASE, 4, size_of::<RwFileArgs>());
/// `_IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: u32 = ioc(IOC_WRITE, DMA_BUF_BASE, 0, 8);
/// DMA_BUF_SET_NAME (`_B`, the 64-bit pointer form): the argument is a
/// pointer to a NUL-terminated name of at most 31 bytes.
pub const DMA_BUF_SET_NAME: u32 = ioc(IOC_WRITE, DMA_BUF_BASE, 1, 8);
pub const DMA_BUF_SYNC_READ: u64 = 1;
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
pub const DMA_BUF_SYNC_START: u64 = 0;
pub const DMA_BUF_SYNC_END: u64 = 4;

/// `struct dma_buf_import_sync_file`: a sync_file's fence added to the
/// buffer's reservation object, as a reader (DMA_BUF_SYNC_READ) or a writer
/// (DMA_BUF_SYNC_WRITE).
#[repr(C)]
#[derive(Debug, Default)]
pub struct DmaBufImportSyncFile {
    pub flags: u32,
    pub fd: i32,
}
/// `_IOW('b', 3, struct dma_buf_import_sync_file)`.
pub const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: u32 = ioc(
    IOC_WRITE,
    DMA_BUF_BASE,
    3,
    size_of::<DmaBufImportSyncFile>(),
);

/// The ioctl type byte of a command (`_IOC_TYPE`).
pub const fn ioc_type(cmd: u32) -> u8 {
    (cmd >> 8) as u8
}

/// `struct dma_heap_allocation_data`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct HeapAllocationData {
    pub len: u64,
    pub fd: u32,
    pub fd_flags: u32,
    pub heap_flags: u64,
}
/// `_IOWR('H', 0, struct dma_heap_allocation_data)`.
pub const DMA_HEAP_IOCTL_ALLOC: u32 = ioc(
    IOC_READ | IOC_WRITE,
    b'H',
    0,
    size_of::<HeapAllocationData>(),
);

/// `struct udmabuf_create`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct UdmabufCreate {
    pub memfd: u32,
    pub flags: u32,
    pub offset: u64,
    pub size: u64,
}
/// `_IOW('u', 0x42, struct udmabuf_create)`.
pub const UDMABUF_CREATE: u32 = ioc(IOC_WRITE, b'u', 0x42, size_of::<UdmabufCreate>());
pub const UDMABUF_FLAGS_CLOEXEC: u32 = 1;

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use super::*;

    #[test]
    fn layouts_and_numbers_match_the_kernel() {
        assert_eq!(size_of::<RwFileArgs>(), 32);
        assert_eq!(offset_of!(RwFileArgs, fd), 4);
        assert_eq!(offset_of!(RwFileArgs, file_offset), 8);
        assert_eq!(offset_of!(RwFileArgs, buf_offset), 16);
        assert_eq!(offset_of!(RwFileArgs, flags), 0);
        assert_eq!(offset_of!(RwFileArgs, buf_len), 24);
        assert_eq!(size_of::<HeapAllocationData>(), 24);
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        // What the kernel's _IOW/_IOWR macros give on x86-64 and arm64.
        assert_eq!(DMA_BUF_IOCTL_RW_FILE, 0x4020_6204);
        assert_eq!(DMA_BUF_IOCTL_SYNC, 0x4008_6200);
        assert_eq!(DMA_BUF_SET_NAME, 0x4008_6201);
        assert_eq!(DMA_BUF_IOCTL_IMPORT_SYNC_FILE, 0x4008_6203);
        assert_eq!(DMA_HEAP_IOCTL_ALLOC, 0xc018_4800);
        assert_eq!(UDMABUF_CREATE, 0x4018_7542);
        assert_eq!(ioc_type(DMA_BUF_IOCTL_RW_FILE), b'b');
        assert_eq!(RW_FLAGS_DIRECT, 0x8000_0000);
    }
}
