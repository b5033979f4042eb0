//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`).
//!
//! dmaprof asks three questions of it: does a function exist (fentry needs it
//! in BTF), does a struct have a member (`dma_buf_ops.rw_file` tells whether
//! the kernel carries the RW_FILE patch), and which functions have a given
//! prototype (how the exporter's `rw_file` callback is found without knowing
//! its name). Why hand-written: aya's BTF type (aya-obj) keeps its type
//! iteration and lookup by id crate-private, and btf-rs, the maintained
//! reader that has them, is LGPL-2.1, which a statically linked MIT/Apache
//! binary cannot take in lightly. The format is small and stable
//! (include/uapi/linux/btf.h); this reads only what the three questions need.
use std::{collections::HashMap, path::Path};

use anyhow::{Context, Result, bail};

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

// BTF kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// size for INT/STRUCT/UNION/ENUM, referenced type id for PTR/TYPEDEF/FUNC/...
    size_or_type: u32,
    /// STRUCT/UNION members (name_off, type, bit offset) or FUNC_PROTO params (name_off, type, 0).
    members: Vec<(u32, u32, u32)>,
}

/// Little-endian reads with bounds checks.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u16(&self, o: usize) -> Result<u16> {
        Ok(u16::from_le_bytes(
            self.0.get(o..o + 2).context("truncated")?.try_into()?,
        ))
    }

    fn u32(&self, o: usize) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.0.get(o..o + 4).context("truncated")?.try_into()?,
        ))
    }

    /// The type record at `pos` and where the next one starts.
    fn type_at(&self, pos: usize) -> Result<(Type, usize)> {
        let name_off = self.u32(pos)?;
        let info = self.u32(pos + 4)?;
        let size_or_type = self.u32(pos + 8)?;
        let pos = pos + 12;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31;
        let mut members = Vec::new();
        let next = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => pos + 4,
            KIND_ARRAY => pos + 12,
            KIND_STRUCT | KIND_UNION => {
                for i in 0..vlen {
                    let m = pos + i * 12;
                    let raw_off = self.u32(m + 8)?;
                    // With kflag set the offset holds bitfield size in the top 8 bits.
                    let bit_off = if kflag == 1 {
                        raw_off & 0x00ff_ffff
                    } else {
                        raw_off
                    };
                    members.push((self.u32(m)?, self.u32(m + 4)?, bit_off));
                }
                pos + vlen * 12
            }
            KIND_ENUM => pos + vlen * 8,
            KIND_FUNC_PROTO => {
                for i in 0..vlen {
                    let p = pos + i * 8;
                    members.push((self.u32(p)?, self.u32(p + 4)?, 0));
                }
                pos + vlen * 8
            }
            KIND_DATASEC | KIND_ENUM64 => pos + vlen * 12,
            KIND_PTR | 7 | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
            | KIND_FUNC | 16 | KIND_TYPE_TAG => pos,
            other => bail!("unknown BTF kind {other}"),
        };
        let t = Type {
            name_off,
            kind,
            size_or_type,
            members,
        };
        Ok((t, next))
    }
}

/// Parsed BTF. Type ids start at 1; `types[0]` stands for `void`.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

/// A struct member as found in BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Offset from the start of the struct, in bytes.
    pub offset: u32,
}

impl Btf {
    pub fn from_sys_fs() -> Result<Btf> {
        Btf::from_file(Path::new(VMLINUX))
    }

