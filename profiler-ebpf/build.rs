use which::which;

/// Rebuild the eBPF object when bpf-linker changes (aya-template's convention):
/// cargo does not track the linker binary otherwise.
fn main() {
    // aya-build passes --cfg bpf_target_arch="<host arch>" (pread.rs's raw
    // syscall probes read x86_64's pt_regs).
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found in PATH: run `cargo xtask setup` first (it builds bpf-linker 0.13.0 against llvm-22)",
    );
    println!(
        "cargo:rerun-if-changed={}",
        bpf_linker.to_str().unwrap_or_default()
    );
}
