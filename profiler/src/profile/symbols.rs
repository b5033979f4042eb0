//! Addresses to names: kernel addresses through /proc/kallsyms, user
//! addresses through the process's mappings and ELF symbols, both with
//! blazesym (the libbpf project's symbolizer). Each address is asked once;
//! user addresses must be learned while their process is alive.
use std::collections::HashMap;

use blazesym::{
    MaybeDefault,
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Elf, Kernel, Source},
    },
};

pub struct Symbols {
    symbolizer: Option<Symbolizer>,
    kernel: HashMap<u64, String>,
    user: HashMap<(u32, u64), String>,
    maps: HashMap<u32, Maps>,
}

const UNKNOWN: &str = "[unknown]";

impl Symbols {
    pub fn new() -> Symbols {
        Symbols {
            symbolizer: Some(Symbolizer::builder().enable_demangling(true).build()),
            kernel: HashMap::new(),
            user: HashMap::new(),
            maps: HashMap::new(),
        }
    }

    /// A table instead of a symbolizer (tests).
    pub fn fixed<const K: usize, const U: usize>(
        kernel: [(u64, &str); K],
        user: [(u64, &str); U],
    ) -> Symbols {
        Symbols {
            symbolizer: None,
            kernel: kernel.iter().map(|(a, n)| (*a, n.to_string())).collect(),
            user: HashMap::from_iter(user.iter().map(|(a, n)| ((7, *a), n.to_string()))),
            maps: HashMap::new(),
        }
    }

    /// Symbolizes the kernel addresses not seen before, from kallsyms (no
    /// vmlinux search: kallsyms has every function's name and is always there).
    pub fn learn_kernel(&mut self, addrs: &[u64]) {
        let Some(symbolizer) = &self.symbolizer else {
            return;
        };
        let mut new: Vec<u64> = addrs
            .iter()
            .copied()
            .filter(|a| !self.kernel.contains_key(a))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return;
        }
        let src = Source::Kernel(Kernel {
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        });
        let names = symbolizer
            .symbolize(&src, Input::AbsAddr(&new))
            .unwrap_or_default();
        for (i, a) in new.iter().enumerate() {
            self.kernel.insert(*a, name(names.get(i)));
        }
    }

    /// Remembers `pid`'s file mappings now, for symbolizing its addresses
    /// after it has exited (`trace` ends when its process does).
    pub fn snapshot(&mut self, pid: u32) {
        if let Ok(maps) = Maps::of(pid) {
            self.maps.insert(pid, maps);
        }
    }

    /// Symbolizes `pid`'s user addresses not seen before: each address to
    /// its file and offset through the process's mappings (the snapshot,
    /// else read now), then the file's ELF symbols.
    pub fn learn_user(&mut self, pid: u32, addrs: &[u64]) {
        if self.symbolizer.is_none() {
            return;
        }
        if !self.maps.contains_key(&pid) {
            self.snapshot(pid);
        }
        let Some(symbolizer) = &self.symbolizer else {
            return;
        };
        let Some(maps) = self.maps.get(&pid) else {
            return;
        };
        let mut per_file: HashMap<&std::path::Path, Vec<(u64, u64)>> = HashMap::new();
        for &a in addrs {
            if self.user.contains_key(&(pid, a)) {
                continue;
            }
            if let Some(m) = maps.find(a) {
                per_file
                    .entry(&m.path)
                    .or_default()
                    .push((a, a - m.start + m.offset));
            }
        }
        for (path, mut list) in per_file {
            list.sort_unstable();
            list.dedup();
            let offsets: Vec<u64> = list.iter().map(|(_, o)| *o).collect();
            let mut elf = Elf::new(path);
            elf.debug_syms = false;
            let names = symbolizer
                .symbolize(&Source::Elf(elf), Input::FileOffset(&offsets))
                .unwrap_or_default();
            for (i, (a, _)) in list.iter().enumerate() {
                self.user.insert((pid, *a), name(names.get(i)));
            }
        }
    }

    pub fn kernel(&self, ip: u64, unknown: &mut u64) -> String {
        known(self.kernel.get(&ip), unknown)
    }

    pub fn user(&self, pid: u32, ip: u64, unknown: &mut u64) -> String {
        known(self.user.get(&(pid, ip)), unknown)
    }
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols::new()
    }
}

fn known(name: Option<&String>, unknown: &mut u64) -> String {
    match name {
        Some(n) if n != UNKNOWN => n.clone(),
        _ => {
            *unknown += 1;
            UNKNOWN.into()
        }
    }
}

/// A frame's name as folded stacks can hold it (`;` separates frames).
fn name(s: Option<&Symbolized>) -> String {
    match s.and_then(|s| s.as_sym()) {
        Some(sym) => sym.name.replace(';', ","),
        None => UNKNOWN.into(),
    }
}

/// A process's file-backed executable mappings, from /proc/PID/maps.
pub struct Maps(Vec<Mapping>);

struct Mapping {
    start: u64,
    end: u64,
    /// File offset of `start`.
    offset: u64,
    path: std::path::PathBuf,
}

impl Maps {
    pub fn of(pid: u32) -> std::io::Result<Maps> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
        Ok(Maps::parse(&text))
    }

    /// `start-end perms offset dev inode path`; executable ones with a path.
    fn parse(text: &str) -> Maps {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        Maps(
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    let (range, perms, offset, path) =
                        (f.first()?, f.get(1)?, f.get(2)?, f.get(5)?);
                    let (start, end) = range.split_once('-')?;
                    (perms.contains('x') && path.starts_with('/')).then_some(Mapping {
                        start: hex(start)?,
                        end: hex(end)?,
                        offset: hex(offset)?,
                        path: path.into(),
                    })
                })
                .collect(),
        )
    }

    fn find(&self, addr: u64) -> Option<&Mapping> {
        self.0.iter().find(|m| (m.start..m.end).contains(&addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_addresses_find_their_file_and_offset() {
        let maps = Maps::parse(
            "5555a000-5555b000 r--p 00000000 fe:00 12 /usr/bin/dmaprof\n\
             5555b000-5555f000 r-xp 00001000 fe:00 12 /usr/bin/dmaprof\n\
             7f00-8f00 rw-p 00000000 00:00 0\n\
             7fff0000-7fff2000 r-xp 00000000 00:00 0 [vdso]\n",
        );
        let m = maps.find(0x5555c010).expect("in the text mapping");
        assert_eq!(0x5555c010 - m.start + m.offset, 0x2010);
        assert_eq!(m.path, std::path::Path::new("/usr/bin/dmaprof"));
        assert!(maps.find(0x5555a010).is_none(), "not executable");
        assert!(maps.find(0x7fff0010).is_none(), "no file");
    }

    #[test]
    fn this_process_symbolizes_its_own_function() {
        #[inline(never)]
        fn marker_function_for_the_symbolizer() -> u64 {
            marker_function_for_the_symbolizer as *const () as usize as u64
        }
        let addr = marker_function_for_the_symbolizer() + 1;
        let mut s = Symbols::new();
        s.learn_user(std::process::id(), &[addr]);
        let mut unknown = 0;
        let name = s.user(std::process::id(), addr, &mut unknown);
        assert!(
            name.contains("marker_function_for_the_symbolizer"),
            "{name}"
        );
        assert_eq!(unknown, 0);
    }
}
