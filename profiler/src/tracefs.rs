//! tracefs: where classic tracepoints are described. aya attaches a tracepoint
//! by reading `events/<category>/<name>/id` there, and dmaprof reads field
//! offsets from `format` so its programs do not assume one kernel's layout.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Where tracefs is, and whether dmaprof had to mount it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Tracefs {
    pub path: PathBuf,
    pub mounted_by_dmaprof: bool,
}

/// Finds tracefs, mounting it at /sys/kernel/tracing if it is not mounted
/// (minimal systems and fresh VMs often leave it unmounted). Needs root to mount.
pub fn ensure_mounted() -> Result<Tracefs> {
    if let Some(path) = find() {
        return Ok(Tracefs {
            path,
            mounted_by_dmaprof: false,
        });
    }
    let target = Path::new(CANDIDATES[0]);
    if !target.is_dir() {
        bail!(
            "tracefs is not mounted and {} does not exist",
            target.display()
        );
    }
    let src = CString::new("tracefs")?;
    let dst = CString::new(CANDIDATES[0])?;
    // SAFETY: valid NUL-terminated strings, no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "tracefs is not mounted and mounting it at {} failed: {err}",
            CANDIDATES[0]
        );
    }
    match find() {
        Some(path) => Ok(Tracefs {
            path,
            mounted_by_dmaprof: true,
        }),
        None => bail!(
            "mounted tracefs at {} but it has no events/ directory",
            CANDIDATES[0]
        ),
    }
}

/// The mounted tracefs, if any.
pub fn find() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Whether a tracepoint exists on this kernel.
pub fn has_event(tracefs: &Path, category: &str, name: &str) -> bool {
    tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("id")
        .exists()
}

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub offset: u32,
    pub size: u32,
}

/// Parses `events/<category>/<name>/format`.
pub fn event_fields(tracefs: &Path, category: &str, name: &str) -> Result<Vec<Field>> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_format(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn parse_format(text: &str) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = "";
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = Some(v.parse::<u32>()?);
            } else if let Some(v) = part.strip_prefix("size:") {
                size = Some(v.parse::<u32>()?);
            } else if decl.is_empty() {
                decl = part;
            }
        }
        // "char rwbs[10]" -> "rwbs"; "__data_loc char[] cmd" -> "cmd".
        let name = decl
            .rsplit(' ')
            .next()
            .unwrap_or(decl)
            .split('[')
            .next()
            .unwrap_or_default()
            .to_string();
        match (offset, size) {
            (Some(offset), Some(size)) if !name.is_empty() => {
                fields.push(Field { name, offset, size })
            }
            _ => bail!("malformed field line: {line}"),
        }
    }
    if fields.is_empty() {
        bail!("no fields");
    }
    Ok(fields)
}

/// Offset of a named field, checking its size.
pub fn field_offset(fields: &[Field], name: &str, size: u32) -> Result<u32> {
    let f = fields
        .iter()
        .find(|f| f.name == name)
        .with_context(|| format!("tracepoint has no field `{name}`"))?;
    if f.size != size {
        bail!("field `{name}` is {} bytes, expected {size}", f.size);
    }
    Ok(f.offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RQ_COMPLETE: &str = "name: block_rq_complete
ID: 2107
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:int error;\toffset:28;\tsize:4;\tsigned:1;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:44;\tsize:4;\tsigned:0;

print fmt: \"%d,%d %s\", REC->dev
";

    #[test]
    fn parses_a_format_file() {
        let fields = parse_format(RQ_COMPLETE).unwrap();
        assert_eq!(field_offset(&fields, "sector", 8).unwrap(), 16);
        assert_eq!(field_offset(&fields, "rwbs", 10).unwrap(), 34);
        assert_eq!(field_offset(&fields, "cmd", 4).unwrap(), 44);
        assert!(field_offset(&fields, "sector", 4).is_err());
        assert!(field_offset(&fields, "bytes", 4).is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_format("nothing here").is_err());
        assert!(parse_format("\tfield:int x;\toffset:zz;\tsize:4;").is_err());
    }
}
