//! Progress of a run for people, on stderr: one indicatif bar per phase on a terminal, one plain
//! line per phase start and end otherwise (cron, CI, pipes), nothing with `--quiet`.
//!
//! Edges: the phases call [`Progress::phase`] and tick the returned [`PhaseBar`]; they never
//! know which of the three forms is shown. Log lines (tracing) go through [`write_stderr`],
//! which clears the bars, writes the line and redraws them below it: one writer, so a log line
//! printed during a phase leaves no copy of a bar behind.

use std::io::{IsTerminal, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar redraws: often enough to look alive, rarely enough to cost nothing.
const BAR_TICK: Duration = Duration::from_millis(120);

#[derive(Debug, Clone)]
enum Form {
    Bars(MultiProgress),
    Lines,
    Quiet,
}

/// The run's progress display. Cheap to clone (bars share one multi-bar).
#[derive(Debug, Clone)]
pub struct Progress {
    form: Form,
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let form = if quiet {
            Form::Quiet
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            *ACTIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi.clone());
            Form::Bars(multi)
        } else {
            Form::Lines
        };
        Progress { form }
    }

    /// No output at all (library callers, tests).
    pub fn quiet() -> Self {
        Progress { form: Form::Quiet }
    }

    /// Plain lines whatever stderr is.
    pub fn lines() -> Self {
        Progress { form: Form::Lines }
    }

    /// True when nothing is shown.
    pub fn is_quiet(&self) -> bool {
        matches!(self.form, Form::Quiet)
    }

    /// Starts a phase; `total` items when known (a bar with a count), else a spinner.
    pub fn phase(&self, name: &str, total: Option<u64>) -> PhaseBar {
        let bar = match &self.form {
            Form::Bars(multi) => {
                let bar = match total {
                    Some(n) => {
                        let bar = ProgressBar::new(n);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>16} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                        bar
                    }
                    None => {
                        let bar = ProgressBar::new_spinner();
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{prefix:>16} {spinner} {msg} ({elapsed})",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar
                    }
                };
                let bar = multi.add(bar);
                bar.set_prefix(name.to_owned());
                bar.enable_steady_tick(BAR_TICK);
                Some((bar, multi.clone()))
            }
            Form::Lines => {
                match total {
                    Some(n) if n > 0 => eprintln!("[{name}] started ({n} items)"),
                    _ => eprintln!("[{name}] started"),
                }
                None
            }
            Form::Quiet => None,
        };
        PhaseBar {
            name: name.to_owned(),
            bar,
            lines: matches!(self.form, Form::Lines),
            started: Instant::now(),
        }
    }

    /// Stops drawing log lines through these bars: the run is over, and what is printed next
    /// (the report) goes below them. Left registered, a later log line would clear the lines
    /// the bars last took, which by then hold the report.
    pub fn detach(&self) {
        if let Form::Bars(_) = &self.form {
            *ACTIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Runs `f` (which writes to the terminal, e.g. a report on stdout) with the bars cleared,
    /// then redraws them below what it wrote.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.form {
            Form::Bars(multi) => multi.suspend(f),
            Form::Lines | Form::Quiet => f(),
        }
    }

    /// A line for people between phases (the demo's narration); hidden with `--quiet`.
    pub fn note(&self, text: &str) {
        match &self.form {
            Form::Bars(multi) => {
                let _ = multi.println(text);
            }
            Form::Lines => eprintln!("{text}"),
            Form::Quiet => {}
        }
    }
}

/// The bars drawn last (by the latest [`Progress::new`] on a terminal), for [`write_stderr`].
static ACTIVE_BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Writes `bytes` (whole log lines) to stderr: above the bars when bars are drawn, which are
/// cleared first and redrawn after, else straight through.
pub fn write_stderr(bytes: &[u8]) -> std::io::Result<()> {
    let bars = ACTIVE_BARS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let write = || {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(bytes)?;
        stderr.flush()
    };
    match bars {
        Some(multi) => multi.suspend(write),
        None => write(),
    }
}

/// One phase's bar (or line).
#[derive(Debug)]
pub struct PhaseBar {
    name: String,
    /// The bar and the multi-bar it is drawn in (to print its last line above the others).
    bar: Option<(ProgressBar, MultiProgress)>,
    lines: bool,
    started: Instant,
}

impl PhaseBar {
    /// One more item done.
    pub fn inc(&self, n: u64) {
        if let Some((bar, _)) = &self.bar {
            bar.inc(n);
        }
    }

    /// Adds `n` to the total as parts of it become known (a spinner stays a spinner).
    pub fn add_total(&self, n: u64) {
        if let Some((bar, _)) = &self.bar
            && bar.length().is_some()
        {
            bar.inc_length(n);
        }
    }

    /// The indicatif bar, for phases that tick from spawned tasks (`None` without bars).
    pub(crate) fn indicatif(&self) -> Option<ProgressBar> {
        self.bar.as_ref().map(|(bar, _)| bar.clone())
    }

    /// A short status next to the bar.
    pub fn message(&self, text: &str) {
        if let Some((bar, _)) = &self.bar {
            bar.set_message(text.to_owned());
        }
    }

    /// Ends the phase with a summary (`200 guests`, `0 writes`). A bar is replaced by one
    /// line printed above the bars still running: a finished bar left in the multi-bar is
    /// erased by indicatif once it is dropped, and the run's record with it.
    pub fn finish(self, summary: &str) {
        if let Some((bar, multi)) = &self.bar {
            bar.finish_and_clear();
            multi.remove(bar);
            let _ = multi.println(format!(
                "{:>16} {summary} ({:.1} s)",
                self.name,
                self.started.elapsed().as_secs_f64()
            ));
        } else if self.lines {
            eprintln!(
                "[{}] done in {} ms: {summary}",
                self.name,
                self.started.elapsed().as_millis()
            );
        }
    }
}
