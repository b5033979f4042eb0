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
    let (head, body, tail) = split(offset, buf.len());
    for (i, b) in buf[..head].iter_mut().enumerate() {
        *b = byte(seed, offset + i as u64);
    }
    fill_aligned(seed, offset + head as u64, &mut buf[head..head + body]);
    let base = offset + (head + body) as u64;
    for (i, b) in buf[head + body..][..tail].iter_mut().enumerate() {
        *b = byte(seed, base + i as u64);
    }
}

/// Fills a buffer whose file offset is 8-aligned and length a multiple of 8.
pub fn fill_aligned(seed: u64, offset: u64, buf: &mut [u8]) {
    // An empty body may start anywhere (a range shorter than its head).
    debug_assert!(buf.is_empty() || (offset.is_multiple_of(8) && buf.len().is_multiple_of(8)));
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&word(seed, offset / 8 + i as u64).to_le_bytes());
    }
}

/// The pattern byte at file offset `pos`.
#[inline]
pub fn byte(seed: u64, pos: u64) -> u8 {
    word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize]
}

/// Splits a range at `offset` of `len` bytes into an unaligned head, a
/// whole-word body and a tail, so the body can be handled a word at a time.
fn split(offset: u64, len: usize) -> (usize, usize, usize) {
    let head = (((8 - offset % 8) % 8) as usize).min(len);
    let body = (len - head) / 8 * 8;
    (head, body, len - head - body)
}

/// The first offset (relative to `buf`) where `buf` differs from the pattern.
/// Compares a word at a time: verification of large reads must stay cheap
/// (it runs in emulated guests too).
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<usize> {
    let (head, body, _) = split(offset, buf.len());
    let bytewise =
        |from: usize, to: usize| (from..to).find(|&i| buf[i] != byte(seed, offset + i as u64));
    if let Some(i) = bytewise(0, head) {
        return Some(i);
    }
    let first_word = (offset + head as u64) / 8;
    for (w, chunk) in buf[head..head + body].chunks_exact(8).enumerate() {
        let got = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if got != word(seed, first_word + w as u64) {
            return bytewise(head + w * 8, head + w * 8 + 8);
        }
    }
    bytewise(head + body, buf.len())
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
        // Every alignment of start and length agrees with the byte definition.
        for start in 0..16u64 {
            for len in 0..40usize {
                let mut arr = [0u8; 40];
                let v = &mut arr[..len];
                fill(9, start, v);
                assert!(
                    v.iter()
                        .enumerate()
                        .all(|(i, b)| *b == byte(9, start + i as u64))
                );
                assert_eq!(first_mismatch(9, start, v), None);
                if len > 0 {
                    let k = len / 2;
                    v[k] ^= 0x10;
                    assert_eq!(
                        first_mismatch(9, start, v),
                        Some(k),
                        "start {start} len {len}"
                    );
                }
            }
        }
    }
}
