//! [`DirFetcher`]: metadata and target files under a local directory, asked for by the same
//! URL-encoded relative names as over HTTP, never outside the directory, never a FIFO.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::{check_name, read_limited, FetchError, Fetcher};

/// Files under a local directory.
#[derive(Clone, Debug)]
pub struct DirFetcher {
    pub dir: PathBuf,
}

impl DirFetcher {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirFetcher { dir: dir.into() }
    }
}

/// Decode `%XX` escapes (names arrive URL-encoded, as for HTTP; see `trust::quote`).
fn percent_decode(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let v = u8::from_str_radix(name.get(i + 1..i + 3)?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Fetcher for DirFetcher {
    fn is_local(&self) -> bool {
        true
    }

    fn fetch(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FetchError> {
        check_name(name)?;
        // A web server decodes %XX before looking up the file; so does this fetcher, and the
        // decoded name must still be a safe relative path (a role named "../x" is never a path).
        let decoded = percent_decode(name).ok_or_else(|| FetchError::BadName(name.to_owned()))?;
        check_name(&decoded)?;
        let path = self.dir.join(&decoded);
        let file = match open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(FetchError::Io {
                    name: path.display().to_string(),
                    error: e.to_string(),
                })
            }
        };
        read_limited(file, &path.display().to_string(), limit).map(Some)
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Open a regular file without blocking on FIFOs; anything else is refused.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused() {
        let f = DirFetcher::new("/nonexistent");
        for n in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a\0b"] {
            assert!(
                matches!(f.fetch(n, 10), Err(FetchError::BadName(_))),
                "{n:?}"
            );
        }
        assert!(matches!(f.fetch("missing.json", 10), Ok(None)));
        // Encoded names are decoded, then checked again.
        assert!(matches!(f.fetch("1.%2E%2E%2Fx.json", 10), Ok(None)));
        assert!(matches!(f.fetch("%2E%2E", 10), Err(FetchError::BadName(_))));
        assert!(matches!(
            f.fetch("a%2F..%2Fb", 10),
            Err(FetchError::BadName(_))
        ));
        assert_eq!(
            percent_decode("1.a%20b.json").as_deref(),
            Some("1.a b.json")
        );
    }
}
