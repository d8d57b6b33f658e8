//! What the guest says about its own network: the QEMU agent's `network-get-interfaces` result
//! and the LXC `/interfaces` answer, read into one shape.
//!
//! Agent: `[{"name","hardware-address"?,"ip-addresses"?:[{"ip-address","ip-address-type":
//! "ipv4"|"ipv6","prefix"}],"statistics"?}]`. LXC: the same with types `inet`/`inet6`, plus
//! `hwaddr`; before PVE 8.4 only `name`, `hwaddr`, `inet`, `inet6` (`"10.0.0.5/24"`, the last
//! address of each family). Unknown keys are ignored. An answer that is not this shape, or has
//! an address that does not parse, is an error: the caller treats it as no answer at all (a
//! partial read would delete or invent addresses).

use std::borrow::Cow;

use serde::Deserialize;
use thiserror::Error;

use super::ip::{Cidr, parse_addr};
use super::mac;

/// An answer that is not the documented shape.
#[derive(Debug, Error)]
pub(crate) enum RuntimeError {
    #[error("the {source_name} answer is not a list of interfaces: {error}")]
    Shape {
        source_name: &'static str,
        error: serde_json::Error,
    },
    #[error("the {source_name} answer has an address {address:?} on {name}")]
    Address {
        source_name: &'static str,
        name: String,
        address: String,
    },
}

/// One interface as the guest sees it, its name borrowed from the answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RuntimeNic<'a> {
    pub(crate) name: Cow<'a, str>,
    /// The MAC's octets (matched against the config's, never written out); `None` when
    /// absent, malformed or all zero (loopback, tunnels).
    pub(crate) mac: Option<[u8; 6]>,
    /// Every address, loopback and link-local included (the caller filters).
    pub(crate) addrs: Vec<Cidr>,
}

// Texts that are only read are borrowed from the answer (decoded only when escaped).
#[derive(Deserialize)]
struct RawNic<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow, rename = "hardware-address")]
    hardware_address: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    hwaddr: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "ip-addresses")]
    ip_addresses: Option<Vec<RawAddr<'a>>>,
    #[serde(default, borrow)]
    inet: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    inet6: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct RawAddr<'a> {
    #[serde(borrow, rename = "ip-address")]
    ip_address: Cow<'a, str>,
    #[serde(default)]
    prefix: Option<u8>,
}

/// Reads the agent's `result` array.
pub(crate) fn parse_agent(json: &str) -> Result<Vec<RuntimeNic<'_>>, RuntimeError> {
    parse(json, "guest agent")
}

/// Reads the LXC `/interfaces` `data` array (`null` reads as no interfaces: callers send a
/// stopped container as `unknown`, not as this).
pub(crate) fn parse_lxc(json: &str) -> Result<Vec<RuntimeNic<'_>>, RuntimeError> {
    parse(json, "LXC interfaces")
}

