//! The no-op memo: which VMs the rule module last answered "no changes" for, and on exactly
//! which inputs, so a rerun skips the rules call for a VM whose inputs are unchanged.
//!
//! Why it is sound: a rule module is pure and deterministic (its sandbox grants no clock, no
//! varying randomness, no I/O; `rules test` checks that an answer does not depend on the batch),
//! so the same inputs give the same answer. Only answers with no changes and no needed objects
//! (not a skip, not an error, not a failed batch) are stored; on a hit the host replays that
//! answer and runs everything after the rules (adoption, names, orphan marks, the plan) as
//! usual. Only the module call is skipped.
//!
//! The key of a VM is a 128-bit XXH3 digest, under the memo file's secret (192 random bytes made
//! when the file is started, kept while it stays valid), of the run's part (the context's hash,
//! the module's SHA-256, the host version, the WIT version) and every byte of that VM's input: the guest
//! record, its config (packed; the JSON text the module gets is a function of it and of the host
//! version), the matched NetBox record, and what WIT 0.3 adds: the guest's network view (the
//! agent's or the LXC interfaces' answer text as the read keeps it, packed, or why there is
//! none; the agent's traffic `statistics` are left out by the read, so a running guest's
//! answer is the same from one run to the next) and NetBox's children (or that they were not
//! read): every field of the rows their JSON text is rendered from (not a row's
//! `last_updated`, which it does not hold), by content ([`VmChildren::key_bytes`]), not the text, which is rendered only for the VMs the memo
//! misses (rendering every VM's was most of a memoized rerun's rules step with children; a
//! memo stored when the text was keyed misses once). Only answers with no child change are
//! stored either. One entry per VM identity (NetBox cluster id, VMID):
//! the digest and the answer's name, ~45 bytes, so the file stays a few MB at 100k VMs.
//!
//! Why XXH3 and not SHA-256 (format 1): keying was the largest part of a memoized rerun's rules step:
//! SHA-256 of ~1 KB per VM cost ~0.6 us even with the CPU's SHA instructions, against ~0.05 us.
//! XXH3 is not a cryptographic hash, so its key is secret: an accidental collision is a 2^-128
//! chance, and crafting inputs (a Proxmox config) that collide with a stored digest needs the
//! secret, which only whoever can read the state dir has, and they could rewrite the memo anyway.
//! The file's own checksum stays SHA-256.
//!
//! File: `<state dir>/memo/<hash of the NetBox URL>.memo` (the run lock's naming), binary:
//! magic, format version, header (NetBox URL, module hash, host version, WIT version, context
//! hash), the key secret, entries, and a SHA-256 of all that. A missing, truncated, corrupt or foreign file
//! (another NetBox, module, host or WIT version) reads as empty: a full run, never a wrong one.
//! It is rewritten whole (temp file + rename) by every run that finishes the reconcile phase,
//! with the entries of that run only (VMs gone from Proxmox drop out).
//!
//! Previews (`plan`, `sync --dry-run`) read and write it too: an entry says only what the
//! module answers on given inputs, which does not depend on whether the run writes, and
//! concurrent writers are safe (each renames a whole file over the other's; the last wins).
//!
//! Edges: the file system and the model types; `sync` feeds it while batching the rules.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use foldhash::HashMap;
use guest_default::children::{NetworkSource, NetworkUnknown, UnknownReason};
use guest_default::model::{Context, Guest, GuestKind, Ownership};
use reqwest::Url;
use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128_with_secret;

use crate::pipeline::reconcile::{CompactVm, Parts};
use crate::pipeline::snapshot::children::VmChildren;
use crate::safety::run_lock::{normalized_url, url_file_stem};