    pub fn from_file(path: &Path) -> Result<Btf> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Btf::parse(&data).with_context(|| format!("parsing BTF in {}", path.display()))
    }

    pub fn parse(data: &[u8]) -> Result<Btf> {
        let r = Reader(data);
        if r.u16(0)? != MAGIC {
            bail!("not little-endian BTF (bad magic)");
        }
        let hdr_len = r.u32(4)? as usize;
        let type_off = r.u32(8)? as usize;
        let type_len = r.u32(12)? as usize;
        let str_off = r.u32(16)? as usize;
        let str_len = r.u32(20)? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .context("string section out of bounds")?
            .to_vec();
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            size_or_type: 0,
            members: vec![],
        }];
        let mut pos = hdr_len + type_off;
        let end = pos + type_len;
        while pos < end {
            let (t, next) = r.type_at(pos)?;
            types.push(t);
            pos = next;
        }
        let mut btf = Btf {
            types,
            strings,
            by_name: HashMap::new(),
        };
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in btf.types.iter().enumerate().skip(1) {
            if t.name_off != 0 {
                by_name
                    .entry(btf.str(t.name_off).to_string())
                    .or_default()
                    .push(id as u32);
            }
        }
        btf.by_name = by_name;
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn find(&self, name: &str, kind: u32) -> Option<&Type> {
        self.by_name
            .get(name)?
            .iter()
            .map(|&id| &self.types[id as usize])
            .find(|t| t.kind == kind)
    }

    /// Whether a kernel function is described in BTF (what fentry needs).
    pub fn has_function(&self, name: &str) -> bool {
        self.find(name, KIND_FUNC).is_some()
    }

    /// Members of a struct, if the struct exists; the members of its
    /// anonymous structs and unions appear as its own, as C reaches them
    /// (6.12's `file.f_path` and later kernels' `dentry.d_name` are there).
    pub fn struct_members(&self, name: &str) -> Option<Vec<Member>> {
        let t = self.find(name, KIND_STRUCT)?;
        let mut out = Vec::new();
        self.flatten(t, 0, &mut out, 0);
        Some(out)
    }

    /// Where `member` is in struct `st`, in bytes (None: either is not
    /// in this kernel's BTF): what the probes are told before load.
    pub fn member_offset(&self, st: &str, member: &str) -> Option<u32> {
        self.struct_members(st)?
            .into_iter()
            .find(|m| m.name == member)
            .map(|m| m.offset)
    }

    fn flatten(&self, t: &Type, base: u32, out: &mut Vec<Member>, depth: u32) {
        for &(n, ty, bits) in &t.members {
            // The low 24 bits are the offset when the struct has bitfields.
            let offset = base + (bits & 0xff_ffff) / 8;
            let name = self.str(n);
            let inner = &self.types[self.strip(ty) as usize];
            if name.is_empty()
                && (inner.kind == KIND_STRUCT || inner.kind == KIND_UNION)
                && depth < 8
            {
                self.flatten(inner, offset, out, depth + 1);
            } else {
                out.push(Member {
                    name: name.to_string(),
                    offset,
                });
            }
        }
    }

    /// Skips typedef/const/volatile/restrict/type-tag wrappers.
    fn strip(&self, mut id: u32) -> u32 {
        loop {
            let t = &self.types[id as usize];
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return id,
            }
        }
    }

    /// The struct name a parameter points to, for `struct foo *` parameters.
    fn pointee_struct(&self, id: u32) -> Option<&str> {
        let t = &self.types[self.strip(id) as usize];
        if t.kind != KIND_PTR {
            return None;
        }
        let target = &self.types[self.strip(t.size_or_type) as usize];
        (target.kind == KIND_STRUCT || target.kind == 7).then(|| self.str(target.name_off))
    }

    /// Functions whose parameters are exactly pointers to the given structs, in order.
    /// `functions_taking(&["dma_buf", "dma_buf_rw_file"])` finds rw_file callbacks.
    pub fn functions_taking(&self, structs: &[&str]) -> Vec<String> {
        let mut found: Vec<String> = self
            .types
            .iter()
            .filter(|t| t.kind == KIND_FUNC)
            .filter(|f| {
                let proto = &self.types[f.size_or_type as usize];
                proto.kind == KIND_FUNC_PROTO
                    && proto.members.len() == structs.len()
                    && proto
                        .members
                        .iter()
                        .zip(structs)
                        .all(|(&(_, ty, _), want)| self.pointee_struct(ty) == Some(want))
            })
            .map(|f| self.str(f.name_off).to_string())
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_kernels_btf() {
        let path = Path::new(VMLINUX);
        if !path.exists() {
            assert!(
                std::env::var("CI").is_err(),
                "{VMLINUX} missing under CI: dmaprof needs a BTF kernel"
            );
            eprintln!("SKIP: {VMLINUX} absent on this kernel");
            return;
        }
        let btf = Btf::from_sys_fs().unwrap();
        // Functions every kernel dmaprof supports has, and the block layer's request.
        assert!(btf.has_function("vfs_read"));
        assert!(!btf.has_function("dmaprof_no_such_function"));
        let request = btf.struct_members("request").expect("struct request");
        assert!(request.iter().any(|m| m.name == "q"));
        // Every file_operations.read_iter target takes (kiocb *, iov_iter *).
        let readers = btf.functions_taking(&["kiocb", "iov_iter"]);
        assert!(
            readers.iter().any(|f| f == "generic_file_read_iter"),
            "{readers:?}"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[0u8; 32]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb]).is_err());
    }
}
