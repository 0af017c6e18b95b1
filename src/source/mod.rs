//! Where bytes come from: the local backing directory (opened beneath its root only).