/// First bytes of a memo file.
const MAGIC: &[u8; 16] = b"pve2netbox-memo\n";
/// Layout of the file after the magic; another value reads as foreign (1: SHA-256 keys).
const FORMAT: u32 = 2;
/// Bytes of the key secret (XXH3's default secret size; it needs at least 136).
const SECRET_LEN: usize = 192;
/// The smallest entry in a file: identity (12 bytes), digest (16), no name (1).
const MIN_ENTRY_LEN: usize = 29;
/// The host's version, part of every key: the host builds what crosses the boundary.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A memo could not be saved (loading never fails: a bad file is a full run).
#[derive(Debug, thiserror::Error)]
pub enum MemoError {
    #[error("memo: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What makes two runs' answers comparable: everything but the VM's own input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoHeader {
    /// The normalized NetBox URL.
    pub netbox: String,
    /// SHA-256 of the rule component.
    pub module: [u8; 32],
    pub host: String,
    /// WIT version of the module's exports.
    pub wit: String,
    /// [`context_hash`] of the run's context.
    pub context: [u8; 32],
}

impl MemoHeader {
    /// The header of a run against `netbox` with `module`, WIT `wit` and `ctx`.
    pub fn new(netbox: &Url, module: [u8; 32], wit: &str, ctx: &Context) -> Self {
        MemoHeader {
            netbox: normalized_url(netbox),
            module,
            host: HOST_VERSION.to_owned(),
            wit: wit.to_owned(),
            context: context_hash(ctx),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.netbox);
        out.extend_from_slice(&self.module);
        put_str(out, &self.host);
        put_str(out, &self.wit);
        out.extend_from_slice(&self.context);
    }
}

/// A VM's place in the memo: NetBox cluster id and VMID.
pub type VmIdentity = (u64, u32);

/// The key of one VM's rules call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmKey {
    pub identity: VmIdentity,
    pub digest: u128,
}

#[derive(Debug)]
struct Entry {
    digest: u128,
    /// The desired name of the stored answer.
    name: Option<Box<str>>,
    /// Hit or recorded by this run: saved. Why a flag and not a second map: a memoized rerun
    /// then looks each VM up once, in place (moving 100k entries between maps cost more than
    /// hashing the VMs). Atomic so that lookups run on the threads that make the keys.
    this_run: AtomicBool,
}

impl Entry {
    /// Hit or recorded by this run (every lookup happened before the save: the relaxed load
    /// sees them, the threads that made them having been joined).
    fn saved(&self) -> bool {
        self.this_run.load(Ordering::Relaxed)
    }
}

/// The memo of one run: the entries read (looked up), those hit or recorded by this run marked
/// (saved).
#[derive(Debug)]
pub struct Memo {
    path: PathBuf,
    header: MemoHeader,
    /// The key secret: the file's, or new random bytes when the file is not usable.
    secret: Box<[u8; SECRET_LEN]>,
    /// The run's part of every key, hashed before each VM's input.
    prefix: Vec<u8>,
    /// The file's entries, sorted by identity (as saved), searched: the rules are asked in
    /// the guests' order, (cluster, VMID), so a rerun's lookups walk this list in order and
    /// each reads lines the one before just read, where a hash table's were two cache misses
    /// at a random place (~10% of a memoized rerun's rules step at 30k VMs).
    loaded: Vec<(VmIdentity, Entry)>,
    /// Recorded this run for VMs not in the file.
    added: HashMap<VmIdentity, Entry>,
    hits: AtomicU64,
}

/// A guest's record as keyed, borrowed: every field of [`Guest`], from wherever the guest is
/// kept (the Proxmox read keeps its guests compact; a key must not allocate per VM).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuestKey<'a> {
    pub cluster: &'a str,
    pub vmid: u32,
    pub kind: GuestKind,
    pub node: &'a str,
    pub name: Option<&'a str>,
    pub status: &'a str,
    pub template: bool,
    pub maxcpu: Option<f64>,
    pub maxmem: Option<u64>,
    pub maxdisk: Option<u64>,
    pub tags: Option<&'a str>,
    pub pool: Option<&'a str>,
    pub config: &'a [(String, String)],
    pub config_read: bool,
}

