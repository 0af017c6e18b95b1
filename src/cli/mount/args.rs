//! The command line of `trustfs mount`: [`Args`], whose doc comments are the `--help` text, the
//! parsers of its values (`--verify`, sizes, durations) and the operations part of the help.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

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
    #[arg(long, value_name = "N", default_value_t = crate::mount::prefetch::DEFAULT_PREFETCH_THREADS,
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
    pub verify: crate::mount::chunked::VerifyMode,
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
pub(super) fn parse_verify(s: &str) -> Result<crate::mount::chunked::VerifyMode, String> {
    match s {
        "open" => Ok(crate::mount::chunked::VerifyMode::Open),
        "lazy" => Ok(crate::mount::chunked::VerifyMode::Lazy),
        other => match other.strip_prefix("lazy-above=") {
            Some(size) => parse_size(size).map(crate::mount::chunked::VerifyMode::LazyAbove),
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
