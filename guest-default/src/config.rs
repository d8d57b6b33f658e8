//! One pass over a guest's raw config, picking out the keys the default rules read.
//!
//! Borrows from the guest's pairs, or straight from the config's JSON text as the component
//! receives it ([`scan_json`]: no owned key or value strings). Disk keys are recognised here so
//! `disks` never sees look-alikes such as `scsihw` or `unused0`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

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
/// order, borrowed from `text` (serde_json decodes a key or value into its own string only when
/// it holds an escape). `None` for any other text (`null`, other value types, malformed JSON):
/// the caller then parses it fully (`model::config_from_json`), which accepts more and words the
/// error, so what this accepts it reads exactly as that parse would.
///
/// Why: parsing into owned pairs (two strings per property) was the largest part of the WASM
/// rules' own cost per VM. A hand-written scanner was ~3k instructions per VM cheaper still
/// (callgrind, `rules bench --vms 2000`: 87.9k vs 90.9k, wall time within noise): not worth
/// keeping a JSON parser of our own beside serde_json.
pub(crate) fn scan_json(text: &str) -> Option<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
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
