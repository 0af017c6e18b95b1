//! Hostile metadata must give a clear error, never a panic: thousands of mutated metadata sets
//! (byte flips, truncations, type swaps, huge numbers, deep nesting) run through the whole client
//! workflow. Deterministic (fixed seed), so a failure reproduces.

use crate::harness as support;

use serde_json::{json, Value};
use support::tufrepo::{Deleg, TestRepo};
use support::TempDir;
use trustfs::trust::Limits;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Run the whole client workflow (pinned root, refresh, the delegated target): whether it
/// accepted the repository (every step succeeded and the target was found). Panics fail the test.
fn run_client(repo: &TestRepo) -> bool {
    let result = std::panic::catch_unwind(|| {
        let Ok(mut c) = repo.client(None, Limits::default()) else {
            return false;
        };
        c.refresh().is_ok()
            && c.target_index().is_ok()
            && matches!(c.find_target("sub/a.txt"), Ok(Some(_)))
    });
    result.expect("the client panicked on hostile metadata")
}

/// The same metadata as far as a client may tell: equal JSON, signatures compared as bytes (hex
/// in either case). A flip or cut that leaves that (e.g. the trailing newline cut) may be
/// accepted; any other must be refused.
fn same_metadata(a: &[u8], b: &[u8]) -> bool {
    fn normal(bytes: &[u8]) -> Option<Value> {
        let mut v: Value = serde_json::from_slice(bytes).ok()?;
        for sig in v.get_mut("signatures")?.as_array_mut()? {
            if let Some(Value::String(s)) = sig.get_mut("sig") {
                *s = s.to_ascii_lowercase();
            }
        }
        Some(v)
    }
    normal(a).is_some_and(|v| Some(v) == normal(b))
}

fn mutate_value(v: &mut Value, rng: &mut Rng, depth: usize) {
    let replacement = match rng.below(10) {
        0 => json!(null),
        1 => json!(-1),
        2 => json!(u64::MAX),
        3 => json!("../../etc/passwd"),
        4 => json!([]),
        5 => json!({}),
        6 => json!(1.5),
        7 => json!("\u{0}"),
        8 => json!(true),
        _ => {
            // Deep nesting (bounded by serde_json's recursion limit on parse).
            let mut deep = json!(1);
            for _ in 0..200 {
                deep = json!([deep]);
            }
            deep
        }
    };
    match v {
        Value::Object(map) if !map.is_empty() && depth < 8 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            if rng.below(4) == 0 {
                map.insert(k.clone(), replacement);
            } else if let Some(child) = map.get_mut(k) {
                mutate_value(child, rng, depth + 1);
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 8 => {
            let i = rng.below(items.len());
            if rng.below(4) == 0 {
                items[i] = replacement;
            } else {
                mutate_value(&mut items[i], rng, depth + 1);
            }
        }
        other => *other = replacement,
    }
}

fn signer<'a>(repo: &'a TestRepo, file: &str) -> &'a trustfs::schema::SigningKey {
    match file {
        "1.root.json" => &repo.keys["root"][0],
        "timestamp.json" => &repo.keys["timestamp"][0],
        "1.snapshot.json" => &repo.keys["snapshot"][0],
        "1.targets.json" => &repo.keys["targets"][0],
        _ => &repo.delegations[0].keys[0],
    }
}

#[test]
fn mutated_metadata_never_panics_the_client() {
    let tmp = TempDir::new("hostile");
    let mut repo = TestRepo::new(tmp.path());
    repo.add_file("a.txt", b"a");
    repo.delegations
        .push(Deleg::new("targets", "sub", &["sub/*"]));
    repo.add_delegated_file(0, "sub/a.txt", b"x");
    repo.publish();
    let files = [
        "1.root.json",
        "timestamp.json",
        "1.snapshot.json",
        "1.targets.json",
        "1.sub.json",
    ];
    let originals: Vec<Vec<u8>> = files.iter().map(|f| repo.read(f)).collect();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for round in 0..1500 {
        let i = rng.below(files.len());
        let mut bytes = originals[i].clone();
        match round % 3 {
            0 => {
                // Structural mutation of the signed content, then signed again with the role's
                // real key: what a compromised (or buggy) signer could publish. The typed parse
                // and every later rule see it.
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                mutate_value(&mut v["signed"], &mut rng, 0);
                if let Ok(canonical) = trustfs::schema::to_canonical(&v["signed"]) {
                    let key = signer(&repo, files[i]);
                    let keyid = key.public_key().compute_keyid();
                    v["signatures"] =
                        json!([{"keyid": keyid, "sig": hex::encode(key.sign(&canonical))}]);
                }
                bytes = serde_json::to_vec(&v).unwrap();
            }
            1 => {
                // Byte flips.
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] ^= 1 << rng.below(8);
                }
            }
            _ => bytes.truncate(rng.below(bytes.len())),
        }
        repo.write(files[i], &bytes);
        let accepted = run_client(&repo);
        // A re-signed structural change may be valid metadata; flipped or cut bytes must not be.
        assert!(
            !accepted || round % 3 == 0 || same_metadata(&bytes, &originals[i]),
            "round {round}: the client accepted damaged {}:\n{}",
            files[i],
            String::from_utf8_lossy(&bytes)
        );
        repo.write(files[i], &originals[i]);
    }
    // And the untouched repository still verifies after all that.
    let mut c = repo.client(None, Limits::default()).unwrap();
    assert!(c.find_target("sub/a.txt").unwrap().is_some());
}