impl<'a> From<&'a Guest> for GuestKey<'a> {
    /// Destructured whole, so that a new field of [`Guest`] cannot be left out of the key.
    fn from(guest: &'a Guest) -> Self {
        let Guest {
            cluster,
            vmid,
            kind,
            node,
            name,
            status,
            template,
            maxcpu,
            maxmem,
            maxdisk,
            tags,
            pool,
            config,
            config_read,
        } = guest;
        GuestKey {
            cluster,
            vmid: *vmid,
            kind: *kind,
            node,
            name: name.as_deref(),
            status,
            template: *template,
            maxcpu: *maxcpu,
            maxmem: *maxmem,
            maxdisk: *maxdisk,
            tags: tags.as_deref(),
            pool: pool.as_deref(),
            config,
            config_read: *config_read,
        }
    }
}

/// One VM's input to key: identity, guest, packed config (every key and value concatenated,
/// and their end offsets), the matched NetBox record, the guest's network view and NetBox's
/// children (`None`: not read), everything that crosses the boundary for the VM.
pub type KeyInput<'a> = (
    VmIdentity,
    GuestKey<'a>,
    (&'a str, &'a [u32]),
    Option<&'a CompactVm>,
    NetworkKey<'a>,
    Option<VmChildren<'a>>,
);

