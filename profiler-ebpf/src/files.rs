//! What a call names, read from the kernel at the call: the `struct file`
//! behind an fd (through the task's fd table), a regular file's identity
//! (device, inode, flags, the names up its dentry chain) and a dma-buf's
//! (size, exporter, inode). Field offsets come from the kernel's BTF through
//! user space (`KernelOffsets`); everything is read with
//! bpf_probe_read_kernel, so it works from every attach mechanism.
use core::ptr::null;

use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
    bpf_probe_read_kernel_str_bytes,
};
use profiler_common::{
    call::{
        CallEvent, DMA_BUF_MAGIC, DmaBufId, FILE_PATH_DEPTH, FileCallEvent, FileId, KernelOffsets,
        Pending,
    },
    uapi::{RW_FLAGS_DIRECT, RW_FLAGS_READ, RW_FLAGS_WRITE, RwFileArgs},
};

use crate::pending::TaskStorage;
use crate::threads::lost_ringbuf;

/// Set by user space from BTF before load.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets {
    valid: 0,
    dmabuf_size: 0,
    dmabuf_exp_name: 0,
    dmabuf_file: 0,
    dmabuf_name: 0,
    file_inode: 0,
    file_dentry: 0,
    file_private: 0,
    file_pos: 0,
    file_flags: 0,
    inode_ino: 0,
    inode_sb: 0,
    sb_dev: 0,
    sb_magic: 0,
    dentry_name: 0,
    dentry_parent: 0,
    task_files: 0,
    files_fdt: 0,
    fdt_fd: 0,
    fdt_max_fds: 0,
    o_direct: 0,
};

/// The offsets (volatile: patched into .rodata at load, never folded).
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

#[inline(always)]
fn read<T: Default>(base: *const u8, off: u32) -> T {
    if base.is_null() {
        return T::default();
    }
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.unwrap_or_default()
}

#[inline(always)]
fn read_ptr(base: *const u8, off: u32) -> *const u8 {
    if base.is_null() {
        return null();
    }
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const *const u8) }.unwrap_or(null())
}

