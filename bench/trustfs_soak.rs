//! Soak and open-latency benchmarks of the real `trustfs` binary (not a test; driven by
//! `bench/soak.sh` and `bench/latency.sh`; figures in docs/operations.md, "Soak and load figures").
//!
//! `soak --trustfs BIN --work DIR [--minutes M] [--files N] [--readers R]`
//!   End to end, through the `trustfs` CLI only: `repo init`, `repo add` of a generated content
//!   directory (STAGE), a BACKING copy of it, `trustfs mount --refresh-interval 1s` as a child
//!   process. Then for M minutes, at once:
//!   - R reader threads read random files fully through the mount and sha256 them. A successful
//!     read whose hash was never published for that path is a VIOLATION (tampered bytes served).
//!     A read of a version superseded (or removed) more than `GRACE` before the open started is
//!     STALE. EACCES is a denial, ENOENT an absence, anything else a fault; a denial or absence
//!     on a path nobody touched for `GRACE` (no tamper pending, no publish in flight) is
//!     UNEXPECTED.
//!   - a tamperer changes a random BACKING file every ~50 ms (full or one-byte pwrite, truncate,
//!     append, replace by rename) and restores it from STAGE 20..1000 ms later;
//!   - a publisher changes ~5% of STAGE every 10 s (and sometimes adds/removes files), records the
//!     new hashes, runs `trustfs repo add`, then deploys the changed files into BACKING;
//!   - a sampler writes the daemon's VmRSS, fd count and /metrics every 5 s to samples.csv.
//!
//!   Then: a final sweep (every file must read back as its current version), SIGTERM (exit 0 and
//!   unmounted), and a summary (stdout and DIR/summary.txt). Exit 1 on any violation, stale read,
//!   sweep mismatch, bad exit or leftover mount.
//!
//! `latency [--secs S] [--threads T] [--reps N] --files N LABEL=DIR ...`
//!   DIR/small/0 .. DIR/small/N-1 in every DIR: read every file once (warm-up), then N reps of:
//!   for each DIR in turn, T threads doing open+read+close of random files for S seconds. Prints
//!   p50/p99/p99.9 of the open() call and of open+read+close, per rep and the medians over reps,
//!   and ratios of the first LABEL to each other one. Timing is reported, never asserted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// After a publish (or a restore) is done, how long until the mount must show it: refresh
/// interval 1 s, the switch's drain wait up to 2 s, plus margin for a loaded machine.
const GRACE: Duration = Duration::from_secs(10);
const PUBLISH_EVERY: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

// ---------------------------------------------------------------------------------------------
// Small helpers

/// xorshift64*: fast, good enough for picking files and making random content.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng(OsRng.next_u64() | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

type Hash = [u8; 32];

fn sha256(b: &[u8]) -> Hash {
    Sha256::digest(b).into()
}

fn short(h: &Hash) -> String {
    hex::encode(&h[..6])
}

/// Wall-clock time as the daemon's log writes it, to correlate evidence with its log.
fn now_stamp() -> String {
    trustfs::log::timestamp(SystemTime::now())
}

fn errno_name(e: i32) -> String {
    match e {
        libc::EACCES => "EACCES".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::EIO => "EIO".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::EMFILE => "EMFILE".into(),
        libc::ENFILE => "ENFILE".into(),
        libc::ESTALE => "ESTALE".into(),
        libc::ENOTCONN => "ENOTCONN".into(),
        libc::EINTR => "EINTR".into(),
        libc::EAGAIN => "EAGAIN".into(),
        e => format!("errno {e}"),
    }
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn is_fuse(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid C string and `st` a writable statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == FUSE_SUPER_MAGIC
}

/// Is `p` a mount point (listed in /proc/self/mountinfo)?
fn mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().replace(' ', "\\040");
    fs::read_to_string("/proc/self/mountinfo")
        .map(|s| {
            s.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

/// Write `data` to `tmp` and rename it onto `dst` (creating parent directories).
fn write_rename(tmp: &Path, dst: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(tmp, data)?;
    fs::rename(tmp, dst)
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// GET /metrics: every sample line as "name{labels}" -> value.
fn scrape(port: u16) -> Option<HashMap<String, f64>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let (head, text) = body.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    let mut m = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((k, v)) = line.rsplit_once(' ') {
            if let Ok(v) = v.parse::<f64>() {
                m.insert(k.to_owned(), v);
            }
        }
    }
    Some(m)
}

/// Sum of every sample of family `name` (with or without labels).
fn family(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.as_str() == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
        })
        .map(|(_, v)| v)
        .sum()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------------------------
// Soak

struct Version {
    /// None: the path was removed from the targets.
    hash: Option<Hash>,
    /// When `repo add` publishing this version returned (None: not yet, or the add failed).
    published: Option<Instant>,
}

/// What happens to a path right now, to tell expected denials from unexpected ones.
#[derive(Default)]
struct Disturb {
    tampered: bool,
    publishing: bool,
    removed: bool,
    /// No denial is expected for opens that start after this (restore done, or deploy + GRACE).
    quiet_since: Option<Instant>,
}

#[derive(Default)]
struct Counts {
    reads_ok: AtomicU64,
    bytes: AtomicU64,
    denials: AtomicU64,
    absent: AtomicU64,
    faults: AtomicU64,
    violations: AtomicU64,
    stale: AtomicU64,
    unexpected_denials: AtomicU64,
    unexpected_absent: AtomicU64,
    tampers: AtomicU64,
    restores: AtomicU64,
    tamper_errors: AtomicU64,
    publishes: AtomicU64,
    publish_failures: AtomicU64,
}

struct Ctx {
    bin: PathBuf,
    work: PathBuf,
    repo: PathBuf,
    keys: PathBuf,
    stage: PathBuf,
    backing: PathBuf,
    mnt: PathBuf,
    tmp: PathBuf,
    stop: AtomicBool,
    /// Every path readers pick from (all paths ever deployed; removed ones stay).
    paths: RwLock<Vec<Arc<str>>>,
    /// Paths currently in STAGE and BACKING (the tamperer's and publisher's choice).
    live: Mutex<Vec<String>>,
    /// path -> every version ever published, oldest first. Filled BEFORE each `repo add`.
    published: Mutex<HashMap<String, Vec<Version>>>,
    disturb: Mutex<HashMap<String, Disturb>>,
    /// Held by the tamperer for each tamper/restore and by the publisher for each deploy.
    backing_lock: Mutex<()>,
    counts: Counts,
    fault_errnos: Mutex<BTreeMap<String, u64>>,
    /// Evidence lines (violations, stale reads, unexpected denials, faults), in order.
    evidence: Mutex<Vec<String>>,
    tamper_log: Mutex<File>,
    publish_log: Mutex<File>,
    add_seconds: Mutex<Vec<f64>>,
    /// When each round started (for the achieved publishing cadence).
    round_starts: Mutex<Vec<Instant>>,
    seq: AtomicU64,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }
    fn note(&self, kind: &str, msg: String) {
        let line = format!("{} {kind}: {msg}", now_stamp());
        eprintln!("{line}");
        let mut ev = self.evidence.lock().unwrap();
        // Bounded: the first 200 lines of evidence are plenty.
        if ev.len() < 200 {
            ev.push(line);
        }
    }
    fn tmpname(&self, what: &str) -> PathBuf {
        self.tmp
            .join(format!("{what}-{}", self.seq.fetch_add(1, Relaxed)))
    }
    /// Is a denial/absence of `path` for an open started at `t0` unexpected?
    fn quiet(&self, path: &str, t0: Instant) -> bool {
        let d = self.disturb.lock().unwrap();
        match d.get(path) {
            None => true,
            Some(d) => {
                !d.tampered && !d.publishing && !d.removed && d.quiet_since.is_none_or(|q| t0 > q)
            }
        }
    }
}

