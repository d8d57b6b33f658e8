//! Proxmox size strings (`32G`, `1.5G`, `528K`, `4294967296`) to bytes and MiB.
//!
//! Grammar (pve-common `parse_size`, A.4 rule 8): `^\d+(\.\d+)?([KMGT](iB|B)?)?$`, binary units
//! (K = 1024), no unit = bytes, truncated to a whole number of bytes. Lowercase units are
//! accepted too (hand edits). Knows nothing about disks or configs.

use thiserror::Error;

use crate::property::trim;

/// One MiB in bytes: NetBox's "MB" for memory and disk is MiB in practice.
pub(crate) const MIB: u64 = 1 << 20;

/// Why a size string was refused.
#[derive(Clone, Debug, Error, PartialEq)]
pub(crate) enum SizeError {
    #[error("size {0:?} is not a number with an optional K/M/G/T unit")]
    Malformed(String),
    #[error("size {0:?} is too large")]
    Overflow(String),
}

/// Parses a size to bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, SizeError> {
    let s = trim(text);
    let bad = || SizeError::Malformed(text.to_owned());
    // Strip an optional unit and its optional `B`/`iB` suffix.
    let (num, mult) = {
        let s = s
            .strip_suffix("iB")
            .or_else(|| s.strip_suffix("ib"))
            .or_else(|| {
                s.strip_suffix('B')
                    .filter(|r| r.ends_with(|c: char| c.is_ascii_alphabetic()))
            })
            .unwrap_or(s);
        match s.as_bytes().last() {
            Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
            Some(b'M' | b'm') => (&s[..s.len() - 1], 1u64 << 20),
            Some(b'G' | b'g') => (&s[..s.len() - 1], 1u64 << 30),
            Some(b'T' | b't') => (&s[..s.len() - 1], 1u64 << 40),
            _ => (s, 1u64),
        }
    };
    let (int_part, frac_part) = match num.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (num, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let int: u64 = int_part
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_owned()))?;
    let mut bytes = int
        .checked_mul(mult)
        .ok_or_else(|| SizeError::Overflow(text.to_owned()))?;
    if let Some(f) = frac_part {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Exact decimal fraction of the unit, truncated to whole bytes (at most 12 digits
        // matter: 1T has 13 decimal digits of bytes).
        let digits = &f[..f.len().min(12)];
        let frac: u64 = digits.parse().map_err(|_| bad())?;
        let scale = 10u64.pow(digits.len() as u32);
        let extra = (u128::from(frac) * u128::from(mult) / u128::from(scale)) as u64;
        bytes = bytes
            .checked_add(extra)
            .ok_or_else(|| SizeError::Overflow(text.to_owned()))?;
    }
    Ok(bytes)
}

/// Bytes to whole MiB, rounded up: a disk of 528 KiB still occupies 1 MiB, and a
/// per-disk list rounded the same way sums to the VM total.
pub(crate) fn bytes_to_mib_ceil(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary() {
        assert_eq!(parse_size("32G"), Ok(32 << 30));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("528K"), Ok(528 << 10));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("1536M"), Ok(1536 << 20));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("10GB"), Ok(10 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
    }

    #[test]
    fn bare_number_is_bytes() {
        assert_eq!(parse_size("4294967296"), Ok(4 << 30));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn decimals_truncate_to_bytes() {
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("1.0001K"), Ok(1024));
        assert_eq!(parse_size("2.25M"), Ok(2_359_296));
    }

    #[test]
    fn malformed_sizes_are_errors() {
        for s in [
            "", "G", "12X", "1..5G", "-1G", "1.G", "abc", "1 G", "1.5.5M",
        ] {
            assert!(parse_size(s).is_err(), "{s:?} should be refused");
        }
        assert!(matches!(
            parse_size("99999999999999999999T"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("20000000T"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn mib_rounds_up() {
        assert_eq!(bytes_to_mib_ceil(0), 0);
        assert_eq!(bytes_to_mib_ceil(1), 1);
        assert_eq!(bytes_to_mib_ceil(MIB), 1);
        assert_eq!(bytes_to_mib_ceil(MIB + 1), 2);
        assert_eq!(bytes_to_mib_ceil(528 << 10), 1);
    }
}
