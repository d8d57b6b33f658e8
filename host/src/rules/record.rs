//! Recording a run's rules traffic (`sync --record DIR`, also `plan` and `sync --dry-run`):
//! every VM's rules input (the Proxmox guest with its config, the matched NetBox record, the
//! context) becomes a fixture in the `rules test` format whose `expect` is the answer the
//! module gave, so the run can be replayed (`rules replay`, `rules diff`, `rules test`) with
//! neither Proxmox nor NetBox.
//!
//! Layout of DIR: `recording.json` (what was recorded: module, mode, counts, the context, the
//! redacted keys) and `fixtures/<cluster>-<vmid>.json`, one per VM. The context is written once,
//! in the manifest: a fixture of a recording that has no `context` of its own takes the
//! manifest's when it is read ([`recorded_context`], [`read_fixture`]); recordings of layout 1
//! repeat it in every fixture, which still reads. Secrets in Proxmox configs are replaced by
//! [`REDACTED`] before anything is written ([`redact`]).
//!
//! Edges: the sync hands the recorder each batch's inputs and then the batch's answers (or its
//! failure); this module owns the file layout and nothing else of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use guest_default::children::NetworkSource;
use guest_default::model::{
    Context, Expect, ExpectedDesired, FieldPolicy, Fixture, JsonReconcileInput, Reconciled,
    RuleError, SkipExpect, config_from_json,
};
use serde::{Deserialize, Serialize};

use super::RulesModule;

/// The manifest's file name in a recording directory.
pub const MANIFEST: &str = "recording.json";
/// The fixtures' subdirectory in a recording directory.
pub const FIXTURES: &str = "fixtures";
/// What a redacted value becomes.
pub const REDACTED: &str = "<redacted>";
/// Version of the recording layout (the manifest and the fixture files). 2: the context is in
/// the manifest only (1: in every fixture too).
pub const RECORDING_VERSION: u32 = 2;

/// Config keys whose values are secrets (or personal data) in Proxmox guest configs: the
/// cloud-init password and SSH public keys of QEMU guests. Any key containing one of
/// [`SECRET_KEY_PARTS`] is redacted too, so a future key such as a `*-password` is covered.
pub const SECRET_KEYS: &[&str] = &["cipassword", "sshkeys"];
/// Parts of a config key that mark its value as a secret.
pub const SECRET_KEY_PARTS: &[&str] = &["password", "passwd", "secret", "token"];

/// Errors of a recording. The run fails on them before it reads anything (the directory) or
/// after its reconcile (a file), never silently.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record: cannot prepare the recording directory {path}: {source}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("record: {path} is not empty and holds no recording; refusing to write into it")]
    NotARecording { path: String },
    #[error("record: writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a config key holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.contains(&key.as_str()) || SECRET_KEY_PARTS.iter().any(|p| key.contains(p))
}

/// Replaces the values of secret keys with [`REDACTED`]; returns the keys redacted.
pub fn redact(config: &mut [(String, String)]) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, value) in config.iter_mut() {
        if is_secret_key(key) {
            *value = REDACTED.to_owned();
            keys.push(key.clone());
        }
    }
    keys
}

/// How the answers of a recording split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerCounts {
    /// The module answered with a VM (changes or none).
    pub vm: usize,
    pub skip: usize,
    /// The module returned a rule error.
    pub error: usize,
    /// The batch call failed (trap, limit): the fixture has no expected answer.
    pub failed: usize,
}

/// The module a recording was made with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedModule {
    pub source: String,
    pub name: String,
    pub version: String,
    pub wit: String,
    pub sha256: String,
}

