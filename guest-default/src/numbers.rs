//! Numbers in config values (`"4096"`, `"1.5"`), with errors that name the key.

use thiserror::Error;

use crate::property::trim;

/// A config value that should be a number and is not.
#[derive(Debug, Error, PartialEq)]
#[error("config {key}={value:?} is not a valid number")]
pub(crate) struct ConfigNumberError {
    pub(crate) key: &'static str,
    pub(crate) value: String,
}

/// A whole number config value (`None` when the key is absent).
pub(crate) fn config_u64(
    key: &'static str,
    value: Option<&str>,
) -> Result<Option<u64>, ConfigNumberError> {
    match value {
        None => Ok(None),
        Some(v) => trim(v)
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ConfigNumberError {
                key,
                value: v.to_owned(),
            }),
    }
}

/// A decimal config value (`None` when the key is absent).
pub(crate) fn config_f64(
    key: &'static str,
    value: Option<&str>,
) -> Result<Option<f64>, ConfigNumberError> {
    match value {
        None => Ok(None),
        Some(v) => trim(v)
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| ConfigNumberError {
                key,
                value: v.to_owned(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_key() {
        assert_eq!(config_u64("cores", Some("4")), Ok(Some(4)));
        assert_eq!(config_u64("cores", None), Ok(None));
        assert_eq!(config_f64("cpulimit", Some("1.5")), Ok(Some(1.5)));
        let e = config_u64("cores", Some("x")).unwrap_err();
        assert!(e.to_string().contains("cores"));
        assert!(config_f64("cpulimit", Some("-1")).is_err());
        assert!(config_f64("cpulimit", Some("NaN")).is_err());
    }
}
