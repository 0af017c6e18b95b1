//! The command line of `trustfs repo`: [`RepoCommand`] and its argument structs, whose doc
//! comments are the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

use crate::repo::Sharding;

#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Create a new repository: REPO/metadata with 1.root.json, 1.targets.json (no targets),
    /// 1.snapshot.json and timestamp.json (consistent snapshots), and REPO/targets.
    ///
    /// Role keys are KEYDIR/root, KEYDIR/targets, KEYDIR/snapshot and KEYDIR/timestamp (format of
    /// `trustfs key generate`); missing ones are generated. No unversioned root.json is written:
    /// give clients 1.root.json out of band as their trusted root.
    Init {
        /// The repository directory to create.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
    },
    /// Make the repository's target list equal to the regular files under CONTENT_DIR.
    ///
    /// Every regular file becomes a target named by its path relative to CONTENT_DIR, with its
    /// length and sha256 (and sha512 with --sha512), and is copied to REPO/targets as
    /// dir/<hash>.<basename>. Targets whose files are gone from CONTENT_DIR are REMOVED from the
    /// list; unchanged files keep their entries (including `custom`). Symlinks, FIFOs, sockets,
    /// devices and mount points are skipped with a warning; a name that is not UTF-8 or not a safe
    /// target path stops the command before anything is written. Everything is opened beneath
    /// CONTENT_DIR without following symlinks; a file or directory replaced, moved or swapped for
    /// a symlink while add runs stops it before anything is signed ("changed while publishing").
    /// Then targets, snapshot and timestamp are
    /// re-signed with new versions (even when nothing changed). Needs KEYDIR/targets,
    /// KEYDIR/snapshot and KEYDIR/timestamp.
    ///
    /// Files are hashed on all cores, and made durable with one filesystem flush before any
    /// metadata names them. A file whose device, inode, size, mtime and ctime are those recorded
    /// by the last add (REPO/.trustfs-add-cache) and whose published copy is in place is not
    /// read again (--reread reads every file).
    ///
    /// With more than 2,000 targets (or with --bins), the top-level targets role delegates every
    /// path to succinct hash bins (TAP 15) named bins-00, bins-01, ..., signed with KEYDIR/bins
    /// (generated when missing), about 500 targets a bin; only bins whose list changed are signed
    /// anew, and targets itself (then KEYDIR/targets) only when the bin layout changes or half its
    /// validity is gone. A targets role that delegates paths to named roles is not sharded.
    ///
    /// With --role NAME the files become the target list of the delegated role NAME instead
    /// (signed with KEYDIR/NAME, KEYDIR/NAME@2, ...; KEYDIR/targets is not needed). Every file
    /// must lie within the paths or hash prefixes NAME is delegated; if one does not, nothing is
    /// written.
    Add {
        /// The repository directory.
        repo: PathBuf,
        /// The directory whose files are to be published.
        content_dir: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// Also list sha512 hashes (and publish under the sha512 name too).
        #[arg(long)]
        sha512: bool,
        /// Publish into this delegated role (see `trustfs repo delegate`) instead of the
        /// top-level targets role.
        #[arg(long, value_name = "NAME")]
        role: Option<String>,
        /// Shard the top-level targets into exactly N hash bins (a power of two, 2 to 32768),
        /// whatever the number of targets; `auto` (the default): past 2,000 targets; `off`: one
        /// targets file (for clients without succinct hash bins; a sharded repository goes back).
        #[arg(long, value_name = "N|auto|off", value_parser = parse_bins, conflicts_with = "role")]
        bins: Option<Sharding>,
        /// Read and hash every file, also those unchanged since the last add.
        #[arg(long)]
        reread: bool,
    },
    /// Delegate target paths to a role NAME: add (or replace) its entry in the delegator's
    /// delegations, with its keys, threshold, terminating flag and --path globs or --hash-prefix
    /// bins.
    ///
    /// The role's keys are the --key public key files, or else KEYDIR/NAME (generated when
    /// missing). A new role gets metadata with no targets (1.NAME.json), signed by the keys of
    /// the role that KEYDIR holds (KEYDIR/NAME, KEYDIR/NAME@2, ...), which must reach the
    /// threshold; an existing role is re-signed with its new keys. Then the delegator, snapshot
    /// and timestamp are re-signed with new versions. Role names: letters, digits, '-', '_', '.',
    /// '~', not starting with '.', not a top-level role name.
    Delegate(DelegateArgs),
    /// Re-sign snapshot and timestamp with new versions and expiry dates (for cron or CI).
    /// Needs KEYDIR/snapshot and KEYDIR/timestamp (and KEYDIR/targets with --role targets, and
    /// KEYDIR/bins too when targets is sharded into hash bins: every bin is re-signed then).
    /// Delegated roles with less than half their validity left are re-signed too when KEYDIR
    /// holds their keys, else named in a warning.
    Refresh {
        /// The repository directory.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// Also re-sign this role (only `targets` is accepted): same targets, new version and
        /// expiry.
        #[arg(long, value_parser = ["targets"])]
        role: Option<String>,
    },
    /// Replace the keys (and threshold) of a role after a compromise or as routine: root,
    /// targets, snapshot, timestamp, or a delegated role.
    ///
    /// A top-level role gets root version N+1 listing its new keys, signed by a threshold of the
    /// current root keys (KEYDIR/root, root@2, ...) and, when root itself rotates, of the new ones
    /// too; then targets (if its keys changed), snapshot and timestamp are re-signed with the new
    /// keys. Clients follow: a mounted daemon with --refresh-interval, python-tuf, go-tuf. The
    /// retired key files move to KEYDIR/retired/; their signatures count nowhere any more.
    ///
    /// New keys: generated into KEYDIR (KEYDIR/ROLE if free, else ROLE@N; --type, --encrypt), or
    /// the public key files given with --key (for every role but root, KEYDIR must hold their
    /// private keys as ROLE@N: the role is re-signed with them at once). If KEYDIR
    /// cannot sign the new root with both thresholds (keys held by several people), the root is
    /// staged in REPO/staged/ instead: each holder reviews its changes and runs `trustfs repo
    /// sign REPO --key THEIR_KEY --expect DIGEST`, then `trustfs repo publish` writes it. A
    /// delegated role is rotated through its delegator (same paths, new keys, new versions).
    Rotate {
        /// The repository directory.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// The role whose keys are replaced.
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A new public key file (TUF key JSON, e.g. KEYDIR/root@2.pub); repeatable. Default: one
        /// new key generated into KEYDIR.
        #[arg(long = "key", value_name = "FILE.pub")]
        public_keys: Vec<PathBuf>,
        /// The role's threshold after the rotation (default: as before); at most the number of
        /// new keys.
        #[arg(long, value_name = "N")]
        threshold: Option<u64>,
        /// Type of a generated key: ed25519, ecdsa or rsa.
        #[arg(long = "type", value_name = "TYPE", default_value = "ed25519", value_parser = crate::schema::KeyType::parse)]
        key_type: crate::schema::KeyType,
        /// Encrypt a generated key with a passphrase.
        #[arg(long)]
        encrypt: bool,
    },
    /// Add your signature to the staged root (REPO/staged/N.root.json) with your key only: the
    /// key must be a root key of the published root or of the staged one. Prints who has signed
    /// and who is missing.
    Sign {
        /// The repository directory (a copy of it is enough: only the staged file changes).
        repo: PathBuf,
        /// Your private key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The sha256 of the staged root's body that you reviewed (`repo rotate` and `repo
        /// status` print it with what the root changes); anything else is refused unsigned.
        #[arg(long, value_name = "SHA256")]
        expect: String,
    },
    /// Publish the staged root once a threshold of the published root's keys and of its own
    /// have signed it; then re-sign targets (if its keys changed), snapshot and timestamp with
    /// the keys in KEYDIR.
    Publish {
        /// The repository directory.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
    },
    /// Remove the delegation of a role from its delegator (a new delegator version without it,
    /// keys no other role uses dropped) and from snapshot. A role that delegates further is
    /// refused. Its files stay until `repo prune`.
    Undelegate {
        /// The repository directory.
        repo: PathBuf,
        #[command(flatten)]
        common: KeyArgs,
        /// The delegated role to remove.
        #[arg(long, value_name = "NAME")]
        role: String,
    },
    /// Remove metadata versions and target files that no client can still need: all but the
    /// current snapshot and the --keep before it, and what those list (every N.root.json stays:
    /// clients walk them one by one). Files without consistent-snapshot names are left alone.
    Prune {
        /// The repository directory.
        repo: PathBuf,
        /// Snapshot versions kept before the current one, for clients in the middle of an
        /// update.
        #[arg(long, value_name = "N", default_value_t = 2)]
        keep: u64,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show each top-level role's version, expiry, threshold and signers, and where a staged
    /// root's signatures stand (who signed, who is missing). Exit 1 while a staged root is short
    /// of signatures.
    Status {
        /// The repository directory.
        repo: PathBuf,
    },
}

