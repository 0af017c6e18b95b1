//! Errors of the client workflow. The kind says which rule failed (tests assert on it); the
//! message says it to a person, naming the role or file.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustErrorKind {
    /// A file breaks the metadata format (JSON, types, names, sizes).
    Malformed,
    /// Signatures do not reach the role's threshold.
    Signature,
    /// Metadata is past its `expires` time.
    Expired,
    /// A version went backwards, or is not the one the referring role names.
    Rollback,
    /// Length or hashes differ from what the referring role names.
    Mismatch,
    /// Metadata or a file could not be fetched (I/O, network, too large).
    Fetch,
    /// A required metadata file does not exist.
    Missing,
    /// Delegation search failed (cycle, too many roles, unknown role).
    Delegation,
    /// The trusted state directory cannot be read or written.
    State,
}

#[derive(Debug, Clone)]
pub struct TrustError {
    pub kind: TrustErrorKind,
    pub message: String,
}

impl TrustError {
    pub fn new(kind: TrustErrorKind, message: impl Into<String>) -> Self {
        TrustError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TrustError {}

impl From<crate::schema::SchemaError> for TrustError {
    fn from(e: crate::schema::SchemaError) -> Self {
        let kind = match e {
            crate::schema::SchemaError::Threshold { .. } => TrustErrorKind::Signature,
            _ => TrustErrorKind::Malformed,
        };
        TrustError::new(kind, e.to_string())
    }
}

impl From<super::fetch::FetchError> for TrustError {
    fn from(e: super::fetch::FetchError) -> Self {
        TrustError::new(TrustErrorKind::Fetch, format!("fetch failed: {e}"))
    }
}
