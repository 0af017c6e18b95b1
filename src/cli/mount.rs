//! `trustfs mount`: verify the metadata, then serve a verified, read-only view of a backing
//! directory, or of a remote repository through a verified cache, in the foreground until
//! SIGINT/SIGTERM or an external `umount`.
//!
//! Exit codes: 0 clean unmount; 2 the metadata cannot be trusted (nothing is mounted); 1 the mount
//! itself failed (bad backing directory, cache, mountpoint, no /dev/fuse, ...); 64 the command
//! line is wrong (e.g. `--backing` together with `--metadata-url`).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;

use crate::fs::chunked::VerifyMode;
use crate::fs::{self, LiveMount, MountOptions, RemoteOptions, Unregistered};
use crate::log_event;
use crate::ops;
use crate::ops::audit::AuditLog;
use crate::trust::{self, MetadataSource, TrustErrorKind, TrustOptions};

/// Mount a verified, read-only view of a backing directory or of a remote repository.
///
/// Only files listed in the signed targets metadata, with matching length and hashes, can be
/// opened; everything else gets "Permission denied" (EACCES) and one log line on stderr. Every
/// read is checked chunk by chunk against the file's signed chunk tree (or served from a private
/// verified copy with --private-copy), so bytes changed after verification are never served
/// (changed chunks fail with EIO). Runs in the foreground; SIGINT or SIGTERM unmounts and exits.
///
/// Local: --metadata METADATA_DIR --backing CONTENT_DIR.
///
/// Remote: --metadata-url URL --targets-url URL [--mirror URL ...] --cache DIR. The whole target
/// tree is shown from the metadata at once; the first open of a file downloads it into the cache,
/// verifying the signed length and every listed hash while it streams, and only a complete,
/// verified file is ever given its cache name. Later opens use the cache without a request. If
/// the repository is unreachable at start, the mount starts offline from the trusted metadata in
/// --state-dir if it has not expired; cached files stay readable, uncached ones fail with EIO
/// until a mirror answers again.
#[derive(Parser, Debug)]
#[command(after_long_help = OPERATIONS_HELP)]
pub struct Args {
    /// The trusted root metadata (root.json) you pinned; never taken from the repository.
    #[arg(long, value_name = "ROOT.json")]
    pub root: PathBuf,
    /// Local: directory holding the repository metadata (timestamp.json, N.root.json, ...).
    #[arg(
        long,
        value_name = "METADATA_DIR",
        required_unless_present = "metadata_url",
        requires = "backing",
        conflicts_with = "metadata_url"
    )]
    pub metadata: Option<PathBuf>,
    /// Local: directory holding the content (target files under their target paths).
    #[arg(long, value_name = "CONTENT_DIR", requires = "metadata",
          conflicts_with_all = ["metadata_url", "targets_url", "mirror", "cache", "cache_max_size",
                                "ca_cert", "proxy", "auth_file", "netrc", "netrc_file",
                                "client_cert", "client_key"])]
    pub backing: Option<PathBuf>,
    /// Remote: base URL of the repository metadata (e.g. https://example.org/metadata/).
    #[arg(long, value_name = "URL", requires_all = ["targets_url", "cache"])]
    pub metadata_url: Option<String>,
    /// Remote: base URL of the targets (files under their consistent-snapshot names
    /// dir/<sha256>.<basename> if the root says so, else under their target paths).
    #[arg(long, value_name = "URL", requires = "metadata_url")]
    pub targets_url: Option<String>,
    /// Remote: another targets base URL, tried after --targets-url (repeat for more, tried in
    /// the order given). A base that cannot deliver (connection error, timeout, HTTP error or
    /// 404) or delivers bytes that fail verification (wrong length or hash) is skipped for that
    /// download and the next is tried; nothing it sent is kept. The open fails with EACCES if
    /// every base that delivered sent wrong content, with EIO if none could deliver. Each first
    /// open starts again with --targets-url.
    #[arg(long, value_name = "URL", requires = "targets_url")]
    pub mirror: Vec<String>,
    /// Remote: the same as --verify lazy (fetch only what is read).
    #[arg(long, requires = "metadata_url", conflicts_with = "verify")]
    pub lazy_fetch: bool,
    /// Remote, with --verify lazy or lazy-above: where the outboards are, one base URL per
    /// targets URL and mirror, in the same order (default: `chunks/` next to each, as `trustfs
    /// repo add` publishes them).
    #[arg(long, value_name = "URL", requires = "metadata_url")]
    pub chunks_url: Vec<String>,
    /// Remote: the download cache (created 0700; objects 0400, named by the signed length and
    /// hashes). Kept across restarts and shareable by several mounts of the same repository.
    #[arg(long, value_name = "DIR", requires = "metadata_url")]
    pub cache: Option<PathBuf>,
    /// Remote: disk bound of the cache, e.g. 512M, 20G (least recently used objects that no
    /// reader holds open are evicted). Default: unbounded.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "cache")]
    pub cache_max_size: Option<u64>,
    /// Remote: parallel background downloads (each on its own keep-alive connection) of a
    /// directory's other small files (up to 256 KiB each, 8192 files and 64 MiB queued, a
    /// quarter of --cache-max-size) after the first open in it that is not cached. Each is
    /// verified like an open's download; a failure is logged, never an open's answer. 0: off.
    #[arg(long, value_name = "N", default_value_t = crate::fs::prefetch::DEFAULT_PREFETCH_THREADS,
          requires = "metadata_url")]
    pub prefetch: usize,
    /// Deadline of each phase of every HTTP request (metadata and targets, every mirror):
    /// connecting, sending the request, receiving the status line and headers, and any single
    /// read (e.g. 10s, 1m). A body must also arrive within this plus its length at 32 KiB/s, and
    /// at 16 KiB or more in every 30 s. A mirror that misses a deadline is skipped for the next
    /// one; an unreachable metadata URL at start falls back to the state dir (offline start).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_interval)]
    pub http_timeout: Duration,
    /// Remote: also trust the CA certificate(s) in FILE (PEM) for https:// URLs, on top of the
    /// system trust store (SSL_CERT_FILE/SSL_CERT_DIR, else e.g. /etc/ssl/certs, as curl finds
    /// it). Repeatable. A refused certificate is an error naming the host and the reason.
    #[arg(long, value_name = "FILE", requires = "metadata_url")]
    pub ca_cert: Vec<PathBuf>,
    /// Remote: the HTTP proxy (CONNECT) for every URL, e.g. http://proxy:3128. Default, as curl:
    /// https_proxy/HTTPS_PROXY for https URLs, http_proxy/HTTP_PROXY for http URLs, then
    /// all_proxy/ALL_PROXY; hosts in no_proxy/NO_PROXY (names with their subdomains, addresses,
    /// CIDR ranges, *) are reached directly. Proxy credentials go in those variables
    /// (http://user:pass@proxy:3128; never logged), not here, where every user's ps shows them.
    #[arg(long, value_name = "URL", requires = "metadata_url")]
    pub proxy: Option<String>,
    /// Remote: send the header lines in FILE (e.g. `Authorization: Bearer <token>`; # comments)
    /// with every request to the URLs given here, or only to ORIGIN (https://host or
    /// https://host:port) with ORIGIN=FILE. Re-read when it changes. FILE must be private (chmod
    /// 600), owned by you or root, in directories only you or root can change. Never sent to
    /// another host (redirects stay within a mirror's origin), never logged. Repeatable.
    #[arg(long, value_name = "[ORIGIN=]FILE", requires = "metadata_url")]
    pub auth_file: Vec<String>,
    /// Remote: basic auth for each host from $NETRC, else ~/.netrc (as curl --netrc); private
    /// file required. An --auth-file Authorization header wins over it.
    #[arg(long, requires = "metadata_url", conflicts_with = "netrc_file")]
    pub netrc: bool,
    /// Remote: as --netrc, from FILE.
    #[arg(long, value_name = "FILE", requires = "metadata_url")]
    pub netrc_file: Option<PathBuf>,
    /// Remote: the client certificate (PEM, with its chain) for mirrors that require mTLS.
    #[arg(long, value_name = "FILE", requires_all = ["metadata_url", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// Remote: the private key of --client-cert (PEM: PKCS#8, PKCS#1 or SEC1; private file).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Private state: metadata versions seen (rollback protection across restarts), chunk trees of
    /// targets without a signed chunk root (`trees/`, emptied past 256 MiB) and, with
    /// --private-copy, verified copies (`objects/`, cleared at start). Default: /var/lib/trustfs/<escaped mountpoint>.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Let every user (e.g. containers running as other uids) use the mount (allow_other).
    #[arg(long)]
    pub allow_other: bool,
    /// Local: hide files the metadata does not list (instead of listing them and refusing opens).
    #[arg(long, conflicts_with = "metadata_url")]
    pub hide_unregistered: bool,
    /// What an open checks. `open` (default): the whole file at its first open, against its
    /// signed chunk root (all cores) or, without one, its signed hashes; a remote mount downloads
    /// it whole first. An altered file is refused with EACCES at open. `lazy`: a local mount
    /// checks only the size, so opens of huge files are instant; a remote mount fetches only
    /// the outboard (32 bytes per 64 KiB) of a target with a signed chunk root, and each read
    /// fetches the chunks it lacks with HTTP range requests (4 MiB windows, growing to 32 MiB and
    /// fetched ahead while a file is read in order), checks every chunk, and keeps them in a
    /// sparse file in --cache (`partial/`, bounded by --cache-max-size on its own, resumed after
    /// a restart); other targets are downloaded whole. An altered chunk fails with EIO when it is
    /// read (the log and audit name the file and offset); a mirror that ignores ranges or sends
    /// other bytes is skipped for the next. Either way every read is checked chunk by chunk, so
    /// bytes changed after the open are never served. `lazy-above=SIZE` (e.g. 1G): lazy for files
    /// of SIZE and more, open for smaller ones.
    #[arg(long, value_name = "MODE", default_value = "open", value_parser = parse_verify,
          conflicts_with = "private_copy")]
    pub verify: crate::fs::chunked::VerifyMode,
    /// Local: serve reads from a private verified copy of each file (made and hashed at its first
    /// open, in --state-dir) instead of checking reads against the backing file. Open files then
    /// keep reading their verified content when the backing file changes (instead of EIO), at
    /// the cost of a full copy before the first byte and state-dir space for every file open.
    #[arg(long, conflicts_with = "metadata_url")]
    pub private_copy: bool,
    /// Local, with --private-copy: disk bound for verified copies that are not currently open,
    /// e.g. 512M, 2G, 1T (LRU).
    #[arg(long, value_name = "SIZE", default_value = "2G", value_parser = parse_size,
          conflicts_with = "metadata_url")]
    pub copy_cache_max: u64,
    /// Serve reads in userspace even if the kernel supports FUSE passthrough (passthrough is
    /// used for verified copies: remote mounts and --private-copy).
    #[arg(long)]
    pub no_passthrough: bool,
    /// FUSE worker threads (default: two per CPU, at least 4; at least 16 for a remote mount,
    /// where an open waiting for a download holds a worker).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Re-run the TUF client workflow this often while mounted (e.g. 30s, 5m, 1h), against the
    /// same metadata source and state dir (so versions never go back). New metadata is switched
    /// in atomically: files already open keep serving their verified content (chunk-verified
    /// reads: while the backing file still holds it, else EIO), new opens follow
    /// the new metadata, removed targets disappear, changed ones are verified again at their next
    /// open. A refresh that fails (unreachable, bad signature, rollback, expired) keeps the last
    /// good metadata and is logged. Default: no refresh (the metadata trusted at start is used
    /// until it expires; then opens fail with EACCES).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub refresh_interval: Option<Duration>,
    /// With --refresh-interval: metadata not confirmed by a successful refresh for this long is
    /// reported stale (✘ in `trustfs status`, trustfs_up 0, the reason shown), though it is
    /// still served until it expires. Default: three refresh intervals, at least 1m.
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, requires = "refresh_interval")]
    pub stale_after: Option<Duration>,
    /// Append one JSON object per line to FILE for every denied open or read (path, reason, detail, pid,
    /// uid, metadata versions), every metadata change (mount start, each switch) and every failed
    /// refresh. Created with mode 0640.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Serve the mount's status over HTTP on HOST:PORT, e.g. 127.0.0.1:9715: a status page on
    /// `/` (green shield with a check mark, or red with the reason; versions, expiry, keys,
    /// counts, last denials), `/status.json` (what `trustfs status --json` says), `/badge.svg`,
    /// and Prometheus metrics on `/metrics` (opens, denials by reason, bytes, verification time,
    /// cache hits, metadata versions and seconds until expiry, refresh failures). No secrets,
    /// but paths and callers of denied opens: bind to loopback or a trusted network.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Where to mount.
    pub mountpoint: PathBuf,
}

