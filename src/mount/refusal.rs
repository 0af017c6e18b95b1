//! Why an open was refused: a [`Denial`] or a [`Fault`], never both, never mixed up.
//!
//! - A **denial** means the daemon judged the content and it is not what the signed, current
//!   metadata says (altered, unregistered, not a regular file, changed while verified, expired):
//!   `EACCES`, a `DENY` line, a denial metric, an audit `deny` record.
//! - A **fault** means the daemon could not judge (disk full, I/O error, out of descriptors,
//!   network down, another open still busy, a caught bug): `EIO`, `ENOSPC` or `EMFILE`, an
//!   `ERROR` line, a fault metric, an audit `fault` record.
//!
//! How the types keep them apart: an `io::Error` can only become a [`Fault`] ([`Fault::io`] picks
//! the kind and errno from the error itself); a [`Denial`] is built from a content comparison
//! ([`Mismatch`]) or a named reason. Each lower layer's error enum is turned into a [`Refusal`]
//! by one exhaustive `match` below, so a new error variant does not compile until someone decides
//! which class it belongs to.

use std::fmt;
use std::io;

use super::download::FetchFailure;
use super::store::StoreError;
use crate::hashing::Mismatch;
use crate::source::SourceError;
use crate::telemetry::{DenyReason, FaultKind};

/// The content is not what the signed metadata says.
#[derive(Debug)]
pub struct Denial {
    pub reason: DenyReason,
    pub detail: String,
}

impl Denial {
    pub fn new(reason: DenyReason, detail: impl fmt::Display) -> Denial {
        Denial {
            reason,
            detail: detail.to_string(),
        }
    }

    /// Content that differs from its signed length or hashes.
    pub fn mismatch(m: &Mismatch) -> Denial {
        Denial::new(DenyReason::Altered, m)
    }
}

/// The daemon could not judge the content.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// What the reader gets: `EIO`, `ENOSPC` or `EMFILE`.
    pub errno: i32,
    pub detail: String,
}

impl Fault {
    /// A fault caused by `e` while `doing` something: `ENOSPC`/`EDQUOT` → no space, `EMFILE`/
    /// `ENFILE` → descriptors, anything else → I/O (`EIO`).
    pub fn io(doing: impl fmt::Display, e: &io::Error) -> Fault {
        let (kind, errno) = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => (FaultKind::NoSpace, libc::ENOSPC),
            Some(libc::EMFILE) | Some(libc::ENFILE) => (FaultKind::Descriptors, libc::EMFILE),
            _ => (FaultKind::Io, libc::EIO),
        };
        Fault {
            kind,
            errno,
            detail: format!("{doing}: {e}"),
        }
    }

    /// A fault of `kind` answered with `EIO`.
    pub fn eio(kind: FaultKind, detail: impl fmt::Display) -> Fault {
        Fault {
            kind,
            errno: libc::EIO,
            detail: detail.to_string(),
        }
    }
}

/// Why an open was refused.
#[derive(Debug)]
pub enum Refusal {
    /// `EACCES`, `DENY`.
    Denied(Denial),
    /// `EIO`/`ENOSPC`/`EMFILE`, `ERROR`.
    Fault(Fault),
    /// The backing entry does not exist (any more): `ENOENT`, nothing logged.
    Absent,
}

impl From<Denial> for Refusal {
    fn from(d: Denial) -> Refusal {
        Refusal::Denied(d)
    }
}

impl From<Fault> for Refusal {
    fn from(f: Fault) -> Refusal {
        Refusal::Fault(f)
    }
}

impl From<SourceError> for Refusal {
    fn from(e: SourceError) -> Refusal {
        match e {
            SourceError::NotFound => Refusal::Absent,
            SourceError::Escapes | SourceError::NotRegular(_) | SourceError::BadName => {
                Denial::new(DenyReason::NotRegular, &e).into()
            }
            SourceError::Replaced => Denial::new(DenyReason::Changed, &e).into(),
            SourceError::Busy => Fault::eio(FaultKind::Busy, &e).into(),
            SourceError::Io(ref io) => Fault::io("opening the backing file", io).into(),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::Mismatch(m) => Denial::mismatch(&m).into(),
            StoreError::ChangedWhileReading => Denial::new(DenyReason::Changed, &e).into(),
            StoreError::Read(ref io) => Fault::io("reading the content", io).into(),
            StoreError::Io(ref io) => Fault::io("writing the verified copy", io).into(),
            StoreError::Truncated { .. } => Fault::eio(FaultKind::Network, &e).into(),
        }
    }
}

impl From<FetchFailure> for Refusal {
    fn from(f: FetchFailure) -> Refusal {
        match f {
            FetchFailure::Refused(why) => Denial::new(DenyReason::Altered, why).into(),
            FetchFailure::Unavailable(why) => Fault::eio(FaultKind::Network, why).into(),
            FetchFailure::Cache(e) => Fault::io("writing the download cache", &e).into(),
            FetchFailure::Descriptors(why) => Fault {
                kind: FaultKind::Descriptors,
                errno: libc::EMFILE,
                detail: format!("opening a connection: {why}"),
            }
            .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault_of(r: Refusal) -> Fault {
        match r {
            Refusal::Fault(f) => f,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn operational_errors_are_faults_with_their_errno() {
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        let f = fault_of(StoreError::Io(enospc).into());
        assert_eq!((f.kind, f.errno), (FaultKind::NoSpace, libc::ENOSPC));
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let f = fault_of(SourceError::Io(emfile).into());
        assert_eq!((f.kind, f.errno), (FaultKind::Descriptors, libc::EMFILE));
        let eio = io::Error::from_raw_os_error(libc::EIO);
        let f = fault_of(StoreError::Read(eio).into());
        assert_eq!((f.kind, f.errno), (FaultKind::Io, libc::EIO));
        let f = fault_of(
            StoreError::Truncated {
                received: 1,
                expected: 2,
            }
            .into(),
        );
        assert_eq!((f.kind, f.errno), (FaultKind::Network, libc::EIO));
        let f = fault_of(FetchFailure::Descriptors("no fds".into()).into());
        assert_eq!((f.kind, f.errno), (FaultKind::Descriptors, libc::EMFILE));
        let f = fault_of(FetchFailure::Unavailable("down".into()).into());
        assert_eq!(f.kind, FaultKind::Network);
    }

    #[test]
    fn content_that_differs_is_a_denial() {
        let m = Mismatch::Length {
            expected: 1,
            actual: 2,
        };
        assert!(matches!(
            Refusal::from(StoreError::Mismatch(m)),
            Refusal::Denied(Denial {
                reason: DenyReason::Altered,
                ..
            })
        ));
        assert!(matches!(
            Refusal::from(SourceError::Replaced),
            Refusal::Denied(Denial {
                reason: DenyReason::Changed,
                ..
            })
        ));
        assert!(matches!(
            Refusal::from(SourceError::NotFound),
            Refusal::Absent
        ));
    }
}