/// The plain-shape reading of an answer ([`super::json`]) straight into the interfaces: no
/// rows of their own, each address parsed as it is read. It mirrors the serde types above (the
/// same members, the same defaults, a repeated read member or another type declined) and
/// declines an address that does not parse too; `None` hands the text to serde and
/// [`from_raw`], which read it as before and word the error.
fn plain(json: &str) -> Option<Vec<RuntimeNic<'_>>> {
    use super::json::{Reader, Seen};
    fn text<'a>(r: &mut Reader<'a>) -> Option<Option<&'a str>> {
        if r.null()? {
            Some(None)
        } else {
            r.str().map(Some)
        }
    }
    /// One `{"ip-address", "prefix"}` object as the address it names.
    fn addr(r: &mut Reader<'_>) -> Option<Cidr> {
        let (mut ip_address, mut prefix) = (None, None);
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "ip-address" => {
                    seen.first(0)?;
                    ip_address = Some(r.str()?);
                }
                "prefix" => {
                    seen.first(1)?;
                    prefix = if r.null()? {
                        None
                    } else {
                        Some(u8::try_from(r.u64()?).ok()?)
                    };
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        let addr = parse_addr(ip_address?)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr::new(addr, prefix.unwrap_or(max))
    }
    fn nic<'a>(r: &mut Reader<'a>) -> Option<RuntimeNic<'a>> {
        let mut name = "";
        let (mut hardware_address, mut hwaddr, mut inet, mut inet6) = (None, None, None, None);
        // `Some` once `ip-addresses` is a list: then `inet`/`inet6` are not read.
        let mut listed: Option<Vec<Cidr>> = None;
        let mut seen = Seen::default();
        r.object(|r, member| {
            match member {
                "name" => {
                    seen.first(0)?;
                    name = r.str()?;
                }
                "hardware-address" => {
                    seen.first(1)?;
                    hardware_address = text(r)?;
                }
                "hwaddr" => {
                    seen.first(2)?;
                    hwaddr = text(r)?;
                }
                "ip-addresses" => {
                    seen.first(3)?;
                    listed = if r.null()? {
                        None
                    } else {
                        let mut list = Vec::with_capacity(2);
                        r.array(|r| {
                            list.push(addr(r)?);
                            Some(())
                        })?;
                        Some(list)
                    };
                }
                "inet" => {
                    seen.first(4)?;
                    inet = text(r)?;
                }
                "inet6" => {
                    seen.first(5)?;
                    inet6 = text(r)?;
                }
                _ => r.skip()?,
            }
            Some(())
        })?;
        let addrs = match listed {
            Some(list) => list,
            None => {
                let mut list = Vec::with_capacity(2);
                for text in [inet, inet6].into_iter().flatten() {
                    list.push(Cidr::parse(text).ok()?);
                }
                list
            }
        };
        Some(RuntimeNic {
            name: Cow::Borrowed(name),
            mac: nic_mac(hardware_address.or(hwaddr)),
            addrs,
        })
    }
    let mut r = Reader::new(json);
    let mut list = Vec::new();
    if !r.null()? {
        list.reserve(4);
        r.array(|r| {
            list.push(nic(r)?);
            Some(())
        })?;
    }
    r.end()?;
    Some(list)
}

/// A NIC's MAC octets from its `hardware-address` (else `hwaddr`); none when absent,
/// malformed or all zero.
fn nic_mac(text: Option<&str>) -> Option<[u8; 6]> {
    text.and_then(mac::parse_octets).filter(|m| *m != [0; 6])
}

fn parse<'a>(
    json: &'a str,
    source_name: &'static str,
) -> Result<Vec<RuntimeNic<'a>>, RuntimeError> {
    if let Some(nics) = plain(json) {
        return Ok(nics);
    }
    let raw =
        serde_json::from_str(json).map_err(|error| RuntimeError::Shape { source_name, error })?;
    from_raw(raw, source_name)
}