/// Parse `open`, `lazy` or `lazy-above=SIZE`.
fn parse_verify(s: &str) -> Result<crate::fs::chunked::VerifyMode, String> {
    match s {
        "open" => Ok(crate::fs::chunked::VerifyMode::Open),
        "lazy" => Ok(crate::fs::chunked::VerifyMode::Lazy),
        other => match other.strip_prefix("lazy-above=") {
            Some(size) => parse_size(size).map(crate::fs::chunked::VerifyMode::LazyAbove),
            None => Err(format!("{other:?}: give open, lazy or lazy-above=SIZE")),
        },
    }
}

/// Parse `123`, `64K`, `512M`, `2G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix {c:?} (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512M or 2G"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A refresh interval: a duration like `30s`, `5m`, `1h` (at least one second).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::schema::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}

/// The operations part of `trustfs mount --help` (after the options; the subcommand's one-line
/// description comes from `cli/mod.rs`).
const OPERATIONS_HELP: &str = "\
Operations (see docs/operations.md):
  Live updates: --refresh-interval re-runs the TUF client workflow while mounted and switches new
  metadata in atomically. Files already open keep serving their verified content (chunk-verified
  reads: while the backing file still holds it, else EIO); new opens
  follow the new metadata; removed targets disappear; changed ones are verified again at their
  next open. A refresh that fails (unreachable, bad signature, rollback, expired) keeps the last
  good metadata and is logged. Once the metadata in force expires, every open fails with EACCES
  and a log line naming the expired role.
  Status: the mount publishes a status record in $TRUSTFS_RUNTIME_DIR (default /run/trustfs),
  read by `trustfs status`, and removes it on a clean unmount.
  Audit and metrics: --audit-log FILE (JSON lines), --metrics-addr HOST:PORT: a status page
  (http://HOST:PORT/, the green check mark), /status.json, /badge.svg and /metrics (Prometheus).
  Xattrs: registered files carry user.trustfs.sha256, user.trustfs.length,
  user.trustfs.verified and user.trustfs.role; the mount root carries user.trustfs.status (the status record as JSON).
  Restart: if MOUNTPOINT is a dead trustfs mount left by a killed daemon (ENOTCONN), it is
  detached (MNT_DETACH) before mounting.";

/// The default state directory's name for `mountpoint`: [`crate::ops::status::instance_name`]
/// (`systemd-escape --path`, injective, so two mounts never share a state directory).
pub fn state_name(mountpoint: &Path) -> String {
    crate::ops::status::instance_name(mountpoint)
}

/// The network configuration of a remote mount (TLS, proxy, credentials), checked now, and one
/// log line each about how every URL given is reached.
fn network_of(args: &Args) -> Result<trust::Network, String> {
    let netrc = match (&args.netrc_file, args.netrc) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(
            std::env::var_os("NETRC")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc")))
                .ok_or("--netrc: neither NETRC nor HOME is set")?,
        ),
        (None, false) => None,
    };
    let opts = trust::NetOptions {
        ca_certs: args.ca_cert.clone(),
        proxy: args.proxy.clone(),
        auth_files: args.auth_file.clone(),
        netrc,
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    let network = trust::Network::new(&opts)?;
    let urls = args
        .metadata_url
        .iter()
        .chain(&args.targets_url)
        .chain(&args.mirror);
    let mut origins: Vec<trust::Origin> = urls.filter_map(|u| trust::Origin::of(u).ok()).collect();
    origins.sort();
    origins.dedup();
    for spec in &args.auth_file {
        if let Some((scope, _)) = spec.split_once('=') {
            if let Ok(o) = trust::Origin::of(scope) {
                if !origins.contains(&o) {
                    return Err(format!(
                        "--auth-file {spec}: {o} is not the origin of any URL given (metadata, targets, mirrors)"
                    ));
                }
            }
        }
    }
    for origin in &origins {
        for note in network.notes_for(origin) {
            log_event!("{note}");
        }
    }
    Ok(network)
}

pub fn run(args: Args) -> i32 {
    // Usage errors before any network or filesystem work.
    let verify = match args.lazy_fetch {
        true => VerifyMode::Lazy,
        false => args.verify,
    };
    if !args.chunks_url.is_empty() && verify == VerifyMode::Open {
        super::report_error("mount", &"--chunks-url is for --verify lazy or lazy-above");
        return super::EXIT_USAGE;
    }
    // Room for many readers: the soft descriptor limit up to the hard one (the daemon bounds
    // its own use; see docs/operations.md).
    match fs::limits::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            log_event!("open file limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => log_event!("cannot raise the open file limit: {e}"),
    }
    // A mountpoint left behind by a daemon that was killed answers stat with ENOTCONN; detach
    // it so a restart (e.g. systemd after kill -9) can mount again.
    match fs::detach_dead_mount(&args.mountpoint) {
        Ok(true) => log_event!(
            "{} was a dead FUSE mount (transport endpoint not connected; its daemon is gone); detached it (MNT_DETACH)",
            args.mountpoint.display()
        ),
        Ok(false) => {}
        Err(e) => {
            super::report_error(
                "mount",
                &format!(
                    "{} is a dead FUSE mount and cannot be detached: {e}",
                    args.mountpoint.display()
                ),
            );
            return super::EXIT_CONTENT;
        }
    }
    if !args.mountpoint.exists() {
        // A missing mountpoint is created (as `mount` helpers and systemd do), not an error.
        if let Err(e) = std::fs::create_dir_all(&args.mountpoint) {
            super::report_error(
                "mount",
                &format!("mountpoint {}: {e}", args.mountpoint.display()),
            );
            return super::EXIT_CONTENT;
        }
        log_event!("created mountpoint {}", args.mountpoint.display());
    }
    let mountpoint = std::fs::canonicalize(&args.mountpoint).unwrap_or(args.mountpoint.clone());
    // Root: /var/lib/trustfs/NAME; a normal user: $XDG_STATE_HOME/trustfs/NAME (else
    // ~/.local/state/trustfs/NAME).
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = crate::sys::euid() == 0;
    let default_base = match root {
        true => Some(PathBuf::from("/var/lib/trustfs")),
        false => ops::status::user_state_base(),
    };
    let Some(state_dir) = args
        .state_dir
        .clone()
        .or_else(|| default_base.map(|b| b.join(state_name(&mountpoint))))
    else {
        super::report_error(
            "mount",
            &"no home directory for a default state dir: give --state-dir",
        );
        return super::EXIT_USAGE;
    };
    if let Err(e) = create_private_dir(&state_dir, root) {
        super::report_error("mount", &format!("state dir {}: {e}", state_dir.display()));
        return super::EXIT_CONTENT;
    }
    if let Err(e) = ops::status::check_runtime_dir() {
        super::report_error("mount", &e.to_string());
        return super::EXIT_CONTENT;
    }

    let source = match (&args.metadata, &args.metadata_url) {
        (Some(dir), _) => MetadataSource::Dir(dir.clone()),
        (None, Some(url)) => MetadataSource::Url(url.clone()),
        // clap requires one of the two.
        (None, None) => {
            super::report_error("mount", &"--metadata or --metadata-url is required");
            return super::EXIT_USAGE;
        }
    };
    // Only a remote mount reaches the network: a local one never reads proxy variables.
    let network = match args.metadata_url.as_ref().map(|_| network_of(&args)) {
        None => Ok(trust::Network::default()),
        Some(r) => r,
    };
    let network = match network {
        Ok(n) => Arc::new(n),
        Err(e) => {
            super::report_error("mount", &e);
            return super::EXIT_USAGE;
        }
    };
    let trust_options = TrustOptions {
        trusted_root: args.root.clone(),
        source,
        state_dir: Some(state_dir.clone()),
        now: SystemTime::now(),
        http: trust::HttpOptions {
            io_timeout: args.http_timeout,
            network: network.clone(),
        },
    };
    let loaded = if args.metadata_url.is_some() {
        trust::load_or_offline(&trust_options)
    } else {
        trust::load(&trust_options).map(|t| (t, None))
    };
    let (trusted, offline) = match loaded {
        Ok(t) => t,
        Err(e) => {
            super::report_error(
                "mount",
                &format!("refusing to mount: metadata cannot be trusted: {e}"),
            );
            return super::EXIT_METADATA;
        }
    };
    if let Some(why) = &offline {
        log_event!(
            "metadata repository unreachable ({why}); starting OFFLINE from the metadata trusted earlier in {} (valid until {}, when {} expires)",
            state_dir.display(),
            trusted.summary.expires,
            trusted.summary.expires_role
        );
    }

    // Block SIGINT/SIGTERM before any thread exists, so every thread inherits the mask and the
    // signals stay pending for `wait_signal` below instead of killing the process mid-mount.
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => {
            super::report_error("mount", &format!("cannot block signals: {e}"));
            return super::EXIT_CONTENT;
        }
    };

    let (mut options, from) = match (&args.backing, &args.targets_url, &args.cache) {
        (Some(backing), _, _) => (
            MountOptions::new(&mountpoint, backing, &state_dir),
            backing.display().to_string(),
        ),
        (None, Some(targets_url), Some(cache)) => {
            let mut urls = vec![targets_url.clone()];
            urls.extend(args.mirror.iter().cloned());
            let from = urls.join(", ");
            let remote = RemoteOptions {
                targets_urls: urls,
                cache_dir: cache.clone(),
                cache_max: args.cache_max_size.unwrap_or(u64::MAX),
                consistent_snapshot: trusted.summary.consistent_snapshot,
                http: trust_options.http.clone(),
                prefetch: crate::fs::prefetch::PrefetchOptions {
                    threads: args.prefetch,
                    ..Default::default()
                },
                lazy_fetch: (verify != VerifyMode::Open)
                    .then(|| (!args.chunks_url.is_empty()).then(|| args.chunks_url.clone())),
            };
            (MountOptions::remote(&mountpoint, remote, &state_dir), from)
        }
        _ => {
            super::report_error(
                "mount",
                &"give --backing, or --targets-url and --cache with --metadata-url",
            );
            return super::EXIT_USAGE;
        }
    };
    options.allow_other = args.allow_other;
    options.unregistered = if args.hide_unregistered {
        Unregistered::Hide
    } else {
        Unregistered::Deny
    };
    options.copy_cache_max = args.copy_cache_max;
    options.private_copy = args.private_copy;
    options.verify = verify;
    // A repository made by `trustfs repo add` publishes chunk outboards next to its metadata.
    options.outboards = args
        .metadata
        .as_deref()
        .and_then(|m| std::fs::canonicalize(m).ok())
        .and_then(|m| m.parent().map(|repo| repo.join("chunks")));
    options.passthrough = !args.no_passthrough && {
        // The kernel lets only CAP_SYS_ADMIN register backing files for passthrough (used for
        // verified copies only: --private-copy and remote mounts).
        let able = has_cap_sys_admin();
        if !able && (args.private_copy || args.metadata_url.is_some()) {
            log_event!(
                "FUSE passthrough needs CAP_SYS_ADMIN, which this process lacks: reads are served \
                 in userspace"
            );
        }
        able
    };
    if let Some(n) = args.threads {
        options.threads = n;
    }
    // Opens are refused once the metadata in force expires (its `expires`, the earliest of every
    // trusted role); a successful refresh moves it forward.
    options.metadata = Some(trusted.summary.clone());
    options.repository = match &trust_options.source {
        MetadataSource::Dir(d) => d.display().to_string(),
        MetadataSource::Url(u) => u.clone(),
    };
    let audit = match &args.audit_log {
        Some(path) => match AuditLog::open(path) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => {
                super::report_error("mount", &format!("audit log {}: {e}", path.display()));
                return super::EXIT_CONTENT;
            }
        },
        None => None,
    };
    options.audit = audit.clone();
    // Bound before mounting: a busy address refuses the start before anything is mounted.
    let metrics = match &args.metrics_addr {
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => Some(l),
            Err(e) => {
                super::report_error("mount", &format!("metrics address {addr}: {e}"));
                return super::EXIT_CONTENT;
            }
        },
        None => None,
    };
    for problem in &trusted.problems {
        log_event!("warning: left out of the mount: {problem}");
    }
    // What the first refresh may find unchanged (an offline start or problems: load again).
    let quiet = (offline.is_none() && trusted.problems.is_empty())
        .then(|| trust::trusted_timestamp(&trust_options))
        .flatten()
        .map(|t| (trusted.summary.root_version, t));
    let targets = trusted.index.len();
    let summary = trusted.summary.clone();
    release_free_memory();
    let handle = match fs::spawn(options, trusted.index) {
        Ok(h) => h,
        Err(e) => {
            super::report_error("mount", &format!("{}: {e}", mountpoint.display()));
            return super::EXIT_CONTENT;
        }
    };
    let s = &trusted.summary;
    log_event!(
        "serving {targets} targets from {from} at {} (root v{}, timestamp v{}, snapshot v{}, targets v{}); state in {}",
        mountpoint.display(),
        s.root_version,
        s.timestamp_version,
        s.snapshot_version,
        s.targets_version,
        state_dir.display()
    );
    let live = handle.live();
    if let Some(why) = &offline {
        // Serving metadata the repository has not confirmed: ✘ until a refresh reaches it.
        live.started_offline(format!(
            "started offline: the repository could not be reached ({why}); serving the metadata trusted earlier until a refresh confirms it"
        ));
    }
    if let Some(a) = &audit {
        a.metadata_change(None, &summary, targets);
    }
    live.write_status();
    if let Some(listener) = metrics {
        let l = live.clone();
        let endpoints = ops::http::Endpoints {
            status: Arc::new(move || l.status()),
            mountpoint: mountpoint.clone(),
        };
        match ops::http::serve_on(listener, endpoints) {
            Ok(bound) => log_event!(
                "status page on http://{bound}/ (also /status.json, /badge.svg, /metrics)"
            ),
            Err(e) => log_event!("cannot serve metrics: {e}; continuing without"),
        }
    }
    if let Some(interval) = args.refresh_interval {
        let stale_after = args
            .stale_after
            .unwrap_or_else(|| fs::freshness::default_stale_after(interval));
        live.set_refresh(interval, stale_after);
        let refresher = Refresher {
            live: live.clone(),
            options: trust_options.clone(),
            audit: audit.clone(),
            last_failure: None,
            quiet,
        };
        log_event!(
            "refreshing the metadata every {} s (reported stale after {} s without success)",
            interval.as_secs(),
            stale_after.as_secs()
        );
        let spawned = std::thread::Builder::new()
            .name("trustfs-refresh".into())
            .spawn(move || refresher.run(interval));
        if let Err(e) = spawned {
            let msg = format!("cannot start the refresh thread: {e}");
            log_event!("ERROR {msg}; serving without refresh (reported stale)");
            live.refresh_failed(msg);
        }
    }

    let mut last_write = Instant::now();
    let mut announced_expiry = false;
    loop {
        match live.expired() {
            Some((at, role)) if !announced_expiry => {
                log_event!(
                    "the trusted metadata expired at {} (the {role} role): every open is refused (EACCES) until fresh metadata can be trusted{}",
                    crate::log::timestamp(at),
                    if args.refresh_interval.is_some() { "" } else { "; no --refresh-interval, so only a remount brings it back" }
                );
                announced_expiry = true;
                live.write_status();
            }
            Some(_) => {}
            None => announced_expiry = false,
        }
        if last_write.elapsed() >= Duration::from_secs(ops::status::WRITE_INTERVAL_SECS) {
            live.write_status();
            last_write = Instant::now();
        }
        if let Some(sig) = wait_signal(&signals, Duration::from_millis(500)) {
            log_event!("received signal {sig}; unmounting {}", mountpoint.display());
            live.remove_status();
            return match handle.unmount() {
                Ok(()) => {
                    log_event!("unmounted {}", mountpoint.display());
                    super::EXIT_OK
                }
                Err(e) => {
                    super::report_error("mount", &format!("unmount failed: {e}"));
                    super::EXIT_CONTENT
                }
            };
        }
        if handle.is_finished() {
            live.remove_status();
            let _ = handle.unmount();
            // Unmounted by someone else (umount, fusermount -u): a clean end. Still mounted but
            // without its daemon's session: a failure, detached so a restart can mount again,
            // and exit 1 so a supervisor (Restart=on-failure) restarts us.
            return match fs::detach_dead_mount(&mountpoint) {
                Ok(false) => {
                    log_event!("{} was unmounted externally; exiting", mountpoint.display());
                    super::EXIT_OK
                }
                Ok(true) => {
                    log_event!(
                        "ERROR the FUSE session of {} ended unexpectedly; detached the dead mount",
                        mountpoint.display()
                    );
                    super::EXIT_CONTENT
                }
                Err(e) => {
                    log_event!(
                        "ERROR the FUSE session of {} ended unexpectedly and the dead mount cannot be detached: {e}",
                        mountpoint.display()
                    );
                    super::EXIT_CONTENT
                }
            };
        }
    }
}

