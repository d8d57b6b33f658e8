//! A guest's network answer (JSON text) as the read keeps it until the rules: the fragments
//! every answer repeats (`{"ip-address":"`, `","ip-address-type":"ipv4","prefix":`, the
//! loopback's addresses, ...) stored as one control byte each.
//!
//! Why: the answers of 100k guests are held from the read to the rules, through the NetBox
//! snapshot, which is a rerun's memory peak; two NICs' answer is ~0.6 KB of text, ~0.15 KB so.
//! The text is given back byte for byte ([`PackedText::unpack`]), so the rules see what they
//! would have seen; and packing is a function of the text with an inverse, so the packed bytes
//! key the no-op memo as the text would.
//!
//! Why control bytes: a JSON text written by serde_json holds none (they are escaped inside
//! strings, and there is no whitespace outside them). Any text still packs: a control byte of
//! the text is kept behind an escape byte.
//!
//! Edges: text in, text out; knows JSON only through the fragments below.

/// The fragments, in the order of their bytes (the first is byte 1). Keys as serde_json writes
/// them: sorted, without spaces. QEMU agent (`ipv4`/`ipv6`) and LXC (`inet`/`inet6`, `hwaddr`)
/// answers both.
const FRAGMENTS: [&str; 30] = [
    r#"{"hardware-address":""#,
    r#"","ip-addresses":["#,
    r#"{"ip-address":""#,
    r#"","ip-address-type":"ipv4","prefix":"#,
    r#"","ip-address-type":"ipv6","prefix":"#,
    r#"","ip-address-type":"inet","prefix":"#,
    r#"","ip-address-type":"inet6","prefix":"#,
    r#"}],"name":""#,
    r#""},"#,
    r#""}]"#,
    r#"{"ip-addresses":["#,
    r#"","hwaddr":""#,
    r#"{"hwaddr":""#,
    r#"","inet":""#,
    r#"","inet6":""#,
    r#"","name":""#,
    r#"],"name":""#,
    r#"{"name":""#,
    "00:00:00:00:00:00",
    "127.0.0.1",
    "::1",
    "fe80::",
    "bc:24:11:",
    "Loopback Pseudo-Interface 1",
    "Ethernet",
    "eth",
    "/64",
    "/24",
    "/8",
    "/128",
];

/// Marks that the next byte is the text's own (a control byte), not a fragment.
const ESCAPE: char = '\0';

/// A JSON text with its common fragments packed (see the module doc). Still UTF-8: the bytes it
/// adds are ASCII control characters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackedText(Box<str>);

impl PackedText {
    /// Packs `text`, each position taking the longest fragment that starts there.
    pub fn pack(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len() / 2);
        let (mut i, mut run) = (0, 0);
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x20 {
                out.push_str(&text[run..i]);
                out.push(ESCAPE);
                out.push(char::from(b));
                i += 1;
                run = i;
            } else if let Some((token, len)) = longest_fragment(&bytes[i..]) {
                // Fragments are ASCII and a UTF-8 sequence's later bytes never are, so `i` is
                // on a character boundary.
                out.push_str(&text[run..i]);
                out.push(token);
                i += len;
                run = i;
            } else {
                i += 1;
            }
        }
        out.push_str(&text[run..]);
        PackedText(out.into_boxed_str())
    }

    /// The text as it was given to [`PackedText::pack`].
    pub fn unpack(&self) -> String {
        let packed = &*self.0;
        let mut out = String::with_capacity(self.unpacked_len());
        let mut chars = packed.char_indices();
        let mut run = 0;
        while let Some((i, c)) = chars.next() {
            if c >= ' ' {
                continue;
            }
            out.push_str(&packed[run..i]);
            if c == ESCAPE {
                if let Some((_, own)) = chars.next() {
                    out.push(own);
                }
            } else {
                out.push_str(FRAGMENTS[c as usize - 1]);
            }
            run = chars.offset();
        }
        out.push_str(&packed[run..]);
        out
    }

    /// The packed bytes: equal exactly when the texts are (what the no-op memo keys on).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The length of the unpacked text.
    fn unpacked_len(&self) -> usize {
        let mut escaped = false;
        self.0
            .bytes()
            .map(|b| match b {
                _ if escaped => {
                    escaped = false;
                    1
                }
                0 => {
                    escaped = true;
                    0
                }
                1..0x20 => FRAGMENTS[usize::from(b) - 1].len(),
                _ => 1,
            })
            .sum()
    }
}

/// For each ASCII byte, the fragments that start with it (bit `n`: `FRAGMENTS[n]`), so most
/// bytes of a text are passed over with one look-up.
const STARTS: [u32; 128] = {
    let mut starts = [0u32; 128];
    let mut n = 0;
    while n < FRAGMENTS.len() {
        starts[FRAGMENTS[n].as_bytes()[0] as usize] |= 1 << n;
        n += 1;
    }
    starts
};

