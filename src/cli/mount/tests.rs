//! Unit tests of the mount command line.

use std::path::Path;

use super::args::parse_verify;

#[test]
fn verify_modes_parse() {
    use crate::mount::chunked::VerifyMode;
    assert_eq!(parse_verify("open"), Ok(VerifyMode::Open));
    assert_eq!(parse_verify("lazy"), Ok(VerifyMode::Lazy));
    assert_eq!(
        parse_verify("lazy-above=1G"),
        Ok(VerifyMode::LazyAbove(1 << 30))
    );
    assert!(parse_verify("lazy-above=").is_err());
    assert!(parse_verify("sometimes").is_err());
    assert!(VerifyMode::LazyAbove(10).whole_at_open(9));
    assert!(!VerifyMode::LazyAbove(10).whole_at_open(10));
}

use super::*;

#[test]
fn sizes() {
    assert_eq!(parse_size("123"), Ok(123));
    assert_eq!(parse_size("64K"), Ok(64 << 10));
    assert_eq!(parse_size("2g"), Ok(2 << 30));
    assert!(parse_size("2X").is_err());
    assert!(parse_size("G").is_err());
    assert!(parse_size("99999999999T").is_err());
}

#[test]
fn state_names_do_not_collide() {
    assert_eq!(state_name(Path::new("/mnt/trusted")), "mnt-trusted");
    let a = state_name(Path::new("/srv/app-data"));
    let b = state_name(Path::new("/srv/app/data"));
    let c = state_name(Path::new("/srv/app data"));
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
}
