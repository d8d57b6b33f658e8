//! MAC addresses in one comparable form: uppercase, colon-separated (`BC:24:11:2A:3B:4C`).
//!
//! Proxmox prints MACs uppercase in the config and the agent lowercase; NetBox stores them
//! uppercase. Accepts `:`, `-` and `.`-grouped forms (hand edits, Windows agents) and refuses
//! anything that is not six octets, so a typo never becomes a key.

use std::borrow::Cow;

/// The normalized form of `text`, or `None` when it is not a 48-bit MAC address.
pub(crate) fn normalize(text: &str) -> Option<String> {
    colon_pairs(text.as_bytes()).or_else(|| normalize_any(text))
}

/// [`normalize`] on text that may already be normal (NetBox's, always): borrowed as it is
/// then, copied only when it changes; text that is not a MAC is kept as it is.
pub(crate) fn normalize_or_keep(text: Cow<'_, str>) -> Cow<'_, str> {
    if is_normal(text.as_bytes()) {
        return text;
    }
    normalize(&text).map_or(text, Cow::Owned)
}

/// [`normalize`] borrowing `text` when it is already normal (Proxmox's config prints MACs so):
/// the same text, copied only when it changes.
pub(crate) fn normalize_cow(text: &str) -> Option<Cow<'_, str>> {
    if is_normal(text.as_bytes()) {
        return Some(Cow::Borrowed(text));
    }
    normalize(text).map(Cow::Owned)
}

/// The octets of `text` in any form [`normalize`] accepts (`normalize` then [`octets`]),
/// without writing the normal form out when it is six colon-separated pairs of either case
/// (the agents' lowercase answers).
pub(crate) fn parse_octets(text: &str) -> Option<[u8; 6]> {
    octets_of_pairs(text.as_bytes())
        .or_else(|| normalize_any(text).and_then(|m| octets_of_pairs(m.as_bytes())))
}

/// True for a MAC already in the normal form (six colon-separated pairs of uppercase hex
/// digits).
///
/// Pair by pair over a fixed-size array, as [`colon_pairs`]: the loop of six is unrolled, so
/// through WASM no loop is entered (each pays an interruption check) and no `i % 3` is taken
/// per byte; every MAC of a VM's config and NetBox's children passes here.
fn is_normal(b: &[u8]) -> bool {
    let Ok(b) = <&[u8; 17]>::try_from(b) else {
        return false;
    };
    let upper_hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
    (0..6).all(|g| {
        let i = 3 * g;
        upper_hex(b[i]) && upper_hex(b[i + 1]) && (g == 5 || b[i + 2] == b':')
    })
}

/// The common form (Proxmox's config, NetBox, most agents: six colon-separated pairs of hex
/// digits), uppercased in one fixed pass; `None` for any other text, which [`normalize_any`]
/// reads. Through WASM the general loop cost ~400 instructions per MAC, this about a third.
fn colon_pairs(b: &[u8]) -> Option<String> {
    let b: &[u8; 17] = b.try_into().ok()?;
    let mut out = [b':'; 17];
    for g in 0..6 {
        let i = 3 * g;
        let (hi, lo) = (b[i], b[i + 1]);
        if !(hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit()) || (g < 5 && b[i + 2] != b':') {
            return None;
        }
        out[i] = hi.to_ascii_uppercase();
        out[i + 1] = lo.to_ascii_uppercase();
    }
    // Hex digits and colons: always ASCII.
    std::str::from_utf8(&out).ok().map(str::to_owned)
}

