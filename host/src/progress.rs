//! Progress of a run for people, on stderr: one indicatif bar per phase on a terminal, one plain
//! line per phase start and end otherwise (cron, CI, pipes), nothing with `--quiet`.
//!
//! Edges: the phases call [`Progress::phase`] and tick the returned [`PhaseBar`]; they never
//! know which of the three forms is shown. Logs (tracing) stay separate and also go to stderr.

use std::io::IsTerminal;
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
            Form::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
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
                Some(bar)
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

/// One phase's bar (or line).
#[derive(Debug)]
pub struct PhaseBar {
    name: String,
    bar: Option<ProgressBar>,
    lines: bool,
    started: Instant,
}

impl PhaseBar {
    /// One more item done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Adds `n` to the total as parts of it become known (a spinner stays a spinner).
    pub fn add_total(&self, n: u64) {
        if let Some(bar) = &self.bar
            && bar.length().is_some()
        {
            bar.inc_length(n);
        }
    }

    /// The indicatif bar, for phases that tick from spawned tasks (`None` without bars).
    pub(crate) fn indicatif(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// A short status next to the bar.
    pub fn message(&self, text: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(text.to_owned());
        }
    }

    /// Ends the phase with a summary (`200 guests`, `0 writes`).
    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_with_message(summary.to_owned());
        } else if self.lines {
            eprintln!(
                "[{}] done in {} ms: {summary}",
                self.name,
                self.started.elapsed().as_millis()
            );
        }
    }
}
