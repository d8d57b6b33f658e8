//! IP addresses with their prefix length, in one comparable form, and the addresses the default
//! rules leave out.
//!
//! Normalized text is what `std::net` prints: IPv4 dotted, IPv6 in RFC 5952 form (lowercase,
//! the longest run of zeros compressed), so `2001:0DB8:0:0::1/64` and `2001:db8::1/64` are the
//! same key. The prefix length is kept as given (it is part of NetBox's `address`).

use std::borrow::Cow;
use std::net::IpAddr;

use thiserror::Error;

use super::text::{split_once, trim};

/// An address that could not be read.
#[derive(Debug, Error, PartialEq)]
pub(crate) enum IpError {
    #[error("{0:?} is not an IP address with a prefix length")]
    Malformed(String),
    #[error("{0:?} has a prefix length beyond its family's")]
    PrefixTooLong(String),
}

/// An address and its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cidr {
    pub(crate) addr: IpAddr,
    pub(crate) prefix: u8,
}

impl Cidr {
    /// `addr` with `prefix`, checked against the family.
    pub(crate) fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Parses `10.0.0.5/24` or `2001:db8::1/64` (a zone suffix `%eth0` is dropped).
    pub(crate) fn parse(text: &str) -> Result<Self, IpError> {
        let bad = || IpError::Malformed(text.to_owned());
        let (addr, prefix) = split_once(trim(text), b'/').ok_or_else(bad)?;
        let addr = parse_addr(addr).ok_or_else(bad)?;
        let prefix = plain_prefix(prefix)
            .or_else(|| prefix.parse().ok())
            .ok_or_else(bad)?;
        Cidr::new(addr, prefix).ok_or_else(|| IpError::PrefixTooLong(text.to_owned()))
    }

    /// The normalized `address/prefix` text. Written by hand into a buffer on the stack and
    /// copied once: `format!` through `Display` was most of the cost of reading a VM's
    /// addresses, and `String::push` per character (a capacity check and UTF-8 encoding each)
    /// most of what was left.
    pub(crate) fn key(&self) -> String {
        self.key_text().as_str().to_owned()
    }

    /// [`Cidr::key`] on the stack.
    fn key_text(&self) -> Ascii {
        let mut out = Ascii::default();
        match self.addr {
            IpAddr::V4(a) => push_ipv4(&mut out, a.octets()),
            IpAddr::V6(a) => push_ipv6(&mut out, a),
        }
        out.push(b'/');
        push_decimal(&mut out, self.prefix);
        out
    }