/// The byte (as a char) and length of the longest fragment `rest` starts with.
fn longest_fragment(rest: &[u8]) -> Option<(char, usize)> {
    let mut candidates = *STARTS.get(usize::from(*rest.first()?))?;
    let mut best: Option<(char, usize)> = None;
    while candidates != 0 {
        let n = candidates.trailing_zeros() as usize;
        candidates &= candidates - 1;
        let fragment = FRAGMENTS[n].as_bytes();
        if rest.starts_with(fragment) && best.is_none_or(|(_, len)| fragment.len() > len) {
            // `n` < 30: the token is a control byte.
            best = Some((char::from(n as u8 + 1), fragment.len()));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulator's two-NIC QEMU answer and the reference's LXC answers (PVE 8.4 and 8.1).
    const ANSWERS: [&str; 3] = [
        r#"[{"hardware-address":"00:00:00:00:00:00","ip-addresses":[{"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8},{"ip-address":"::1","ip-address-type":"ipv6","prefix":128}],"name":"lo"},{"hardware-address":"bc:24:11:2a:3b:4c","ip-addresses":[{"ip-address":"10.0.0.5","ip-address-type":"ipv4","prefix":24},{"ip-address":"fe80::be24:11ff:fe2a:3b4c","ip-address-type":"ipv6","prefix":64}],"name":"eth0"},{"hardware-address":"bc:24:11:2a:3b:4d","ip-addresses":[{"ip-address":"10.0.1.5","ip-address-type":"ipv4","prefix":24},{"ip-address":"fe80::be24:11ff:fe2a:3b4d","ip-address-type":"ipv6","prefix":64}],"name":"eth1"}]"#,
        r#"[{"hardware-address":"bc:24:11:5d:6e:7f","hwaddr":"bc:24:11:5d:6e:7f","inet":"10.0.0.5/24","inet6":"fe80::be24:11ff:fe5d:6e7f/64","ip-addresses":[{"ip-address":"10.0.0.5","ip-address-type":"inet","prefix":24},{"ip-address":"fe80::be24:11ff:fe5d:6e7f","ip-address-type":"inet6","prefix":64}],"name":"eth0"}]"#,
        r#"[{"hwaddr":"00:00:00:00:00:00","inet":"127.0.0.1/8","inet6":"::1/128","name":"lo"},{"hwaddr":"bc:24:11:5d:6e:7f","inet":"10.0.0.5/24","name":"eth0"}]"#,
    ];

    #[test]
    fn answers_come_back_byte_for_byte_and_smaller() {
        for answer in ANSWERS {
            let packed = PackedText::pack(answer);
            assert_eq!(packed.unpack(), answer);
            assert_eq!(packed.unpacked_len(), answer.len());
            assert!(
                packed.as_str().len() * 3 < answer.len(),
                "{} of {} bytes: {:?}",
                packed.as_str().len(),
                answer.len(),
                packed.as_str()
            );
        }
        // The fragments are told apart by one byte each, below the space.
        assert!(FRAGMENTS.len() < 0x20);
    }

    #[test]
    fn any_text_comes_back_control_bytes_and_fragments_of_fragments_included() {
        let texts = [
            "",
            "\0",
            "\u{1}\u{1f} \0x\n",
            "caf\u{e9} \u{1f600} eth",
            "{\"ip-address\":",
            "{\"ip-address\":\"",
            "::1::1fe80:",
            "\"},\"}]\"}",
            "Ethernet 2\tEthernet",
            r#"{"hardware-address":"{"hardware-address":"#,
        ];
        for text in texts {
            let packed = PackedText::pack(text);
            assert_eq!(packed.unpack(), text, "{packed:?}");
            assert_eq!(packed.unpacked_len(), text.len());
        }
    }

    #[test]
    fn every_string_of_fragment_pieces_and_control_bytes_comes_back() {
        // Pieces that cut fragments anywhere, joined every way three deep: packing must never
        // take a fragment across a piece wrongly or lose a byte.
        let mut pieces: Vec<&str> = vec!["\0", "\u{1}", "\u{1f}", "\u{e9}", "x", "\""];
        for f in FRAGMENTS {
            pieces.push(f);
            pieces.push(&f[..f.len() / 2]);
            pieces.push(&f[f.len() / 2..]);
        }
        let mut seen = 0;
        for a in &pieces {
            for b in &pieces {
                for c in &pieces {
                    let text = format!("{a}{b}{c}");
                    let packed = PackedText::pack(&text);
                    assert_eq!(packed.unpack(), text);
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, pieces.len().pow(3));
    }

    #[test]
    fn packing_tells_texts_apart() {
        // Different texts, different packed bytes (the memo keys on them).
        let texts = ["\u{1}", "\0\u{1}", r#"{"ip-address":""#, "\0\u{3}", "\u{3}"];
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(PackedText::pack(a), PackedText::pack(b), "{a:?} {b:?}");
            }
        }
    }
}