fn run_trustfs(ctx: &Ctx, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = Command::new(&ctx.bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ctx.bin.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("exit {:?}: {text}", out.status.code()))
    }
}

fn repo_add(ctx: &Ctx) -> Result<String, String> {
    run_trustfs(
        ctx,
        &[
            "repo".as_ref(),
            "add".as_ref(),
            ctx.repo.as_os_str(),
            ctx.stage.as_os_str(),
            "--keys".as_ref(),
            ctx.keys.as_os_str(),
        ],
    )
}

/// Random content of the size class of `big`: 1..64 KiB, or 1..8 MiB.
fn content(rng: &mut Rng, big: bool) -> Vec<u8> {
    let n = if big {
        rng.range(1 << 20, 8 << 20)
    } else {
        rng.range(1 << 10, 64 << 10)
    };
    rng.bytes(n as usize)
}

/// The STAGE tree: `nfiles` files, 1% big, about 40% in subdirectories (two levels).
fn generate_stage(ctx: &Ctx, nfiles: usize, rng: &mut Rng) -> Vec<String> {
    let mut paths = Vec::with_capacity(nfiles);
    let mut published = ctx.published.lock().unwrap();
    for i in 0..nfiles {
        let rel = match i % 5 {
            0..=2 => format!("f{i:05}.dat"),
            3 => format!("d{:02}/f{i:05}.dat", i % 20),
            _ => format!("d{:02}/e{}/f{i:05}.dat", i % 20, i % 4),
        };
        let data = content(rng, i % 100 == 7);
        published.insert(
            rel.clone(),
            vec![Version {
                hash: Some(sha256(&data)),
                published: None,
            }],
        );
        let dst = ctx.stage.join(&rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::write(&dst, &data).unwrap();
        paths.push(rel);
    }
    paths
}

fn classify_fault(ctx: &Ctx, path: &str, phase: &str, e: &std::io::Error) {
    ctx.counts.faults.fetch_add(1, Relaxed);
    let name = e
        .raw_os_error()
        .map(errno_name)
        .unwrap_or_else(|| e.to_string());
    *ctx.fault_errnos
        .lock()
        .unwrap()
        .entry(format!("{phase} {name}"))
        .or_default() += 1;
    ctx.note("FAULT", format!("{phase} {path:?}: {e}"));
}

fn reader(ctx: Arc<Ctx>) {
    let mut rng = Rng::new();
    let mut buf: Vec<u8> = Vec::with_capacity(9 << 20);
    while !ctx.stopped() {
        let path = {
            let p = ctx.paths.read().unwrap();
            p[rng.below(p.len())].clone()
        };
        let full = ctx.mnt.join(&*path);
        let t0 = Instant::now();
        let mut f = match File::open(&full) {
            Ok(f) => f,
            Err(e) => {
                match e.raw_os_error() {
                    Some(libc::EACCES) => {
                        ctx.counts.denials.fetch_add(1, Relaxed);
                        if ctx.quiet(&path, t0) {
                            ctx.counts.unexpected_denials.fetch_add(1, Relaxed);
                            ctx.note(
                                "UNEXPECTED DENIAL",
                                format!("{path:?}: EACCES on a path untouched for {GRACE:?}+"),
                            );
                        }
                    }
                    Some(libc::ENOENT) => {
                        ctx.counts.absent.fetch_add(1, Relaxed);
                        if ctx.quiet(&path, t0) {
                            ctx.counts.unexpected_absent.fetch_add(1, Relaxed);
                            ctx.note("UNEXPECTED ENOENT", format!("{path:?}"));
                        }
                    }
                    _ => classify_fault(&ctx, &path, "open", &e),
                }
                continue;
            }
        };
        buf.clear();
        if let Err(e) = f.read_to_end(&mut buf) {
            classify_fault(&ctx, &path, "read", &e);
            continue;
        }
        drop(f);
        let h = sha256(&buf);
        let published = ctx.published.lock().unwrap();
        let versions = published.get(&*path).map(Vec::as_slice).unwrap_or(&[]);
        match versions.iter().position(|v| v.hash == Some(h)) {
            None => {
                let known: Vec<String> = versions
                    .iter()
                    .map(|v| {
                        v.hash
                            .map(|h| short(&h))
                            .unwrap_or_else(|| "removed".into())
                    })
                    .collect();
                drop(published);
                let n = ctx.counts.violations.fetch_add(1, Relaxed) + 1;
                let dir = ctx.work.join("violations");
                let _ = fs::create_dir_all(&dir);
                let file = dir.join(format!("{n}-{}.bin", path.replace('/', "_")));
                let _ = fs::write(&file, &buf);
                let backing_now = fs::read(ctx.backing.join(&*path))
                    .ok()
                    .map(|b| short(&sha256(&b)));
                ctx.note(
                    "VIOLATION",
                    format!(
                        "{path:?}: served {} bytes sha256 {} that were never published (published: {known:?}; backing now {backing_now:?}); bytes kept in {}",
                        buf.len(),
                        hex::encode(h),
                        file.display()
                    ),
                );
            }
            Some(i) => {
                // A later version published (or a removal) well before this open started?
                let superseded = versions[i + 1..]
                    .iter()
                    .filter_map(|v| v.published)
                    .any(|p| p + GRACE < t0);
                drop(published);
                ctx.counts.reads_ok.fetch_add(1, Relaxed);
                ctx.counts.bytes.fetch_add(buf.len() as u64, Relaxed);
                if superseded {
                    ctx.counts.stale.fetch_add(1, Relaxed);
                    ctx.note(
                        "STALE",
                        format!("{path:?}: served version {} ({}), superseded more than {GRACE:?} before the open", i + 1, short(&h)),
                    );
                }
            }
        }
    }
}

/// Copy STAGE/path onto BACKING/path (by rename or in place), or remove it if gone from STAGE.
fn restore(ctx: &Ctx, path: &str, in_place: bool) -> std::io::Result<()> {
    let dst = ctx.backing.join(path);
    match fs::read(ctx.stage.join(path)) {
        Ok(data) => {
            if in_place {
                let mut f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .create(true)
                    .open(&dst)?;
                f.write_all(&data)
            } else {
                write_rename(&ctx.tmpname("restore"), &dst, &data)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match fs::remove_file(&dst) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Err(e) => Err(e),
    }
}

fn tamper_once(ctx: &Ctx, rng: &mut Rng, path: &str) -> std::io::Result<&'static str> {
    let p = ctx.backing.join(path);
    let len = fs::metadata(&p)?.len();
    let kind = rng.below(5);
    match kind {
        0 => {
            let f = OpenOptions::new().write(true).open(&p)?;
            f.write_all_at(&rng.bytes(len as usize), 0)?;
            Ok("overwrite")
        }
        1 => {
            let f = OpenOptions::new().read(true).write(true).open(&p)?;
            let off = rng.range(0, len - 1);
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, off)?;
            b[0] ^= 1 + rng.below(255) as u8;
            f.write_all_at(&b, off)?;
            Ok("flip-one-byte")
        }
        2 => {
            OpenOptions::new()
                .write(true)
                .open(&p)?
                .set_len(rng.range(0, len - 1))?;
            Ok("truncate")
        }
        3 => {
            let mut f = OpenOptions::new().append(true).open(&p)?;
            let n = rng.range(1, 4096) as usize;
            f.write_all(&rng.bytes(n))?;
            Ok("append")
        }
        _ => {
            write_rename(&ctx.tmpname("tamper"), &p, &rng.bytes(len as usize))?;
            Ok("replace-by-rename")
        }
    }
}

fn tamperer(ctx: Arc<Ctx>) {
    let mut rng = Rng::new();
    let mut pending: Vec<(Instant, String)> = Vec::new();
    let log = |msg: String| {
        let _ = writeln!(ctx.tamper_log.lock().unwrap(), "{} {msg}", now_stamp());
    };
    let do_restore = |rng: &mut Rng, path: &str| {
        let in_place = rng.chance(0.5);
        let r = {
            let _g = ctx.backing_lock.lock().unwrap();
            restore(&ctx, path, in_place)
        };
        match r {
            Ok(()) => {
                ctx.counts.restores.fetch_add(1, Relaxed);
                log(format!(
                    "restore{} {path}",
                    if in_place { "-in-place" } else { "-rename" }
                ));
            }
            Err(e) => {
                ctx.counts.tamper_errors.fetch_add(1, Relaxed);
                log(format!("restore FAILED {path}: {e}"));
            }
        }
        let mut d = ctx.disturb.lock().unwrap();
        let d = d.entry(path.to_owned()).or_default();
        d.tampered = false;
        d.quiet_since = Some(
            d.quiet_since
                .map_or(Instant::now(), |q| q.max(Instant::now())),
        );
    };
    while !ctx.stopped() {
        thread::sleep(Duration::from_millis(rng.range(25, 75)));
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = pending.drain(..).partition(|(t, _)| *t <= now);
        pending = later;
        for (_, path) in due {
            do_restore(&mut rng, &path);
        }
        let path = {
            let live = ctx.live.lock().unwrap();
            live[rng.below(live.len())].clone()
        };
        if pending.iter().any(|(_, p)| *p == path) {
            continue;
        }
        let r = {
            let _g = ctx.backing_lock.lock().unwrap();
            // Mark first: a reader must never see tampered bytes while the path looks quiet.
            ctx.disturb
                .lock()
                .unwrap()
                .entry(path.clone())
                .or_default()
                .tampered = true;
            tamper_once(&ctx, &mut rng, &path)
        };
        match r {
            Ok(kind) => {
                ctx.counts.tampers.fetch_add(1, Relaxed);
                log(format!("tamper {kind} {path}"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The publisher removed it between the pick and the lock: nothing to restore.
                log(format!("tamper skipped {path}: removed meanwhile"));
                ctx.disturb
                    .lock()
                    .unwrap()
                    .entry(path)
                    .or_default()
                    .tampered = false;
                continue;
            }
            Err(e) => {
                ctx.counts.tamper_errors.fetch_add(1, Relaxed);
                log(format!("tamper FAILED {path}: {e}"));
            }
        }
        pending.push((
            Instant::now() + Duration::from_millis(rng.range(20, 1000)),
            path,
        ));
    }
    for (_, path) in pending {
        do_restore(&mut rng, &path);
    }
}

fn publisher(ctx: Arc<Ctx>) {
    let mut rng = Rng::new();
    let mut next = Instant::now() + PUBLISH_EVERY;
    let mut round = 0u64;
    let mut new_id = 0u64;
    loop {
        while Instant::now() < next && !ctx.stopped() {
            thread::sleep(Duration::from_millis(100));
        }
        if ctx.stopped() {
            break;
        }
        // Every PUBLISH_EVERY, or right after the previous round if `repo add` took longer (no
        // backlog of rounds is made up).
        next = (next + PUBLISH_EVERY).max(Instant::now());
        round += 1;
        ctx.round_starts.lock().unwrap().push(Instant::now());
        let live = ctx.live.lock().unwrap().clone();
        let mut chosen: HashSet<String> = HashSet::new();
        let k = (live.len() / 20).max(1);
        while chosen.len() < k {
            chosen.insert(live[rng.below(live.len())].clone());
        }
        let mut removed = Vec::new();
        if rng.chance(0.3) {
            for _ in 0..rng.range(1, 2) {
                let p = live[rng.below(live.len())].clone();
                if !chosen.contains(&p) && !removed.contains(&p) {
                    removed.push(p);
                }
            }
        }
        let mut added = Vec::new();
        if rng.chance(0.3) {
            for _ in 0..rng.range(1, 3) {
                new_id += 1;
                added.push(format!("d{:02}/new/n{new_id:05}.dat", rng.below(20)));
            }
        }
        // New content: hashes recorded BEFORE anything is written or signed.
        let mut changes: Vec<(String, Vec<u8>)> = Vec::new();
        for p in chosen.iter().chain(added.iter()) {
            let big = fs::metadata(ctx.stage.join(p))
                .map(|m| m.len() > 1 << 20)
                .unwrap_or(rng.chance(0.01));
            changes.push((p.clone(), content(&mut rng, big)));
        }
        {
            let mut published = ctx.published.lock().unwrap();
            let mut disturb = ctx.disturb.lock().unwrap();
            for (p, data) in &changes {
                published.entry(p.clone()).or_default().push(Version {
                    hash: Some(sha256(data)),
                    published: None,
                });
                disturb.entry(p.clone()).or_default().publishing = true;
            }
            for p in &removed {
                disturb.entry(p.clone()).or_default().removed = true;
            }
        }
        for (p, data) in &changes {
            write_rename(&ctx.tmpname("stage"), &ctx.stage.join(p), data).expect("write STAGE");
        }
        for p in &removed {
            fs::remove_file(ctx.stage.join(p)).expect("remove from STAGE");
        }
        let t = Instant::now();
        let result = repo_add(&ctx);
        let secs = t.elapsed().as_secs_f64();
        ctx.add_seconds.lock().unwrap().push(secs);
        let done = Instant::now();
        {
            let mut log = ctx.publish_log.lock().unwrap();
            let _ = writeln!(
                log,
                "{} round {round}: {} changed, {} added, {} removed; repo add {secs:.2} s: {}",
                now_stamp(),
                chosen.len(),
                added.len(),
                removed.len(),
                match &result {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("FAILED {e}"),
                }
            );
        }
        match &result {
            Ok(_) => {
                ctx.counts.publishes.fetch_add(1, Relaxed);
                let mut published = ctx.published.lock().unwrap();
                for (p, data) in &changes {
                    let h = sha256(data);
                    if let Some(v) = published
                        .get_mut(p)
                        .and_then(|v| v.iter_mut().rev().find(|v| v.hash == Some(h)))
                    {
                        v.published = Some(done);
                    }
                }
                for p in &removed {
                    published.entry(p.clone()).or_default().push(Version {
                        hash: None,
                        published: Some(done),
                    });
                }
            }
            Err(e) => {
                ctx.counts.publish_failures.fetch_add(1, Relaxed);
                ctx.note("PUBLISH FAILED", e.clone());
            }
        }
        // Deploy: the changed files into BACKING (temp + rename, like rsync), removed ones out.
        for (p, data) in &changes {
            let _g = ctx.backing_lock.lock().unwrap();
            write_rename(&ctx.tmpname("deploy"), &ctx.backing.join(p), data).expect("deploy");
        }
        {
            let mut live = ctx.live.lock().unwrap();
            live.retain(|p| !removed.contains(p));
            live.extend(added.iter().cloned());
        }
        for p in &removed {
            let _g = ctx.backing_lock.lock().unwrap();
            let _ = fs::remove_file(ctx.backing.join(p));
        }
        ctx.paths
            .write()
            .unwrap()
            .extend(added.iter().map(|p| Arc::from(p.as_str())));
        let quiet = Instant::now() + GRACE;
        let mut disturb = ctx.disturb.lock().unwrap();
        for (p, _) in &changes {
            let d = disturb.entry(p.clone()).or_default();
            d.publishing = false;
            d.quiet_since = Some(d.quiet_since.map_or(quiet, |q| q.max(quiet)));
        }
    }
}

/// One sampler row, for the summary (the CSV has every column).
struct Sample {
    t: f64,
    /// VmRSS (KiB), /proc/PID/fd entries, then table sizes and cache bytes from /metrics.
    values: [f64; SERIES.len()],
}

/// What the summary compares between the first and the last minute: (name, unit divisor, unit).
const SERIES: [(&str, f64, &str); 6] = [
    ("RSS (VmRSS)", 1024.0, "MiB"),
    ("open fds", 1.0, ""),
    ("table inodes", 1.0, ""),
    ("table records", 1.0, ""),
    ("table objects", 1.0, ""),
    ("cache bytes", 1048576.0, "MiB"),
];

fn proc_rss_kb(pid: u32) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let l = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

fn proc_fds(pid: u32) -> Option<f64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as f64)
}

const TABLES: [&str; 9] = [
    "inodes",
    "records",
    "gates",
    "handles",
    "dir_handles",
    "listings",
    "listing_entries",
    "read_fds",
    "objects",
];

fn sampler(ctx: Arc<Ctx>, pid: u32, port: u16, start: Instant, samples: Arc<Mutex<Vec<Sample>>>) {
    let mut csv = File::create(ctx.work.join("samples.csv")).unwrap();
    let mut header = "elapsed_s,vmrss_kb,fds,metrics_rss_bytes,metrics_open_fds".to_owned();
    for t in TABLES {
        let _ = write!(header, ",table_{t}");
    }
    header.push_str(",targets,switches,refresh_failures,opens,served,denials_total,faults_total,cache_bytes,client_reads_ok,client_denials,client_faults,client_violations");
    writeln!(csv, "{header}").unwrap();
    let mut next = Instant::now();
    while !ctx.stopped() {
        if Instant::now() < next {
            thread::sleep(Duration::from_millis(100));
            continue;
        }
        next += SAMPLE_EVERY;
        let t = start.elapsed().as_secs_f64();
        let rss = proc_rss_kb(pid).unwrap_or(f64::NAN);
        let fds = proc_fds(pid).unwrap_or(f64::NAN);
        let m = scrape(port).unwrap_or_default();
        let mut row = format!(
            "{t:.1},{rss},{fds},{},{}",
            get(&m, "process_resident_memory_bytes"),
            get(&m, "process_open_fds")
        );
        for tb in TABLES {
            let _ = write!(
                row,
                ",{}",
                get(&m, &format!("trustfs_table_entries{{table=\"{tb}\"}}"))
            );
        }
        let c = &ctx.counts;
        let _ = write!(
            row,
            ",{},{},{},{},{},{},{},{},{},{},{},{}",
            get(&m, "trustfs_targets"),
            get(&m, "trustfs_metadata_switches_total"),
            get(&m, "trustfs_refresh_failures_total"),
            get(&m, "trustfs_opens_total"),
            get(&m, "trustfs_served_total"),
            family(&m, "trustfs_denials_total"),
            family(&m, "trustfs_faults_total"),
            get(&m, "trustfs_cache_bytes"),
            c.reads_ok.load(Relaxed),
            c.denials.load(Relaxed),
            c.faults.load(Relaxed),
            c.violations.load(Relaxed),
        );
        writeln!(csv, "{row}").unwrap();
        samples.lock().unwrap().push(Sample {
            t,
            values: [
                rss,
                fds,
                get(&m, "trustfs_table_entries{table=\"inodes\"}"),
                get(&m, "trustfs_table_entries{table=\"records\"}"),
                get(&m, "trustfs_table_entries{table=\"objects\"}"),
                get(&m, "trustfs_cache_bytes"),
            ],
        });
    }
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn soak(args: &[String]) -> i32 {
    let bin = PathBuf::from(arg_value(args, "--trustfs").expect("--trustfs BIN"));
    let work = PathBuf::from(arg_value(args, "--work").expect("--work DIR"));
    let minutes: f64 = arg_value(args, "--minutes").map_or(10.0, |v| v.parse().expect("--minutes"));
    let nfiles: usize = arg_value(args, "--files").map_or(2000, |v| v.parse().expect("--files"));
    let nreaders: usize = arg_value(args, "--readers").map_or(8, |v| v.parse().expect("--readers"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for d in ["keys", "stage", "backing", "mnt", "state", "tmp"] {
        fs::create_dir_all(work.join(d)).unwrap();
    }
    let open_log = |name: &str| File::create(work.join(name)).unwrap();
    let ctx = Arc::new(Ctx {
        bin: bin.clone(),
        repo: work.join("repo"),
        keys: work.join("keys"),
        stage: work.join("stage"),
        backing: work.join("backing"),
        mnt: work.join("mnt"),
        tmp: work.join("tmp"),
        stop: AtomicBool::new(false),
        paths: RwLock::new(Vec::new()),
        live: Mutex::new(Vec::new()),
        published: Mutex::new(HashMap::new()),
        disturb: Mutex::new(HashMap::new()),
        backing_lock: Mutex::new(()),
        counts: Counts::default(),
        fault_errnos: Mutex::new(BTreeMap::new()),
        evidence: Mutex::new(Vec::new()),
        tamper_log: Mutex::new(open_log("tamper.log")),
        publish_log: Mutex::new(open_log("publish.log")),
        add_seconds: Mutex::new(Vec::new()),
        round_starts: Mutex::new(Vec::new()),
        seq: AtomicU64::new(0),
        work: work.clone(),
    });

    // --- Setup: repository, STAGE, first publish, BACKING.
    let mut rng = Rng::new();
    let t = Instant::now();
    let paths = generate_stage(&ctx, nfiles, &mut rng);
    let stage_bytes: u64 = paths
        .iter()
        .map(|p| fs::metadata(ctx.stage.join(p)).unwrap().len())
        .sum();
    eprintln!(
        "soak: {} files, {:.1} MiB in STAGE ({:.1} s)",
        paths.len(),
        stage_bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );
    run_trustfs(
        &ctx,
        &[
            "repo".as_ref(),
            "init".as_ref(),
            ctx.repo.as_os_str(),
            "--keys".as_ref(),
            ctx.keys.as_os_str(),
        ],
    )
    .expect("trustfs repo init");
    let t = Instant::now();
    repo_add(&ctx).expect("trustfs repo add");
    eprintln!("soak: first repo add {:.1} s", t.elapsed().as_secs_f64());
    let now = Instant::now();
    for v in ctx.published.lock().unwrap().values_mut() {
        v[0].published = Some(now);
    }
    for p in &paths {
        let dst = ctx.backing.join(p);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(ctx.stage.join(p), dst).unwrap();
    }
    *ctx.paths.write().unwrap() = paths.iter().map(|p| Arc::from(p.as_str())).collect();
    *ctx.live.lock().unwrap() = paths.clone();

    // --- Mount.
    let daemon_log = open_log("daemon.log");
    let mut child: Child = Command::new(&bin)
        .arg("mount")
        .arg("--root")
        .arg(ctx.repo.join("metadata/1.root.json"))
        .arg("--metadata")
        .arg(ctx.repo.join("metadata"))
        .arg("--backing")
        .arg(&ctx.backing)
        .args(["--refresh-interval", "1s"])
        .arg("--state-dir")
        .arg(work.join("state"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--audit-log")
        .arg(work.join("audit.jsonl"))
        .arg(&ctx.mnt)
        .stdin(Stdio::null())
        .stdout(daemon_log.try_clone().unwrap())
        .stderr(daemon_log)
        .spawn()
        .expect("spawn trustfs mount");
    let pid = child.id();
    fs::write(work.join("daemon.pid"), format!("{pid}\n")).unwrap();
    let t = Instant::now();
    while !(is_fuse(&ctx.mnt) && scrape(port).is_some()) {
        if let Ok(Some(st)) = child.try_wait() {
            eprintln!(
                "soak: trustfs mount exited early: {st}; see {}",
                work.join("daemon.log").display()
            );
            return 1;
        }
        if t.elapsed() > Duration::from_secs(60) {
            eprintln!("soak: mount or metrics did not come up in 60 s");
            let _ = child.kill();
            return 1;
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("soak: mounted (pid {pid}, metrics on 127.0.0.1:{port}); running {minutes} min");

    // --- Run.
    let start = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..nreaders {
        let c = ctx.clone();
        threads.push(thread::spawn(move || reader(c)));
    }
    let c = ctx.clone();
    threads.push(thread::spawn(move || tamperer(c)));
    let c = ctx.clone();
    threads.push(thread::spawn(move || publisher(c)));
    let (c, s) = (ctx.clone(), samples.clone());
    let sampler_t = thread::spawn(move || sampler(c, pid, port, start, s));
    let total = Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = Duration::from_secs(60);
    while start.elapsed() < total {
        thread::sleep(Duration::from_millis(200));
        if let Ok(Some(st)) = child.try_wait() {
            ctx.note(
                "DAEMON EXITED",
                format!("trustfs mount exited during the soak: {st}"),
            );
            break;
        }
        if start.elapsed() >= next_report {
            next_report += Duration::from_secs(60);
            let c = &ctx.counts;
            eprintln!(
                "soak: {:>4.1} min: {} reads ok, {} denials, {} absent, {} faults, {} violations, {} stale; rss {:.0} KiB, {} fds",
                start.elapsed().as_secs_f64() / 60.0,
                c.reads_ok.load(Relaxed),
                c.denials.load(Relaxed),
                c.absent.load(Relaxed),
                c.faults.load(Relaxed),
                c.violations.load(Relaxed),
                c.stale.load(Relaxed),
                proc_rss_kb(pid).unwrap_or(f64::NAN),
                proc_fds(pid).unwrap_or(f64::NAN),
            );
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    ctx.stop.store(true, Relaxed);
    for t in threads {
        t.join().expect("worker thread panicked");
    }
    sampler_t.join().unwrap();

    // --- Final sweep: everything restored and deployed; after GRACE every live file must read
    // back as its current version.
    thread::sleep(GRACE);
    let mut sweep_bad = Vec::new();
    let live = ctx.live.lock().unwrap().clone();
    for p in &live {
        let want = sha256(&fs::read(ctx.stage.join(p)).unwrap());
        match fs::read(ctx.mnt.join(p)) {
            Ok(b) if sha256(&b) == want => {}
            Ok(b) => sweep_bad.push(format!(
                "{p}: served {} , current {}",
                short(&sha256(&b)),
                short(&want)
            )),
            Err(e) => sweep_bad.push(format!("{p}: {e}")),
        }
    }
    let metrics = scrape(port).unwrap_or_default();
    let end_rss = proc_rss_kb(pid);
    let end_fds = proc_fds(pid);

    // --- Stop the daemon.
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            _ if t.elapsed() > Duration::from_secs(30) => break None,
            _ => thread::sleep(Duration::from_millis(50)),
        }
    };
    let stop_secs = t.elapsed().as_secs_f64();
    let still_mounted = mounted(&ctx.mnt);
    let _ = fs::remove_file(work.join("daemon.pid"));

    // --- Summary.
    let samples = samples.lock().unwrap();
    let series = series_report(&samples);
    let (rss_flat, fd_flat) = (series[0].1, series[1].1);

    let c = &ctx.counts;
    let (reads, bytes) = (c.reads_ok.load(Relaxed), c.bytes.load(Relaxed));
    let violations = c.violations.load(Relaxed);
    let stale = c.stale.load(Relaxed);
    let adds = ctx.add_seconds.lock().unwrap().clone();
    let intervals: Vec<f64> = ctx
        .round_starts
        .lock()
        .unwrap()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "=== trustfs soak summary ({:.1} min, {nreaders} readers, {} files at start) ===",
        elapsed / 60.0,
        nfiles
    );
    let _ = writeln!(
        out,
        "reads ok        {reads} ({:.0}/s), {:.2} GiB ({:.1} MiB/s)",
        reads as f64 / elapsed,
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / (1 << 20) as f64 / elapsed
    );
    let _ = writeln!(
        out,
        "denials         {} (EACCES; unexpected: {} on untouched paths)",
        c.denials.load(Relaxed),
        c.unexpected_denials.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "absent          {} (ENOENT, removed targets; unexpected: {})",
        c.absent.load(Relaxed),
        c.unexpected_absent.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "faults          {} {:?}",
        c.faults.load(Relaxed),
        ctx.fault_errnos.lock().unwrap()
    );
    let _ = writeln!(
        out,
        "VIOLATIONS      {violations}{}",
        if violations > 0 {
            "   <<<<< TAMPERED BYTES WERE SERVED, see violations/ >>>>>"
        } else {
            " (must be 0)"
        }
    );
    let _ = writeln!(
        out,
        "stale reads     {stale} (a version superseded > {GRACE:?} before the open was served)"
    );
    let _ = writeln!(
        out,
        "final sweep     {} of {} live files not served as their current version",
        sweep_bad.len(),
        live.len()
    );
    let _ = writeln!(
        out,
        "tamperer        {} tampers, {} restores, {} errors",
        c.tampers.load(Relaxed),
        c.restores.load(Relaxed),
        c.tamper_errors.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "publisher       {} repo adds ok, {} failed; repo add median {:.2} s, max {:.2} s; a round every {:.1} s (median; target {PUBLISH_EVERY:?})",
        c.publishes.load(Relaxed),
        c.publish_failures.load(Relaxed),
        median(&adds),
        adds.iter().copied().fold(f64::NAN, f64::max),
        median(&intervals),
    );
    let _ = writeln!(
        out,
        "daemon metrics  switches {}, refresh failures {}, opens {}, served {}, denials {}, faults {}, targets {}",
        get(&metrics, "trustfs_metadata_switches_total"),
        get(&metrics, "trustfs_refresh_failures_total"),
        get(&metrics, "trustfs_opens_total"),
        get(&metrics, "trustfs_served_total"),
        family(&metrics, "trustfs_denials_total"),
        family(&metrics, "trustfs_faults_total"),
        get(&metrics, "trustfs_targets"),
    );
    let mut reasons: Vec<String> = metrics
        .iter()
        .filter(|(k, v)| {
            (k.starts_with("trustfs_denials_total{") || k.starts_with("trustfs_faults_total{"))
                && **v > 0.0
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    reasons.sort();
    let _ = writeln!(out, "                by label: {}", reasons.join(" "));
    let mut tables: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "{t}={}",
                get(&metrics, &format!("trustfs_table_entries{{table=\"{t}\"}}"))
            )
        })
        .collect();
    tables.push(format!(
        "cache_bytes={}",
        get(&metrics, "trustfs_cache_bytes")
    ));
    let _ = writeln!(out, "tables at end   {}", tables.join(" "));
    for (line, _) in &series {
        out.push_str(line);
    }
    let _ = writeln!(
        out,
        "at the end      RSS {:.1} MiB, {} fds (after the readers stopped and the final sweep)",
        end_rss.unwrap_or(f64::NAN) / 1024.0,
        end_fds.unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        out,
        "                (first/last: medians of the first and the last minute; slope: least squares over\n                 the samples after the first minute; RSS flat if last <= 1.05 x first + 1 MiB, fds flat\n                 if last <= first + 2; {} samples, every {SAMPLE_EVERY:?})",
        samples.len()
    );
    let exit_ok = status.is_some_and(|s| s.success());
    let _ = writeln!(
        out,
        "SIGTERM         {} after {stop_secs:.2} s; {}",
        match status {
            Some(s) => format!("exited {s}"),
            None => "DID NOT EXIT within 30 s".into(),
        },
        if still_mounted {
            "STILL MOUNTED"
        } else {
            "unmounted"
        }
    );
    out.push_str(&daemon_log_summary(&work.join("daemon.log")));
    out.push_str(&audit_summary(
        &work.join("audit.jsonl"),
        family(&metrics, "trustfs_denials_total"),
    ));
    let ev = ctx.evidence.lock().unwrap();
    if !ev.is_empty() || !sweep_bad.is_empty() {
        let _ = writeln!(
            out,
            "evidence (first {} of the client's notes):",
            ev.len().min(30)
        );
        for l in ev.iter().take(30) {
            let _ = writeln!(out, "  {l}");
        }
        for l in sweep_bad.iter().take(20) {
            let _ = writeln!(out, "  sweep: {l}");
        }
    }
    let _ = writeln!(
        out,
        "files: {}/{{samples.csv,daemon.log,audit.jsonl,tamper.log,publish.log}}",
        work.display()
    );
    let mut warn = Vec::new();
    if !rss_flat {
        warn.push("the daemon's RSS grew");
    }
    if !fd_flat {
        warn.push("the daemon's fd count grew");
    }
    if c.faults.load(Relaxed) > 0 || family(&metrics, "trustfs_faults_total") > 0.0 {
        warn.push("faults (EIO/ENOSPC/EMFILE/other) during the soak");
    }
    if c.unexpected_denials.load(Relaxed) + c.unexpected_absent.load(Relaxed) > 0 {
        warn.push("denials or ENOENT on paths nobody touched");
    }
    if c.publish_failures.load(Relaxed) > 0 || get(&metrics, "trustfs_refresh_failures_total") > 0.0
    {
        warn.push("failed publishes or refreshes");
    }
    for w in &warn {
        let _ = writeln!(out, "WARNING: {w}");
    }
    print!("{out}");
    let _ = fs::write(work.join("summary.txt"), &out);
    let failed = violations > 0 || stale > 0 || !sweep_bad.is_empty() || !exit_ok || still_mounted;
    i32::from(failed)
}

/// Per series: a summary line (first- vs last-minute median, max, slope) and, for RSS and fds,
/// whether it is flat.
fn series_report(samples: &[Sample]) -> Vec<(String, bool)> {
    let last_t = samples.last().map_or(0.0, |s| s.t);
    let mut out = Vec::new();
    for (k, (name, div, unit)) in SERIES.iter().enumerate() {
        let pick = |keep: &dyn Fn(f64) -> bool| -> Vec<(f64, f64)> {
            samples
                .iter()
                .filter(|s| keep(s.t) && s.values[k].is_finite())
                .map(|s| (s.t / 60.0, s.values[k] / div))
                .collect()
        };
        let vals = |v: &[(f64, f64)]| v.iter().map(|p| p.1).collect::<Vec<_>>();
        let first = median(&vals(&pick(&|t| t <= 60.0)));
        let last = median(&vals(&pick(&|t| t >= last_t - 60.0)));
        let all = pick(&|_| true);
        let max = all.iter().map(|p| p.1).fold(f64::NAN, f64::max);
        // Least-squares slope per minute, after the warm-up minute.
        let tail = pick(&|t| t > 60.0);
        let n = tail.len() as f64;
        let (mx, my) = (
            tail.iter().map(|p| p.0).sum::<f64>() / n,
            tail.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxy: f64 = tail.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = tail.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let slope = sxy / sxx; // NaN with fewer than two samples after the first minute
        let flat = match k {
            0 => last <= first * 1.05 + 1.0,
            1 => last <= first + 2.0,
            _ => true,
        };
        let verdict = match k {
            0 | 1 if flat => " -> flat".to_owned(),
            0 | 1 => format!(" -> GROWING (+{:.1}%)", (last / first - 1.0) * 100.0),
            _ => String::new(),
        };
        let slope = if slope.is_finite() {
            format!("{slope:+.2}{unit}/min")
        } else {
            "n/a (run too short)".to_owned()
        };
        out.push((
            format!(
                "{name:<15} first {first:.1}{unit}, last {last:.1}{unit}, max {max:.1}{unit}, slope {slope}{verdict}\n"
            ),
            flat,
        ));
    }
    out
}

/// Lines of the daemon log by kind (`DENY open`, `ERROR open`, `metadata updated`, ...), with
/// the first lines of every kind that is neither a denial nor a metadata switch.
fn daemon_log_summary(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut kinds: BTreeMap<String, (u64, Vec<&str>)> = BTreeMap::new();
    for l in text.lines() {
        let msg = l.split_once(" trustfs: ").map_or(l, |(_, m)| m);
        let kind: String = msg
            .split([':', '"'])
            .next()
            .unwrap_or("")
            .chars()
            .take(40)
            .collect();
        let e = kinds.entry(kind.trim().to_owned()).or_default();
        e.0 += 1;
        if e.1.len() < 3 {
            e.1.push(l);
        }
    }
    let mut out = format!("daemon log      {} lines, by kind:\n", text.lines().count());
    for (k, (n, first)) in &kinds {
        let _ = writeln!(out, "  {n:>8}  {k}");
        if !k.starts_with("DENY open") && !k.starts_with("metadata updated") {
            for l in first {
                let _ = writeln!(
                    out,
                    "            | {}",
                    l.chars().take(300).collect::<String>()
                );
            }
        }
    }
    out
}

/// Audit lines by event and reason, and how many denials the audit log accounts for: each `deny`
/// line stands for itself plus the `repeats_not_logged` it reports (repeats are logged once a
/// window); compared with the daemon's denial counter.
fn audit_summary(path: &Path, denials_counted: f64) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let (mut bad, mut deny_lines, mut repeats) = (0, 0u64, 0u64);
    for l in text.lines() {
        match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => {
                let ev = v["event"].as_str().unwrap_or("?");
                let r = v["reason"].as_str().or(v["kind"].as_str()).unwrap_or("");
                *by.entry(format!("{ev}{}{r}", if r.is_empty() { "" } else { "/" }))
                    .or_default() += 1;
                if ev == "deny" {
                    deny_lines += 1;
                    repeats += v["repeats_not_logged"].as_u64().unwrap_or(0);
                }
            }
            Err(_) => bad += 1,
        }
    }
    format!(
        "audit log       {} lines ({bad} unparsable): {by:?}\n                denials accounted for: {deny_lines} deny lines + {repeats} repeats_not_logged = {} of {denials_counted} counted by the daemon\n",
        text.lines().count(),
        deny_lines + repeats
    )
}

// ---------------------------------------------------------------------------------------------
// Open latency

struct LatRun {
    /// Successful operations.
    ops: usize,
    /// Failed operations by "open|read ERRNO".
    errors: BTreeMap<String, u64>,
    open: [f64; 3],
    total: [f64; 3],
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0 // µs
}

/// `threads` threads, `secs` seconds of open+read+close of random files among `files`. Failed
/// operations are counted by errno and left out of the latencies.
fn lat_run(files: &Arc<Vec<CString>>, threads: usize, secs: f64) -> LatRun {
    let barrier = Arc::new(Barrier::new(threads));
    let mut hs = Vec::new();
    for _ in 0..threads {
        let (files, barrier) = (files.clone(), barrier.clone());
        hs.push(thread::spawn(move || {
            let mut rng = Rng::new();
            let mut open_ns: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut total_ns: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut buf = [0u8; 8192];
            let ns = |d: Duration| d.as_nanos().min(u128::from(u32::MAX)) as u32;
            barrier.wait();
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            loop {
                let f = &files[rng.below(files.len())];
                let t0 = Instant::now();
                // SAFETY: a valid C path; the fd is closed below.
                let fd = unsafe { libc::open(f.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                let t1 = Instant::now();
                let mut failed = None;
                if fd < 0 {
                    failed = Some(format!(
                        "open {}",
                        errno_name(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
                    ));
                } else {
                    loop {
                        // SAFETY: `buf` is writable for its length.
                        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                        if n < 0 {
                            failed = Some(format!(
                                "read {}",
                                errno_name(
                                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                                )
                            ));
                        }
                        if n <= 0 {
                            break;
                        }
                    }
                    // SAFETY: `fd` is ours.
                    unsafe { libc::close(fd) };
                }
                let t2 = Instant::now();
                match failed {
                    Some(e) => *errors.entry(e).or_default() += 1,
                    None => {
                        open_ns.push(ns(t1 - t0));
                        total_ns.push(ns(t2 - t0));
                    }
                }
                if t2 >= deadline {
                    break;
                }
            }
            (open_ns, total_ns, errors)
        }));
    }
    let mut open = Vec::new();
    let mut total = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for h in hs {
        let (o, t, e) = h.join().unwrap();
        open.extend(o);
        total.extend(t);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
    }
    open.sort_unstable();
    total.sort_unstable();
    let ps = [0.50, 0.99, 0.999];
    LatRun {
        ops: open.len(),
        errors,
        open: ps.map(|p| pct(&open, p)),
        total: ps.map(|p| pct(&total, p)),
    }
}

fn latency(args: &[String]) -> i32 {
    let secs: f64 = arg_value(args, "--secs").map_or(30.0, |v| v.parse().expect("--secs"));
    let threads: usize = arg_value(args, "--threads").map_or(64, |v| v.parse().expect("--threads"));
    let reps: usize = arg_value(args, "--reps").map_or(3, |v| v.parse().expect("--reps"));
    let n: usize = arg_value(args, "--files")
        .expect("--files N")
        .parse()
        .expect("--files");
    let targets: Vec<(String, PathBuf)> = args
        .iter()
        .filter_map(|a| {
            a.split_once('=')
                .map(|(l, d)| (l.to_owned(), PathBuf::from(d)))
        })
        .collect();
    assert!(!targets.is_empty(), "give LABEL=DIR ...");
    let lists: Vec<Arc<Vec<CString>>> = targets
        .iter()
        .map(|(_, d)| {
            Arc::new(
                (0..n)
                    .map(|i| {
                        CString::new(d.join(format!("small/{i}")).as_os_str().as_bytes()).unwrap()
                    })
                    .collect(),
            )
        })
        .collect();
    // Warm-up: every file read once (for trustfs: every file verified), 8 threads.
    for ((label, _), files) in targets.iter().zip(&lists) {
        let t = Instant::now();
        let errors = AtomicU64::new(0);
        thread::scope(|s| {
            for k in 0..8 {
                let (files, errors) = (files.clone(), &errors);
                s.spawn(move || {
                    for f in files.iter().skip(k).step_by(8) {
                        let p = Path::new(std::ffi::OsStr::from_bytes(f.as_bytes()));
                        if fs::read(p).ok().map(|b| b.len()) != Some(4096) {
                            errors.fetch_add(1, Relaxed);
                        }
                    }
                });
            }
        });
        eprintln!(
            "latency: warm-up {label}: {n} files in {:.2} s, {} errors",
            t.elapsed().as_secs_f64(),
            errors.load(Relaxed)
        );
    }
    let mut results: Vec<Vec<LatRun>> = targets.iter().map(|_| Vec::new()).collect();
    println!("{threads} threads x {secs} s of open+read+close of random 4 KiB files (of {n}), latencies in µs");
    println!(
        "{:<10} {:>3} {:>9} {:>6}  {:>8} {:>8} {:>9}  {:>8} {:>8} {:>9}",
        "target", "rep", "ops/s", "errors", "open p50", "p99", "p99.9", "orc p50", "p99", "p99.9"
    );
    for rep in 1..=reps {
        for (i, ((label, _), files)) in targets.iter().zip(&lists).enumerate() {
            let r = lat_run(files, threads, secs);
            println!(
                "{label:<10} {rep:>3} {:>9.0} {:>6}  {:>8.1} {:>8.1} {:>9.1}  {:>8.1} {:>8.1} {:>9.1}",
                r.ops as f64 / secs,
                r.errors.values().sum::<u64>(),
                r.open[0],
                r.open[1],
                r.open[2],
                r.total[0],
                r.total[1],
                r.total[2]
            );
            if !r.errors.is_empty() {
                println!("{:<10}     errors: {:?}", "", r.errors);
            }
            results[i].push(r);
        }
    }
    let med =
        |rs: &[LatRun], f: &dyn Fn(&LatRun) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
    println!("\nmedians over {reps} reps (µs; orc = open+read+close)");
    let mut meds: Vec<[f64; 7]> = Vec::new();
    for ((label, _), rs) in targets.iter().zip(&results) {
        let m = [
            med(rs, &|r| r.ops as f64 / secs),
            med(rs, &|r| r.open[0]),
            med(rs, &|r| r.open[1]),
            med(rs, &|r| r.open[2]),
            med(rs, &|r| r.total[0]),
            med(rs, &|r| r.total[1]),
            med(rs, &|r| r.total[2]),
        ];
        println!(
            "{label:<10} ops/s {:>8.0}  open p50 {:>8.1} p99 {:>8.1} p99.9 {:>9.1}  orc p50 {:>8.1} p99 {:>8.1} p99.9 {:>9.1}",
            m[0], m[1], m[2], m[3], m[4], m[5], m[6]
        );
        meds.push(m);
    }
    let first = &targets[0].0;
    for ((label, _), m) in targets.iter().zip(&meds).skip(1) {
        let r = |k: usize| meds[0][k] / m[k];
        println!(
            "ratio {first}/{label:<10} open p50 {:>5.2} p99 {:>5.2} p99.9 {:>5.2}   orc p50 {:>5.2} p99 {:>5.2} p99.9 {:>5.2}   throughput {:>5.2}",
            r(1), r(2), r(3), r(4), r(5), r(6), r(0)
        );
    }
    0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("soak") => soak(&args[2..]),
        Some("latency") => latency(&args[2..]),
        _ => {
            eprintln!("usage: trustfs_soak soak --trustfs BIN --work DIR [--minutes M] [--files N] [--readers R]\n       trustfs_soak latency [--secs S] [--threads T] [--reps N] --files N LABEL=DIR ...");
            64
        }
    };
    std::process::exit(code);
}
