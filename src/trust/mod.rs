//! The TUF client workflow (spec §5): from a pinned root and a metadata source to a [`TargetIndex`].
//!
//! One implementation ([`Client`]) serves `trustfs verify`, the mounts and the conformance client.
//!
//! The files:
//! - `mod.rs` (this file): what a caller pins and chooses ([`TrustOptions`], [`MetadataSource`])
//!   and gets ([`Trusted`], [`TrustSummary`]); [`load`], [`load_or_offline`], [`unchanged`].
//! - `client/`: the client workflow of spec §5, a file a step (its module docs list them).
//! - `error.rs`: [`TrustError`] and its [`TrustErrorKind`], the rule that failed.
//! - `state.rs`: [`StateDir`], the trusted metadata persisted between runs (rollback protection).
//! - `saved.rs`: the target index saved in the state directory, reused while nothing changed.
//! - `fetch/`: one fetch interface ([`Fetcher`]) for a directory or an HTTP(S) base URL, with
//!   byte limits and deadlines.
//! - `net/`: how mirrors are reached ([`Network`]): TLS roots, client certificates, proxies,
//!   credentials.
//!
//! Which uses which: `mod.rs` uses `client/`, `saved.rs`, `state.rs`, `fetch/` and `error.rs`;
//! `client/` uses `fetch/` (the [`Fetcher`]), `state.rs` and `error.rs`; `saved.rs` uses
//! `client/` and `state.rs`; `state.rs` uses `error.rs` and `fetch/` ([`read_limited`]);
//! `error.rs` uses `fetch/` ([`FetchError`] becomes a [`TrustError`]); `fetch/` uses `net/`;
//! `net/` uses none of them.
//!
//! Three error types speak of fetching, one a layer: [`FetchError`] (one request of one
//! [`Fetcher`] failed; in the client workflow it becomes a [`TrustError`] of kind
//! [`TrustErrorKind::Fetch`]), and in the layers above `source::remote::MirrorError` (one target
//! from one mirror) and `mount::lazyremote::LazyError` (a lazy range read). `fetch/mod.rs` says what
//! each is for.

mod client;
mod error;
mod fetch;
pub mod net;
mod saved;
mod state;

use std::path::PathBuf;
use std::time::SystemTime;

pub use client::{role_matches, target_info, Client, FoundTarget, Limits};
pub use error::{TrustError, TrustErrorKind};
pub use fetch::{
    read_limited, DirFetcher, FetchError, Fetcher, HttpFetcher, HttpOptions, DEFAULT_IO_TIMEOUT,
};
pub use net::{NetOptions, Network, Origin};
pub use state::{quote, StateDir};

use crate::index::TargetIndex;
use crate::schema::UtcTime;

/// Where metadata comes from.
#[derive(Clone, Debug)]
pub enum MetadataSource {
    /// A local directory with `N.root.json`, `timestamp.json`, `N.snapshot.json`, ... files.
    Dir(PathBuf),
    /// An HTTP(S) base URL with the same files.
    Url(String),
}

impl MetadataSource {
    /// A fetcher for this source; HTTP requests get the deadlines of `http`.
    pub fn fetcher(&self, http: &HttpOptions) -> Result<Box<dyn Fetcher>, TrustError> {
        Ok(match self {
            MetadataSource::Dir(d) => Box::new(DirFetcher::new(d)),
            MetadataSource::Url(u) => Box::new(
                HttpFetcher::with_options(u, http.clone())
                    .map_err(|e| TrustError::new(TrustErrorKind::Fetch, e))?,
            ),
        })
    }
}

/// What the caller pins and chooses.
#[derive(Clone, Debug)]
pub struct TrustOptions {
    /// Path of the trusted root metadata the operator pinned.
    pub trusted_root: PathBuf,
    pub source: MetadataSource,
    /// Where versions seen are persisted for rollback protection across restarts (None: not kept).
    pub state_dir: Option<PathBuf>,
    /// The one start time all expiry checks use.
    pub now: SystemTime,
    /// Deadlines of HTTP requests (a URL source).
    pub http: HttpOptions,
}

