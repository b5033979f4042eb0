//! The lab kernel: Debian's linux-source-6.12, our config fragment and
//! patches, built once and cached by a hash of all three.
//!
//! The source tree is kept between builds (incremental rebuilds take under a
//! minute); the patches applied to it are recorded in `.dmaprof-patches/` and
//! reverse-applied when the repo's patches change.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::cmd;

const SOURCE_PACKAGE: &str = "linux-source-6.12";
const TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
const TREE_NAME: &str = "linux-source-6.12";
const APPLIED_DIR: &str = ".dmaprof-patches";

pub struct Kernel {
    pub bzimage: PathBuf,
    pub key: String,
    /// Modules the guest loads before its disk, in order (the stock
    /// kernel's; the lab kernel has everything built in).
    pub modules: Vec<PathBuf>,
}

fn kernel_dir() -> PathBuf {
    cmd::workspace_root().join("xtask/lab/kernel")
}

/// The repo's patches, in order.
fn patches() -> Result<Vec<PathBuf>> {
    let dir = kernel_dir().join("patches");
    let mut list: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        .collect();
    list.sort();
    if list.is_empty() {
        bail!("no patches in {}", dir.display());
    }
    Ok(list)
}

pub(super) fn source_version() -> Result<String> {
    cmd::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))
        .with_context(|| format!("{SOURCE_PACKAGE} is not installed: run `cargo xtask setup`"))
}

/// The cache key: source version, fragment and every patch.
fn cache_key(version: &str, fragment: &[u8], patches: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(version.as_bytes());
    h.update(fragment);
    for p in patches {
        h.update(p.file_name().unwrap().to_string_lossy().as_bytes());
        h.update(std::fs::read(p)?);
    }
    Ok(h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Which lab kernel: the debug kernel CI boots, or the same with KASAN
/// (too slow under TCG for CI: measured in docs/rw-file.md; run it with
/// `cargo xtask lab test --kasan`). Each has its own source tree, so
/// switching between them rebuilds neither from scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Variant {
    #[default]
    Debug,
    Kasan,
}

impl Variant {
    /// The config fragments, merged in this order.
    fn fragments(self) -> Vec<PathBuf> {
        let mut list = vec![kernel_dir().join("config.fragment")];
        if self == Variant::Kasan {
            list.push(kernel_dir().join("kasan.fragment"));
        }
        list
    }

    fn tree_name(self) -> String {
        match self {
            Variant::Debug => TREE_NAME.to_string(),
            Variant::Kasan => format!("{TREE_NAME}-kasan"),
        }
    }
}

pub fn ensure() -> Result<Kernel> {
    ensure_variant(Variant::Debug)
}

pub fn ensure_variant(variant: Variant) -> Result<Kernel> {
    let version = source_version()?;
    let fragment_paths = variant.fragments();
    let mut fragment = Vec::new();
    for path in &fragment_paths {
        fragment
            .extend(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let patches = patches()?;
    let key = cache_key(&version, &fragment, &patches)?;
    let out_dir = cmd::cache_dir().join("lab/kernels").join(&key);
    let bzimage = out_dir.join("bzImage");
    if bzimage.exists() {
        eprintln!("lab: kernel {key} cached at {}", bzimage.display());
        return Ok(Kernel {
            bzimage,
            key,
            modules: Vec::new(),
        });
    }
    eprintln!(
        "lab: building kernel {key} ({SOURCE_PACKAGE} {version}, {} patches)",
        patches.len()
    );
    let start = std::time::Instant::now();
    let tree = prepare_tree(&patches, &variant.tree_name())?;
    configure(&tree, &fragment_paths, &fragment)?;
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let log = tree.join("dmaprof-build.log");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("make -j{jobs} bzImage > {} 2>&1", log.display()))
        .current_dir(&tree)
        .status()?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        bail!(
            "kernel build failed (log: {}):\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    std::fs::create_dir_all(&out_dir)?;
    let tmp = out_dir.join("bzImage.tmp");
    std::fs::copy(tree.join("arch/x86/boot/bzImage"), &tmp)?;
    std::fs::copy(tree.join(".config"), out_dir.join("config"))?;
    std::fs::rename(&tmp, &bzimage)?;
    eprintln!(
        "lab: kernel {key} built in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    Ok(Kernel {
        bzimage,
        key,
        modules: Vec::new(),
    })
}

/// A source tree with exactly the repo's patches applied.
fn prepare_tree(patches: &[PathBuf], tree_name: &str) -> Result<PathBuf> {
    let src = cmd::cache_dir().join("lab/src");
    let tree = src.join(tree_name);
    let applied = tree.join(APPLIED_DIR);
    if tree.exists() && !same_patches(&applied, patches)? && !revert(&tree, &applied)? {
        eprintln!("lab: could not revert the old patches cleanly; extracting a fresh tree");
        std::fs::remove_dir_all(&tree)?;
    }
    if !tree.exists() {
        std::fs::create_dir_all(&src)?;
        eprintln!("lab: extracting {TARBALL}");
        cmd::run(
            Command::new("tar")
                .arg("-xf")
                .arg(TARBALL)
                .arg("-C")
                .arg(&src),
        )?;
    }
    if !same_patches(&applied, patches)? {
        std::fs::create_dir_all(&applied)?;
        for p in patches {
            eprintln!("lab: applying {}", p.file_name().unwrap().to_string_lossy());
            cmd::run(
                Command::new("patch")
                    .args(["-p1", "--forward", "--quiet", "-i"])
                    .arg(p)
                    .current_dir(&tree),
            )
            .with_context(|| format!("{} does not apply to {tree_name}", p.display()))?;
            std::fs::copy(p, applied.join(p.file_name().unwrap()))?;
        }
    }
    Ok(tree)
}

fn applied_patches(applied: &Path) -> Result<Vec<PathBuf>> {
    let mut list: Vec<PathBuf> = match std::fs::read_dir(applied) {
        Ok(d) => d
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "patch"))
            .collect(),
        Err(_) => Vec::new(),
    };
    list.sort();
    Ok(list)
}