/// The interfaces of a serde-read answer.
fn from_raw<'a>(
    raw: Option<Vec<RawNic<'a>>>,
    source_name: &'static str,
) -> Result<Vec<RuntimeNic<'a>>, RuntimeError> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|r| {
            let mac = nic_mac(r.hardware_address.as_deref().or(r.hwaddr.as_deref()));
            // Sized once: growing from empty costs another call through the allocator.
            let mut addrs = Vec::with_capacity(r.ip_addresses.as_ref().map_or(2, Vec::len));
            let bad = |address: &str| RuntimeError::Address {
                source_name,
                name: r.name.to_string(),
                address: address.to_owned(),
            };
            match &r.ip_addresses {
                Some(list) => {
                    for a in list {
                        let addr = parse_addr(&a.ip_address).ok_or_else(|| bad(&a.ip_address))?;
                        let max = if addr.is_ipv4() { 32 } else { 128 };
                        let c = Cidr::new(addr, a.prefix.unwrap_or(max))
                            .ok_or_else(|| bad(&a.ip_address))?;
                        addrs.push(c);
                    }
                }
                // Before PVE 8.4: only the last address of each family.
                None => {
                    for text in [r.inet.as_deref(), r.inet6.as_deref()]
                        .into_iter()
                        .flatten()
                    {
                        addrs.push(Cidr::parse(text).map_err(|_| bad(text))?);
                    }
                }
            }
            Ok(RuntimeNic {
                name: r.name,
                mac,
                addrs,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGENT: &str = r#"[
 {"name":"lo","hardware-address":"00:00:00:00:00:00","ip-addresses":[
   {"ip-address":"127.0.0.1","ip-address-type":"ipv4","prefix":8},{"ip-address":"::1","ip-address-type":"ipv6","prefix":128}],
  "statistics":{"rx-bytes":1,"rx-packets":1,"rx-errs":0,"rx-dropped":0,"tx-bytes":1,"tx-packets":1,"tx-errs":0,"tx-dropped":0}},
 {"name":"eth0","hardware-address":"bc:24:11:2a:3b:4c","ip-addresses":[
   {"ip-address":"10.0.0.5","ip-address-type":"ipv4","prefix":24},{"ip-address":"fe80::be24:11ff:fe2a:3b4c","ip-address-type":"ipv6","prefix":64}]}]"#;

    #[test]
    fn reference_agent_answer() {
        let nics = parse_agent(AGENT).unwrap();
        assert_eq!(nics.len(), 2);
        assert_eq!(nics[0].mac, None, "the zero MAC of lo is no MAC");
        assert_eq!(nics[1].mac, Some([0xbc, 0x24, 0x11, 0x2a, 0x3b, 0x4c]));
        assert_eq!(nics[1].addrs[0].key(), "10.0.0.5/24");
    }

    #[test]
    fn tunnel_without_hardware_address() {
        let nics = parse_agent(r#"[{"name":"wg0","ip-addresses":[{"ip-address":"10.9.0.2","ip-address-type":"ipv4","prefix":32}]},{"name":"tun0"}]"#).unwrap();
        assert_eq!(nics[0].mac, None);
        assert_eq!(nics[0].addrs.len(), 1);
        assert!(nics[1].addrs.is_empty());
    }

    #[test]
    fn lxc_new_and_old_shapes() {
        let new = parse_lxc(r#"[{"name":"eth0","hwaddr":"bc:24:11:5d:6e:7f","hardware-address":"bc:24:11:5d:6e:7f",
  "inet":"10.0.0.5/24","inet6":"fe80::be24:11ff:fe5d:6e7f/64",
  "ip-addresses":[{"ip-address":"10.0.0.5","ip-address-type":"inet","prefix":24},
                  {"ip-address":"fe80::be24:11ff:fe5d:6e7f","ip-address-type":"inet6","prefix":64}]}]"#).unwrap();
        assert_eq!(new[0].addrs.len(), 2);
        let old = parse_lxc(r#"[{"name":"eth0","hwaddr":"bc:24:11:5d:6e:7f","inet":"10.0.0.5/24","inet6":"fe80::be24:11ff:fe5d:6e7f/64"}]"#).unwrap();
        assert_eq!(old, new);
        assert!(parse_lxc("null").unwrap().is_empty());
    }

    /// Every agent and LXC answer of the fixtures, the samples above, and edge shapes: what
    /// the plain reader accepts it reads exactly as serde.
    #[test]
    fn the_plain_reader_agrees_with_serde_or_declines() {
        let mut must_accept = vec![AGENT.to_owned(), "null".to_owned(), "[]".to_owned()];
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
        for f in std::fs::read_dir(dir).unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(f.unwrap().path()).unwrap()).unwrap();
            for k in ["agent", "lxc-interfaces"] {
                if let Some(a) = v.get("network").and_then(|n| n.get(k)) {
                    must_accept.push(a.to_string());
                }
            }
        }
        assert!(must_accept.len() > 20, "answers: {}", must_accept.len());
        for t in [
            r#"[{"name":"eth0","hwaddr":null,"ip-addresses":null,"inet":"10.0.0.5/24","inet6":null}]"#,
            r#"[{"name":"eth0","ip-addresses":[{"ip-address":"10.0.0.5","prefix":null}]},{}]"#,
        ] {
            must_accept.push(t.to_owned());
        }
        for t in &must_accept {
            let serde = serde_json::from_str::<Option<Vec<RawNic<'_>>>>(t)
                .ok()
                .and_then(|raw| from_raw(raw, "test").ok());
            // Not the documented shape, or an address that does not parse (a fixture's
            // malformed answer): declined too.
            assert_eq!(plain(t), serde, "{t}");
        }
        for t in [
            r#"[{"name":"a","name":"b"}]"#,
            r#"[{"name":"eth0","ip-addresses":[{"ip-address":"10.0.0.5","prefix":300}]}]"#,
            r#"[{"name":null}]"#,
            r#"[{"name":"e\u0074h0"}]"#,
            "{}",
        ] {
            assert!(plain(t).is_none(), "{t}");
        }
    }

    #[test]
    fn bad_answers_are_errors() {
        assert!(matches!(parse_agent("{}"), Err(RuntimeError::Shape { .. })));
        assert!(matches!(
            parse_agent("not json"),
            Err(RuntimeError::Shape { .. })
        ));
        let e = parse_agent(
            r#"[{"name":"eth0","ip-addresses":[{"ip-address":"10.0.0.999","prefix":24}]}]"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("eth0"), "{e}");
    }
}
