//! What the binary writes where an operator reads it: stderr without escape codes when it is
//! not a terminal, journald's priority prefixes under systemd, colour on a terminal only without
//! `NO_COLOR`, and `--version`.
//!
//! Runs `demo --vms 20 --profile zero` (simulators in-process, a few seconds) with `--log debug`,
//! so there are log lines to look at.

use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pve2netbox"));
    for var in [
        "NO_COLOR",
        "JOURNAL_STREAM",
        "PVE2NETBOX_LOG",
        "PVE2NETBOX_METRICS_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

const DEMO: &[&str] = &[
    "--log",
    "pve2netbox=debug",
    "demo",
    "--vms",
    "20",
    "--profile",
    "zero",
];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Lines that tracing wrote (`<time>  LEVEL target: …`), not progress or narration.
fn log_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| {
            [" DEBUG ", " INFO ", " WARN ", " ERROR "]
                .iter()
                .any(|lvl| l.contains(lvl))
        })
        .collect()
}

#[test]
fn piped_stderr_has_no_escape_codes() {
    let out = bin()
        .args(DEMO)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_ok(&out, "demo");
    let stderr = text(&out.stderr);
    assert!(
        !log_lines(&stderr).is_empty(),
        "the debug log has lines to check:\n{stderr}"
    );
    assert!(
        !out.stderr.contains(&0x1b),
        "an escape code on piped stderr:\n{stderr:?}"
    );
    assert!(!out.stdout.contains(&0x1b), "an escape code on stdout");
}

#[test]
fn under_journald_lines_carry_their_priority_and_no_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr");
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    // What systemd sets for a service whose stderr is the journal: the stream's device:inode.
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let out = bin()
        .args(DEMO)
        .env("JOURNAL_STREAM", &stream)
        .stdout(Stdio::null())
        .stderr(file)
        .output()
        .unwrap();
    assert_ok(&out, "demo under JOURNAL_STREAM");
    let stderr = std::fs::read_to_string(&path).unwrap();
    assert!(
        !stderr.contains('\x1b'),
        "escape codes for journald:\n{stderr:?}"
    );
    let logs: Vec<&str> = stderr.lines().filter(|l| l.starts_with('<')).collect();
    assert!(!logs.is_empty(), "no priority-prefixed lines:\n{stderr}");
    for line in &logs {
        let (prio, rest) = line[1..].split_once('>').expect("<N>");
        let level = rest.trim_start().split(' ').next().unwrap();
        let expected = match level {
            "ERROR" => "3",
            "WARN" => "4",
            "INFO" => "6",
            "DEBUG" | "TRACE" => "7",
            other => panic!("no level after the priority: {other:?} in {line:?}"),
        };
        assert_eq!(prio, expected, "{line}");
        assert!(
            !rest.trim_start().starts_with(|c: char| c.is_ascii_digit()),
            "no time stamp (journald adds its own): {line}"
        );
    }

    // The variable naming another stream (the first file; as a child inherits it from a
    // service while its own stderr is redirected) is not the journal: plain lines, time stamps.
    let path = dir.path().join("stderr-other");
    let file = std::fs::File::create(&path).unwrap();
    let out = bin()
        .args(DEMO)
        .env("JOURNAL_STREAM", &stream)
        .stdout(Stdio::null())
        .stderr(file)
        .output()
        .unwrap();
    assert_ok(&out, "demo with a JOURNAL_STREAM of another stream");
    let stderr = std::fs::read_to_string(&path).unwrap();
    assert!(!stderr.lines().any(|l| l.starts_with("<6>")), "{stderr}");
    let logs = log_lines(&stderr);
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter()
            .all(|l| l.starts_with(|c: char| c.is_ascii_digit())),
        "plain lines start with their time stamp:\n{stderr}"
    );
}

/// The VM blocks of a plan table: each unindented line with the indented lines under it.
fn blocks(table: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for line in table.lines() {
        match out.last_mut() {
            Some(block) if line.starts_with(' ') => block.push(line),
            _ => out.push(vec![line]),
        }
    }
    out
}