/// Keys and threshold of one top-level role, as the trusted root lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleKeysSummary {
    pub threshold: u64,
    pub keyids: Vec<String>,
}

/// Versions and expiry of the metadata that was trusted (for logs and status).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustSummary {
    pub root_version: u64,
    pub root_expires: String,
    pub timestamp_version: u64,
    pub timestamp_expires: String,
    pub snapshot_version: u64,
    pub snapshot_expires: String,
    pub targets_version: u64,
    pub targets_expires: String,
    pub consistent_snapshot: bool,
    pub source: String,
    /// The trusted keys: role → threshold and key ids (from the trusted root).
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, RoleKeysSummary>,
    /// The earliest expiry of any trusted role, delegated ones included, and that role: after
    /// this moment the mount must fail closed until fresh metadata arrives.
    #[serde(default)]
    pub expires: String,
    #[serde(default)]
    pub expires_role: String,
}

/// The outcome of a successful client workflow.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub index: TargetIndex,
    pub summary: TrustSummary,
    /// Delegated roles (hash bins included) that could not be trusted, whose targets are absent
    /// from the index; and hash bins' listings of paths outside their range, which are ignored.
    pub problems: Vec<TrustError>,
}

impl TrustSummary {
    /// Take `role` expiring at `t` into the earliest expiry.
    fn consider_expiry(&mut self, role: &str, t: UtcTime) {
        if UtcTime::parse(&self.expires).map_or(true, |e| t < e) {
            self.expires = t.to_string();
            self.expires_role = role.to_owned();
        }
    }

    pub fn of(client: &Client) -> TrustSummary {
        let (expires_role, expires) = client.earliest_expiry();
        let mut s = TrustSummary {
            expires: expires.to_string(),
            expires_role,
            root_version: client.root().version(),
            root_expires: client.root().expires().to_string(),
            consistent_snapshot: client.consistent_snapshot(),
            source: client.fetcher().describe(),
            keys: client
                .root()
                .signed
                .roles
                .iter()
                .map(|(role, k)| {
                    let summary = RoleKeysSummary {
                        threshold: k.threshold,
                        keyids: k.keyids.clone(),
                    };
                    (role.clone(), summary)
                })
                .collect(),
            ..Default::default()
        };
        if let Some(t) = client.timestamp() {
            s.timestamp_version = t.version();
            s.timestamp_expires = t.expires().to_string();
        }
        if let Some(t) = client.snapshot() {
            s.snapshot_version = t.version();
            s.snapshot_expires = t.expires().to_string();
        }
        if let Some(t) = client.targets() {
            s.targets_version = t.version();
            s.targets_expires = t.expires().to_string();
        }
        s
    }
}

/// Run the client workflow and return the verified target index.
pub fn load(opts: &TrustOptions) -> Result<Trusted, TrustError> {
    let mut client = client(opts)?;
    client.refresh()?;
    finish(client)
}

/// Like [`load`], but when the repository cannot be reached (a fetch failure or a "not found",
/// not a trust failure) start from the metadata trusted earlier and persisted in the state
/// directory, if it is complete and unexpired. Returns, with the trusted metadata, why it started
/// offline (None: online).
pub fn load_or_offline(opts: &TrustOptions) -> Result<(Trusted, Option<TrustError>), TrustError> {
    let mut client = client(opts)?;
    match client.refresh() {
        Ok(()) => Ok((finish(client)?, None)),
        // Unreachable, or answering "not found" (a proxy's 403, a CDN's 404): the repository
        // cannot be asked now. A trust failure (signature, rollback, expiry, malformed) never
        // falls back.
        Err(e) if matches!(e.kind, TrustErrorKind::Fetch | TrustErrorKind::Missing) => {
            let mut offline = self::client(opts)?;
            offline.load_trusted_state().map_err(|state_err| {
                TrustError::new(
                    e.kind,
                    format!("{e}; and the state directory cannot stand in: {state_err}"),
                )
            })?;
            Ok((finish(offline)?, Some(e)))
        }
        Err(e) => Err(e),
    }
}