/// `recording.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub recording_version: u32,
    /// The pve2netbox version that recorded.
    pub pve2netbox: String,
    /// `sync`, `dry-run` or `plan`.
    pub mode: String,
    pub recorded_at: String,
    pub module: RecordedModule,
    /// VMs recorded (one fixture each).
    pub vms: usize,
    pub answers: AnswerCounts,
    /// Config keys whose values were redacted, with how many guests had each.
    pub redacted: BTreeMap<String, usize>,
    /// The context of the run, its policies the config's overrides: the context of every
    /// fixture that has none of its own.
    pub context: Context,
    /// The VIDs the run's NetBox resolves to one VLAN. The plan leaves out an interface's
    /// untagged VLAN that NetBox lacks, so a replay does too ([`super::replay::leave_out_unknown_vlans`]);
    /// absent: VLANs not read, or an older recording (nothing left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlans: Option<Vec<u64>>,
}

/// One VM waiting for its batch's answer.
struct Pending {
    file: String,
    fixture: Fixture,
}

/// Writes a recording while the sync reconciles.
pub struct Recorder {
    dir: PathBuf,
    mode: String,
    /// The fixtures' context: the run's, with the config's policy overrides only (a fixture's
    /// policies are overrides on top of the module's defaults, so a replay with another module
    /// gets that module's defaults plus the site's overrides, as a sync would).
    context: Option<Context>,
    /// [`Manifest::vlans`].
    vlans: Option<Vec<u64>>,
    pending: Vec<Pending>,
    /// The answer class of each file written (a VM asked twice keeps its last answer).
    written: BTreeMap<String, Class>,
    redacted: BTreeMap<String, usize>,
    /// Time spent recording (building, serializing, writing), for the log line.
    spent: std::time::Duration,
    error: Option<RecordError>,
    /// Taken by [`Recorder::finish`].
    writers: Option<Writers>,
}

/// Threads writing fixture files. Why: creating 10k small files is bound by the file system,
/// not the CPU, and the file system creates several at once (one thread: ~2x the time).
struct Writers {
    send: Option<std::sync::mpsc::Sender<(PathBuf, Vec<u8>)>>,
    threads: Vec<std::thread::JoinHandle<Option<RecordError>>>,
}

/// Threads of [`Writers`].
const WRITER_THREADS: usize = 4;

impl Writers {
    fn start() -> Self {
        let (send, receive) = std::sync::mpsc::channel::<(PathBuf, Vec<u8>)>();
        let receive = std::sync::Arc::new(std::sync::Mutex::new(receive));
        let threads = (0..WRITER_THREADS)
            .map(|_| {
                let receive = receive.clone();
                std::thread::spawn(move || {
                    let mut first_error = None;
                    loop {
                        let job = match receive.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok((path, bytes)) = job else { break };
                        if first_error.is_none()
                            && let Err(source) = std::fs::write(&path, &bytes)
                        {
                            first_error = Some(RecordError::Write {
                                path: path.display().to_string(),
                                source,
                            });
                        }
                    }
                    first_error
                })
            })
            .collect();
        Writers {
            send: Some(send),
            threads,
        }
    }

    fn write(&self, path: PathBuf, bytes: Vec<u8>) {
        if let Some(send) = &self.send {
            // The threads stop only when `send` is dropped: a send cannot fail before.
            let _ = send.send((path, bytes));
        }
    }

