//! Command line: parse (no I/O), then run the chosen command. Exit codes follow DESIGN.md:
//! 0 nothing left to do, 2 the plan has changes, 1 error, 3 finished with some VMs failed.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

pub mod demo;
pub mod doctor;
mod generate;
mod rule_fields;
mod rules_cmd;
mod rules_new;
mod rules_replay;
pub mod sync_cmd;

/// Keeps NetBox's virtual machines in step with Proxmox VE.
#[derive(Debug, Parser)]
#[command(name = "pve2netbox", version, about)]
pub struct Cli {
    /// Log level filter for stderr (e.g. `info`, `debug`, `pve2netbox=trace`).
    #[arg(long, global = true, env = "PVE2NETBOX_LOG", default_value = "info")]
    pub log: String,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print only the report and errors: no progress bars, no summary.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How the run report is written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check connectivity, versions, token rights, custom fields and the managed tag.
    Doctor(doctor::DoctorArgs),
    /// Test and inspect rule modules in isolation.
    Rules {
        #[command(subcommand)]
        command: rules_cmd::RulesCommand,
    },
    /// Reconcile NetBox with Proxmox (`--dry-run`: show the plan, write nothing).
    Sync(sync_cmd::SyncArgs),
    /// Make a plan, write it as JSON (`--out`) and print it as a table.
    Plan(sync_cmd::PlanArgs),
    /// Carry out a saved plan; refuses targets changed since the plan.
    Apply(sync_cmd::ApplyArgs),
    /// Simulated Proxmox and NetBox in-process: sync, change, plan, apply, zero-write rerun.
    Demo(sync_cmd::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff) on stdout, or write every page with `--dir` (for packagers).
    #[command(hide = true)]
    Manpage(generate::ManpageArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = parse();
    crate::logging::init(
        &cli.log,
        cli.log_format == LogFormat::Json,
        crate::logging::Destination::detect(),
    );
    let result = match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Rules { command } => rules_cmd::run(command),
        Command::Sync(args) => sync_cmd::sync(args, cli.quiet),
        Command::Plan(args) => sync_cmd::plan(args, cli.quiet),
        Command::Apply(args) => sync_cmd::apply(args, cli.quiet),
        Command::Demo(args) => sync_cmd::demo(args, cli.quiet),
        Command::Completions(args) => generate::completions(args),
        Command::Manpage(args) => generate::manpage(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// The command line, with `-V` (version and commit) and `--version` (also the rules WIT versions
/// and the embedded rules) filled in from [`crate::version`].
fn parse() -> Cli {
    // clap keeps `&'static str`s; leaking two short strings once per process is free.
    let short: &'static str = Box::leak(crate::version::short().into_boxed_str());
    let long: &'static str = Box::leak(crate::version::long().into_boxed_str());
    let matches = Cli::command()
        .version(short)
        .long_version(long)
        .get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
