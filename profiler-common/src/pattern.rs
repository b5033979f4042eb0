//! The content of dmaprof's test files: every 8-byte little-endian word at
//! file offset `o` (a multiple of 8) is `word(seed, o / 8)`. Any range of a
//! file can be generated or checked without reading the rest, so reads are
//! verified byte for byte, not assumed.

/// splitmix64 of (seed, word index): cheap, and no two nearby words repeat.
#[inline]
pub fn word(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the pattern bytes of file offsets `offset..offset + buf.len()`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        *b = word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
    }
}

/// Fills a buffer whose file offset is 8-aligned and length a multiple of 8
/// (the fast path used for large files).
pub fn fill_aligned(seed: u64, offset: u64, buf: &mut [u8]) {
    debug_assert!(offset.is_multiple_of(8) && buf.len().is_multiple_of(8));
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(seed, offset / 8 + i as u64).to_le_bytes());
    }
}

/// The first offset (relative to `buf`) where `buf` differs from the pattern.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().position(|(i, b)| {
        let pos = offset + i as u64;
        *b != word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize]
    })
}

/// The seed of the lab disk's data files (xtask writes them, guest tests check them).
pub const LAB_SEED: u64 = 0x00d0_ab0f_f11e;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_unaligned_fills_agree() {
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        fill(7, 4096, &mut a);
        fill_aligned(7, 4096, &mut b);
        assert_eq!(a, b);
        let mut c = [0u8; 13];
        fill(7, 4096 + 3, &mut c);
        assert_eq!(&c[..], &a[3..16]);
        assert_eq!(first_mismatch(7, 4099, &c), None);
        c[5] ^= 1;
        assert_eq!(first_mismatch(7, 4099, &c), Some(5));
        assert_ne!(word(1, 0), word(2, 0));
    }
}