/// A guest's network view as keyed: the answer's text, or any one form of it that two answers
/// share exactly when their texts are equal (the Proxmox read keeps it packed, and keys that),
/// or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKey<'a> {
    /// The agent's answer.
    Agent(&'a str),
    /// The container's interfaces.
    LxcInterfaces(&'a str),
    /// No runtime view.
    Unknown(&'a NetworkUnknown),
}

impl<'a> From<&'a NetworkSource> for NetworkKey<'a> {
    fn from(source: &'a NetworkSource) -> Self {
        match source {
            NetworkSource::Agent(text) => NetworkKey::Agent(text.as_str()),
            NetworkSource::LxcInterfaces(text) => NetworkKey::LxcInterfaces(text.as_str()),
            NetworkSource::Unknown(unknown) => NetworkKey::Unknown(unknown),
        }
    }
}

impl Memo {
    /// The memo file of `netbox` under `state_dir`.
    pub fn path(state_dir: &Path, netbox: &Url) -> PathBuf {
        state_dir
            .join("memo")
            .join(format!("{}.memo", url_file_stem(netbox)))
    }

    /// Opens the memo at `path` for a run with `header`. A file that is missing, unreadable,
    /// truncated, corrupt or from another NetBox, module, host, WIT version or context gives an
    /// empty memo (every VM goes to the rules); why is logged.
    pub fn open(path: PathBuf, header: MemoHeader) -> Self {
        let found = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok((found, secret, entries)) if found == header => Some((secret, entries)),
                Ok((found, _, _)) => {
                    tracing::info!(
                        path = %path.display(),
                        why = foreign_reason(&found, &header),
                        "no-op memo is for other inputs; asking the rules about every VM"
                    );
                    None
                }
                Err(why) => {
                    tracing::warn!(
                        path = %path.display(),
                        why,
                        "no-op memo unreadable; asking the rules about every VM"
                    );
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the no-op memo; asking the rules about every VM");
                None
            }
        };
        // A new secret whenever the entries start afresh.
        let (secret, loaded) = found.unwrap_or_else(|| {
            let mut secret = Box::new([0u8; SECRET_LEN]);
            rand::fill(&mut secret[..]);
            (secret, Vec::new())
        });
        let mut prefix = b"pve2netbox-memo-key\0".to_vec();
        prefix.extend_from_slice(&header.context);
        prefix.extend_from_slice(&header.module);
        put_str(&mut prefix, &header.host);
        put_str(&mut prefix, &header.wit);
        Memo {
            path,
            header,
            secret,
            prefix,
            loaded,
            added: HashMap::default(),
            hits: AtomicU64::new(0),
        }
    }

    /// The key of a rules call for `guest` (whose config is `config`, packed: every key and
    /// value concatenated, with their end offsets) with its network view against `current` and
    /// its `children`.
    #[cfg(test)]
    pub fn key<'n>(
        &self,
        identity: VmIdentity,
        guest: &Guest,
        config: (&str, &[u32]),
        current: Option<&guest_default::model::NetboxVm>,
        (network, children): (impl Into<NetworkKey<'n>>, Option<VmChildren<'_>>),
    ) -> VmKey {
        use crate::pipeline::reconcile::SharedValues;
        let current = current.map(|vm| {
            CompactVm::new(vm.clone(), &mut SharedValues::default())
                .expect("a test record's texts fit")
        });
        self.key_with(
            &mut Vec::new(),
            &(
                identity,
                GuestKey::from(guest),
                config,
                current.as_ref(),
                network.into(),
                children,
            ),
        )
    }

    /// The keys of a batch, in order, through one reused buffer. On the calling thread: with
    /// XXH3 a key costs well under a microsecond, less than handing batches to threads did.
    /// The inputs of the VMs a few places on are asked of the CPU while each is hashed (see
    /// [`prefetch`]): reading them, not hashing, was most of a key's time.
    pub fn keys(&self, items: &[KeyInput<'_>]) -> Vec<VmKey> {
        let mut keys = Vec::with_capacity(items.len());
        self.keys_each(items, &mut Vec::with_capacity(4096), |_, key| {
            keys.push(key)
        });
        keys
    }

    /// [`Memo::keys`], each key handed to `each` with its index as it is made, through `buf`
    /// (reused: a caller keying many slices keeps one buffer for them all).
    pub fn keys_each(
        &self,
        items: &[KeyInput<'_>],
        buf: &mut Vec<u8>,
        mut each: impl FnMut(usize, VmKey),
    ) {
        items
            .iter()
            .take(prefetch::RECORDS_AHEAD)
            .for_each(prefetch::records);
        items
            .iter()
            .take(prefetch::TEXTS_AHEAD)
            .for_each(prefetch::texts);
        for (i, item) in items.iter().enumerate() {
            if let Some(next) = items.get(i + prefetch::RECORDS_AHEAD) {
                prefetch::records(next);
            }
            if let Some(next) = items.get(i + prefetch::TEXTS_AHEAD) {
                prefetch::texts(next);
            }
            each(i, self.key_with(buf, item));
        }
    }

    fn key_with(&self, buf: &mut Vec<u8>, item: &KeyInput<'_>) -> VmKey {
        let (identity, guest, config, current, network, children) = *item;
        buf.clear();
        buf.extend_from_slice(&self.prefix);
        encode_vm(buf, guest, config, current);
        encode_children(buf, network, children);
        VmKey {
            identity,
            digest: xxh3_128_with_secret(buf, &self.secret[..]),
        }
    }

    /// The stored "no changes" answer's name when `key` matches an entry (a hit, counted and
    /// carried over to this run's memo). Takes `&self`, so the threads that make the keys look
    /// them up too (a memoized rerun's rules step is keys and lookups); see [`Finder`].
    pub fn hit(&self, key: &VmKey) -> Option<Option<String>> {
        self.finder().hit(key)
    }

    /// A [`Finder`] of this memo's entries: for a thread that looks many VMs up in order.
    pub fn finder(&self) -> Finder<'_> {
        Finder {
            memo: self,
            at: 0,
            hits: 0,
        }
    }

    /// Records that the module answered "no changes" (empty changes and needs) on `key`,
    /// naming the VM `name`.
    pub fn record(&mut self, key: &VmKey, name: Option<&str>) {
        let entry = Entry {
            digest: key.digest,
            name: name.map(Box::from),
            this_run: AtomicBool::new(true),
        };
        match self.loaded_at(key.identity) {
            Ok(i) => self.loaded[i].1 = entry,
            Err(_) => {
                self.added.insert(key.identity, entry);
            }
        }
    }

    /// Where the file's entry of `identity` is, or would be.
    fn loaded_at(&self, identity: VmIdentity) -> Result<usize, usize> {
        self.loaded.binary_search_by_key(&identity, |(id, _)| *id)
    }

    /// Every entry, the file's and this run's.
    fn entries(&self) -> impl Iterator<Item = (&VmIdentity, &Entry)> {
        self.loaded.iter().map(|(id, e)| (id, e)).chain(&self.added)
    }

    /// VMs answered from the memo this run.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Entries this run would save.
    pub fn len(&self) -> usize {
        self.entries().filter(|(_, e)| e.saved()).count()
    }

    /// Whether this run would save no entry.
    pub fn is_empty(&self) -> bool {
        !self.entries().any(|(_, e)| e.saved())
    }

    /// Writes this run's entries, atomically: a temporary file in the same directory, synced,
    /// then renamed over the memo.
    pub fn save(&self) -> Result<(), MemoError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| MemoError::Io {
                action,
                path,
                source,
            }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let bytes = encode(&self.header, &self.secret, self.entries());
        let tmp = self
            .path
            .with_extension(format!("memo.tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("writing", &tmp)(e));
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("replacing", &self.path)(e)
        })
    }
}

