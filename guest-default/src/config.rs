//! One pass over a guest's raw config, picking out the keys the default rules read.
//!
//! Borrows from the guest's pairs, or straight from the config's JSON text as the component
//! receives it ([`scan_json`]: no owned key or value strings). Disk keys are recognised here so
//! `disks` never sees look-alikes such as `scsihw` or `unused0`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::children::json::Reader;

#[cfg(test)]
use crate::model::Guest;
use crate::model::GuestKind;

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
            // Matched on the key's first eight bytes as one word and its length: a `match` on
            // `&str` compares through `memcmp`, a call per candidate of the same length in WASM.
            let w = word(k.as_bytes());
            let slot = match (k.len(), w) {
                (4, NAME) => &mut v.name,
                (8, HOSTNAME) => &mut v.hostname,
                (6, MEMORY) => &mut v.memory,
                (5, VCPUS) => &mut v.vcpus,
                (5, CORES) => &mut v.cores,
                (7, SOCKETS) => &mut v.sockets,
                (8, CPULIMIT) => &mut v.cpulimit,
                (6, OSTYPE) => &mut v.ostype,
                (11, DESCRIPT) if k == "description" => &mut v.description,
                (6, ONBOOT) => &mut v.onboot,
                (4, TAGS) => &mut v.tags,
                (7, SMBIOS1) => &mut v.smbios1,
                _ => {
                    if is_disk_key_word(kind, k.as_bytes(), w) {
                        v.disks.push((k, val));
                    }
                    continue;
                }
            };
            *slot = Some(val);
        }
        v
    }
}

/// A config in the WIT's form (a JSON object whose values are all strings) as its properties in
/// order, borrowed from `text` (a key or value is decoded into its own string only when it holds
/// an escape). `None` for any other text (`null`, other value types, malformed JSON): the caller
/// then parses it fully (`model::config_from_json`), which accepts more and words the error, so
/// what this accepts it reads exactly as that parse would.
///
/// Why: parsing into owned pairs (two strings per property) was the largest part of the WASM
/// rules' own cost per VM, and serde's visitor plumbing was still ~11k instructions per VM
/// through WASM. The children's borrowing reader ([`Reader`]) reads the plain shape; a text it
/// declines (an escaped key, say) goes through serde as before ([`scan_json_serde`]).
pub(crate) fn scan_json(text: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    scan_json_plain(text).or_else(|| scan_json_serde(text))
}

/// [`scan_json`] with the borrowing reader: keys without escapes, values of any string.
fn scan_json_plain(text: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    let mut r = Reader::new(text);
    // Proxmox configs have 20 to 60 properties.
    let mut out = Vec::with_capacity(32);
    r.object(|r, key| {
        out.push((Cow::Borrowed(key), r.cow_str()?));
        Some(())
    })?;
    r.end()?;
    Some(out)
}

/// [`scan_json`] through serde_json (borrowing where it can).
fn scan_json_serde(text: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    serde_json::from_str::<BorrowedConfig<'_>>(text)
        .ok()
        .map(|c| c.0)
}

/// A config object of string values, borrowed from the text where it can be.
struct BorrowedConfig<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for BorrowedConfig<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = BorrowedConfig<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a config object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // Proxmox configs have 20 to 60 properties.
                let mut out = Vec::with_capacity(32);
                while let Some((k, v)) = map.next_entry::<CowStr<'de>, CowStr<'de>>()? {
                    out.push((k.0, v.0));
                }
                Ok(BorrowedConfig(out))
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// A JSON string: borrowed when it has no escape, decoded otherwise.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(s)))
            }
        }
        d.deserialize_str(Text)
    }
}

/// True for the config keys that are disks of this guest kind: `scsiN|ideN|sataN|virtioN|
/// efidiskN|tpmstateN` (QEMU), `rootfs|mpN` (LXC). `unusedN` (detached) is not a disk.
pub(crate) fn is_disk_key(kind: GuestKind, key: &str) -> bool {
    is_disk_key_word(kind, key.as_bytes(), word(key.as_bytes()))
}