/// The cheap part of a refresh: whether the repository still offers exactly what was trusted,
/// i.e. no `N+1.root.json` after the trusted root version `root_version` and a `timestamp.json`
/// byte for byte equal to `trusted_timestamp` (the one the state directory holds, verified when
/// it was stored). Then the client workflow would keep everything it trusts (an equal timestamp
/// version, §5.4.3), so a refresh can stop here: expiry is watched by the mount itself. `false`
/// on any difference or failure: run the whole workflow ([`load`]) to learn what changed.
pub fn unchanged(opts: &TrustOptions, root_version: u64, trusted_timestamp: &[u8]) -> bool {
    let limits = Limits::default();
    let Ok(fetcher) = opts.source.fetcher(&opts.http) else {
        return false;
    };
    let Some(next) = root_version.checked_add(1) else {
        return false;
    };
    match fetcher.fetch(&format!("{next}.root.json"), limits.root_max_bytes) {
        Ok(None) => {}
        _ => return false,
    }
    matches!(
        fetcher.fetch("timestamp.json", limits.timestamp_max_bytes),
        Ok(Some(bytes)) if bytes == trusted_timestamp
    )
}

/// The timestamp metadata the state directory holds (the last one the client trusted and
/// stored), if there is a state directory.
pub fn trusted_timestamp(opts: &TrustOptions) -> Option<Vec<u8>> {
    let dir = opts.state_dir.as_deref()?;
    StateDir::open(dir)
        .ok()?
        .load("timestamp", Limits::default().timestamp_max_bytes)
        .ok()
        .flatten()
}

fn finish(mut client: Client) -> Result<Trusted, TrustError> {
    client.refresh()?;
    let key = client.state().and_then(|_| saved::key(&client));
    let state = client.state().cloned();
    if let Some((state, key)) = state.as_ref().zip(key.as_ref()) {
        if let Some((index, expiry)) = saved::load(state, key, client.now()) {
            let mut summary = TrustSummary::of(&client);
            if let Some((role, t)) = expiry {
                summary.consider_expiry(&role, t);
            }
            return Ok(Trusted {
                index,
                summary,
                problems: Vec::new(),
            });
        }
    }
    let (index, problems) = client.target_index()?;
    let summary = TrustSummary::of(&client);
    if let Some((state, key)) = state.as_ref().zip(key.as_ref()) {
        if problems.is_empty() {
            saved::save(state, key, &client.delegated_expiry(), &index);
        }
    }
    // The parsed metadata of a million targets takes a few hundred milliseconds to free: not on
    // the way to serving (if no thread can be started, here).
    let _ = std::thread::Builder::new()
        .name("trustfs-free".into())
        .spawn(move || {
            drop(client);
            // And glibc keeps freed memory for reuse unless asked: give it back.
            crate::sys::malloc_trim();
        });
    Ok(Trusted {
        index,
        summary,
        problems,
    })
}

fn client(opts: &TrustOptions) -> Result<Client, TrustError> {
    let name = opts.trusted_root.display().to_string();
    let bytes = std::fs::File::open(&opts.trusted_root)
        .map_err(|e| TrustError::new(TrustErrorKind::Missing, format!("trusted root {name}: {e}")))
        .and_then(|f| {
            read_limited(f, &name, Limits::default().root_max_bytes).map_err(TrustError::from)
        })?;
    Client::new(
        &bytes,
        &name,
        opts.source.fetcher(&opts.http)?,
        opts.state_dir.as_deref(),
        UtcTime::from_system(opts.now),
        Limits::default(),
    )
}
