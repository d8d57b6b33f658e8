//! vCPUs (NetBox `vcpus`, decimal with 2 places).
//!
//! Order: QEMU config `vcpus` when set; else `maxcpu` of the resource row; else `sockets*cores`
//! (QEMU, absent = 1 each) or `cores` (LXC) from the config. An LXC `cpulimit` below that
//! (fractional, e.g. 0.5) wins. Rounded to 2 decimals; never 0 (`Clear` instead); `Keep` when
//! the config was not read (it can override the row) or nothing is known.

use crate::config::ConfigView;
use crate::model::{Field, Guest, GuestKind};
use crate::numbers::{ConfigNumberError, config_f64, config_u64};

/// Rounds to NetBox's two decimal places. A value so large that `x * 100` overflows has no
/// decimals left to round: it is returned as it is rather than as infinity.
pub(crate) fn round2(x: f64) -> f64 {
    let r = (x * 100.0).round() / 100.0;
    if r.is_finite() { r } else { x }
}

/// The desired vCPUs.
pub(crate) fn vcpus(guest: &Guest, cfg: &ConfigView) -> Result<Field<f64>, ConfigNumberError> {
    // The config can override the row (QEMU `vcpus`, LXC `cpulimit`): without it, `maxcpu`
    // may be wrong (an LXC limited to 0.5 shows `maxcpu: 1`), and a wrong value is a write.
    if !guest.config_read {
        return Ok(Field::Keep);
    }
    let mut v: Option<f64> = None;
    if guest.kind == GuestKind::Qemu
        && let Some(n) = config_u64("vcpus", cfg.vcpus)?
        && n > 0
    {
        v = Some(n as f64);
    }
    if v.is_none() {
        // A non-finite `maxcpu` (only a broken host can send one) is unknown, not a count.
        v = guest.maxcpu.filter(|m| m.is_finite() && *m > 0.0);
    }
    if v.is_none() {
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

    // Found by `host/tests/e2e_faults.rs`: an LXC with `cpulimit: 0.5` whose config read failed
    // got `vcpus` 1 from `maxcpu`, and the next clean run wrote 0.5 back.
    #[test]
    fn config_not_read_keeps_vcpus_even_with_maxcpu() {
        for kind in [GuestKind::Lxc, GuestKind::Qemu] {
            let mut g = guest(kind, Some(1.0), &[]);
            g.config_read = false;
            assert_eq!(run(&g), Field::Keep, "{kind:?}");
        }
    }

    // Found by `tests/hostile_input.rs` (`normalize_desired_never_panics`, shrunk to a running
    // QEMU guest with `maxcpu: inf` and no config): the desired vCPUs were `inf`, written to
    // NetBox as the non-JSON text `inf`. A huge `cpulimit` overflowed `round2` the same way.
    #[test]
    fn non_finite_or_huge_cpu_values_stay_finite() {
        let mut g = guest(GuestKind::Qemu, Some(f64::INFINITY), &[]);
        g.config_read = false;
        assert_eq!(run(&g), Field::Keep);
        let g = guest(GuestKind::Qemu, Some(f64::NAN), &[("cores", "2")]);
        assert_eq!(run(&g), Field::Set(2.0));
        let g = guest(GuestKind::Lxc, None, &[("cpulimit", "1e308")]);
        assert_eq!(run(&g), Field::Set(1e308));
        assert_eq!(round2(f64::MAX), f64::MAX);
        assert_eq!(round2(1.005), 1.0);
    }

    #[test]
    fn malformed_numbers_are_errors() {
        let g = guest(GuestKind::Qemu, None, &[("cores", "two")]);
        assert!(vcpus(&g, &ConfigView::new(&g)).is_err());
    }
}
