//! A repository made through the library's `repo::init` (default expiries) in a test's directory,
//! for the publisher tests; each test module adds the operations it exercises in its own `impl`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use trustfs::schema::{Metadata, Targets};

use trustfs::repo::{self, Expiries, InitOptions};

use super::python::{run_trustfs as trustfs, Run};
use super::{os, read_json};

/// `<dir>/repo` and its keys in `<dir>/keys`.
pub struct Repo {
    pub dir: PathBuf,
    pub keys: PathBuf,
}

impl Repo {
    /// `<dir>/repo` with its keys in `<dir>/keys`.
    pub fn init(dir: impl AsRef<Path>) -> Repo {
        let dir = dir.as_ref();
        Repo::create(dir.join("repo"), dir.join("keys"))
    }

    /// A repository at `dir` with its keys in `keys`.
    pub fn create(dir: PathBuf, keys: PathBuf) -> Repo {
        let r = Repo { dir, keys };
        repo::init(&InitOptions {
            repo: r.dir.clone(),
            keydir: r.keys.clone(),
            expires: Expiries::default(),
        })
        .unwrap();
        r
    }

    pub fn metadata(&self) -> PathBuf {
        self.dir.join("metadata")
    }

    /// `trustfs repo SUB REPO --keys KEYDIR EXTRA...`
    pub fn command(&self, sub: &str, extra: &[&str]) -> Run {
        let mut args = vec!["repo", sub, os(&self.dir), "--keys", os(&self.keys)];
        args.extend_from_slice(extra);
        trustfs(args)
    }

    /// `trustfs repo delegate REPO --keys KEYDIR --role ROLE EXTRA...`
    pub fn delegate(&self, role: &str, extra: &[&str]) -> Run {
        self.command("delegate", &[&["--role", role], extra].concat())
    }

    /// `trustfs repo add REPO CONTENT --keys KEYDIR EXTRA...`
    pub fn add(&self, content: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "repo",
            "add",
            os(&self.dir),
            os(content),
            "--keys",
            os(&self.keys),
        ];
        args.extend_from_slice(extra);
        trustfs(args)
    }
    /// `trustfs verify --json` of `content`, pinned to 1.root.json (with a state directory).
    pub fn verify(&self, content: &Path, state: Option<&Path>) -> Run {
        let metadata = self.metadata();
        let root = metadata.join("1.root.json");
        let mut args = vec![
            "verify",
            "--json",
            "--root",
            os(&root),
            "--metadata",
            os(&metadata),
        ];
        if let Some(s) = state {
            args.extend_from_slice(&["--state-dir", os(s)]);
        }
        args.push(os(content));
        trustfs(args)
    }
    /// The current snapshot's `meta`.
    pub fn snapshot_meta(&self) -> Value {
        let ts = read_json(&self.metadata().join("timestamp.json"));
        let v = ts["signed"]["meta"]["snapshot.json"]["version"]
            .as_u64()
            .unwrap();
        read_json(&self.metadata().join(format!("{v}.snapshot.json")))["signed"]["meta"].clone()
    }
    pub fn version_of(&self, role: &str) -> u64 {
        self.snapshot_meta()[format!("{role}.json")]["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("snapshot does not list {role}.json"))
    }
    pub fn role_path(&self, role: &str) -> PathBuf {
        self.metadata()
            .join(format!("{}.{role}.json", self.version_of(role)))
    }
    /// The current metadata of `role` (as snapshot lists it).
    pub fn role(&self, role: &str) -> Metadata<Targets> {
        Metadata::from_slice(role, &std::fs::read(self.role_path(role)).unwrap()).unwrap()
    }
}