/// [`normalize`] for any accepted form.
fn normalize_any(text: &str) -> Option<String> {
    // One pass over the text, no intermediate buffer on the heap: this runs for every MAC of
    // every VM's config, agent answer and NetBox children.
    let mut hex = [0u8; 12];
    let (mut digits, mut seps) = (0usize, 0usize);
    // `trim` walks characters from both ends; a MAC starts and ends with a hex digit, and
    // then there is nothing to trim.
    let ends_plain = |b: Option<&u8>| b.is_some_and(u8::is_ascii_alphanumeric);
    let bytes = text.as_bytes();
    let text = if ends_plain(bytes.first()) && ends_plain(bytes.last()) {
        text
    } else {
        text.trim()
    };
    for b in text.bytes() {
        match b {
            b':' | b'-' | b'.' => seps += 1,
            b if b.is_ascii_hexdigit() && digits < 12 => {
                hex[digits] = b.to_ascii_uppercase();
                digits += 1;
            }
            _ => return None,
        }
    }
    // Separators must group the digits in pairs (or fours, Cisco-style) when present.
    if digits != 12 || !matches!(seps, 0 | 2 | 5) {
        return None;
    }
    // Written into a buffer and copied once: `String::push` per character (a capacity check
    // and UTF-8 encoding each) was most of this function's cost through WASM.
    let mut out = [b':'; 17];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[3 * i] = pair[0];
        out[3 * i + 1] = pair[1];
    }
    // Hex digits and colons: always ASCII.
    std::str::from_utf8(&out).ok().map(str::to_owned)
}

/// The six octets of a normalized MAC.
pub(crate) fn octets(mac: &str) -> Option<[u8; 6]> {
    octets_of_pairs(mac.as_bytes()).or_else(|| octets_any(mac))
}

/// [`octets`] of six colon-separated pairs of hex digits (what [`normalize`] writes), without
/// `from_str_radix` per part; `None` for any other text.
fn octets_of_pairs(b: &[u8]) -> Option<[u8; 6]> {
    let b: &[u8; 17] = b.try_into().ok()?;
    let digit = super::ip::hex_digit;
    let mut out = [0u8; 6];
    for (g, o) in out.iter_mut().enumerate() {
        let i = 3 * g;
        if g < 5 && b[i + 2] != b':' {
            return None;
        }
        *o = (digit(b[i])? << 4) | digit(b[i + 1])?;
    }
    Some(out)
}

