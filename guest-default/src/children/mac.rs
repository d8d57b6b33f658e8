//! MAC addresses in one comparable form: uppercase, colon-separated (`BC:24:11:2A:3B:4C`).
//!
//! Proxmox prints MACs uppercase in the config and the agent lowercase; NetBox stores them
//! uppercase. Accepts `:`, `-` and `.`-grouped forms (hand edits, Windows agents) and refuses
//! anything that is not six octets, so a typo never becomes a key.

/// The normalized form of `text`, or `None` when it is not a 48-bit MAC address.
pub(crate) fn normalize(text: &str) -> Option<String> {
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

/// True for the all-zero MAC some agents report for loopback and tunnels.
pub(crate) fn is_zero(mac: &str) -> bool {
    mac.bytes().all(|b| b == b'0' || b == b':')
}

/// The six octets of a normalized MAC.
pub(crate) fn octets(mac: &str) -> Option<[u8; 6]> {
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
    fn zero_and_octets() {
        assert!(is_zero("00:00:00:00:00:00"));
        assert!(!is_zero("BC:24:11:2A:3B:4C"));
        assert_eq!(
            octets("BC:24:11:2A:3B:4C"),
            Some([0xbc, 0x24, 0x11, 0x2a, 0x3b, 0x4c])
        );
    }
}