fn same_patches(applied: &Path, patches: &[PathBuf]) -> Result<bool> {
    let have = applied_patches(applied)?;
    if have.len() != patches.len() {
        return Ok(false);
    }
    for (a, b) in have.iter().zip(patches) {
        if a.file_name() != b.file_name() || std::fs::read(a)? != std::fs::read(b)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reverse-applies the recorded patches, newest first. False if one fails.
fn revert(tree: &Path, applied: &Path) -> Result<bool> {
    for p in applied_patches(applied)?.iter().rev() {
        eprintln!(
            "lab: reverting {}",
            p.file_name().unwrap().to_string_lossy()
        );
        let ok = cmd::succeeds(
            Command::new("patch")
                .args(["-p1", "-R", "--quiet", "-i"])
                .arg(p)
                .current_dir(tree),
        );
        if !ok {
            return Ok(false);
        }
        std::fs::remove_file(p)?;
    }
    Ok(true)
}

/// defconfig + kvm_guest.config + our fragments, then a check that every
/// option they set survived olddefconfig (it drops unmet dependencies silently).
fn configure(tree: &Path, fragment_paths: &[PathBuf], fragment: &[u8]) -> Result<()> {
    let make = |args: &[&str]| cmd::output(Command::new("make").args(args).current_dir(tree));
    make(&["defconfig"])?;
    make(&["kvm_guest.config"])?;
    cmd::output(
        Command::new("scripts/kconfig/merge_config.sh")
            .args(["-m", ".config"])
            .args(fragment_paths)
            .current_dir(tree),
    )?;
    make(&["olddefconfig"])?;
    let config = std::fs::read_to_string(tree.join(".config"))?;
    let mut missing = Vec::new();
    for line in String::from_utf8_lossy(fragment).lines() {
        let line = line.trim();
        if line.starts_with("CONFIG_") && !config.lines().any(|l| l == line) {
            missing.push(line.to_string());
        } else if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
            && config.lines().any(|l| l.starts_with(&format!("{name}=")))
        {
            missing.push(format!("{name} should be unset"));
        }
    }
    if !missing.is_empty() {
        bail!(
            "the kernel config lost options from {:?}: {}",
            fragment_paths,
            missing.join(", ")
        );
    }
    Ok(())
}