/// The live-update loop: every interval, run the client workflow again (same source, same state
/// dir: rollback protection) and switch in what it trusts if it differs from what is in force.
struct Refresher {
    live: LiveMount,
    options: TrustOptions,
    audit: Option<Arc<AuditLog>>,
    /// The kind of the last failed refresh and when it was last logged: a failure of the same
    /// kind is counted every time but logged (and audited) again only after [`REPEAT_LOG`].
    last_failure: Option<(TrustErrorKind, Instant)>,
    /// After a refresh that loaded everything without problems: the trusted root version and
    /// the exact timestamp bytes trusted. While the repository still offers exactly these
    /// ([`trust::unchanged`]: no next root, the same timestamp bytes), a refresh costs two small
    /// fetches instead of the whole workflow and a new index.
    quiet: Option<(u64, Vec<u8>)>,
}

/// A refresh failing the same way again is logged and audited at most this often.
const REPEAT_LOG: Duration = Duration::from_secs(300);

impl Refresher {
    /// Refresh every `interval`, forever. Supervised: a panic in one refresh (a bug, or in a
    /// library below) is caught, logged as an ERROR, counted as a failed refresh and shown by
    /// `trustfs status`; the next interval tries again. The thread never dies silently.
    fn run(mut self, interval: Duration) {
        loop {
            std::thread::sleep(interval);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.once()));
            if let Err(p) = outcome {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let msg = format!("internal error during the metadata refresh: {what}");
                log_event!(
                    "ERROR {msg}; keeping the metadata in force, trying again in {} s",
                    interval.as_secs()
                );
                self.live
                    .counters()
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.live.refresh_failed(msg);
                self.live.write_status();
            }
        }
    }

    fn once(&mut self) {
        let mut opts = self.options.clone();
        opts.now = SystemTime::now();
        let current = self.live.summary().unwrap_or_default();
        if let Some((root_version, timestamp)) = &self.quiet {
            if trust::unchanged(&opts, *root_version, timestamp) {
                self.live
                    .counters()
                    .refresh_unchanged
                    .fetch_add(1, Ordering::Relaxed);
                if self.last_failure.take().is_some() {
                    log_event!("metadata refresh works again");
                }
                self.live.refresh_ok();
                return;
            }
        }
        self.quiet = None;
        match trust::load(&opts) {
            Ok(trusted) => {
                if self.last_failure.take().is_some() {
                    log_event!("metadata refresh works again");
                }
                self.live.refresh_ok();
                if trusted.problems.is_empty() {
                    self.quiet =
                        trust::trusted_timestamp(&opts).map(|t| (trusted.summary.root_version, t));
                }
                // Same versions and expiry can still mean a different index: a delegated role
                // that could not be loaded last time may load now.
                if trusted.summary == current && self.live.same_index(&trusted.index) {
                    return;
                }
                for problem in &trusted.problems {
                    log_event!("warning: left out of the mount: {problem}");
                }
                let targets = trusted.index.len();
                let new = trusted.summary.clone();
                let report = self.live.switch(trusted.index, trusted.summary);
                release_free_memory();
                log_event!(
                    "metadata updated: timestamp v{} -> v{}, snapshot v{} -> v{}, targets v{} -> v{}, root v{} -> v{}; {} targets ({} added, {} removed, {} changed); valid until {} ({} role)",
                    current.timestamp_version,
                    new.timestamp_version,
                    current.snapshot_version,
                    new.snapshot_version,
                    current.targets_version,
                    new.targets_version,
                    current.root_version,
                    new.root_version,
                    targets,
                    report.added.len(),
                    report.removed.len(),
                    report.changed.len(),
                    new.expires,
                    new.expires_role
                );
                if let Some(a) = &self.audit {
                    a.metadata_change(Some(&current), &new, targets);
                }
                self.live.write_status();
            }
            Err(e) => {
                self.live
                    .counters()
                    .refresh_failures
                    .fetch_add(1, Ordering::Relaxed);
                let msg = e.to_string();
                self.live.refresh_failed(format!(
                    "last metadata refresh failed at {}: {msg}",
                    crate::log::timestamp(SystemTime::now())
                ));
                let repeated = self
                    .last_failure
                    .is_some_and(|(kind, at)| kind == e.kind && at.elapsed() < REPEAT_LOG);
                if !repeated {
                    log_event!(
                        "metadata refresh FAILED, keeping the metadata in force (timestamp v{}, targets v{}, valid until {}): {msg}",
                        current.timestamp_version,
                        current.targets_version,
                        current.expires
                    );
                    if let Some(a) = &self.audit {
                        a.refresh_failed(&msg, &current);
                    }
                    self.last_failure = Some((e.kind, Instant::now()));
                }
                self.live.write_status();
            }
        }
    }
}

