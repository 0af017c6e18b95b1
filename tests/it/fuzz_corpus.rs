//! The fuzz corpora, replayed on stable: every file of fuzz/corpus/<target>/ and
//! fuzz/regressions/<target>/ goes through the same code the cargo-fuzz target runs
//! (fuzz/targets.rs, included here), so CI without nightly still catches a regression on any input
//! the fuzzers ever kept. Each corpus must also still reach every milestone of its target: a
//! corpus that no longer gets past parsing or signature checks fails here instead of passing
//! trivially.
//!
//! `TRUSTFS_FUZZ_CORPUS=DIR` replays DIR/<target>/ instead of fuzz/corpus (e.g. the raw seeds of
//! fuzz/make-seeds.sh, or a long run's corpus); `TRUSTFS_FUZZ_VERBOSE=1` prints the milestones
//! each input reaches (`cargo test fuzz_corpus:: -- --nocapture`).

#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run, milestones) = targets::TARGETS
        .iter()
        .find(|t| t.0 == target)
        .expect("a known target");
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = std::env::var_os("TRUSTFS_FUZZ_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| fuzz.join("corpus"))
        .join(target);
    let corpus_files = inputs(&corpus);
    assert!(
        !corpus_files.is_empty(),
        "no corpus for {target} in {}",
        corpus.display()
    );
    let regressions = inputs(&fuzz.join("regressions").join(target));
    let mut reached = 0;
    let mut failed = Vec::new();
    let verbose = std::env::var_os("TRUSTFS_FUZZ_VERBOSE").is_some();
    // libFuzzer always runs the empty input too (and never keeps it in a corpus).
    let empty = PathBuf::from("(empty input)");
    for file in [&empty]
        .into_iter()
        .chain(&corpus_files)
        .chain(&regressions)
    {
        let data = if file == &empty {
            Vec::new()
        } else {
            std::fs::read(file).expect("read a corpus file")
        };
        match std::panic::catch_unwind(|| run(&data)) {
            Ok(m) => {
                if verbose {
                    let names: Vec<&str> = milestones
                        .iter()
                        .filter(|(bit, _)| m & bit != 0)
                        .map(|(_, what)| *what)
                        .collect();
                    println!("{target} {}: {}", file.display(), names.join("; "));
                }
                reached |= m;
            }
            Err(_) => failed.push(file.display().to_string()),
        }
    }
    if target == "status_record" {
        let _ = std::fs::remove_dir_all(targets::status_runtime_dir());
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs panicked (messages above):\n  {}",
        failed.len(),
        corpus_files.len() + regressions.len(),
        failed.join("\n  ")
    );
    let missing: Vec<&str> = milestones
        .iter()
        .filter(|(bit, _)| reached & bit == 0)
        .map(|(_, what)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "{target}: the corpus in {} no longer reaches:\n  {}",
        corpus.display(),
        missing.join("\n  ")
    );
}

#[test]
fn metadata() {
    replay("metadata");
}

#[test]
fn cjson() {
    replay("cjson");
}

#[test]
fn target_path() {
    replay("target_path");
}

#[test]
fn status_record() {
    replay("status_record");
}

#[test]
fn mountinfo() {
    replay("mountinfo");
}

#[test]
fn http() {
    replay("http");
}
