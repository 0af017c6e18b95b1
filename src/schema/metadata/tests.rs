//! Unit tests of the metadata roles.

use std::collections::BTreeMap;

use super::*;

#[test]
fn hex_eq_matches_either_case_and_nothing_else() {
    let d = [0xab, 0x01, 0xff];
    assert!(hex_eq("ab01ff", &d));
    assert!(hex_eq("AB01FF", &d));
    for other in ["ab01fe", "ab01f", "ab01ff0", "xb01ff", "", "+b01ff"] {
        assert!(!hex_eq(other, &d), "{other}");
    }
    assert!(hex_eq("", &[]));
}

#[test]
fn hex_decodes_like_the_hex_crate() {
    for s in [
        "", "00", "ab01FF", "0", "abc", "zz", "0g", "+1", "é1", "ffff",
    ] {
        assert_eq!(decode_hex(s), hex::decode(s).ok(), "{s:?}");
        assert_eq!(is_hex(s), hex::decode(s).is_ok(), "{s:?}");
    }
    let all: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(decode_hex(&all), Some((0..=255u8).collect()));
    assert_eq!(decode_hex(&all.to_uppercase()), Some((0..=255u8).collect()));
}

fn bins(bit_length: u32, name_prefix: &str) -> SuccinctRoles {
    SuccinctRoles {
        keyids: vec![],
        threshold: 1,
        bit_length,
        name_prefix: name_prefix.into(),
        extra: BTreeMap::new(),
    }
}

/// The values python-tuf 7's `SuccinctRoles.get_role_for_target` and `get_roles` give.
#[test]
fn bin_names_and_numbers_are_python_tufs() {
    let paths = ["a", "dir/file.txt", "caf\u{e9}/x", ""];
    for (b, want, last) in [
        (1, ["bins-1", "bins-0", "bins-0", "bins-1"], "bins-1"),
        (4, ["bins-c", "bins-7", "bins-2", "bins-e"], "bins-f"),
        (5, ["bins-19", "bins-0f", "bins-05", "bins-1c"], "bins-1f"),
        (8, ["bins-ca", "bins-78", "bins-2a", "bins-e3"], "bins-ff"),
        (
            10,
            ["bins-32a", "bins-1e0", "bins-0aa", "bins-38e"],
            "bins-3ff",
        ),
        (
            15,
            ["bins-654b", "bins-3c09", "bins-1556", "bins-71d8"],
            "bins-7fff",
        ),
    ] {
        let s = bins(b, "bins");
        let got: Vec<String> = paths.iter().map(|p| s.role_for(p)).collect();
        assert_eq!(got, want, "bit_length {b}");
        assert_eq!(s.bin_names().last().unwrap(), last);
        assert_eq!(s.bin_names().count() as u64, 1 << b);
    }
    let s = bins(32, "bins");
    assert_eq!(s.role_for("a"), "bins-ca978112");
    assert_eq!(s.role_for(""), "bins-e3b0c442");
    assert_eq!(s.bin_count(), 1 << 32);
}

#[test]
fn only_exact_bin_names_are_bins() {
    let s = bins(8, "bins");
    assert_eq!(s.bin_number("bins-00"), Some(0));
    assert_eq!(s.bin_number("bins-ff"), Some(255));
    for not in [
        "bins-0", "bins-100", "bins-FF", "bins-0x", "bins_00", "bin-00", "bins-+1",
    ] {
        assert_eq!(s.bin_number(not), None, "{not}");
    }
    let s = bins(5, "bins");
    assert_eq!(s.bin_number("bins-1f"), Some(31));
    assert_eq!(s.bin_number("bins-20"), None, "out of range");
}

#[test]
fn bad_bit_lengths_and_prefixes_are_refused() {
    assert!(bins(0, "bins")
        .check()
        .unwrap_err()
        .contains("out of range"));
    assert!(bins(33, "bins")
        .check()
        .unwrap_err()
        .contains("out of range"));
    assert!(bins(1, "bins").check().is_ok());
    assert!(bins(32, "bins").check().is_ok());
    for (prefix, why) in [
        ("", "empty"),
        ("a/b", "path separator"),
        ("..", "starts with '.'"),
        (".hidden", "starts with '.'"),
        ("../../etc", "path separator"),
        ("a\\b", "path separator"),
        ("a\0b", "control character"),
        ("a\nb", "control character"),
    ] {
        let e = bins(8, prefix).check().unwrap_err();
        assert!(e.contains(why), "{prefix:?}: {e}");
    }
}

fn targets_with(delegations: Value) -> Result<Metadata<Targets>, SchemaError> {
    let md = serde_json::json!({
        "signed": {"_type": "targets", "spec_version": "1.0.31", "version": 1,
                   "expires": "2030-01-01T00:00:00Z", "targets": {},
                   "delegations": delegations},
        "signatures": []
    });
    Metadata::<Targets>::from_slice("t", &serde_json::to_vec(&md).unwrap())
}

#[test]
fn delegations_hold_exactly_one_of_roles_and_succinct_roles() {
    let key = crate::schema::SigningKey::generate()
        .public_key()
        .to_value();
    let succinct = serde_json::json!({"keyids": ["k"], "threshold": 1, "bit_length": 4,
        "name_prefix": "bins", "x-unknown": 1});
    let md = targets_with(serde_json::json!({"keys": {"k": key},
        "succinct_roles": succinct, "x-deleg": true}))
    .unwrap();
    let d = md.signed.delegations.as_ref().unwrap();
    let s = d.succinct_roles.as_ref().unwrap();
    assert_eq!((s.bit_length, s.name_prefix.as_str()), (4, "bins"));
    assert!(d.roles().is_empty());
    // Unknown fields are kept, and covered by the canonical form.
    assert_eq!(s.extra["x-unknown"], 1);
    let canonical = String::from_utf8(md.canonical_signed().unwrap()).unwrap();
    assert!(canonical.contains("\"x-unknown\":1") && canonical.contains("\"x-deleg\":true"));

    let both = targets_with(serde_json::json!({"keys": {"k": key}, "roles": [],
        "succinct_roles": succinct}))
    .unwrap_err();
    assert!(
        both.to_string().contains("both roles and succinct_roles"),
        "{both}"
    );
    let neither = targets_with(serde_json::json!({"keys": {}})).unwrap_err();
    assert!(neither.to_string().contains("neither"), "{neither}");
    let unknown_key = targets_with(serde_json::json!({"keys": {},
        "succinct_roles": succinct}))
    .unwrap_err();
    assert!(
        unknown_key.to_string().contains("not among the keys"),
        "{unknown_key}"
    );
    let mut zero = succinct.clone();
    zero["bit_length"] = 0.into();
    let e =
        targets_with(serde_json::json!({"keys": {"k": key}, "succinct_roles": zero})).unwrap_err();
    assert!(
        e.to_string().contains("bit_length 0 is out of range"),
        "{e}"
    );
    let mut slash = succinct.clone();
    slash["name_prefix"] = "../x".into();
    let e =
        targets_with(serde_json::json!({"keys": {"k": key}, "succinct_roles": slash})).unwrap_err();
    assert!(e.to_string().contains("path separator"), "{e}");
}