    /// Waits for every file; the first error of any thread.
    fn finish(mut self) -> Result<(), RecordError> {
        drop(self.send.take());
        let mut first = None;
        for t in self.threads.drain(..) {
            if let Ok(Some(e)) = t.join() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Vm,
    Skip,
    Error,
    Failed,
}

impl Recorder {
    /// Prepares DIR: creates it, or takes over an earlier recording in it (its manifest goes
    /// now, its fixtures are overwritten, and those of VMs not recorded again are removed by
    /// [`Recorder::finish`]: deleting 10k files first cost more than the recording). A
    /// non-empty directory that is not a recording is refused (nothing of it is touched).
    pub fn create(dir: &Path, mode: &str) -> Result<Recorder, RecordError> {
        let prepare = |source| RecordError::Prepare {
            path: dir.display().to_string(),
            source,
        };
        let fixtures = dir.join(FIXTURES);
        if dir.exists() {
            let is_recording = dir.join(MANIFEST).is_file() || fixtures.is_dir();
            let empty = std::fs::read_dir(dir).map_err(prepare)?.next().is_none();
            if !empty && !is_recording {
                return Err(RecordError::NotARecording {
                    path: dir.display().to_string(),
                });
            }
            // Without its manifest, a recording stopped halfway is not taken for a whole one.
            let _ = std::fs::remove_file(dir.join(MANIFEST));
        }
        std::fs::create_dir_all(&fixtures).map_err(prepare)?;
        Ok(Recorder {
            dir: dir.to_owned(),
            mode: mode.to_owned(),
            context: None,
            vlans: None,
            pending: Vec::new(),
            written: BTreeMap::new(),
            redacted: BTreeMap::new(),
            spent: std::time::Duration::ZERO,
            error: None,
            writers: Some(Writers::start()),
        })
    }

    /// The run's context (with its merged policies) and the config's policy overrides.
    pub fn set_context(&mut self, ctx: &Context, overrides: Vec<FieldPolicy>) {
        let mut context = ctx.clone();
        context.policies = overrides;
        self.context = Some(context);
    }

    /// The VIDs the run's NetBox resolves to one VLAN (see [`Manifest::vlans`]).
    pub fn set_vlans(&mut self, vids: Vec<u64>) {
        self.vlans = Some(vids);
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One input of the next batch call, in the order of the call.
    pub fn input(&mut self, input: &JsonReconcileInput) {
        let started = Instant::now();
        let mut guest = input.guest.clone();
        let mut note = String::new();
        match config_from_json(&input.config) {
            Ok(config) => guest.config = config,
            Err(e) => note = format!(" (its config was not a JSON object of texts: {e})"),
        }
        for key in redact(&mut guest.config) {
            *self.redacted.entry(key).or_default() += 1;
        }
        let file = fixture_file_name(&guest.cluster, guest.vmid);
        let fixture = Fixture {
            description: format!(
                "recorded {} ({}){note}",
                guest.scope(),
                guest.name.as_deref().unwrap_or("no name")
            ),
            guest,
            current: input.current.clone(),
            // Written once, in the manifest (`Written` leaves it out).
            context: Context::default(),
            // Not asked / not read stay absent, as in a hand-written fixture.
            network: (input.network != NetworkSource::default()).then(|| input.network.clone()),
            children: input.current.as_ref().and(input.children.clone()),
            expect: Expect::default(),
        };
        self.pending.push(Pending { file, fixture });
        self.spent += started.elapsed();
    }

    /// The answers of the batch call, one per input given since the last call.
    pub fn answered(&mut self, answers: &[Result<Reconciled, RuleError>]) {
        let started = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        for (p, answer) in pending.into_iter().zip(answers) {
            let (expect, class) = expect_of(answer);
            self.write(p, expect, class, None);
        }
        self.spent += started.elapsed();
    }

    /// The batch call failed: its VMs are recorded without an expected answer.
    pub fn failed(&mut self, message: &str) {
        let started = Instant::now();
        for p in std::mem::take(&mut self.pending) {
            self.write(p, Expect::default(), Class::Failed, Some(message));
        }
        self.spent += started.elapsed();
    }

    fn write(&mut self, mut p: Pending, expect: Expect, class: Class, failure: Option<&str>) {
        p.fixture.expect = expect;
        if let Some(why) = failure {
            p.fixture.description += &format!("; its batch failed, no answer recorded: {why}");
        }
        let path = self.dir.join(FIXTURES).join(&p.file);
        match serde_json::to_vec_pretty(&Written::of(&p.fixture)) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                if let Some(w) = &self.writers {
                    w.write(path, bytes);
                }
                self.written.insert(p.file, class);
            }
            Err(e) => {
                self.error.get_or_insert(RecordError::Write {
                    path: path.display().to_string(),
                    source: e.into(),
                });
            }
        }
    }

    /// Waits for the fixture files, writes the manifest and returns it; the first write error
    /// of the recording, if any.
    pub fn finish(mut self, module: &RulesModule) -> Result<Manifest, RecordError> {
        let started = Instant::now();
        let written = self.writers.take().map_or(Ok(()), Writers::finish);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        written?;
        self.remove_stale()?;
        let mut answers = AnswerCounts::default();
        for class in self.written.values() {
            match class {
                Class::Vm => answers.vm += 1,
                Class::Skip => answers.skip += 1,
                Class::Error => answers.error += 1,
                Class::Failed => answers.failed += 1,
            }
        }
        let manifest = Manifest {
            recording_version: RECORDING_VERSION,
            pve2netbox: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.mode.clone(),
            recorded_at: crate::timefmt::rfc3339_utc(std::time::SystemTime::now()),
            module: recorded_module(module),
            vms: self.written.len(),
            answers,
            redacted: std::mem::take(&mut self.redacted),
            context: self.context.take().unwrap_or_default(),
            vlans: self.vlans.take(),
        };
        write_json(&self.dir.join(MANIFEST), &manifest)?;
        self.spent += started.elapsed();
        tracing::info!(
            dir = %self.dir.display(),
            vms = manifest.vms,
            record_ms = self.spent.as_secs_f64() * 1e3,
            "recorded the rules' input and answers of {} VMs in {} (replay: pve2netbox rules replay FILE {})",
            manifest.vms,
            self.dir.display(),
            self.dir.display()
        );
        Ok(manifest)
    }
}

impl Recorder {
    /// Removes the fixture files of an earlier recording that this one did not write.
    fn remove_stale(&self) -> Result<(), RecordError> {
        let fixtures = self.dir.join(FIXTURES);
        let err = |source| RecordError::Write {
            path: fixtures.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(&fixtures).map_err(err)? {
            let path = entry.map_err(err)?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(".json") && !self.written.contains_key(&name) {
                std::fs::remove_file(&path).map_err(err)?;
            }
        }
        Ok(())
    }
}

/// What a recording says about the module that made it.
pub fn recorded_module(module: &RulesModule) -> RecordedModule {
    RecordedModule {
        source: module.source().to_owned(),
        name: module.info().name.clone(),
        version: module.info().version.clone(),
        wit: module.wit_version(),
        sha256: hex::encode(module.sha256()),
    }
}

/// `<cluster>-<vmid>.json`, the cluster name reduced to characters safe in a file name.
pub fn fixture_file_name(cluster: &str, vmid: u32) -> String {
    let safe: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{vmid}.json")
}

/// A module's `reconcile` answer as what a fixture expects of it.
fn expect_of(answer: &Result<Reconciled, RuleError>) -> (Expect, Class) {
    match answer {
        Ok(Reconciled::Vm(vm)) => (
            Expect {
                needs: Some(vm.needs.clone()),
                changes: Some(vm.changes.clone()),
                // The child changes are part of the answer (none for a 0.1/0.2 module, or when
                // the run read no children).
                children: Some(vm.children.clone()),
                ..Expect::default()
            },
            Class::Vm,
        ),
        Ok(Reconciled::Skip(reason)) => (
            Expect {
                desired: Some(ExpectedDesired::Skip(SkipExpect {
                    skip: reason.clone(),
                })),
                ..Expect::default()
            },
            Class::Skip,
        ),
        Err(e) => (
            Expect {
                error: Some(e.code.clone()),
                ..Expect::default()
            },
            Class::Error,
        ),
    }
}

/// A fixture as written: its `expect` without `null`s (the parts not checked), and without
/// the context (the manifest's).
#[derive(Serialize)]
struct Written<'a> {
    description: &'a str,
    guest: &'a guest_default::model::Guest,
    #[serde(skip_serializing_if = "Option::is_none")]
    current: &'a Option<guest_default::model::NetboxVm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: &'a Option<guest_default::children::NetworkSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    children: &'a Option<guest_default::model::JsonText>,
    expect: serde_json::Value,
}

impl<'a> Written<'a> {
    fn of(f: &'a Fixture) -> Self {
        Written {
            description: &f.description,
            guest: &f.guest,
            current: &f.current,
            network: &f.network,
            children: &f.children,
            expect: super::update::expect_json(&f.expect),
        }
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let err = |source| RecordError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(err)?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| err(e.into()))?;
    out.write_all(b"\n").map_err(err)?;
    out.flush().map_err(err)
}

/// The fixture directory of DIR: `DIR/fixtures` for a recording, else DIR itself (any
/// directory of fixtures replays too).
pub fn fixtures_dir(dir: &Path) -> PathBuf {
    let sub = dir.join(FIXTURES);
    if dir.join(MANIFEST).is_file() || sub.is_dir() {
        sub
    } else {
        dir.to_owned()
    }
}

/// The manifest of a recording, when DIR is one.
pub fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The context of the fixtures of DIR that have none of their own: the manifest's, when DIR
/// is a recording; `None` for any other directory (a fixture without one has the default).
pub fn recorded_context(dir: &Path) -> Option<Context> {
    read_manifest(dir).map(|m| m.context)
}

/// The VIDs a recording's NetBox resolved ([`Manifest::vlans`]), when it says.
pub fn recorded_vlans(dir: &Path) -> Option<BTreeSet<u64>> {
    read_manifest(dir)
        .and_then(|m| m.vlans)
        .map(BTreeSet::from_iter)
}

/// Whether a fixture's text has a top-level `context` (read without building anything else).
fn has_context(text: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        context: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Probe>(text).is_ok_and(|p| p.context.is_some())
}

/// Parses a fixture's text; one without a `context` of its own takes `recorded` (the
/// recording's, [`recorded_context`]) when given.
pub fn read_fixture(text: &str, recorded: Option<&Context>) -> Result<Fixture, serde_json::Error> {
    let mut fixture = Fixture::from_json(text)?;
    if let Some(ctx) = recorded
        && !has_context(text)
    {
        fixture.context = ctx.clone();
    }
    Ok(fixture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixture_without_context_takes_the_recordings_and_one_with_keeps_its_own() {
        let recorded = Context {
            settings: vec![(
                "ip_vrf".into(),
                guest_default::model::JsonText("\"blue\"".into()),
            )],
            ..Context::default()
        };
        let bare = r#"{"description": "d", "guest": {"cluster": "c", "vmid": 1, "type": "qemu",
            "node": "n", "status": "running", "config": {}}, "expect": {}}"#;
        assert_eq!(
            read_fixture(bare, Some(&recorded)).unwrap().context,
            recorded
        );
        assert_eq!(
            read_fixture(bare, None).unwrap().context,
            Context::default()
        );
        // A layout-1 fixture (or one a person gave a context) keeps its own, even the default.
        let own = bare.replace("\"expect\"", "\"context\": {}, \"expect\"");
        assert_eq!(
            read_fixture(&own, Some(&recorded)).unwrap().context,
            Context::default()
        );
    }

    #[test]
    fn secrets_are_redacted_and_other_values_kept() {
        let mut config = vec![
            ("cipassword".to_owned(), "hunter2".to_owned()),
            ("sshkeys".to_owned(), "ssh-ed25519%20AAAA".to_owned()),
            ("memory".to_owned(), "2048".to_owned()),
            ("my-api-token".to_owned(), "abc".to_owned()),
            ("ciuser".to_owned(), "admin".to_owned()),
        ];
        let keys = redact(&mut config);
        assert_eq!(keys, ["cipassword", "sshkeys", "my-api-token"]);
        assert_eq!(config[0].1, REDACTED);
        assert_eq!(config[1].1, REDACTED);
        assert_eq!(config[2].1, "2048");
        assert_eq!(config[3].1, REDACTED);
        assert_eq!(config[4].1, "admin");
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(fixture_file_name("pve a/b", 100), "pve_a_b-100.json");
        assert_eq!(fixture_file_name("dc1.lab", 7), "dc1.lab-7.json");
    }

    #[test]
    fn a_foreign_non_empty_directory_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            Recorder::create(&dir, "plan"),
            Err(RecordError::NotARecording { .. })
        ));
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );
    }
}
