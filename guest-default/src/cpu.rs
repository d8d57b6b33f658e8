//! vCPUs (NetBox `vcpus`, decimal with 2 places).
//!
//! Order: QEMU config `vcpus` when set; else `maxcpu` of the resource row; else `sockets*cores`
//! (QEMU, absent = 1 each) or `cores` (LXC) from the config. An LXC `cpulimit` below that
//! (fractional, e.g. 0.5) wins. Rounded to 2 decimals; never 0 (`Clear` instead); `Keep` when
//! nothing is known (unknown row, config not read).

use crate::config::ConfigView;
use crate::model::{Field, Guest, GuestKind};
use crate::numbers::{ConfigNumberError, config_f64, config_u64};

/// Rounds to NetBox's two decimal places.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The desired vCPUs.
pub(crate) fn vcpus(guest: &Guest, cfg: &ConfigView) -> Result<Field<f64>, ConfigNumberError> {
    let mut v: Option<f64> = None;
    if guest.kind == GuestKind::Qemu
        && let Some(n) = config_u64("vcpus", cfg.vcpus)?
        && n > 0
    {
        v = Some(n as f64);
    }
    if v.is_none() {
        v = guest.maxcpu.filter(|m| *m > 0.0);
    }
    if v.is_none() && guest.config_read {
        v = match guest.kind {
            GuestKind::Qemu => {
                let cores = config_u64("cores", cfg.cores)?.unwrap_or(1);
                let sockets = config_u64("sockets", cfg.sockets)?.unwrap_or(1);
                Some(cores.saturating_mul(sockets) as f64)
            }
            // Absent LXC `cores` means "all host CPUs", which the rules do not know.
            GuestKind::Lxc => config_u64("cores", cfg.cores)?.map(|c| c as f64),
        };
    }
    if guest.kind == GuestKind::Lxc
        && let Some(limit) = config_f64("cpulimit", cfg.cpulimit)?
        && limit > 0.0
    {
        v = Some(v.map_or(limit, |x| x.min(limit)));
    }
    Ok(match v {
        None => Field::Keep,
        Some(x) => {
            let r = round2(x);
            if r > 0.0 { Field::Set(r) } else { Field::Clear }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(kind: GuestKind, maxcpu: Option<f64>, config: &[(&str, &str)]) -> Guest {
        Guest {
            kind,
            maxcpu,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            config_read: true,
            ..Guest::default()
        }
    }

    fn run(g: &Guest) -> Field<f64> {
        vcpus(g, &ConfigView::new(g)).unwrap()
    }

    #[test]
    fn qemu_order() {
        assert_eq!(
            run(&guest(GuestKind::Qemu, Some(4.0), &[("vcpus", "2")])),
            Field::Set(2.0)
        );
        assert_eq!(
            run(&guest(GuestKind::Qemu, Some(4.0), &[("cores", "8")])),
            Field::Set(4.0)
        );
        assert_eq!(
            run(&guest(
                GuestKind::Qemu,
                None,
                &[("cores", "2"), ("sockets", "2")]
            )),
            Field::Set(4.0)
        );
        assert_eq!(run(&guest(GuestKind::Qemu, None, &[])), Field::Set(1.0));
    }

    #[test]
    fn lxc_cpulimit_when_smaller() {
        assert_eq!(
            run(&guest(
                GuestKind::Lxc,
                Some(2.0),
                &[("cores", "2"), ("cpulimit", "0.5")]
            )),
            Field::Set(0.5)
        );
        assert_eq!(
            run(&guest(
                GuestKind::Lxc,
                None,
                &[("cores", "1"), ("cpulimit", "4")]
            )),
            Field::Set(1.0)
        );
        assert_eq!(
            run(&guest(GuestKind::Lxc, None, &[("cpulimit", "0.333")])),
            Field::Set(0.33)
        );
        assert_eq!(run(&guest(GuestKind::Lxc, None, &[])), Field::Keep);
    }

    #[test]
    fn zero_is_clear_and_unknown_is_keep() {
        assert_eq!(
            run(&guest(GuestKind::Lxc, None, &[("cpulimit", "0.001")])),
            Field::Clear
        );
        let mut g = guest(GuestKind::Qemu, None, &[]);
        g.config_read = false;
        assert_eq!(run(&g), Field::Keep);
    }

    #[test]
    fn malformed_numbers_are_errors() {
        let g = guest(GuestKind::Qemu, None, &[("cores", "two")]);
        assert!(vcpus(&g, &ConfigView::new(&g)).is_err());
    }
}
