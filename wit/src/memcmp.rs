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
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, and both are valid for `n` bytes (the caller's contract).
        let (x, y) = unsafe {
            (
                a.add(i).cast::<u64>().read_unaligned(),
                b.add(i).cast::<u64>().read_unaligned(),
            )
        };
        if x != y {
            // Little-endian: the first differing byte is the lowest differing one.
            let shift = (x ^ y).trailing_zeros() & !7;
            return i32::from((x >> shift) as u8) - i32::from((y >> shift) as u8);
        }
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(v: i32) -> i32 {
        v.signum()
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
