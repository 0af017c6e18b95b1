//! Target paths: the names metadata gives its targets, checked once against the rules that keep
//! them inside a mount (the schema validates every path it reads with [`TargetPath::parse`]).

use std::fmt;

/// A target path that passed the safety rules: relative, `/`-separated, no empty, `.` or `..`
/// components, no NUL, at most 4096 bytes (255 a component). Constructed only by [`TargetPath::parse`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetPath(Box<str>);

/// Why a target path from metadata was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPathError {
    Empty,
    Absolute,
    Nul,
    EmptyComponent,
    DotComponent,
    DotDotComponent,
    TooLong,
}

impl fmt::Display for TargetPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetPathError::Empty => "target path is empty",
            TargetPathError::Absolute => "target path is absolute (starts with '/')",
            TargetPathError::Nul => "target path contains a NUL byte",
            TargetPathError::EmptyComponent => {
                "target path has an empty component ('//' or trailing '/')"
            }
            TargetPathError::DotComponent => "target path has a '.' component",
            TargetPathError::DotDotComponent => "target path has a '..' component",
            TargetPathError::TooLong => {
                "target path is longer than 4096 bytes or a component longer than 255"
            }
        })
    }
}

impl std::error::Error for TargetPathError {}

impl TargetPath {
    /// Check a target path taken from (untrusted) metadata.
    pub fn parse(raw: &str) -> Result<TargetPath, TargetPathError> {
        if raw.is_empty() {
            return Err(TargetPathError::Empty);
        }
        if raw.len() > 4096 {
            return Err(TargetPathError::TooLong);
        }
        if raw.contains('\0') {
            return Err(TargetPathError::Nul);
        }
        if raw.starts_with('/') {
            return Err(TargetPathError::Absolute);
        }
        for component in raw.split('/') {
            match component {
                "" => return Err(TargetPathError::EmptyComponent),
                "." => return Err(TargetPathError::DotComponent),
                ".." => return Err(TargetPathError::DotDotComponent),
                c if c.len() > 255 => return Err(TargetPathError::TooLong),
                _ => {}
            }
        }
        Ok(TargetPath(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

// TargetPath derives its ordering from the inner String, so borrowing as str is consistent.
impl std::borrow::Borrow<str> for TargetPath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
