//! A role's target list as `add` rewrites it: the current list borrowed from the loaded metadata,
//! the new list ([`Listed`] entries kept as they were or new), and the entries for published
//! content (length, hashes, chunk root).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::content;

/// The `targets` list of a targets-type role's signed value, borrowed (parsed as a map when the
/// file was loaded; an empty default could only drop entries that do not exist).
pub(super) fn list_of(signed: &Value) -> HashMap<&str, &Value> {
    signed
        .get("targets")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// A target entry of the list `add` writes: an entry of the loaded metadata as it is, or a new
/// one.
#[derive(Debug)]
pub(crate) enum Listed<'a> {
    Kept(&'a Value),
    New(Value),
}

impl Listed<'_> {
    pub(crate) fn value(&self) -> &Value {
        match self {
            Listed::Kept(v) => v,
            Listed::New(v) => v,
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Listed::Kept(v) => v.clone(),
            Listed::New(v) => v,
        }
    }
}

/// The new target list of a role, by path.
pub(crate) type NewList<'a> = BTreeMap<String, Listed<'a>>;

/// `list` as the JSON object metadata holds.
pub(crate) fn materialize(list: NewList<'_>) -> Map<String, Value> {
    list.into_iter().map(|(k, v)| (k, v.into_value())).collect()
}

/// Whether an existing target entry describes the content just published: same length and, for
/// every hash algorithm both list, the same digest (at least one in common).
pub(super) fn same_content(old: &Value, published: &content::Published) -> bool {
    if old.get("length").and_then(Value::as_u64) != Some(published.length) {
        return false;
    }
    let Some(hashes) = old.get("hashes").and_then(Value::as_object) else {
        return false;
    };
    let mut common = 0;
    for (alg, digest) in published.hashes.iter() {
        if let Some(old_digest) = hashes.get(alg) {
            if !old_digest
                .as_str()
                .is_some_and(|d| crate::schema::hex_eq(d, digest))
            {
                return false;
            }
            common += 1;
        }
    }
    common > 0
}

/// A target entry with `custom.trustfs.chunks` set to the chunk root of `published` (other
/// `custom` fields kept), when this add computed one (see [`crate::chunks`]).
pub(super) fn with_chunk_root(mut entry: Value, published: &content::Published) -> Value {
    let Some(root) = published.chunk_root else {
        return entry;
    };
    let chunks = json!({
        "v": 1,
        "alg": "blake3",
        "size": crate::chunks::CHUNK_SIZE,
        "root": hex::encode(root),
    });
    if let Some(obj) = entry.as_object_mut() {
        let custom = obj.entry("custom").or_insert_with(|| json!({}));
        if !custom.is_object() {
            // A `custom` that is not an object is the publisher's own business: left as it is.
            return entry;
        }
        let ours = custom
            .as_object_mut()
            .map(|c| c.entry("trustfs").or_insert_with(|| json!({})));
        if let Some(Value::Object(t)) = ours {
            t.insert("chunks".into(), chunks);
        }
    }
    entry
}

/// Digests as metadata lists them: algorithm → lowercase hex.
pub(super) fn hex_map(hashes: &crate::index::Hashes) -> Map<String, Value> {
    hashes
        .iter()
        .map(|(alg, d)| (alg.to_owned(), Value::String(hex::encode(d))))
        .collect()
}