/// [`is_disk_key`] given the key's [`word`]: each prefix is a masked compare of that word.
fn is_disk_key_word(kind: GuestKind, key: &[u8], w: u64) -> bool {
    let numbered = |prefix: &[u8]| {
        let n = prefix.len();
        key.len() > n
            && w & prefix_mask(n) == word(prefix)
            && key[n..].iter().all(u8::is_ascii_digit)
    };
    match kind {
        GuestKind::Qemu => match key.first() {
            Some(b's') => numbered(b"scsi") || numbered(b"sata"),
            Some(b'i') => numbered(b"ide"),
            Some(b'v') => numbered(b"virtio"),
            Some(b'e') => numbered(b"efidisk"),
            Some(b't') => numbered(b"tpmstate"),
            _ => false,
        },
        GuestKind::Lxc => (key.len() == 6 && w == ROOTFS) || numbered(b"mp"),
    }
}

/// The first (up to) eight bytes of a key as one little-endian word, zero-padded: with the
/// key's length, it tells every config key the rules read from every other.
#[inline]
const fn word(key: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < key.len() && i < 8 {
        w |= (key[i] as u64) << (8 * i);
        i += 1;
    }
    w
}

/// The bits of a [`word`] that hold its first `n` bytes (`n` at most 8).
const fn prefix_mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

const NAME: u64 = word(b"name");
const HOSTNAME: u64 = word(b"hostname");
const MEMORY: u64 = word(b"memory");
const VCPUS: u64 = word(b"vcpus");
const CORES: u64 = word(b"cores");
const SOCKETS: u64 = word(b"sockets");
const CPULIMIT: u64 = word(b"cpulimit");
const OSTYPE: u64 = word(b"ostype");
/// `description`'s first eight bytes (the rest is compared in full).
const DESCRIPT: u64 = word(b"description");
const ONBOOT: u64 = word(b"onboot");
const TAGS: u64 = word(b"tags");
const SMBIOS1: u64 = word(b"smbios1");
const ROOTFS: u64 = word(b"rootfs");

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
            assert_eq!(scanned(text), Some(full.clone()), "{text}");
            // Both readers read it as the full parse does (the plain one may decline).
            let owned = |p: Vec<(Cow<'_, str>, Cow<'_, str>)>| {
                p.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                scan_json_serde(text).map(owned),
                Some(full.clone()),
                "{text}"
            );
            if let Some(p) = scan_json_plain(text) {
                assert_eq!(owned(p), full, "{text}");
            }
        }
        // Escaped values are read by the plain reader; an escaped key is left to serde.
        assert!(scan_json_plain(&accepted[4]).is_some());
        assert!(scan_json_plain(&accepted[5]).is_none());
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
            assert!(scan_json_plain(text).is_none(), "{text}");
        }
    }

    #[test]
    fn the_view_reads_its_keys_and_no_look_alike() {
        let keys = [
            "name",
            "hostname",
            "memory",
            "vcpus",
            "cores",
            "sockets",
            "cpulimit",
            "ostype",
            "description",
            "onboot",
            "tags",
            "smbios1",
        ];
        let read = |k: &str| {
            let v = ConfigView::from_pairs(GuestKind::Qemu, [(k, "x")]);
            [
                v.name,
                v.hostname,
                v.memory,
                v.vcpus,
                v.cores,
                v.sockets,
                v.cpulimit,
                v.ostype,
                v.description,
                v.onboot,
                v.tags,
                v.smbios1,
            ]
            .iter()
            .position(Option::is_some)
        };
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(read(k), Some(i), "{k}");
            for look_alike in [
                format!("{k}x"),
                format!("{k}\0"),
                k[..k.len() - 1].to_owned(),
                k.to_uppercase(),
            ] {
                assert_eq!(read(&look_alike), None, "{look_alike:?}");
            }
        }
        assert_eq!(read("descriptiox"), None);
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
            "scsihw",
            "unused0",
            "scsi",
            "net0",
            "rootfs",
            "mp0",
            "virtio-x",
            "scsi0x",
            "ide",
            "tpmstat0",
            "efidisk",
            "tpmstate",
            "sata",
            "Scsi0",
            "scsi\u{0}",
        ] {
            assert!(!is_disk_key(GuestKind::Qemu, k), "{k}");
        }
        for k in ["rootfs", "mp0", "mp255"] {
            assert!(is_disk_key(GuestKind::Lxc, k), "{k}");
        }
        for k in ["mp", "unused1", "scsi0", "mpx", "rootfs0", "rootf", "mp1a"] {
            assert!(!is_disk_key(GuestKind::Lxc, k), "{k}");
        }
    }
}