/// The `struct file *` behind `fd` in the current task, or null.
#[inline(always)]
pub fn file_of_fd(off: &KernelOffsets, fd: i64) -> *const u8 {
    if off.valid == 0 || fd < 0 {
        return null();
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fdt = read_ptr(read_ptr(task, off.task_files), off.files_fdt);
    let max: u32 = read(fdt, off.fdt_max_fds);
    if fdt.is_null() || fd as u64 >= max as u64 {
        return null();
    }
    let fds = read_ptr(fdt, off.fdt_fd);
    read_ptr(fds, (fd as u32).wrapping_mul(8))
}

/// Whether `file` lives on the dma-buf filesystem.
#[inline(always)]
pub fn is_dma_buf(off: &KernelOffsets, file: *const u8) -> bool {
    if off.valid == 0 {
        return false;
    }
    let sb = read_ptr(read_ptr(file, off.file_inode), off.inode_sb);
    read::<u64>(sb, off.sb_magic) == DMA_BUF_MAGIC
}

/// The `struct dma_buf *` of a dma-buf file.
#[inline(always)]
pub fn dma_buf_of(off: &KernelOffsets, file: *const u8) -> *const u8 {
    read_ptr(file, off.file_private)
}

/// The file's position (f_pos), for a call that uses it.
#[inline(always)]
pub fn file_pos(off: &KernelOffsets, file: *const u8) -> u64 {
    read(file, off.file_pos)
}

/// Writes the dma-buf's size, inode number, exporter name and own name,
/// read now, into `id` (zeroed when there is no dma-buf).
#[inline(always)]
pub fn identity_into(off: &KernelOffsets, dmabuf: *const u8, id: *mut DmaBufId) {
    unsafe {
        *id = DmaBufId::default();
        if off.valid == 0 || dmabuf.is_null() {
            return;
        }
        (*id).size = read(dmabuf, off.dmabuf_size);
        let name = read_ptr(dmabuf, off.dmabuf_exp_name);
        if !name.is_null() {
            let _ = bpf_probe_read_kernel_str_bytes(name, &mut (*id).exporter);
        }
        let inode = read_ptr(read_ptr(dmabuf, off.dmabuf_file), off.file_inode);
        (*id).ino = read(inode, off.inode_ino);
        // Read without the buffer's name_lock: a name set at this instant
        // may come out empty or old, never out of bounds (the copy is
        // bounded).
        let own_name = read_ptr(dmabuf, off.dmabuf_name);
        if !own_name.is_null() {
            let _ = bpf_probe_read_kernel_str_bytes(own_name, &mut (*id).name);
        }
    }
}

/// Reads `file`'s identity into this thread's slot of `store` (in place:
/// a FileId is too large for the BPF stack beside a call's records).
#[inline(always)]
pub fn remember_file(store: &TaskStorage<FileId>, off: &KernelOffsets, file: *const u8) {
    let Some(id) = store.current(true) else {
        return;
    };
    unsafe {
        (*id).depth = 0;
        (*id).complete = 0;
        (*id).ino = 0;
        (*id).dev = 0;
        (*id).flags = 0;
        if off.valid == 0 || file.is_null() {
            return;
        }
        let inode = read_ptr(file, off.file_inode);
        (*id).ino = read(inode, off.inode_ino);
        (*id).dev = read(read_ptr(inode, off.inode_sb), off.sb_dev);
        (*id).flags = read(file, off.file_flags);
        let mut dentry = read_ptr(file, off.file_dentry);
        for i in 0..FILE_PATH_DEPTH {
            if dentry.is_null() {
                break;
            }
            let name = read_ptr(dentry, off.dentry_name);
            if !name.is_null() {
                let _ = bpf_probe_read_kernel_str_bytes(name, &mut (*id).names[i]);
            }
            (*id).depth = i as u32 + 1;
            let parent = read_ptr(dentry, off.dentry_parent);
            if parent == dentry {
                (*id).complete = 1;
                break;
            }
            dentry = parent;
        }
    }
}

/// What a finished call is, besides its entry record.
pub struct Finished {
    pub kind: u32,
    pub tgid: u32,
    pub tid: u32,
    pub ret: i64,
    pub start_ns: u64,
    pub duration_ns: u64,
}

/// Fills `out` from the finished call and its entry record (in place).
#[inline(always)]
unsafe fn fill(out: *mut CallEvent, f: &Finished, p: *const Pending) {
    unsafe {
        (*out).kind = f.kind;
        (*out).tgid = f.tgid;
        (*out).tid = f.tid;
        (*out).what = (*p).what as u32;
        (*out).ret = f.ret;
        (*out).start_ns = f.start_ns;
        (*out).duration_ns = f.duration_ns;
        (*out).len = (*p).len;
        (*out).rw = (*p).rw;
        (*out).buf = (*p).buf;
    }
}

/// Sends the finished call with its entry record `p` and the file this
/// thread's slot of `store` holds (the call alone when there is none),
/// written straight into the ring: the records are too large to build on
/// the BPF stack.
#[inline(always)]
pub fn emit_pending(f: &Finished, p: *const Pending, store: &TaskStorage<FileId>) {
    let Some(id) = store
        .current(false)
        .filter(|&id| unsafe { (*id).depth != 0 || (*id).ino != 0 })
    else {
        let Some(mut entry) = crate::threads::CALL_EVENTS.reserve::<CallEvent>(0) else {
            lost_ringbuf();
            return;
        };
        unsafe { fill(entry.as_mut_ptr(), f, p) };
        entry.submit(0);
        return;
    };
    let Some(mut entry) = crate::threads::CALL_EVENTS.reserve::<FileCallEvent>(0) else {
        lost_ringbuf();
        return;
    };
    let out = entry.as_mut_ptr();
    unsafe {
        fill(&raw mut (*out).call, f, p);
        let dst = core::slice::from_raw_parts_mut(
            (&raw mut (*out).file) as *mut u8,
            core::mem::size_of::<FileId>(),
        );
        if bpf_probe_read_kernel_buf(id as *const u8, dst).is_err() {
            (*out).file.depth = 0;
            (*out).file.ino = 0;
        }
        (*id).ino = 0;
        (*id).depth = 0;
    }
    entry.submit(0);
}

/// A copy_file_range between `file_in` and `file_out` as a request, written
/// into the in-flight slot `p`: when
/// one side is a dma-buf, spelled as RW_FILE would (READ: file -> buffer,
/// WRITE: buffer -> file, DIRECT for an O_DIRECT file) with the other side
/// as the file; otherwise what = 0, the input is the file and the output's
/// offset goes in buf_offset. The file's identity goes to `store`.
#[inline(always)]
pub fn copy_request(
    p: *mut Pending,
    off: &KernelOffsets,
    store: &TaskStorage<FileId>,
    (file_in, fd_in, pos_in): (*const u8, i32, u64),
    (file_out, fd_out, pos_out): (*const u8, i32, u64),
    len: u64,
) {
    let into_buf = is_dma_buf(off, file_out) && !is_dma_buf(off, file_in);
    let from_buf = is_dma_buf(off, file_in) && !is_dma_buf(off, file_out);
    let (file, fd, file_offset, buf_file, buf_offset, op) = if into_buf {
        (file_in, fd_in, pos_in, file_out, pos_out, RW_FLAGS_READ)
    } else if from_buf {
        (file_out, fd_out, pos_out, file_in, pos_in, RW_FLAGS_WRITE)
    } else {
        // Between regular files: the output's offset where the buffer's is.
        (file_in, fd_in, pos_in, null(), pos_out, 0)
    };
    let direct = read::<u32>(file, off.file_flags) & off.o_direct != 0;
    let flags = match (op, direct) {
        (0, _) => 0,
        (op, true) => op | RW_FLAGS_DIRECT,
        (op, false) => op,
    };
    remember_file(store, off, file);
    let dmabuf = if buf_file.is_null() {
        null()
    } else {
        dma_buf_of(off, buf_file)
    };
    unsafe {
        (*p).what = flags as u64;
        (*p).len = len;
        (*p).rw = RwFileArgs {
            flags,
            fd,
            file_offset,
            buf_offset,
            buf_len: len,
        };
        identity_into(off, dmabuf, &raw mut (*p).buf);
    }
}
