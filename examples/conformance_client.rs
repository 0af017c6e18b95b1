//! A client for the TUF conformance suite (theupdateframework/tuf-conformance, `CLIENT-CLI.md`),
//! built on trustfs's own client code: the same `trust::Client` the mounts and `trustfs verify`
//! use, so the suite tests what trustfs trusts.
//!
//! ```text
//! cargo build --release --example conformance_client
//! conformance_client --metadata-dir DIR init ROOT
//! conformance_client --metadata-dir DIR --metadata-url URL refresh
//! conformance_client --metadata-dir DIR --metadata-url URL --target-name PATH [--target-name PATH ...]
//!                    --target-base-url URL --target-dir DIR download
//! ```
//! Flags may come before or after the command. Exit 0 on success, 1 on any failure.
//! Metadata in DIR uses plain names (`root.json`, `timestamp.json`, `<role>.json`).
//! Downloaded artifacts are stored as `TARGET_DIR/<percent-encoded target path>` and reused when
//! they still match the trusted hashes.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use trustfs::hashing::check_reader;
use trustfs::schema::UtcTime;
use trustfs::trust::{quote, Client, Fetcher, HttpFetcher, Limits, TrustError, TrustErrorKind};

#[derive(Parser)]
#[command(about = "TUF conformance suite client built on trustfs")]
struct Cli {
    #[arg(long, global = true)]
    metadata_dir: Option<PathBuf>,
    #[arg(long, global = true)]
    metadata_url: Option<String>,
    #[arg(long, global = true)]
    target_name: Vec<String>,
    #[arg(long, global = true)]
    target_base_url: Option<String>,
    #[arg(long, global = true)]
    target_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Store the trusted root in the metadata dir.
    Init { trusted_root: PathBuf },
    /// Update top-level metadata.
    Refresh,
    /// Refresh, then download and verify each --target-name.
    Download,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance_client: {e}");
            ExitCode::from(1)
        }
    }
}

fn required<'a, T>(v: &'a Option<T>, flag: &str) -> Result<&'a T, String> {
    v.as_ref().ok_or_else(|| format!("{flag} is required"))
}

fn run(cli: Cli) -> Result<(), String> {
    let dir = required(&cli.metadata_dir, "--metadata-dir")?;
    match &cli.command {
        Cmd::Init { trusted_root } => {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            fs::copy(trusted_root, dir.join("root.json"))
                .map_err(|e| format!("{}: {e}", trusted_root.display()))?;
            Ok(())
        }
        Cmd::Refresh => {
            let mut client = client(dir, required(&cli.metadata_url, "--metadata-url")?)?;
            client.refresh().map_err(|e| e.to_string())
        }
        Cmd::Download => {
            let mut client = client(dir, required(&cli.metadata_url, "--metadata-url")?)?;
            let base = HttpFetcher::new(required(&cli.target_base_url, "--target-base-url")?)?;
            let target_dir = required(&cli.target_dir, "--target-dir")?;
            if cli.target_name.is_empty() {
                return Err("--target-name is required".into());
            }
            client.refresh().map_err(|e| e.to_string())?;
            for name in &cli.target_name {
                download(&mut client, &base, target_dir, name)
                    .map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
    }
}

fn client(dir: &Path, url: &str) -> Result<Client, String> {
    let root_path = dir.join("root.json");
    let root = fs::read(&root_path).map_err(|e| format!("{}: {e}", root_path.display()))?;
    let fetcher = HttpFetcher::new(url)?;
    Client::new(
        &root,
        "root.json",
        Box::new(fetcher),
        Some(dir),
        UtcTime::now(),
        Limits::default(),
    )
    .map_err(|e| e.to_string())
}

fn download(
    client: &mut Client,
    base: &HttpFetcher,
    target_dir: &Path,
    name: &str,
) -> Result<(), TrustError> {
    let found = client.find_target(name)?.ok_or_else(|| {
        TrustError::new(TrustErrorKind::Missing, "no trusted role lists this target")
    })?;
    let dest = target_dir.join(quote(name));
    // Artifact cache: a file already downloaded that still matches the trusted hashes is kept.
    if let Ok(f) = fs::File::open(&dest) {
        if check_reader(f, &found.info).is_ok() {
            return Ok(());
        }
    }
    let remote = if client.consistent_snapshot() {
        let (dir, base_name) = match name.rsplit_once('/') {
            Some((d, b)) => (format!("{d}/"), b),
            None => (String::new(), name),
        };
        let hash =
            found.file.hashes.values().next().ok_or_else(|| {
                TrustError::new(TrustErrorKind::Malformed, "target lists no hashes")
            })?;
        format!("{dir}{hash}.{base_name}")
    } else {
        name.to_owned()
    };
    let bytes = base.fetch(&remote, found.info.length)?.ok_or_else(|| {
        TrustError::new(
            TrustErrorKind::Missing,
            format!("{} not found", base.url(&remote)),
        )
    })?;
    check_reader(&bytes[..], &found.info).map_err(|e| {
        TrustError::new(TrustErrorKind::Mismatch, format!("downloaded content: {e}"))
    })?;
    let tmp = target_dir.join(format!(".{}.part", quote(name)));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &dest)
    };
    write()
        .map_err(|e| TrustError::new(TrustErrorKind::State, format!("{}: {e}", dest.display())))?;
    Ok(())
}
