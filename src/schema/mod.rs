//! TUF 1.0 metadata types, canonical JSON, keys and signature thresholds.