/// The demo turns `sync.children` on and changes a guest's network: its plan table (stdout)
/// lists a new interface with its MAC and address under one VM, and an address the guest agent
/// now reports in place of the old one under another; the narration (stderr) says what changed.
#[test]
fn demo_plan_shows_a_nic_added_and_an_ip_changed() {
    let out = bin()
        .args(["demo", "--vms", "20", "--profile", "zero"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_ok(&out, "demo");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("NIC net1 ("), "no NIC added:\n{stderr}");
    assert!(
        stderr.contains("changed to 10.250."),
        "no IP changed:\n{stderr}"
    );
    let blocks = blocks(&stdout);
    let has = |block: &[&str], start: &str, end: &str| {
        block
            .iter()
            .any(|l| l.trim_start().starts_with(start) && l.ends_with(end))
    };
    let nic = blocks
        .iter()
        .find(|b| has(b, "+ interface 'net1'", "(create)"))
        .unwrap_or_else(|| panic!("no interface created in the plan:\n{stdout}"));
    assert!(
        has(nic, "+ MAC address '", "on net1  (create)")
            && has(nic, "+ IP address '", "on net1  (create)"),
        "the new NIC's MAC and address are planned with it: {nic:#?}"
    );
    let ip = blocks
        .iter()
        .find(|b| has(b, "+ IP address '10.250.", "on net0  (create)"))
        .unwrap_or_else(|| panic!("no changed address in the plan:\n{stdout}"));
    assert!(
        has(ip, "- IP address '", "on net0  (delete)"),
        "the address the agent no longer reports is deleted: {ip:#?}"
    );
    // The primary IP moves to the new address in the same run (the demo's rerun, which must
    // write nothing, checks that nothing was left for it).
    assert!(
        ip.iter()
            .any(|l| l.trim_start().starts_with("primary_ip4") && l.contains("→ 10.250.")),
        "the primary IP follows the address: {ip:#?}"
    );
    assert!(
        stderr.contains(" of them for interfaces, MAC and IP addresses, virtual disks"),
        "{stderr}"
    );
}

/// The demo's stderr on a terminal (a pty from util-linux's `script`), as raw bytes.
fn on_a_terminal(no_color: Option<&str>) -> String {
    let exe = env!("CARGO_BIN_EXE_pve2netbox");
    let line = std::iter::once(exe)
        .chain(DEMO.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null());
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd
        .output()
        .expect("util-linux `script` runs the demo on a pseudo-terminal");
    assert_ok(&out, "demo on a terminal");
    text(&out.stdout)
}

/// SGR sequences (`ESC [ … m`): colour and style, not the cursor movement of progress bars.
fn sgr_count(text: &str) -> usize {
    text.split('\x1b')
        .skip(1)
        .filter(|s| {
            s.strip_prefix('[').is_some_and(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_digit() || c == ';'))
                    .unwrap_or(rest.len());
                rest[end..].starts_with('m')
            })
        })
        .count()
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let coloured = on_a_terminal(None);
    assert!(
        sgr_count(&coloured) > 0,
        "a terminal gets coloured log lines:\n{coloured:?}"
    );
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("DEBUG"), "log lines are there:\n{plain:?}");
    assert_eq!(
        sgr_count(&plain),
        0,
        "NO_COLOR=1 leaves no colour:\n{plain:?}"
    );
}

#[test]
fn version_names_commit_wit_versions_and_embedded_rules() {
    let out = bin().arg("--version").output().unwrap();
    assert_ok(&out, "--version");
    let long = text(&out.stdout);
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(
        lines[0],
        format!("pve2netbox {}", env!("CARGO_PKG_VERSION")),
        "{long}"
    );
    let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    match head {
        // Built in this checkout: the commit is HEAD's (or the one a packager set).
        Some(head) => assert!(
            commit == head || std::env::var("PVE2NETBOX_GIT_COMMIT").is_ok(),
            "{commit} != {head}"
        ),
        None => assert_eq!(commit, "unknown"),
    }
    assert_eq!(
        lines[2],
        "rules WIT versions: pve2netbox:rules@0.1.x, pve2netbox:rules@0.2.x, pve2netbox:rules@0.3.x, pve2netbox:rules@0.4.x"
    );

    // The embedded rules as `--version` names them are what the component's `info` says.
    let info = bin()
        .args(["--log", "warn", "rules", "check", "default"])
        .output()
        .unwrap();
    assert_ok(&info, "rules check default");
    let info = text(&info.stdout);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in `rules check`:\n{info}"))
    };
    let expected = format!(
        "embedded rules: {} {} (WIT ",
        field("name"),
        field("version")
    );
    assert!(
        lines[3].starts_with(&expected),
        "{} vs {expected}",
        lines[3]
    );
    let wit = field("wit");
    let wit = wit
        .split_once("the module says ")
        .and_then(|(_, said)| said.strip_suffix(')'))
        .unwrap_or_else(|| panic!("wit line: {wit}"));
    assert!(
        lines[3].ends_with(&format!("(WIT {wit})")),
        "{} vs {wit}",
        lines[3]
    );

    // `-V` is the short form: one line with the commit.
    let short = bin().arg("-V").output().unwrap();
    assert_ok(&short, "-V");
    assert_eq!(
        text(&short.stdout).trim(),
        format!("pve2netbox {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
}