/// Give the memory the metadata workflow freed back to the system. Loading a large repository
/// parses every metadata file (hash bins included) into values that are dropped once the target
/// index is built; glibc keeps such freed memory in its heaps, so without this the daemon's RSS
/// stays at the peak of the load (100,000 targets in 256 hash bins: 350 MiB at start, 253 MiB
/// with this).
fn release_free_memory() {
    crate::sys::malloc_trim();
}

fn block_signals() -> std::io::Result<libc::sigset_t> {
    crate::sys::block_signals()
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    crate::sys::wait_signal(set, timeout)
}

/// Whether this process has CAP_SYS_ADMIN in effect (`CapEff` in /proc/self/status).
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Create `dir` (and its parents); a normal user's is private (0700): it holds verified copies
/// and the trusted metadata.
fn create_private_dir(dir: &Path, root: bool) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(if root { 0o755 } else { 0o700 })
        .create(dir)
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_modes_parse() {
        use crate::fs::chunked::VerifyMode;
        assert_eq!(parse_verify("open"), Ok(VerifyMode::Open));
        assert_eq!(parse_verify("lazy"), Ok(VerifyMode::Lazy));
        assert_eq!(
            parse_verify("lazy-above=1G"),
            Ok(VerifyMode::LazyAbove(1 << 30))
        );
        assert!(parse_verify("lazy-above=").is_err());
        assert!(parse_verify("sometimes").is_err());
        assert!(VerifyMode::LazyAbove(10).whole_at_open(9));
        assert!(!VerifyMode::LazyAbove(10).whole_at_open(10));
    }

    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("2X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn state_names_do_not_collide() {
        assert_eq!(state_name(Path::new("/mnt/trusted")), "mnt-trusted");
        let a = state_name(Path::new("/srv/app-data"));
        let b = state_name(Path::new("/srv/app/data"));
        let c = state_name(Path::new("/srv/app data"));
        assert!(a != b && b != c && a != c, "{a} {b} {c}");
    }
}
