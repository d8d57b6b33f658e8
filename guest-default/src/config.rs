//! One pass over a guest's raw config, picking out the keys the default rules read.
//!
//! Borrows from the guest's pairs, or straight from the config's JSON text as the component
//! receives it ([`scan_json`]: no owned key or value strings). Disk keys are recognised here so
//! `disks` never sees look-alikes such as `scsihw` or `unused0`.

use std::borrow::Cow;

#[cfg(test)]
use crate::model::Guest;
use crate::model::{GuestKind, next_json_special};

/// The config keys the default rules use, borrowed from the guest.
#[derive(Default)]
pub(crate) struct ConfigView<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) memory: Option<&'a str>,
    pub(crate) vcpus: Option<&'a str>,
    pub(crate) cores: Option<&'a str>,
    pub(crate) sockets: Option<&'a str>,
    pub(crate) cpulimit: Option<&'a str>,
    pub(crate) ostype: Option<&'a str>,
    pub(crate) description: Option<&'a str>,
    pub(crate) onboot: Option<&'a str>,
    pub(crate) tags: Option<&'a str>,
    pub(crate) smbios1: Option<&'a str>,
    /// Disk keys and their property strings, in config order.
    pub(crate) disks: Vec<(&'a str, &'a str)>,
}

impl<'a> ConfigView<'a> {
    /// Reads the guest's config (empty when it was not read). The rules take the config out
    /// of the guest first (`desired`); tests read it in place.
    #[cfg(test)]
    pub(crate) fn new(guest: &'a Guest) -> Self {
        Self::from_pairs(
            guest.kind,
            guest.config.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// Reads config properties in config order (a later duplicate key wins, disks all count).
    pub(crate) fn from_pairs(
        kind: GuestKind,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut v = ConfigView::default();
        for (k, val) in pairs {
            match k {
                "name" => v.name = Some(val),
                "hostname" => v.hostname = Some(val),
                "memory" => v.memory = Some(val),
                "vcpus" => v.vcpus = Some(val),
                "cores" => v.cores = Some(val),
                "sockets" => v.sockets = Some(val),
                "cpulimit" => v.cpulimit = Some(val),
                "ostype" => v.ostype = Some(val),
                "description" => v.description = Some(val),
                "onboot" => v.onboot = Some(val),
                "tags" => v.tags = Some(val),
                "smbios1" => v.smbios1 = Some(val),
                key if is_disk_key(kind, key) => v.disks.push((key, val)),
                _ => {}
            }
        }
        v
    }
}

/// A config in the WIT's form (a JSON object whose values are all strings) as its properties in
/// order, borrowed from `text` (a key or value is decoded into its own string only when it
/// holds an escape). `None` for any other text (`null`, other value types, malformed JSON): the
/// caller then parses it fully (`model::config_from_json`), which accepts more and words the
/// error, so what this accepts it reads exactly as that parse would.
///
/// Why: parsing into owned pairs (two strings per property) was the largest part of the WASM
/// rules' own cost per VM.
pub(crate) fn scan_json(text: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    // Proxmox configs have 20 to 60 properties.
    let mut out = Vec::with_capacity(32);
    if b.get(i) == Some(&b'}') {
        return (skip_ws(b, i + 1) == b.len()).then_some(out);
    }
    loop {
        let (key, next) = json_string(text, i)?;
        i = skip_ws(b, next);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let (value, next) = json_string(text, skip_ws(b, i + 1))?;
        out.push((key, value));
        i = skip_ws(b, next);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return (skip_ws(b, i + 1) == b.len()).then_some(out),
            _ => return None,
        }
    }
}

/// The content of a JSON string with its one-character escapes decoded (a description's line
/// breaks); `None` for a `\u` escape or a bad one, which serde_json then decodes or rejects.
fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let c = match rest.as_bytes().get(at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// JSON's insignificant whitespace from `i` on.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The JSON string starting at `i` (its opening quote) and the position after it; `None` when
/// there is none or it holds a raw control character or a bad escape.
fn json_string(text: &str, i: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = text.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = next_json_special(b, j);
        match *b.get(j)? {
            b'"' => break,
            // Skip the escaped character (a `\uXXXX`'s digits are never special).
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => return None,
        }
    }
    let s = if escaped {
        Cow::Owned(unescape(&text[i + 1..j]).or_else(|| serde_json::from_str(&text[i..=j]).ok())?)
    } else {
        Cow::Borrowed(&text[i + 1..j])
    };
    Some((s, j + 1))
}

/// True for the config keys that are disks of this guest kind: `scsiN|ideN|sataN|virtioN|
/// efidiskN|tpmstateN` (QEMU), `rootfs|mpN` (LXC). `unusedN` (detached) is not a disk.
pub(crate) fn is_disk_key(kind: GuestKind, key: &str) -> bool {
    let numbered = |prefix: &str| {
        key.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match kind {
        GuestKind::Qemu => ["scsi", "ide", "sata", "virtio", "efidisk", "tpmstate"]
            .iter()
            .any(|p| numbered(p)),
        GuestKind::Lxc => key == "rootfs" || numbered("mp"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `scan_json` reads, as owned pairs.
    fn scanned(text: &str) -> Option<Vec<(String, String)>> {
        scan_json(text).map(|p| {
            p.into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
    }

    #[test]
    fn scan_json_reads_what_the_full_parse_reads_or_declines() {
        let long = "x".repeat(37);
        let accepted = [
            r#"{}"#.to_owned(),
            " { } ".to_owned(),
            r#"{"memory":"4096","scsi0":"local-lvm:vm-100-disk-0,size=32G"}"#.to_owned(),
            "{ \"a\" :\t\"1\" ,\n\"b\":\"\" }\r\n".to_owned(),
            r#"{"description":"Owner: x\nTicket: \"OPS-1\" \\ done\t\/ \b\f\r","k":"v"}"#
                .to_owned(),
            r#"{"name":"caf\u00e9 \ud83d\ude00","n\u0061me":"h\u00e9"}"#.to_owned(),
            r#"{"tags":"a;b","tags":"c","scsi1":"x","scsi1":"y"}"#.to_owned(),
            format!(r#"{{"{long}":"{long}\"{long}","é😀":"é"}}"#),
        ];
        for text in &accepted {
            let full = crate::model::config_from_json(text).unwrap();
            assert_eq!(scanned(text), Some(full), "{text}");
        }
        // Declined: the full parse either accepts more (numbers, null) or rejects it.
        let declined = [
            "null",
            "[]",
            r#"{"memory":4096}"#,
            r#"{"tags":null}"#,
            r#"{"a":"1",}"#,
            r#"{"a":"1"} x"#,
            r#"{"a" "1"}"#,
            r#"{"a":"1""#,
            r#"{"a":"bad \x escape"}"#,
            r#"{"a":"bad \u12 escape"}"#,
            "{\"a\":\"raw\ncontrol\"}",
            r#"{"a":"\"#,
            "",
        ];
        for text in declined {
            assert_eq!(scanned(text), None, "{text}");
        }
    }

    #[test]
    fn escape_finder_stops_at_every_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes.extend_from_slice("é\u{7f}~ ".as_bytes());
                bytes[at] = special;
                assert_eq!(next_json_special(&bytes, 0), at, "{special} at {at}");
            }
        }
        assert_eq!(next_json_special(b"plain text, twenty-three", 0), 24);
        assert_eq!(next_json_special(b"ab", 5), 5);
    }

    #[test]
    fn disk_keys() {
        for k in [
            "scsi0",
            "scsi30",
            "ide2",
            "sata5",
            "virtio15",
            "efidisk0",
            "tpmstate0",
        ] {
            assert!(is_disk_key(GuestKind::Qemu, k), "{k}");
        }
        for k in [
            "scsihw", "unused0", "scsi", "net0", "rootfs", "mp0", "virtio-x",
        ] {
            assert!(!is_disk_key(GuestKind::Qemu, k), "{k}");
        }
        for k in ["rootfs", "mp0", "mp255"] {
            assert!(is_disk_key(GuestKind::Lxc, k), "{k}");
        }
        for k in ["mp", "unused1", "scsi0", "mpx"] {
            assert!(!is_disk_key(GuestKind::Lxc, k), "{k}");
        }
    }
}