/// [`octets`] of any text, part by part.
fn octets_any(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = super::text::split(mac, b':');
    for o in &mut out {
        *o = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair-by-pair test against the byte-by-byte definition, on a normal MAC with each
    /// byte replaced in turn, and on other lengths.
    #[test]
    fn is_normal_is_the_byte_definition() {
        let by_byte = |b: &[u8]| {
            b.len() == 17
                && b.iter().enumerate().all(|(i, &c)| {
                    if i % 3 == 2 {
                        c == b':'
                    } else {
                        c.is_ascii_digit() || (b'A'..=b'F').contains(&c)
                    }
                })
        };
        let base = *b"BC:24:11:2A:3B:4C";
        assert!(is_normal(&base));
        for i in 0..17 {
            for c in [
                b'0', b'9', b'A', b'F', b'G', b'a', b'f', b':', b'-', b' ', 0, 0xff,
            ] {
                let mut t = base;
                t[i] = c;
                assert_eq!(is_normal(&t), by_byte(&t), "{:?}", t);
            }
        }
        for t in [
            &b""[..],
            b"BC:24:11:2A:3B:4",
            b"BC:24:11:2A:3B:4C:",
            b"BC:24:11:2A:3B:4CD",
        ] {
            assert!(!is_normal(t), "{t:?}");
        }
    }

    #[test]
    fn case_and_separators_normalize() {
        for t in [
            "bc:24:11:2a:3b:4c",
            "BC:24:11:2A:3B:4C",
            "bc-24-11-2a-3b-4c",
            "bc24.112a.3b4c",
            "bc24112a3b4c",
            " BC:24:11:2a:3B:4c ",
        ] {
            assert_eq!(normalize(t).as_deref(), Some("BC:24:11:2A:3B:4C"), "{t}");
        }
    }

    /// The fixed-form pass gives exactly what the general one gives, or declines.
    #[test]
    fn colon_pairs_agree_with_the_general_form() {
        let mut forms: Vec<String> = [
            "bc:24:11:2a:3b:4c",
            "BC:24:11:2A:3B:4C",
            "00:00:00:00:00:00",
            "ff:FF:0a:B9:9b:aF",
            "bc-24-11-2a-3b-4c",
            "bc:24:11:2a:3b:4c ",
            " c:24:11:2a:3b:4c",
            "bc:24:11:2a:3b:4",
            "bc:24:11:2a:3b4cd",
            "bc:24:11:2a:3b:gc",
            "bc:24:11:2a:3b:4c:",
            "bc:24:11:2a:3b:4é",
            "bc24:11:2a:3b:4c:",
            "b:c24:11:2a:3b:4c",
        ]
        .map(str::to_owned)
        .to_vec();
        // Every single-byte change of a good MAC, over separators, digits, case and junk.
        let good = b"bc:24:11:2a:3b:4c";
        for i in 0..good.len() {
            for c in [b':', b'-', b'.', b'0', b'F', b'f', b'g', b' ', b'G', b'+'] {
                let mut t = *good;
                t[i] = c;
                forms.push(String::from_utf8(t.to_vec()).unwrap());
            }
        }
        let mut accepted = 0;
        for t in &forms {
            let fast = octets_of_pairs(t.as_bytes());
            assert!(fast.is_none() || fast == octets_any(t), "{t}");
            assert_eq!(octets(t), octets_any(t), "{t}");
            let fast = colon_pairs(t.as_bytes());
            assert!(fast.is_none() || fast == normalize_any(t), "{t}");
            assert_eq!(normalize(t), normalize_any(t), "{t}");
            accepted += usize::from(fast.is_some());
        }
        assert!(accepted > 20, "{accepted}");
    }

    /// The borrowed form and the octets read straight from the text agree with `normalize`
    /// (and `octets` of its result) on good MACs of each form and every change of one or two
    /// of their bytes to a separator, a digit of either case, junk or a multi-byte character.
    #[test]
    fn borrowed_and_octets_agree_with_normalize() {
        const SYMBOLS: [&str; 11] = [":", "-", ".", "0", "F", "f", "g", " ", "G", "+", "é"];
        let mut texts = Vec::new();
        for good in [
            "bc:24:11:2a:3b:4c",
            "BC:24:11:2A:3B:4C",
            "bc-24-11-2a-3b-4c",
            "bc24.112a.3b4c",
            "BC24112A3B4C",
        ] {
            let n = good.len();
            texts.push(good.to_owned());
            for i in 0..n {
                for a in SYMBOLS {
                    let one = format!("{}{a}{}", &good[..i], &good[i + 1..]);
                    for j in i + 1..n {
                        for b in SYMBOLS {
                            texts.push(format!(
                                "{}{a}{}{b}{}",
                                &good[..i],
                                &good[i + 1..j],
                                &good[j + 1..]
                            ));
                        }
                    }
                    texts.push(one);
                }
            }
        }
        texts.extend([" BC:24:11:2A:3B:4C ", "00:00:00:00:00:00", ""].map(str::to_owned));
        let (mut borrowed, mut read) = (0, 0);
        for t in &texts {
            let owned = normalize(t);
            let cow = normalize_cow(t);
            assert_eq!(cow.as_deref(), owned.as_deref(), "{t:?}");
            borrowed += usize::from(matches!(cow, Some(Cow::Borrowed(_))));
            let via = owned.as_deref().and_then(octets);
            assert_eq!(parse_octets(t), via, "{t:?}");
            read += usize::from(via.is_some());
        }
        assert!(borrowed > 100 && read > 1000, "{borrowed} {read}");
    }

    #[test]
    fn malformed_macs_are_refused() {
        for t in [
            "",
            "bc:24:11:2a:3b",
            "bc:24:11:2a:3b:4c:5d",
            "zz:24:11:2a:3b:4c",
            "bc:2:411:2a:3b:4c:",
        ] {
            assert_eq!(normalize(t), None, "{t}");
        }
    }

    #[test]
    fn octets_of_a_normal_mac() {
        assert_eq!(
            octets("BC:24:11:2A:3B:4C"),
            Some([0xbc, 0x24, 0x11, 0x2a, 0x3b, 0x4c])
        );
    }
}
