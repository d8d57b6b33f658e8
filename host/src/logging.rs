//! Where log lines (tracing) go and how they look, decided once at start from what stderr is:
//!
//! - a terminal: colour (unless `NO_COLOR` is set and not empty), lines drawn above the
//!   progress bars through [`crate::progress::write_stderr`];
//! - journald (`JOURNAL_STREAM` names stderr, as systemd sets it for a service): no time stamp
//!   (journald adds its own), no colour, and each line prefixed with its syslog priority
//!   (`<3>` error … `<7>` debug), which journald reads by default (`SyslogLevelPrefix=`);
//! - anything else (a pipe, a file, cron's mail): time stamps, no colour, no escape codes.
//!
//! `--log-format json` keeps its one JSON object per line in all three, never coloured.

use std::ffi::OsStr;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// What stderr is, as far as log lines care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A terminal, with or without colour.
    Terminal { colour: bool },
    /// systemd's journal stream.
    Journal,
    /// A pipe, a file, or anything else that is not a terminal.
    Plain,
}

impl Destination {
    /// The destination from the facts: is stderr a terminal, `JOURNAL_STREAM` (`dev:inode`)
    /// and stderr's own device and inode, and `NO_COLOR`.
    ///
    /// The journal is recognised only when `JOURNAL_STREAM` names stderr itself, as systemd's
    /// documentation asks: a child of a service whose stderr was redirected inherits the variable.
    pub fn from_facts(
        stderr_is_terminal: bool,
        journal_stream: Option<&OsStr>,
        stderr_id: Option<(u64, u64)>,
        no_color: Option<&OsStr>,
    ) -> Destination {
        if stderr_is_terminal {
            let colour = no_color.is_none_or(OsStr::is_empty);
            return Destination::Terminal { colour };
        }
        let journal = journal_stream
            .and_then(OsStr::to_str)
            .and_then(|v| v.split_once(':'))
            .and_then(|(dev, ino)| Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?)));
        match (journal, stderr_id) {
            (Some(named), Some(actual)) if named == actual => Destination::Journal,
            _ => Destination::Plain,
        }
    }

    /// The destination of this process's stderr.
    pub fn detect() -> Destination {
        Destination::from_facts(
            std::io::stderr().is_terminal(),
            std::env::var_os("JOURNAL_STREAM").as_deref(),
            stderr_id(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }

    /// True when log lines may carry colour codes.
    pub fn colour(self) -> bool {
        matches!(self, Destination::Terminal { colour: true })
    }
}

/// Device and inode of stderr (what `JOURNAL_STREAM` names), where the platform has them.
#[cfg(unix)]
fn stderr_id() -> Option<(u64, u64)> {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_id() -> Option<(u64, u64)> {
    None
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Prefixes each line of `F` with its syslog priority, for journald.
struct JournalPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The log writer: stderr, above the progress bars when there are some.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::write_stderr(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// Installs the global subscriber: `filter` (an `EnvFilter` directive, `info` when invalid),
/// text or JSON lines, shaped for `destination`.
pub fn init(filter: &str, json: bool, destination: Destination) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter)
        .with_ansi(destination.colour());
    if json {
        builder.json().init();
        return;
    }
    match destination {
        Destination::Journal => builder
            .event_format(JournalPriority(Format::default().without_time()))
            .init(),
        Destination::Terminal { .. } | Destination::Plain => builder.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let d = Destination::from_facts;
        assert_eq!(
            d(true, None, None, None),
            Destination::Terminal { colour: true }
        );
        assert_eq!(
            d(true, None, None, os("")),
            Destination::Terminal { colour: true },
            "an empty NO_COLOR does not count (no-color.org)"
        );
        assert_eq!(
            d(true, None, None, os("1")),
            Destination::Terminal { colour: false }
        );
        assert_eq!(d(false, None, Some((1, 2)), None), Destination::Plain);
        assert!(!d(false, None, None, None).colour());
    }

    #[test]
    fn the_journal_only_when_journal_stream_names_stderr() {
        let d = Destination::from_facts;
        assert_eq!(
            d(false, os("29:4711"), Some((29, 4711)), None),
            Destination::Journal
        );
        assert_eq!(
            d(false, os("29:4711"), Some((29, 4712)), None),
            Destination::Plain,
            "inherited from a parent whose stderr was the journal"
        );
        assert_eq!(
            d(false, os("garbage"), Some((29, 4711)), None),
            Destination::Plain
        );
        assert!(!Destination::Journal.colour());
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
    }
}
