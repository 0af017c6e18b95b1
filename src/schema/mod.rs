//! TUF 1.0 metadata: types, canonical JSON, keys and the signature threshold check.
//!
//! Implements the file formats of the TUF specification 1.0 (`tuf-spec.md`): root, targets
//! (with delegations), snapshot and timestamp; signing schemes ed25519, ecdsa-sha2-nistp256 and
//! rsassa-pss-sha256 for verification, ed25519 for signing; hashes sha256 and sha512. Parsing is
//! strict about structure and keeps unknown fields, which the signatures still cover.
//! Succinct hash bin delegations (TAP 15, `delegations.succinct_roles`, python-tuf's
//! `SuccinctRoles`) are read and written. Not implemented: mirrors metadata (TAP 5).

mod cjson;
mod error;
mod keys;
mod metadata;
mod target_path;
mod threshold;
mod time;

pub use cjson::{to_canonical, CanonicalError};
pub use error::SchemaError;
pub use keys::{Key, KeyType, PublicKey, SigningKey};
pub use metadata::{
    decode_hex, hex_eq, is_hex, peek_type, Common, DelegatedRole, Delegations, MetaFile, Metadata,
    RoleKeys, RoleType, Root, Signature, Signed, Snapshot, SuccinctRoles, TargetFile, Targets,
    Timestamp, SPEC_VERSION,
};
pub use target_path::{TargetPath, TargetPathError};
pub use threshold::verify_threshold;
pub use time::{parse_duration, UtcTime};
