//! The texts every VM's changes repeat (field names, `null` and a few other JSON values), kept as
//! a one- or two-byte code in the packed changes ([`super::Changes`], [`super::ChildOperations`]).
//!
//! Why: a 100k-VM first sync holds every create's changes until the dispatch: a VM with two
//! NICs, four IPs and two disks has 59 field changes, each a field name, a `null` old value and
//! a new value, ~1,350 bytes of text; with these codes ~510.
//!
//! A stored text starting with a byte below 0x20 is a code: one byte `b` (0x01-0x1E) is
//! `WORDS[b - 1]`, the two bytes `0x1F n` are `WORDS[30 + n - 0x20]`. Any other text is stored as
//! itself, behind a 0x00 when it starts with a byte below 0x20 itself (field names and JSON texts
//! never do, but a saved plan may say anything), so every text reads back byte for byte and the
//! stored form is a function of the text (equal texts, equal bytes).

/// The well-known texts, most frequent first (the first 30 take one byte).
const WORDS: &[&str] = &[
    "null",
    "tags",
    "[\"pve2netbox\"]",
    "interface",
    "name",
    "description",
    "status",
    "address",
    "\"active\"",
    "true",
    "false",
    "\"\"",
    "enabled",
    "primary_mac_address",
    "mac_address",
    "size",
    "mode",
    "untagged_vlan",
    "virtual_machine_type",
    "platform",
    "vcpus",
    "memory",
    "disk",
    "comments",
    "start_on_boot",
    "primary_ip4",
    "primary_ip6",
    "custom_fields.proxmox_node",
    "custom_fields.proxmox_tags",
    "custom_fields.proxmox_vm_id",
    // Two bytes from here.
    "custom_fields.proxmox_vm_type",
    "role",
    "tenant",
    "site",
    "device",
    "serial",
    "mtu",
    "vrf",
    "\"access\"",
    "\"tagged\"",
    "[]",
    "\"on\"",
    "\"off\"",
    "\"offline\"",
    "\"planned\"",
    "\"staged\"",
    "\"failed\"",
    "\"decommissioning\"",
];

/// Codes taking one byte.
const SHORT: usize = 30;
/// The first byte of a two-byte code.
const LONG: u8 = 0x1F;
/// The second byte of the first two-byte code (printable, so never mistaken for a code itself).
const LONG_BASE: u8 = 0x20;
/// Put before a text that starts with a byte below 0x20.
const ESCAPE: u8 = 0x00;

const _: () = assert!(WORDS.len() <= SHORT + (0x7F - LONG_BASE) as usize);

/// The code of `text`, when it is a well-known one.
fn code(text: &str) -> Option<usize> {
    // Most texts are none of them: lengths first, then the bytes.
    WORDS
        .iter()
        .position(|w| w.len() == text.len() && *w == text)
}

/// The bytes [`push`] appends for `text`.
pub(super) fn stored_len(text: &str) -> usize {
    match code(text) {
        Some(i) if i < SHORT => 1,
        Some(_) => 2,
        None if needs_escape(text) => text.len() + 1,
        None => text.len(),
    }
}

fn needs_escape(text: &str) -> bool {
    text.as_bytes().first().is_some_and(|b| *b < 0x20)
}

/// Appends `text` in its stored form.
pub(super) fn push(buf: &mut String, text: &str) {
    match code(text) {
        Some(i) if i < SHORT => buf.push(char::from(i as u8 + 1)),
        Some(i) => {
            buf.push(char::from(LONG));
            buf.push(char::from((i - SHORT) as u8 + LONG_BASE));
        }
        None => {
            if needs_escape(text) {
                buf.push(char::from(ESCAPE));
            }
            buf.push_str(text);
        }
    }
}

/// The text a stored span holds.
pub(super) fn read(stored: &str) -> &str {
    let bytes = stored.as_bytes();
    match bytes.first() {
        Some(&ESCAPE) => &stored[1..],
        Some(&LONG) => WORDS[SHORT + usize::from(bytes[1] - LONG_BASE)],
        Some(&b) if b < 0x20 => WORDS[usize::from(b) - 1],
        _ => stored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let mut buf = String::new();
        push(&mut buf, text);
        assert_eq!(buf.len(), stored_len(text), "{text:?}");
        assert_eq!(read(&buf), text, "{text:?}");
        buf
    }

    #[test]
    fn every_word_is_one_or_two_bytes_and_reads_back() {
        for (i, w) in WORDS.iter().enumerate() {
            let stored = round_trip(w);
            assert_eq!(stored.len(), if i < SHORT { 1 } else { 2 }, "{w}");
        }
        assert_eq!(round_trip("null"), "\u{1}");
    }

    #[test]
    fn the_words_are_distinct() {
        for (i, w) in WORDS.iter().enumerate() {
            assert_eq!(code(w), Some(i), "{w} twice");
        }
    }

    #[test]
    fn other_texts_are_kept_as_they_are() {
        for text in [
            "",
            "mtu2",
            "Null",
            "nul",
            "custom_fields.site_code",
            "\"Zürich ✓ 東京\"",
            "名前",
            " null",
        ] {
            assert_eq!(round_trip(text), text);
        }
    }

    #[test]
    fn texts_starting_with_a_control_byte_are_escaped() {
        for text in [
            "\u{0}",
            "\u{1}",
            "\u{1}x",
            "\u{1f}",
            "\u{1f} ",
            "\u{0}\u{0}",
            "\ttags",
            "\n",
        ] {
            let stored = round_trip(text);
            assert_eq!(stored.len(), text.len() + 1, "{text:?}");
        }
        // A control byte further in is no code.
        assert_eq!(round_trip("a\u{1}"), "a\u{1}");
    }

    #[test]
    fn spans_side_by_side_read_back_apart() {
        let texts = ["null", "", "\u{2}", "vrf", "x", "\"off\"", "name"];
        let mut buf = String::new();
        let mut ends = Vec::new();
        for t in texts {
            push(&mut buf, t);
            ends.push(buf.len());
        }
        let mut start = 0;
        for (t, end) in texts.iter().zip(ends) {
            assert_eq!(read(&buf[start..end]), *t);
            start = end;
        }
    }
}