    /// True when `self` (as a network) contains `addr`.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A short ASCII text on the stack: the longest key (`ffff:...:ffff/128`, or an IPv4-mapped
/// `::ffff:255.255.255.255/128`) is 43 bytes.
struct Ascii {
    buf: [u8; 48],
    len: usize,
}

impl Default for Ascii {
    fn default() -> Self {
        Ascii {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl Ascii {
    #[inline]
    fn push(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn push_str(&mut self, s: &str) {
        for b in s.bytes() {
            self.push(b);
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII bytes are pushed, so this never fails; an empty text if it did.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Appends dotted `octets`.
fn push_ipv4(out: &mut Ascii, octets: [u8; 4]) {
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_decimal(out, o);
    }
}

/// Appends `a` as `std::net` prints it (RFC 5952: lowercase hex, the first longest run of two or
/// more zero groups as `::`, an IPv4-mapped address as `::ffff:a.b.c.d`).
fn push_ipv6(out: &mut Ascii, a: std::net::Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        out.push_str("::ffff:");
        push_ipv4(out, v4.octets());
        return;
    }
    let seg = a.segments();
    // The first longest run of zero groups.
    let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
    for (i, s) in seg.iter().enumerate() {
        if *s == 0 {
            if run_len == 0 {
                run = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best, best_len) = (run, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    let hex = |out: &mut Ascii, groups: &[u16]| {
        for (i, g) in groups.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            let mut started = false;
            for shift in [12, 8, 4, 0] {
                let d = ((g >> shift) & 0xf) as u8;
                if d != 0 || started || shift == 0 {
                    started = true;
                    out.push(if d < 10 { b'0' + d } else { b'a' + d - 10 });
                }
            }
        }
    };
    if best_len > 1 {
        hex(out, &seg[..best]);
        out.push_str("::");
        hex(out, &seg[best + best_len..]);
    } else {
        hex(out, &seg);
    }
}

/// Appends `n` in decimal.
#[inline]
fn push_decimal(out: &mut Ascii, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

/// Parses a bare address, dropping an IPv6 zone (`fe80::1%eth0`).
pub(crate) fn parse_addr(text: &str) -> Option<IpAddr> {
    let t = trim(text);
    // The plain readers take digits, dots, hex digits and colons only, so they read no text
    // with a zone: tried first, they spare the usual address the scan for `%`.
    if let Some(a) = plain_addr(t) {
        return Some(a);
    }
    let t = split_once(t, b'%').map_or(t, |(a, _)| a);
    plain_addr(t).or_else(|| t.parse().ok())
}

/// [`plain_ipv4`], else [`plain_ipv6`].
#[inline]
fn plain_addr(t: &str) -> Option<IpAddr> {
    if let Some(v4) = plain_ipv4(t) {
        return Some(IpAddr::V4(v4));
    }
    plain_ipv6(t).map(IpAddr::V6)
}

/// An IPv6 address of hex groups with at most one `::` (no embedded IPv4), read on the bytes
/// as `std::net` reads it: `IpAddr::from_str` tries IPv4 first, then backtracks through its
/// generic parser, which through WASM cost ~1k instructions per address. `None` for anything
/// else (a dotted tail, a zone, five-digit groups, ...), which `std::net` then reads (or
/// refuses) as before.
fn plain_ipv6(t: &str) -> Option<std::net::Ipv6Addr> {
    let b = t.as_bytes();
    let mut i = 0;
    // One group of one to four hex digits at `i`.
    let group = |i: &mut usize| -> Option<u16> {
        let start = *i;
        let mut v: u16 = 0;
        while let Some(d) = b.get(*i).and_then(|&c| hex_digit(c)) {
            if *i - start == 4 {
                return None;
            }
            v = (v << 4) | u16::from(d);
            *i += 1;
        }
        (*i > start).then_some(v)
    };
    let (mut head, mut hn) = ([0u16; 8], 0);
    let mut double = false;
    if b.starts_with(b"::") {
        i = 2;
        double = true;
    } else {
        loop {
            *head.get_mut(hn)? = group(&mut i)?;
            hn += 1;
            if i == b.len() {
                break;
            }
            (b[i] == b':').then_some(())?;
            i += 1;
            if b.get(i) == Some(&b':') {
                i += 1;
                double = true;
                break;
            }
        }
    }
    if !double {
        return (hn == 8).then(|| std::net::Ipv6Addr::from(head));
    }
    let (mut tail, mut tn) = ([0u16; 8], 0);
    while i < b.len() {
        if tn > 0 {
            (b[i] == b':').then_some(())?;
            i += 1;
        }
        *tail.get_mut(tn)? = group(&mut i)?;
        tn += 1;
    }
    // `::` stands for at least one zero group.
    if hn + tn > 7 {
        return None;
    }
    head[8 - tn..].copy_from_slice(&tail[..tn]);
    Some(std::net::Ipv6Addr::from(head))
}

/// The value of an ASCII hex digit.
#[inline]
pub(crate) fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A dotted IPv4 address in the form `std::net` accepts (four decimal octets of one to three
/// digits, no leading zero, at most 255), read on the bytes: `IpAddr::from_str` costs several
/// hundred instructions per address through WASM. `None` for anything else, which `std::net`
/// then reads (or refuses) as before.
fn plain_ipv4(t: &str) -> Option<std::net::Ipv4Addr> {
    let b = t.as_bytes();
    let (mut octets, mut i) = ([0u8; 4], 0);
    for (n, o) in octets.iter_mut().enumerate() {
        if n > 0 {
            (b.get(i) == Some(&b'.')).then_some(())?;
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            v = v * 10 + u16::from(d - b'0');
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        *o = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(std::net::Ipv4Addr::from(octets))
}

/// A prefix length of one to three decimal digits, as `u8::from_str` reads it; `None` for
/// anything else (a sign, more digits), which `u8::from_str` then reads or refuses.
fn plain_prefix(t: &str) -> Option<u8> {
    let b = t.as_bytes();
    if b.is_empty() || b.len() > 3 {
        return None;
    }
    let mut v: u16 = 0;
    for d in b {
        d.is_ascii_digit().then_some(())?;
        v = v * 10 + u16::from(d - b'0');
    }
    u8::try_from(v).ok()
}

/// Normalizes an `address/prefix` text; text that does not parse is returned trimmed, so a
/// NetBox value we cannot read still compares with itself. The text is usually normal already
/// (NetBox's addresses): it is borrowed as it is then, copied only when the key differs.
pub(crate) fn normalize_key_of(text: Cow<'_, str>) -> Cow<'_, str> {
    if is_plainly_normal(&text) {
        return text;
    }
    match Cidr::parse(&text) {
        Ok(c) => {
            let key = c.key_text();
            if key.as_str() == text {
                text
            } else {
                Cow::Owned(key.as_str().to_owned())
            }
        }
        Err(_) => {
            let trimmed = text.trim();
            if trimmed.len() == text.len() {
                text
            } else {
                Cow::Owned(trimmed.to_owned())
            }
        }
    }
}

/// True when `text` is an `address/prefix` key already in the normal form, told from its
/// bytes alone: NetBox's addresses nearly always are, and reading then writing each one cost
/// ~2k WASM instructions per address. Conservative: IPv4 dotted without leading zeros, and
/// IPv6 in lowercase groups without leading zeros and without zero groups except the one run
/// that `::` stands for (then it is the longest run, as RFC 5952 writes it); the prefix
/// without leading zeros. Anything else (`false`) is read and written as before.
fn is_plainly_normal(text: &str) -> bool {
    // Byte loops only: `str::split`, `find` and `contains` went through the standard
    // library's searchers, which cost more through WASM than the parse they were to save.
    // The prefix is short: the last `/` is found from the end in a few steps. A text with two
    // is refused either way (a `/` is neither in an address nor in a prefix).
    let b = text.as_bytes();
    let Some(slash) = b.iter().rposition(|&c| c == b'/') else {
        return false;
    };
    let (addr, prefix) = (&b[..slash], &b[slash + 1..]);
    let max = if is_plain_ipv4(addr) {
        32
    } else if is_plain_ipv6(addr) {
        128
    } else {
        return false;
    };
    plain_decimal(prefix).is_some_and(|p| p <= max)
}

/// A decimal of one to three digits without a leading zero (`0` itself allowed).
fn plain_decimal(b: &[u8]) -> Option<u16> {
    if b.is_empty() || b.len() > 3 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    b.iter().try_fold(0u16, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0'))
    })
}

/// Four dotted octets, each as `Display` writes it.
fn is_plain_ipv4(b: &[u8]) -> bool {
    let (mut i, mut octets) = (0, 0);
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if plain_decimal(&b[start..i]).is_none_or(|v| v > 255) {
            return false;
        }
        octets += 1;
        if i == b.len() {
            return octets == 4;
        }
        if b[i] != b'.' || octets == 4 {
            return false;
        }
        i += 1;
    }
}

/// Lowercase IPv6 groups, none zero, none with a leading zero: eight of them, or at most six
/// around one `::`. The IPv4-mapped form (`::ffff:...`), which `Display` writes dotted, is
/// left to the general path.
fn is_plain_ipv6(b: &[u8]) -> bool {
    let (mut i, mut groups, mut double) = (0, 0usize, false);
    if b.starts_with(b"::") {
        if b[2..].starts_with(b"ffff") && matches!(b.get(6), None | Some(b':')) {
            return false;
        }
        double = true;
        i = 2;
        if i == b.len() {
            return true;
        }
    }
    loop {
        let start = i;
        while i < b.len() && matches!(b[i], b'0'..=b'9' | b'a'..=b'f') {
            i += 1;
        }
        if !(1..=4).contains(&(i - start)) || b[start] == b'0' {
            return false;
        }
        groups += 1;
        if i == b.len() {
            break;
        }
        if b[i] != b':' {
            return false;
        }
        i += 1;
        if b.get(i) == Some(&b':') {
            if double {
                return false;
            }
            double = true;
            i += 1;
            if i == b.len() {
                break;
            }
        }
    }
    if double { groups <= 6 } else { groups == 8 }
}

/// True for addresses that never describe a guest on the network: loopback, link-local,
/// unspecified and multicast.
pub(crate) fn is_left_out(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast()
        }
        IpAddr::V6(a) => {
            a.is_loopback() || a.is_unspecified() || a.is_multicast() || a.is_unicast_link_local()
        }
    }
}

/// True when the IPv6 `addr`'s interface identifier is the modified EUI-64 of `mac` (octets):
/// the address came from SLAAC.
pub(crate) fn is_eui64_of(addr: IpAddr, mac: [u8; 6]) -> bool {
    let IpAddr::V6(a) = addr else { return false };
    let o = a.octets();
    let iid = [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ];
    o[8..] == iid
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls `check` on `t` and on every string of up to six symbols of `alphabet` after it.
    fn all(t: &mut String, n: usize, alphabet: &[char], check: &dyn Fn(&str)) {
        check(t);
        if n == 6 {
            return;
        }
        for c in alphabet {
            t.push(*c);
            all(t, n + 1, alphabet, check);
            t.pop();
        }
    }

    fn normalize_key(text: &str) -> String {
        normalize_key_of(Cow::Borrowed(text)).into_owned()
    }

    /// What the byte test takes as normal is exactly the key written for it; it takes the
    /// usual shapes (`Display`'s output for addresses without a zero group outside `::`).
    #[test]
    fn plainly_normal_keys_are_their_own_key() {
        let check = |t: &str| {
            for text in [
                t.to_owned(),
                format!("{t}/64"),
                format!("{t}/0"),
                format!("{t}/32"),
            ] {
                if is_plainly_normal(&text) {
                    assert_eq!(
                        Cidr::parse(&text).map(|c| c.key()).as_deref(),
                        Ok(text.as_str())
                    );
                }
            }
        };
        for t in [
            "10.0.0.5/24",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "2001:db8::5/64",
            "::1/128",
            "::/0",
            "fe80::be24:11ff:fe2a:3b4c/64",
            "1:2:3:4:5:6:7:8/128",
            "2001:db8:1::be24:11ff:fe00/64",
        ] {
            assert!(is_plainly_normal(t), "{t}");
            check(t);
        }
        for t in [
            "10.0.0.05/24",
            "10.0.0.5/024",
            "10.0.0.256/24",
            "10.0.0.5/33",
            "10.0.0/24",
            "10.0.0.5.1/24",
            "2001:DB8::5/64",
            "2001:db8:0::5/64",
            "2001:0db8::5/64",
            "1:2:3:4:5:6:7::/64",
            "::ffff:a00:5/128",
            "::ffff/128",
            "::1/129",
            "1::2::3/64",
            ":::1/64",
            "10.0.0.5",
            " 10.0.0.5/24",
            // `::` for a single zero group: `Display` writes the `0`.
            "2001:db8:1::be24:11ff:fe00:2/64",
        ] {
            assert!(!is_plainly_normal(t), "{t}");
            check(t);
        }
        // Every string of up to six symbols over a small alphabet, with prefixes.
        all(
            &mut String::new(),
            0,
            &['0', '1', 'f', 'A', ':', '.'],
            &check,
        );
        // Random addresses as `Display` writes them (zero groups in random places, so some
        // are taken and some are not), and random symbol strings.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut taken = 0;
        let symbols = b"0123456789abcdefABCDEF::::::x./";
        for _ in 0..100_000 {
            let r = next();
            let mut g = [0u16; 8];
            for (i, v) in g.iter_mut().enumerate() {
                let x = next();
                *v = if (r >> (i * 3)) & 3 == 0 {
                    0
                } else {
                    (x >> 20) as u16 >> (x % 13)
                };
            }
            let a = std::net::Ipv6Addr::from(g);
            let text = format!("{a}/{}", r % 129);
            check(&text);
            taken += usize::from(is_plainly_normal(&text));
            let v4 = std::net::Ipv4Addr::from((r >> 8) as u32);
            let text = format!("{v4}/{}", r % 33);
            assert!(is_plainly_normal(&text), "{text}");
            check(&text);
            let len = (r % 40) as usize;
            let s: String = (0..len)
                .map(|_| char::from(symbols[(next() >> 33) as usize % symbols.len()]))
                .collect();
            check(&s);
        }
        assert!(taken > 10_000, "the usual IPv6 shapes are taken: {taken}");
    }

    #[test]
    fn a_normal_key_is_borrowed_and_any_other_copied() {
        for (text, borrowed) in [
            ("10.0.0.5/24", true),
            ("2001:db8::5/64", true),
            ("weird", true),
            ("2001:DB8::5/64", false),
            (" 10.0.0.5/24", false),
            (" weird ", false),
        ] {
            let key = normalize_key_of(Cow::Borrowed(text));
            assert_eq!(matches!(key, Cow::Borrowed(_)), borrowed, "{text}");
            assert_eq!(key, normalize_key(text));
        }
    }

    #[test]
    fn plain_ipv4_reads_as_std_net_or_declines() {
        for t in [
            "0.0.0.0",
            "10.0.0.5",
            "255.255.255.255",
            "192.168.100.1",
            "1.22.133.4",
        ] {
            assert_eq!(plain_ipv4(t), t.parse().ok(), "{t}");
            assert!(plain_ipv4(t).is_some(), "{t}");
        }
        for t in [
            "",
            "1",
            "1.2.3",
            "1.2.3.4.5",
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1234.1.1.1",
            "1.2.3.4/24",
            "+1.2.3.4",
            "1.2.3.a",
            "::1",
            "::ffff:1.2.3.4",
            "1.2.3.999",
            "١.2.3.4",
        ] {
            let std: Option<std::net::Ipv4Addr> = t.parse().ok();
            assert!(
                plain_ipv4(t).is_none() || plain_ipv4(t) == std,
                "{t}: {:?} vs {std:?}",
                plain_ipv4(t)
            );
            assert_eq!(plain_ipv4(t), std, "{t}");
        }
    }

    #[test]
    fn plain_ipv6_reads_as_std_net_or_declines() {
        for t in [
            "::",
            "::1",
            "1::",
            "2001:db8::5",
            "2001:DB8:0:0::1",
            "2001:0db8:0000:0000:0000:0000:0000:0001",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1::8",
            "fe80::be24:11ff:fe2a:3b4c",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8:1::be24:11ff:fe00:2",
            "aBcD::EfF0",
        ] {
            assert_eq!(plain_ipv6(t), t.parse().ok(), "{t}");
            assert!(plain_ipv6(t).is_some(), "{t}");
        }
        let check = |t: &str| {
            let std: Option<std::net::Ipv6Addr> = t.parse().ok();
            let ours = plain_ipv6(t);
            assert!(ours.is_none() || ours == std, "{t}: {ours:?} vs {std:?}");
            // And every address read prints as `Display` prints it.
            if let Some(a) = std {
                let c = Cidr::new(IpAddr::V6(a), 128).unwrap();
                assert_eq!(c.key(), format!("{a}/128"), "{t}");
            }
        };
        for t in [
            "",
            ":",
            ":::",
            "1:::2",
            "1::2::3",
            ":1::2",
            "1::2:",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7::8",
            "::1:2:3:4:5:6:7:8",
            "1:2:3:4::5:6:7:8",
            "12345::1",
            "1::00000",
            "g::1",
            "::ffff:1.2.3.4",
            "fe80::1%eth0",
            " ::1",
            "::1 ",
            "1.2.3.4",
            "::ｆ",
        ] {
            check(t);
        }
        // Many more forms: every string of up to six symbols over a small alphabet, and
        // longer pseudo-random ones.
        let alphabet = ['0', '1', 'a', 'F', ':', 'g'];
        let mut t = String::new();
        all(&mut t, 0, &alphabet, &check);
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let symbols = b"0123456789abcdefABCDEF::::::x.";
        let mut accepted = 0;
        for _ in 0..200_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let mut s = String::with_capacity(len);
            let mut r = seed;
            for _ in 0..len {
                r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push(char::from(symbols[(r >> 33) as usize % symbols.len()]));
            }
            check(&s);
            accepted += usize::from(plain_ipv6(&s).is_some());
        }
        assert!(accepted > 0, "the random forms include addresses");
    }

    #[test]
    fn hex_digits_are_char_to_digit() {
        for c in 0..=255u8 {
            let std = char::from(c).to_digit(16).map(|d| d as u8);
            assert_eq!(hex_digit(c), std.filter(|_| c.is_ascii()), "{c}");
        }
    }

    #[test]
    fn plain_prefix_reads_as_u8_from_str_or_declines() {
        for t in [
            "", "0", "8", "24", "024", "128", "255", "256", "999", "0000", "+1", "-1", "1 ", " 1",
            "a", "1a", "٣",
        ] {
            let ours = plain_prefix(t);
            assert!(ours.is_none() || ours == t.parse().ok(), "{t}");
        }
        for n in 0..=255u8 {
            assert_eq!(plain_prefix(&n.to_string()), Some(n));
        }
    }

    #[test]
    fn ipv6_spellings_compare_equal() {
        assert_eq!(normalize_key("2001:0db8:0:0::1/64"), "2001:db8::1/64");
        assert_eq!(normalize_key("2001:DB8::1/64"), "2001:db8::1/64");
        assert_eq!(normalize_key("2001:db8:0:0:0:0:0:1/64"), "2001:db8::1/64");
        assert_eq!(normalize_key(" 10.0.0.5/24 "), "10.0.0.5/24");
        // RFC 5952 4.2.2: `::` never shortens a single zero field.
        assert_eq!(
            normalize_key("2001:db8:1::be24:11ff:fe00:2/64"),
            "2001:db8:1:0:be24:11ff:fe00:2/64"
        );
    }

    #[test]
    fn key_writes_what_display_writes() {
        for text in [
            "0.0.0.0/0",
            "9.10.99.100/8",
            "255.255.255.255/32",
            "10.0.0.5/024",
            "::/0",
            "::ffff:10.0.0.5/128",
            "::1/128",
            "1::/16",
            "::10.0.0.5/96",
            "1:0:0:2:0:0:0:3/64",
            "1:0:0:2:0:0:3:4/64",
            "0:0:1:0:0:0:0:0/64",
            "2001:db8:1::be24:11ff:fe00:2/64",
            "fe80::be24:11ff:fe2a:3b4c/64",
            "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128",
            "2001:db8::1/64",
        ] {
            let c = Cidr::parse(text).unwrap();
            assert_eq!(c.key(), format!("{}/{}", c.addr, c.prefix), "{text}");
        }
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(matches!(
            Cidr::parse("10.0.0.5"),
            Err(IpError::Malformed(_))
        ));
        assert!(matches!(
            Cidr::parse("10.0.0.300/24"),
            Err(IpError::Malformed(_))
        ));
        assert!(matches!(
            Cidr::parse("10.0.0.5/33"),
            Err(IpError::PrefixTooLong(_))
        ));
        assert!(matches!(Cidr::parse("dhcp"), Err(IpError::Malformed(_))));
        assert_eq!(normalize_key("weird"), "weird");
    }

    #[test]
    fn loopback_and_link_local_are_left_out() {
        for a in [
            "127.0.0.1",
            "::1",
            "fe80::be24:11ff:fe2a:3b4c",
            "169.254.1.2",
            "0.0.0.0",
            "ff02::1",
        ] {
            assert!(is_left_out(parse_addr(a).unwrap()), "{a}");
        }
        for a in ["10.0.0.5", "2001:db8::5", "fd00::1", "192.168.1.1"] {
            assert!(!is_left_out(parse_addr(a).unwrap()), "{a}");
        }
    }

    #[test]
    fn containment() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(parse_addr("10.200.0.1").unwrap()));
        assert!(!net.contains(parse_addr("11.0.0.1").unwrap()));
        assert!(!net.contains(parse_addr("::1").unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(parse_addr("1.2.3.4").unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(parse_addr("2001:db8:1::1").unwrap()));
    }

    #[test]
    fn slaac_address_is_detected() {
        let mac = [0xbc, 0x24, 0x11, 0x2a, 0x3b, 0x4c];
        assert!(is_eui64_of(
            parse_addr("2001:db8::be24:11ff:fe2a:3b4c").unwrap(),
            mac
        ));
        assert!(!is_eui64_of(parse_addr("2001:db8::5").unwrap(), mac));
        assert!(!is_eui64_of(parse_addr("10.0.0.5").unwrap(), mac));
    }

    #[test]
    fn zone_is_dropped() {
        assert_eq!(parse_addr("fe80::1%eth0"), parse_addr("fe80::1"));
    }

    /// `parse_addr` is `std::net` on the trimmed text cut at its first `%`, whether the plain
    /// readers take the text before or after the cut.
    #[test]
    fn parse_addr_is_std_net_without_the_zone() {
        let std_of = |t: &str| {
            let t = t.trim();
            let t = t.split_once('%').map_or(t, |(a, _)| a);
            t.parse::<IpAddr>().ok()
        };
        for t in [
            "10.0.0.5",
            " 10.0.0.5\n",
            "10.0.0.5%eth0",
            "1.2.3.4%",
            "fe80::1%eth0",
            "fe80::1%",
            "fe80::1%a%b",
            "%eth0",
            "::ffff:1.2.3.4",
            "::ffff:1.2.3.4%x",
            "2001:db8::5",
            "1:2:3:4:5:6:7:8%9",
            "fe80::1 %eth0",
            "1.2.3.4/24",
            "x",
            "",
        ] {
            assert_eq!(parse_addr(t), std_of(t), "{t:?}");
        }
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let symbols = b"0123456789abcdefABCDEF::::....%%x ";
        for _ in 0..100_000 {
            let len = (next() % 24) as usize;
            let t: String = (0..len)
                .map(|_| char::from(symbols[(next() >> 33) as usize % symbols.len()]))
                .collect();
            assert_eq!(parse_addr(&t), std_of(&t), "{t:?}");
        }
    }
}
