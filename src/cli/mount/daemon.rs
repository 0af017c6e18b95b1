//! The life of a mount: the usage and system checks, the trusted metadata (or an offline start),
//! the options of the filesystem, spawning it, then the loop that writes the status, announces
//! expiry and ends with a signal or an external unmount.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::network::network_of;
use super::refresh::Refresher;
use super::system::{
    block_signals, create_private_dir, has_cap_sys_admin, release_free_memory, wait_signal,
};
use super::Args;
use crate::log_event;
use crate::mount::chunked::VerifyMode;
use crate::mount::{self, MountOptions, RemoteOptions, Unregistered};
use crate::telemetry;
use crate::telemetry::audit::AuditLog;
use crate::trust::{self, MetadataSource, TrustOptions};

/// The default state directory's name for `mountpoint`: [`crate::telemetry::status::instance_name`]
/// (`systemd-escape --path`, injective, so two mounts never share a state directory).
pub fn state_name(mountpoint: &Path) -> String {
    crate::telemetry::status::instance_name(mountpoint)
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
    match mount::limits::raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            log_event!("open file limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => log_event!("cannot raise the open file limit: {e}"),
    }
    // A mountpoint left behind by a daemon that was killed answers stat with ENOTCONN; detach
    // it so a restart (e.g. systemd after kill -9) can mount again.
    match mount::detach_dead_mount(&args.mountpoint) {
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
    let root = crate::sys::euid() == 0;
    let default_base = match root {
        true => Some(PathBuf::from("/var/lib/trustfs")),
        false => telemetry::status::user_state_base(),
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
    if let Err(e) = telemetry::status::check_runtime_dir() {
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
                prefetch: crate::mount::prefetch::PrefetchOptions {
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
    let handle = match mount::spawn(options, trusted.index) {
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
        let endpoints = telemetry::http::Endpoints {
            status: Arc::new(move || l.status()),
            mountpoint: mountpoint.clone(),
        };
        match telemetry::http::serve_on(listener, endpoints) {
            Ok(bound) => log_event!(
                "status page on http://{bound}/ (also /status.json, /badge.svg, /metrics)"
            ),
            Err(e) => log_event!("cannot serve metrics: {e}; continuing without"),
        }
    }
    if let Some(interval) = args.refresh_interval {
        let stale_after = args
            .stale_after
            .unwrap_or_else(|| mount::freshness::default_stale_after(interval));
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
        if last_write.elapsed() >= Duration::from_secs(telemetry::status::WRITE_INTERVAL_SECS) {
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
            return match mount::detach_dead_mount(&mountpoint) {
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
