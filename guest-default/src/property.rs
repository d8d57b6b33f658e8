//! Proxmox property strings (`local-lvm:vm-100-disk-0,size=32G`), per reference A.4 rules 1-6.
//!
//! Split on `,` (no escaping), skip empty parts, `key=value` on the first `=`, a part without
//! `=` is the value of the format's default key, booleans `1|on|yes|true` / `0|off|no|false`.
//! Unknown keys are kept. Borrows from the input: no allocation beyond the part list.

use crate::children::text::{split, split_once};

/// One property string, read lazily: each lookup scans the (short) text again, which is
/// cheaper than allocating a part list on the hot path. Callers that need two keys use
/// [`PropertyString::get2`] (one scan).
pub(crate) struct PropertyString<'a> {
    text: &'a str,
    default_key: &'a str,
}

impl<'a> PropertyString<'a> {
    /// Wraps `text`; a part without `=` belongs to `default_key`.
    pub(crate) fn parse(text: &'a str, default_key: &'a str) -> Self {
        PropertyString { text, default_key }
    }

    /// The `(key, value)` parts in order (rules 1-3).
    pub(crate) fn parts(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        // Split on the bytes: for texts this short, `split(',')`'s `CharSearcher` and `memchr`
        // cost more through WASM than a byte loop (see `crate::children::text`).
        split(self.text, b',').filter_map(|part| {
            let part = trim(part);
            if part.is_empty() {
                return None;
            }
            Some(match split_once(part, b'=') {
                Some((k, v)) => match trim(k) {
                    "" => (self.default_key, part),
                    k => (k, trim(v)),
                },
                None => (self.default_key, part),
            })
        })
    }

    /// The value of `key` (the first occurrence: duplicates are a PVE error, not ours).
    pub(crate) fn get(&self, key: &str) -> Option<&'a str> {
        self.parts().find(|(k, _)| same(k, key)).map(|(_, v)| v)
    }

    /// The values of two keys in one scan (first occurrences), as `get(a)`, `get(b)`.
    pub(crate) fn get2(&self, a: &str, b: &str) -> (Option<&'a str>, Option<&'a str>) {
        let (mut va, mut vb) = (None, None);
        for (k, v) in self.parts() {
            if va.is_none() && same(k, a) {
                va = Some(v);
            } else if vb.is_none() && same(k, b) {
                vb = Some(v);
            }
            if va.is_some() && vb.is_some() {
                break;
            }
        }
        (va, vb)
    }
}

/// `a == b` for the short keys of property strings, byte by byte: `==` on `str` calls `memcmp`,
/// a call per comparison through WASM, which costs more than the few bytes compared.
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// `str::trim` with a fast path: property parts rarely have surrounding whitespace, and
/// `trim` decodes UTF-8 from both ends every time (it was the largest cost of disk parsing).
/// An ASCII first and last byte that is not whitespace means there is nothing to trim;
/// otherwise `str::trim` decides, so the result is always exactly `str::trim`'s.
pub(crate) fn trim(s: &str) -> &str {
    let keeps = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !(b as char).is_whitespace());
    let bytes = s.as_bytes();
    if keeps(bytes.first()) && keeps(bytes.last()) {
        s
    } else {
        s.trim()
    }
}

/// Perl/Proxmox boolean (rule 6), case-insensitive.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    crate::model::parse_bool(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_and_pairs() {
        let p = PropertyString::parse("local-lvm:vm-100-disk-0,iothread=1,size=32G", "file");
        assert_eq!(p.get("file"), Some("local-lvm:vm-100-disk-0"));
        assert_eq!(p.get("size"), Some("32G"));
        assert_eq!(p.get("iothread"), Some("1"));
        assert_eq!(p.get("media"), None);
    }

    #[test]
    fn value_may_contain_equals_and_empty_parts_are_skipped() {
        let p = PropertyString::parse(",,a=b=c,,", "x");
        assert_eq!(p.get("a"), Some("b=c"));
        assert_eq!(p.get("x"), None);
    }

    #[test]
    fn memory_shapes() {
        assert_eq!(
            PropertyString::parse("4096", "current").get("current"),
            Some("4096")
        );
        assert_eq!(
            PropertyString::parse("current=4096", "current").get("current"),
            Some("4096")
        );
    }

    #[test]
    fn unknown_keys_are_kept() {
        let p = PropertyString::parse("volume=local:vm-1-disk-0,weird=1", "file");
        assert_eq!(p.get("volume"), Some("local:vm-1-disk-0"));
        assert_eq!(p.get("weird"), Some("1"));
    }

    #[test]
    fn get2_matches_get() {
        for text in [
            "local-lvm:vm-1-disk-0,media=cdrom,size=4M",
            "size=1G, media = disk ,size=2G",
            " x ,=y, size=3M,media=cdrom,media=disk",
            "",
        ] {
            let p = PropertyString::parse(text, "file");
            assert_eq!(
                p.get2("media", "size"),
                (p.get("media"), p.get("size")),
                "{text:?}"
            );
        }
    }

    #[test]
    fn fast_trim_is_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{a0}a",
            "a\u{2003}",
            "\u{b}a",
            "é",
            " é ",
            "a b",
        ] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["1", "on", "YES", "True"] {
            assert_eq!(parse_bool(t), Some(true));
        }
        for f in ["0", "off", "No", "FALSE"] {
            assert_eq!(parse_bool(f), Some(false));
        }
        assert_eq!(parse_bool("2"), None);
    }
}
