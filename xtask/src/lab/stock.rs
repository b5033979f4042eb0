//! The stock lab kernel: Debian's own build of the same 6.12 source the
//! patched kernel starts from, unpatched and not rebuilt, booted the same
//! way. It is what users run: no RW_FILE, dma-heaps and udmabuf as Debian
//! configures them. Its disk and filesystem drivers are modules, so the
//! ones the guest needs go into the initramfs, dependencies first.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::kernel::Kernel;
use crate::cmd;

/// The modules the guest loads before mounting its ext4 disk on virtio:
/// their `depends=` pull in the rest (jbd2, mbcache, crc16). ext4 finds
/// crc32c through the crypto API, not `depends=`, so it is named here.
const ROOT_MODULES: &[&str] = &["virtio_blk", "crc32c_generic", "ext4"];

/// Debian's kernel image package built from the installed linux-source-6.12
/// (`6.12.118-1~deb12u1` -> `linux-image-6.12.118+deb12-amd64-unsigned`).
fn package() -> Result<String> {
    let source = super::kernel::source_version()?;
    let upstream = source
        .split('-')
        .next()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("linux-source-6.12 version `{source}`"))?;
    Ok(format!("linux-image-{upstream}+deb12-amd64-unsigned"))
}

/// The stock kernel, downloaded and unpacked once into the cache.
pub fn ensure() -> Result<Kernel> {
    let package = package()?;
    let dir = cmd::cache_dir().join("lab/stock").join(&package);
    let bzimage = dir.join("bzImage");
    let order = dir.join("modules.order");
    if bzimage.exists() && order.exists() {
        eprintln!("lab: stock kernel {package} cached at {}", dir.display());
        return loaded(package, bzimage, &order);
    }
    eprintln!("lab: fetching the stock kernel {package}");
    let work = dir.with_file_name(format!("{package}.tmp"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    cmd::run(
        Command::new("apt-get")
            // As root into a directory _apt cannot write: no sandbox user.
            .args(["download", "-q", "-o", "APT::Sandbox::User=root", &package])
            .current_dir(&work),
    )
    .with_context(|| {
        format!("downloading {package} (Debian's build of the installed linux-source-6.12)")
    })?;
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let root = work.join("root");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    let release = std::fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("no lib/modules in the package")?;
    let modules = root.join("lib/modules").join(&release).join("kernel");
    std::fs::create_dir_all(work.join("out"))?;
    let mut names = Vec::new();
    for name in load_order(&modules)? {
        let ko = find_module(&modules, &name)?;
        let plain = cmd::output_bytes(Command::new("xz").arg("-dc").arg(&ko))?;
        std::fs::write(work.join("out").join(format!("{name}.ko")), plain)?;
        names.push(name);
    }
    std::fs::copy(
        root.join("boot").join(format!("vmlinuz-{release}")),
        work.join("out/bzImage"),
    )?;
    std::fs::write(work.join("out/modules.order"), names.join("\n") + "\n")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(work.join("out"), &dir)?;
    std::fs::remove_dir_all(&work)?;
    loaded(package, bzimage, &order)
}

fn loaded(package: String, bzimage: PathBuf, order: &Path) -> Result<Kernel> {
    let dir = order.parent().unwrap();
    let modules = std::fs::read_to_string(order)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(|name| dir.join(format!("{name}.ko")))
        .collect();
    Ok(Kernel {
        bzimage,
        key: format!("stock {package}"),
        modules,
    })
}

/// ROOT_MODULES and everything they depend on, each after its dependencies.
fn load_order(tree: &Path) -> Result<Vec<String>> {
    fn visit(tree: &Path, name: &str, seen: &mut Vec<String>, depth: usize) -> Result<()> {
        if seen.iter().any(|s| s == name) {
            return Ok(());
        }
        if depth > 16 {
            bail!("module dependencies of {name} do not end");
        }
        for dep in depends(&find_module(tree, name)?)? {
            visit(tree, &dep, seen, depth + 1)?;
        }
        seen.push(name.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for root in ROOT_MODULES {
        visit(tree, root, &mut order, 0)?;
    }
    Ok(order)
}

/// The module file for `name` (`-` and `_` are the same in module names).
fn find_module(tree: &Path, name: &str) -> Result<PathBuf> {
    let wanted = format!("{}.ko.xz", name.replace('-', "_"));
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().replace('-', "_") == wanted)
            {
                return Ok(path);
            }
        }
    }
    bail!("no module {name} in {}", tree.display())
}

/// A module's `depends=` from its .modinfo strings (kmod's modinfo is not
/// installed here, and that one NUL-separated field is all we need).
fn depends(ko_xz: &Path) -> Result<Vec<String>> {
    let plain = cmd::output_bytes(Command::new("xz").arg("-dc").arg(ko_xz))?;
    Ok(modinfo_depends(&plain))
}

fn modinfo_depends(module: &[u8]) -> Vec<String> {
    module
        .split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn depends_is_read_from_the_modinfo_strings() {
        let ko = b"\x7fELF...\0license=GPL\0depends=jbd2,crc16,mbcache\0intree=Y\0";
        assert_eq!(
            super::modinfo_depends(ko),
            ["jbd2", "crc16", "mbcache"].map(String::from)
        );
        assert!(super::modinfo_depends(b"\0depends=\0name=x\0").is_empty());
        assert!(super::modinfo_depends(b"no modinfo").is_empty());
    }
}
