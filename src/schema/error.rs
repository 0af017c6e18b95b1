//! Errors of the schema layer: a file that breaks a rule of the format, or a role whose
//! signatures do not reach its threshold.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file is not well-formed TUF metadata; `rule` says which rule it broke.
    Malformed { file: String, rule: String },
    /// Not enough valid signatures from distinct keys of the role.
    Threshold {
        role: String,
        needed: u64,
        valid: u64,
        details: Vec<String>,
    },
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaError::Malformed { file, rule } => {
                write!(f, "{file}: malformed metadata: {rule}")
            }
            SchemaError::Threshold {
                role,
                needed,
                valid,
                details,
            } => {
                write!(f, "{role}: signature threshold not met: {valid} of {needed} required valid signatures")?;
                if !details.is_empty() {
                    write!(f, " ({})", details.join("; "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SchemaError {}
