//! RFC 3339 times as NetBox and the run lock/lease write and read them, through the `time`
//! crate: UTC out (`2025-11-25T23:58:24Z`, or with microseconds, NetBox's own precision), any
//! offset in (NetBox answers in its configured `TIME_ZONE`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds, UTC.
pub fn rfc3339_utc(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_utc(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `YYYY-MM-DDTHH:MM:SSZ` of epoch seconds (a Proxmox task's start time).
pub fn rfc3339_of_epoch(epoch: i64) -> String {
    OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`: microseconds, UTC (times before the epoch clamp to it).
pub fn rfc3339_micros(at: SystemTime) -> String {
    let micros = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format_utc(UNIX_EPOCH + Duration::from_micros(micros as u64))
}

fn format_utc(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 time with any offset; `None` for anything else or a time before 1970.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let nanos = u64::try_from(t.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_out_any_offset_in() {
        let at = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(at), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_of_epoch(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_micros(at + Duration::from_micros(609_862)),
            "2000-02-29T00:00:00.609862Z"
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T01:00:00.5+01:00"),
            Some(at + Duration::from_millis(500))
        );
        assert_eq!(parse_rfc3339(&rfc3339_utc(at)), Some(at));
        let end_of_feb_2100 = UNIX_EPOCH + Duration::from_secs(4_107_542_399);
        assert_eq!(rfc3339_utc(end_of_feb_2100), "2100-02-28T23:59:59Z");
        for bad in [
            "",
            "2000-02-30T00:00:00Z",
            "2000-02-29 00:00",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
