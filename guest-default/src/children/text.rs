//! Byte-level splitting and trimming for the short ASCII texts the children read (`netN`
//! property strings, addresses, MACs).
//!
//! Why: `str::split(char)`, `split_once(char)` and `trim` go through `CharSearcher`, `memchr`
//! and character decoding, which through WASM cost more than these texts are long (~15k
//! instructions per VM with children). These give exactly the same results: a separator is an
//! ASCII byte, so every slice is on character boundaries, and [`trim`] hands anything it cannot
//! decide on the bytes to `str::trim`.

pub(crate) use crate::property::trim;

/// The parts of `s` between `sep` bytes, as `s.split(sep as char)` gives them.
pub(crate) fn split(s: &str, sep: u8) -> Split<'_> {
    debug_assert!(sep.is_ascii());
    Split { rest: Some(s), sep }
}

/// See [`split`].
pub(crate) struct Split<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match position(s, self.sep) {
            Some(i) => {
                self.rest = Some(&s[i + 1..]);
                Some(&s[..i])
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// `s.split_once(sep as char)`.
#[inline]
pub(crate) fn split_once(s: &str, sep: u8) -> Option<(&str, &str)> {
    debug_assert!(sep.is_ascii());
    position(s, sep).map(|i| (&s[..i], &s[i + 1..]))
}

#[inline]
fn position(s: &str, sep: u8) -> Option<usize> {
    s.bytes().position(|b| b == sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: &[&str] = &[
        "",
        ",",
        ",,",
        "a",
        "a,b",
        ",a,",
        " virtio=BC:24:11:2A:3B:4C , bridge=vmbr0 ",
        "name=eth0,ip=10.0.0.5/24,\u{a0}x\u{a0}",
        "é,ü=1,\u{2003}",
        "\t\n a=b=c \u{85}",
        "10.0.0.5/24",
        "fe80::1%eth0",
        "BC:24:11:2A:3B:4C",
    ];

    #[test]
    fn the_same_as_str() {
        for s in TEXTS {
            for sep in [b',', b'=', b'/', b'%', b':'] {
                let ours: Vec<&str> = split(s, sep).collect();
                let std: Vec<&str> = s.split(sep as char).collect();
                assert_eq!(ours, std, "{s:?} {sep}");
                assert_eq!(split_once(s, sep), s.split_once(sep as char), "{s:?} {sep}");
            }
            assert_eq!(trim(s), s.trim(), "{s:?}");
            for part in s.split(',') {
                assert_eq!(trim(part), part.trim(), "{part:?}");
            }
        }
    }
}
