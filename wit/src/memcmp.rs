//! `memcmp` for a rule component (feature `fast-memcmp`, which the default rules' component
//! turns on): eight bytes per step instead of wasi-libc's byte loop.
//!
//! Why: every `str` comparison and sort of keys, tags and field names calls `memcmp` (~40 calls
//! per VM), and inside the WASM module the byte loop, with an interruption check per iteration,
//! cost ~150 instructions per call. Linked only when the feature is on (the default rules'
//! `export-default` turns it on), so a crate exporting its own rules keeps libc's unless it asks.
//!
//! It lives in this crate, not in the default rules', because calls from the same crate are
//! inlined where they are hot (the model's key lookups and comparisons): in the default rules'
//! crate it cost the model's callers 8% more fuel per VM (72.2k against 66.9k), here 2% (68.3k).

/// Compares `n` bytes at `a` and `b` as unsigned bytes: negative, zero or positive as C's
/// `memcmp`.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[cfg_attr(
    all(target_arch = "wasm32", feature = "fast-memcmp"),
    unsafe(no_mangle)
)]
// Elsewhere (native builds, other rules crates) nothing calls it but the tests.
#[cfg_attr(
    not(all(target_arch = "wasm32", feature = "fast-memcmp")),
    allow(dead_code)
)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // The tail is one overlapping word (the bytes it shares with the last step are equal), not
    // a byte loop: through Cranelift each loop iteration pays an interruption check.
    // SAFETY (every read below): each reads bytes `[at, at + width)` with `at + width <= n`,
    // and both pointers are valid for `n` bytes (the caller's contract).
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            let (x, y) = unsafe { (word::<u64>(a, i), word::<u64>(b, i)) };
            if x != y {
                return first_difference(x, y);
            }
            i += 8;
        }
        if i < n {
            let (x, y) = unsafe { (word::<u64>(a, n - 8), word::<u64>(b, n - 8)) };
            return first_difference(x, y);
        }
        return 0;
    }
    if n >= 4 {
        for at in [0, n - 4] {
            let (x, y) = unsafe { (word::<u32>(a, at), word::<u32>(b, at)) };
            if x != y {
                return first_difference(x.into(), y.into());
            }
        }
        return 0;
    }
    if n >= 2 {
        for at in [0, n - 2] {
            let (x, y) = unsafe { (word::<u16>(a, at), word::<u16>(b, at)) };
            if x != y {
                return first_difference(x.into(), y.into());
            }
        }
        return 0;
    }
    if n == 1 {
        // SAFETY: `n == 1`.
        let (x, y) = unsafe { (*a, *b) };
        return i32::from(x) - i32::from(y);
    }
    0
}

/// The unaligned word at `p + at`, as little-endian.
///
/// # Safety
/// `p` must be valid for reads of `at + size_of::<T>()` bytes.
#[inline(always)]
unsafe fn word<T: Copy>(p: *const u8, at: usize) -> T {
    // SAFETY: the caller's contract.
    unsafe { p.add(at).cast::<T>().read_unaligned() }
}

/// `memcmp`'s answer for two little-endian words: the difference of their lowest differing
/// bytes (the first in memory), 0 when they are equal.
#[inline(always)]
fn first_difference(x: u64, y: u64) -> i32 {
    if x == y {
        return 0;
    }
    let shift = (x ^ y).trailing_zeros() & !7;
    i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(v: i32) -> i32 {
        v.signum()
    }

    /// Every length up to 40 with the difference at every position, in both directions.
    #[test]
    fn agrees_at_every_length_and_position() {
        for n in 0..=40usize {
            let x: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                unsafe { memcmp(x.as_ptr(), x.clone().as_ptr(), n) },
                0,
                "n={n}"
            );
            for at in 0..n {
                for delta in [1u8, 0x80, 0xff] {
                    let mut y = x.clone();
                    y[at] = y[at].wrapping_add(delta);
                    let got = unsafe { memcmp(x.as_ptr(), y.as_ptr(), n) };
                    assert_eq!(got, i32::from(x[at]) - i32::from(y[at]), "n={n} at={at}");
                    let back = unsafe { memcmp(y.as_ptr(), x.as_ptr(), n) };
                    assert_eq!(back, -got, "n={n} at={at}");
                }
            }
        }
    }

    #[test]
    fn agrees_with_slice_ordering() {
        let words: [&[u8]; 12] = [
            b"",
            b"a",
            b"b",
            b"ab",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghi",
            b"abcdefgh\xff",
            b"abcdefgh\x00",
            b"\x80abcdefgh",
            b"zzzzzzzzzzzzzzzzy",
            b"zzzzzzzzzzzzzzzzz",
        ];
        for x in words {
            for y in words {
                let n = x.len().min(y.len());
                let got = unsafe { memcmp(x.as_ptr(), y.as_ptr(), n) };
                let want = x[..n].cmp(&y[..n]) as i32;
                assert_eq!(sign(got), want, "{x:?} {y:?}");
            }
        }
    }
}
