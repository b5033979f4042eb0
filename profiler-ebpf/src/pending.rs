//! Per-thread "call in flight" records, kept in task-local storage
//! (`BPF_MAP_TYPE_TASK_STORAGE`): after a thread's first traced call the
//! lookup is a lockless pointer chase off `current`, where a hash map insert
//! and delete per call take a bucket lock twice. Hand-written because
//! aya-ebpf 0.2 has the BTF-map machinery but no task-storage type; the
//! layout is the one its `btf_map_def!` generates (libbpf's `.maps` form).
use core::ptr;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE, bpf_map_type},
    helpers::generated::{bpf_get_current_task_btf, bpf_task_storage_get},
};

#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholder pointers the loader replaces; never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        Self {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            max_entries: ptr::null(),
            map_flags: ptr::null(),
        }
    }

    /// The current thread's value, created zeroed on first use when `create`.
    #[inline(always)]
    pub fn current(&self, create: bool) -> Option<*mut T> {
        self.of(unsafe { bpf_get_current_task_btf() }.cast(), create)
    }

    /// `task`'s value (a BTF `struct task_struct *`, e.g. a tp_btf
    /// argument), created zeroed on first use when `create`.
    #[inline(always)]
    pub fn of(&self, task: *mut core::ffi::c_void, create: bool) -> Option<*mut T> {
        let flags = if create {
            BPF_LOCAL_STORAGE_GET_F_CREATE as u64
        } else {
            0
        };
        let p = unsafe {
            bpf_task_storage_get(
                ptr::from_ref(self).cast_mut().cast(),
                task.cast(),
                ptr::null_mut(),
                flags,
            )
        };
        (!p.is_null()).then_some(p.cast())
    }
}
