//! Memory in MiB (NetBox `memory`).
//!
//! `maxmem` bytes // 2^20 from the resource row; else the config `memory`: an integer (QEMU up
//! to PVE 8.0, LXC always), `"4096"` or `"current=4096"` (QEMU from PVE 8.1); absent = 512 (the
//! PVE default). `Keep` when neither is known; `Clear` for 0.

use crate::config::ConfigView;
use crate::model::{Field, Guest};
use crate::numbers::{ConfigNumberError, config_u64};
use crate::property::PropertyString;
use crate::units::MIB;

/// PVE's default memory (MiB) when the config has no `memory` key.
const PVE_DEFAULT_MEMORY_MIB: u64 = 512;

/// The desired memory.
pub(crate) fn memory(guest: &Guest, cfg: &ConfigView) -> Result<Field<u64>, ConfigNumberError> {
    let mib = match guest.maxmem.filter(|m| *m > 0) {
        Some(bytes) => Some(bytes / MIB),
        None if guest.config_read => Some(match cfg.memory {
            None => PVE_DEFAULT_MEMORY_MIB,
            Some(raw) => {
                let current = PropertyString::parse(raw, "current").get("current");
                config_u64("memory", current.or(Some(raw)))?.unwrap_or(PVE_DEFAULT_MEMORY_MIB)
            }
        }),
        None => None,
    };
    Ok(match mib {
        None => Field::Keep,
        Some(0) => Field::Clear,
        Some(m) => Field::Set(m),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(maxmem: Option<u64>, memory: Option<&str>, read: bool) -> Field<u64> {
        let g = Guest {
            maxmem,
            config: memory
                .map(|m| vec![("memory".to_owned(), m.to_owned())])
                .unwrap_or_default(),
            config_read: read,
            ..Guest::default()
        };
        memory_of(&g)
    }

    fn memory_of(g: &Guest) -> Field<u64> {
        memory(g, &ConfigView::new(g)).unwrap()
    }

    #[test]
    fn maxmem_wins() {
        assert_eq!(run(Some(4294967296), Some("1024"), true), Field::Set(4096));
        assert_eq!(run(Some(536870912), None, false), Field::Set(512));
    }

    #[test]
    fn config_shapes() {
        assert_eq!(run(None, Some("4096"), true), Field::Set(4096));
        assert_eq!(run(None, Some("current=2048"), true), Field::Set(2048));
        assert_eq!(
            run(None, Some("current=8192,hotplug=1"), true),
            Field::Set(8192)
        );
        assert_eq!(run(None, None, true), Field::Set(512));
    }

    #[test]
    fn unknown_is_keep_and_zero_is_clear() {
        assert_eq!(run(None, None, false), Field::Keep);
        assert_eq!(run(None, Some("0"), true), Field::Clear);
        let g = Guest {
            config: vec![("memory".to_owned(), "lots".to_owned())],
            config_read: true,
            ..Guest::default()
        };
        assert!(memory(&g, &ConfigView::new(&g)).is_err());
    }
}
