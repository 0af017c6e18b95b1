//! Helper for `bench/mount-bench.sh` (not a test): measures the hashing code on its own and mounts
//! a backing directory with a hand-built index through the same library entry point as
//! `trustfs mount`.
//!
//! - `hash FILE`: single-core throughput of `hashing::MultiHasher` (sha256) over FILE, read in
//!   1 MiB chunks; prints seconds.
//! - `mount BACKING MNT STATE [--no-passthrough] [--threads N] [--private-copy] [--lazy]
//!   [--chunk-roots DIR]`: register every regular file under BACKING with its sha256 (and, with
//!   `--chunk-roots`, its chunk root, the outboards written to DIR as `repo add` publishes them),
//!   mount, serve until stdin closes or SIGTERM/SIGINT. Default reads: chunk-verified, whole file
//!   checked at open; `--lazy`: size only at open; `--private-copy`: the copy mode.
//! - `firstread FILE`: open + read of the first 4 KiB; prints seconds.
//! - `readsmall DIR N`: open+read+close DIR/0 .. DIR/N-1; prints seconds.
//! - `read FILE`: sequential read in 1 MiB chunks; prints seconds.

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use trustfs::hashing::MultiHasher;
use trustfs::mount::{spawn, MountOptions};
use trustfs::{IndexBuilder, TargetIndex, TargetInfo, TargetPath};

fn sha256_info(path: &Path, outboards: Option<&Path>) -> TargetInfo {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = MultiHasher::sha256_only();
    let mut tree = trustfs::chunks::ChunkHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if outboards.is_some() {
            tree.update(&buf[..n]);
        }
    }
    let (length, digests) = h.finish();
    let chunk_root = outboards.map(|dir| {
        let tree = tree.finish();
        let sha = &digests[0].1;
        std::fs::write(dir.join(hex_of(sha)), tree.outboard()).expect("write outboard");
        tree.root
    });
    TargetInfo {
        length,
        hashes: digests
            .into_iter()
            .map(|(a, d)| (a.to_owned(), d))
            .collect(),
        custom: None,
        chunk_root,
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn walk(root: &Path, rel: &str, index: &mut IndexBuilder, outboards: Option<&Path>) {
    for e in std::fs::read_dir(root.join(rel)).expect("read_dir") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf-8 name");
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let t = e.file_type().expect("type");
        if t.is_dir() {
            walk(root, &r, index, outboards);
        } else if t.is_file() {
            index.insert(
                TargetPath::parse(&r).expect("path"),
                sha256_info(&root.join(&r), outboards),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("hash") => {
            let mut f = std::fs::File::open(&args[2]).expect("open");
            let mut buf = vec![0u8; 1 << 20];
            let t = Instant::now();
            let mut h = MultiHasher::sha256_only();
            loop {
                let n = f.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            let _ = h.finish();
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        Some("read") => {
            let mut buf = vec![0u8; 1 << 20];
            let t = Instant::now();
            let mut f = std::fs::File::open(&args[2]).expect("open");
            while f.read(&mut buf).expect("read") > 0 {}
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        Some("firstread") => {
            let mut buf = vec![0u8; 4096];
            let t = Instant::now();
            let mut f = std::fs::File::open(&args[2]).expect("open");
            f.read_exact(&mut buf).expect("read");
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        Some("readsmall") => {
            let dir = Path::new(&args[2]);
            let n: usize = args[3].parse().expect("N");
            let mut buf = vec![0u8; 65536];
            let t = Instant::now();
            for i in 0..n {
                let mut f = std::fs::File::open(dir.join(i.to_string())).expect("open");
                while f.read(&mut buf).expect("read") > 0 {}
            }
            println!("{:.6}", t.elapsed().as_secs_f64());
        }
        Some("mount") => {
            let (backing, mnt, state) = (
                Path::new(&args[2]),
                Path::new(&args[3]),
                Path::new(&args[4]),
            );
            let flag = |f: &str| args.iter().any(|a| a == f);
            let outboards = args
                .iter()
                .position(|a| a == "--chunk-roots")
                .map(|i| Path::new(args.get(i + 1).expect("--chunk-roots DIR")));
            if let Some(d) = outboards {
                std::fs::create_dir_all(d).expect("outboard dir");
            }
            let mut index = TargetIndex::builder();
            walk(backing, "", &mut index, outboards);
            let mut o = MountOptions::new(mnt, backing, state);
            o.private_copy = flag("--private-copy");
            if flag("--lazy") {
                o.verify = trustfs::mount::chunked::VerifyMode::Lazy;
            }
            o.outboards = outboards.map(Path::to_owned);
            o.passthrough = !args.iter().any(|a| a == "--no-passthrough");
            o.copy_cache_max = 4 << 30;
            if let Some(i) = args.iter().position(|a| a == "--threads") {
                o.threads = args
                    .get(i + 1)
                    .and_then(|n| n.parse().ok())
                    .expect("--threads N");
            }
            let h = spawn(o, index.build()).expect("mount");
            eprintln!("mounted (passthrough: {})", h.passthrough());
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            h.unmount().expect("unmount");
        }
        _ => {
            eprintln!("usage: trustfs_bench hash FILE | read FILE | firstread FILE | readsmall DIR N | mount BACKING MNT STATE [--no-passthrough] [--threads N] [--private-copy] [--lazy] [--chunk-roots DIR]");
            std::process::exit(2);
        }
    }
}