/// Looks keys up for one thread, as [`Memo::hit`] does, walking VMs mostly in identity order.
///
/// Why: a memoized rerun looks up every VM, and its threads each walk a contiguous range of
/// the guests, which come in (cluster, VMID) order like the file's entries. Each search first
/// tries where the one before ended (the next entry, a line already read), and the hits are
/// counted here and added to the memo's count once: a count shared by the threads, bumped per
/// VM, moved its cache line between the cores at every hit (perf of a memoized 30k rerun:
/// `Memo::hit` ~10% of the rules step).
pub struct Finder<'m> {
    memo: &'m Memo,
    /// Where in the file's entries the last search ended.
    at: usize,
    hits: u64,
}

impl Finder<'_> {
    /// [`Memo::hit`].
    pub fn hit(&mut self, key: &VmKey) -> Option<Option<String>> {
        let memo = self.memo;
        let entry = match self.loaded_at(key.identity) {
            Ok(i) => &memo.loaded[i].1,
            Err(_) => memo.added.get(&key.identity)?,
        };
        let entry = Some(entry).filter(|e| e.digest == key.digest)?;
        entry.this_run.store(true, Ordering::Relaxed);
        self.hits += 1;
        Some(entry.name.as_deref().map(str::to_owned))
    }

    /// [`Memo::loaded_at`], trying the place the last search ended and the one after first.
    fn loaded_at(&mut self, identity: VmIdentity) -> Result<usize, usize> {
        let loaded = &self.memo.loaded;
        for i in [self.at, self.at + 1] {
            match loaded.get(i) {
                Some((id, _)) if *id == identity => {
                    self.at = i;
                    return Ok(i);
                }
                // Between the entry before and this one: not in the file.
                Some((id, _)) if *id > identity && (i == 0 || loaded[i - 1].0 < identity) => {
                    self.at = i;
                    return Err(i);
                }
                _ => {}
            }
        }
        let found = self.memo.loaded_at(identity);
        self.at = found.unwrap_or_else(|i| i);
        found
    }
}

impl Drop for Finder<'_> {
    fn drop(&mut self) {
        self.memo.hits.fetch_add(self.hits, Ordering::Relaxed);
    }
}

/// What differs between a memo file's header and the run's, for the log.
fn foreign_reason(found: &MemoHeader, want: &MemoHeader) -> &'static str {
    if found.netbox != want.netbox {
        "another NetBox"
    } else if found.module != want.module {
        "another rule module"
    } else if found.host != want.host {
        "another pve2netbox version"
    } else if found.wit != want.wit {
        "another WIT version"
    } else {
        "the context changed (NetBox version, known objects, policies or rule settings)"
    }
}

