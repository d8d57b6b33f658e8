//! Files generated from the command line's own definition, for packagers: shell completions
//! (`pve2netbox completions SHELL`, clap_complete) and man pages (`pve2netbox manpage`, hidden,
//! clap_mangen). Generated from [`Cli`], they never drift from the flags the binary accepts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::Cli;

/// The name completions and man pages are generated for (the installed binary's name).
const BIN_NAME: &str = "pve2netbox";

/// Arguments of `completions`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Install, for example:\n  \
    pve2netbox completions bash > /etc/bash_completion.d/pve2netbox\n  \
    pve2netbox completions zsh  > /usr/local/share/zsh/site-functions/_pve2netbox\n  \
    pve2netbox completions fish > ~/.config/fish/completions/pve2netbox.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `manpage`.
#[derive(Debug, Clone, clap::Args)]
pub struct ManpageArgs {
    /// Write every page (pve2netbox.1 and one per subcommand, e.g. pve2netbox-sync.1) into
    /// this directory instead of printing pve2netbox.1 on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `pve2netbox completions SHELL`: the completion script on stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN_NAME, &mut script);
    write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// `pve2netbox manpage [--dir DIR]`: pve2netbox(1) on stdout, or every page into `DIR`.
pub fn manpage(args: ManpageArgs) -> anyhow::Result<ExitCode> {
    match args.dir {
        None => {
            let mut page = Vec::new();
            render_main_page(&mut page).context("rendering the man page")?;
            write_stdout(&page)?;
        }
        Some(dir) => {
            let listing: String = write_pages(&dir)?
                .iter()
                .map(|path| format!("{}\n", path.display()))
                .collect();
            write_stdout(listing.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes pve2netbox.1 and a page per visible subcommand (nested ones as
/// `pve2netbox-rules-check.1`) into `dir`, which is created; returns the files written.
pub fn write_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    // The main page with the sections clap_mangen cannot know (exit status, environment, files).
    let main = dir.join(format!("{BIN_NAME}.1"));
    let mut page = Vec::new();
    render_main_page(&mut page).context("rendering the man page")?;
    std::fs::write(&main, page).with_context(|| format!("writing {}", main.display()))?;
    let mut written: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(BIN_NAME) && n.ends_with(".1"))
        })
        .collect();
    written.sort();
    Ok(written)
}

/// pve2netbox(1): clap_mangen's sections, then EXIT STATUS, ENVIRONMENT and FILES.
fn render_main_page(w: &mut dyn Write) -> std::io::Result<()> {
    use clap_mangen::roff::{Roff, bold, roman};
    let man = clap_mangen::Man::new(command());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;
    let mut roff = Roff::new();
    let entries = |roff: &mut Roff, heading: &str, items: &[(&str, &str)]| {
        roff.control("SH", [heading]);
        for (term, text) in items {
            roff.control("TP", []);
            roff.text([bold(*term)]);
            roff.text([roman(*text)]);
        }
    };
    entries(
        &mut roff,
        "EXIT STATUS",
        &[
            ("0", "Nothing left to do."),
            ("1", "Error; the message on stderr says what failed."),
            ("2", "The plan has changes (plan, sync --dry-run)."),
            (
                "3",
                "Finished, but some VMs or scopes failed (listed in the report).",
            ),
        ],
    );
    entries(
        &mut roff,
        "ENVIRONMENT",
        &[
            ("PVE2NETBOX_CONFIG", "The configuration file (--config)."),
            (
                "PVE2NETBOX_<SECTION>_<KEY>",
                "Any configuration key, over the file: PVE2NETBOX_NETBOX_URL, \
                 PVE2NETBOX_SYNC_WRITE_WINDOW, PVE2NETBOX_PROXMOX_0_URL (by position) or \
                 PVE2NETBOX_PROXMOX_PVE_A_FINGERPRINT (by name).",
            ),
            (
                "PVE2NETBOX_STATE_DIR",
                "Local state: the run lock of sync and apply (--state-dir; default \
                 $XDG_STATE_HOME/pve2netbox, else ~/.local/state/pve2netbox).",
            ),
            (
                "PVE2NETBOX_CACHE_DIR",
                "The compiled-rules cache (default $XDG_CACHE_HOME/pve2netbox/components, \
                 else ~/.cache/pve2netbox/components). Deleting it is always safe.",
            ),
            (
                "CREDENTIALS_DIRECTORY",
                "Where a token_file starting with $CREDENTIALS_DIRECTORY/ is read; systemd \
                 sets it for a service with LoadCredential=.",
            ),
            (
                "PVE2NETBOX_LOG",
                "Log filter on stderr (--log), e.g. warn or debug.",
            ),
        ],
    );
    entries(
        &mut roff,
        "FILES",
        &[
            (
                "/etc/pve2netbox/pve2netbox.toml",
                "The configuration of the packaged service (pve2netbox.service, run every 15 \
                 minutes by pve2netbox.timer once enabled). Without --config: pve2netbox.toml \
                 in the working directory, if present.",
            ),
            (
                "/etc/pve2netbox/*.token",
                "The tokens, root-only, handed to the service by LoadCredential=; never in the \
                 configuration file.",
            ),
        ],
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl cat pve2netbox.service pve2netbox.timer; the README in \
         /usr/share/doc/pve2netbox.",
    )]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// The command as the pages describe it: `help` is a flag on every page, not a subcommand page.
fn command() -> clap::Command {
    Cli::command().name(BIN_NAME).disable_help_subcommand(true)
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(shell: clap_complete::Shell) -> String {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
        String::from_utf8(script).expect("completion scripts are UTF-8")
    }

    #[test]
    fn completions_name_the_subcommands_and_their_flags() {
        let bash = completion(clap_complete::Shell::Bash);
        assert!(bash.contains("complete -F _pve2netbox"), "{bash}");
        for word in [
            "sync",
            "plan",
            "apply",
            "doctor",
            "--dry-run",
            "--state-dir",
        ] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
        // The generator of man pages is for packagers: not in the help users read.
        let help = Cli::command().render_help().to_string();
        assert!(
            help.contains("completions") && !help.contains("manpage"),
            "{help}"
        );
        let zsh = completion(clap_complete::Shell::Zsh);
        assert!(zsh.starts_with("#compdef pve2netbox"), "{zsh}");
        let fish = completion(clap_complete::Shell::Fish);
        assert!(fish.contains("complete -c pve2netbox"), "{fish}");
    }

    #[test]
    fn man_pages_cover_every_visible_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write_pages(dir.path()).expect("pages written");
        let names: Vec<String> = written
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        for page in [
            "pve2netbox.1",
            "pve2netbox-sync.1",
            "pve2netbox-completions.1",
            "pve2netbox-rules-check.1",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} missing: {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("manpage")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let main = std::fs::read_to_string(dir.path().join("pve2netbox.1")).expect("main page");
        assert!(main.contains(".TH pve2netbox 1"), "{main}");
        assert!(main.contains("pve2netbox\\-sync(1)"), "{main}");
        for section in ["EXIT STATUS", "ENVIRONMENT", "FILES"] {
            assert!(
                main.contains(&format!(".SH \"{section}\""))
                    || main.contains(&format!(".SH {section}")),
                "{section}: {main}"
            );
        }
        // What `manpage` prints is the page the package installs.
        let mut printed = Vec::new();
        render_main_page(&mut printed).expect("rendered");
        assert_eq!(String::from_utf8(printed).expect("UTF-8"), main);
    }
}