/// Options every repo command takes.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// Directory holding the role keys: root, targets, snapshot, timestamp, and delegated roles'
    /// NAME, NAME@2, ... (and .pub files).
    #[arg(long, value_name = "KEYDIR")]
    pub keys: PathBuf,
    /// How long newly signed metadata of ROLE stays valid, e.g. timestamp=2h, targets=30d
    /// (repeatable). Defaults: root=365d, targets=90d, snapshot=7d, timestamp=1d, bins (the hash
    /// bins) as targets. For the delegated role of `delegate` and `add --role`: NAME=DURATION or
    /// a bare DURATION (default: as targets).
    #[arg(long, value_name = "ROLE=DURATION")]
    pub expires: Vec<String>,
}

/// Arguments of `trustfs repo delegate`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["paths", "hash_prefixes"])))]
pub struct DelegateArgs {
    /// The repository directory.
    pub repo: PathBuf,
    #[command(flatten)]
    pub common: KeyArgs,
    /// The delegated role to create or update.
    #[arg(long, value_name = "NAME")]
    pub role: String,
    /// The role that delegates: targets, or an existing delegated role.
    #[arg(long, value_name = "ROLE", default_value = "targets")]
    pub delegator: String,
    /// A target path glob the role may list (repeatable); `*` and `?` do not match '/'.
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
    /// A hex prefix of sha256(target path) the role may list (repeatable; hashed bins).
    #[arg(long = "hash-prefix", value_name = "HEX")]
    pub hash_prefixes: Vec<String>,
    /// Signatures the role's metadata needs (at most the number of keys).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threshold: u64,
    /// Make the delegation terminating: a client searching a path this role matches does not
    /// look at roles after it.
    #[arg(long)]
    pub terminating: bool,
    /// A public key file (TUF key JSON, e.g. KEYDIR/NAME.pub) of the role (repeatable).
    /// Default: KEYDIR/NAME, generated when missing.
    #[arg(long = "key", value_name = "PUBFILE")]
    pub public_keys: Vec<PathBuf>,
}

/// `--bins N|auto|off`: a power of two from 2 to 2^15, or automatic, or never.
fn parse_bins(s: &str) -> Result<Sharding, String> {
    match s {
        "auto" => return Ok(Sharding::default()),
        "off" => return Ok(Sharding::Off),
        _ => {}
    }
    let n: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bins, auto or off"))?;
    Sharding::from_bin_count(n)
}