/// SHA-256 of everything the context passes to the module, hashed once per run.
pub fn context_hash(ctx: &Context) -> [u8; 32] {
    // Destructured whole so that a new context field cannot be left out of the key.
    let Context {
        netbox_version,
        known,
        policies,
        settings,
    } = ctx;
    let mut out = Vec::new();
    put_str(&mut out, netbox_version);
    put_len(&mut out, known.len());
    for k in known {
        put_str(&mut out, &k.kind);
        put_str(&mut out, &k.key);
        out.extend_from_slice(&k.id.to_le_bytes());
        put_str(&mut out, &k.name);
    }
    put_len(&mut out, policies.len());
    for p in policies {
        put_str(&mut out, &p.field);
        out.push(match p.ownership {
            Ownership::Owned => 0,
            Ownership::Merge => 1,
            Ownership::Seed => 2,
            Ownership::Ignore => 3,
        });
    }
    put_len(&mut out, settings.len());
    for (name, value) in settings {
        put_str(&mut out, name);
        put_str(&mut out, &value.0);
    }
    Sha256::digest(&out).into()
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Every byte of one VM's input, unambiguously (lengths and presence are prefixed). The
/// records are destructured whole so that a new field cannot be left out of the key.
fn encode_vm(
    out: &mut Vec<u8>,
    guest: GuestKey<'_>,
    config: (&str, &[u32]),
    current: Option<&CompactVm>,
) {
    let GuestKey {
        cluster,
        vmid,
        kind,
        node,
        name,
        status,
        template,
        maxcpu,
        maxmem,
        maxdisk,
        tags,
        pool,
        config: pairs,
        config_read,
    } = guest;
    put_str(out, cluster);
    out.extend_from_slice(&vmid.to_le_bytes());
    put_str(out, kind.as_str());
    put_str(out, node);
    put_opt_str(out, name);
    put_str(out, status);
    out.push(u8::from(template));
    put_opt_u64(out, maxcpu.map(f64::to_bits));
    put_opt_u64(out, maxmem);
    put_opt_u64(out, maxdisk);
    put_opt_str(out, tags);
    put_opt_str(out, pool);
    out.push(u8::from(config_read));
    put_len(out, pairs.len());
    for (k, v) in pairs {
        put_str(out, k);
        put_str(out, v);
    }
    let (text, ends) = config;
    put_str(out, text);
    put_len(out, ends.len());
    for end in ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
    let Some(vm) = current else {
        out.push(0);
        return;
    };
    out.push(1);
    // The record as the snapshot keeps it (the same parts give the same NetboxVm), read
    // without making the NetboxVm: that was ~2.5 us a VM of a memoized rerun. Its
    // `last_updated` is not passed to the module but is kept in the key, which can only cost a
    // hit, never make one wrong.
    let Parts {
        id,
        vcpus,
        memory,
        disk,
        status,
        keys,
        tags,
        cf_names,
        has_last_updated,
        text,
        ends,
    } = vm.parts();
    out.extend_from_slice(&id.to_le_bytes());
    put_opt_u64(out, vcpus.map(f64::to_bits));
    put_opt_u64(out, memory);
    put_opt_u64(out, disk);
    put_str(out, status);
    for k in keys {
        put_opt_str(out, k);
    }
    for list in [tags, cf_names] {
        put_len(out, list.len());
        for t in list {
            put_str(out, t);
        }
    }
    out.push(u8::from(has_last_updated));
    put_str(out, text);
    put_len(out, ends.len());
    for end in ends {
        out.extend_from_slice(&end.to_le_bytes());
    }
}

/// The WIT 0.3 inputs of one VM: the network view (its kind, then the answer's text or the
/// reason and detail) and the children (absent, or what their text is rendered from).
fn encode_children(out: &mut Vec<u8>, network: NetworkKey<'_>, children: Option<VmChildren<'_>>) {
    match network {
        NetworkKey::Agent(text) => {
            out.push(0);
            put_str(out, text);
        }
        NetworkKey::LxcInterfaces(text) => {
            out.push(1);
            put_str(out, text);
        }
        NetworkKey::Unknown(NetworkUnknown { reason, detail }) => {
            out.push(2);
            out.push(match reason {
                UnknownReason::AgentOff => 0,
                UnknownReason::NotRunning => 1,
                UnknownReason::AgentNotRunning => 2,
                UnknownReason::NoPermission => 3,
                UnknownReason::TimedOut => 4,
                UnknownReason::NotAsked => 5,
                UnknownReason::OtherError => 6,
            });
            put_str(out, detail);
        }
    }
    match children {
        None => out.push(0),
        // 2, not the 1 that preceded the text when it was keyed: an entry stored then misses.
        Some(c) => {
            out.push(2);
            c.key_bytes(out);
        }
    }
}

/// The file's bytes: magic, format, header, entries (sorted: the same memo gives the same
/// bytes), checksum.
fn encode<'a>(
    header: &MemoHeader,
    secret: &[u8; SECRET_LEN],
    entries: impl Iterator<Item = (&'a VmIdentity, &'a Entry)>,
) -> Vec<u8> {
    let mut sorted: Vec<_> = entries.filter(|(_, e)| e.saved()).collect();
    let mut out = Vec::with_capacity(128 + SECRET_LEN + sorted.len() * 48);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    header.encode(&mut out);
    out.extend_from_slice(secret);
    put_len(&mut out, sorted.len());
    sorted.sort_unstable_by_key(|(id, _)| **id);
    for ((cluster, vmid), e) in sorted {
        out.extend_from_slice(&cluster.to_le_bytes());
        out.extend_from_slice(&vmid.to_le_bytes());
        out.extend_from_slice(&e.digest.to_le_bytes());
        put_opt_str(&mut out, e.name.as_deref());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// What a memo file holds: its header, key secret and entries (sorted by identity).
type Decoded = (MemoHeader, Box<[u8; SECRET_LEN]>, Vec<(VmIdentity, Entry)>);

/// Reads `bytes` back; `Err` says why they are not a memo.
fn decode(bytes: &[u8]) -> Result<Decoded, &'static str> {
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or("shorter than a checksum")?;
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch (truncated or corrupt)");
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC {
        return Err("not a memo file");
    }
    if r.u32()? != FORMAT {
        return Err("another memo format");
    }
    let header = MemoHeader {
        netbox: r.string()?,
        module: r.array()?,
        host: r.string()?,
        wit: r.string()?,
        context: r.array()?,
    };
    let secret = Box::new(r.array::<SECRET_LEN>()?);
    let count = r.u64()?;
    // A count beyond the entries that fit in what is left is corruption.
    if count > (r.0.len() / MIN_ENTRY_LEN) as u64 {
        return Err("entry count beyond the file");
    }
    let mut entries: Vec<(VmIdentity, Entry)> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let identity = (r.u64()?, r.u32()?);
        // Saved sorted, each VM once: anything else is not a memo this host wrote.
        if entries.last().is_some_and(|(last, _)| *last >= identity) {
            return Err("entries out of order");
        }
        let digest = u128::from_le_bytes(r.array()?);
        let name = match r.take(1)?[0] {
            0 => None,
            1 => Some(r.string()?.into_boxed_str()),
            _ => return Err("bad entry"),
        };
        let this_run = AtomicBool::new(false);
        entries.push((
            identity,
            Entry {
                digest,
                name,
                this_run,
            },
        ));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok((header, secret, entries))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, &'static str> {
        let len = usize::try_from(self.u64()?).map_err(|_| "bad length")?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "bad text")
    }
}

mod prefetch;
#[cfg(test)]
mod tests;
