//! Unit tests of lazy remote reads: where the outboards come from.

use super::*;

#[test]
fn outboards_default_to_chunks_next_to_the_targets_and_never_to_another_host() {
    let bases = LazyRemote::default_chunk_bases(&[
        "https://m.example/repo/targets/".into(),
        "https://m.example/targets".into(),
        "https://m.example/".into(),
        "http://127.0.0.1:8080".into(),
    ]);
    assert_eq!(
        bases,
        [
            "https://m.example/repo/chunks/",
            "https://m.example/chunks/",
            "https://m.example/chunks/",
            "http://127.0.0.1:8080/chunks/",
        ]
    );
}
