//! Reading the operator's files (certificates, credentials): regular files only, opened without
//! blocking (a FIFO would hang the daemon), within a size bound; a file of secrets must also be
//! private and lie in directories no other user can change ([`read_secret`]).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The largest credentials file read (auth file, netrc).
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The largest certificate file read (`--ca-cert`, `--client-cert`).
const MAX_CERT_FILE: u64 = 1 << 20;

/// Read a certificate file: a regular file (never blocking on a FIFO), at most [`MAX_CERT_FILE`].
pub(super) fn read_public_file(path: &Path) -> Result<Vec<u8>, String> {
    read_at_most(open_regular(path)?, MAX_CERT_FILE)
}

/// All of `file`, if it is at most `max` bytes.
fn read_at_most(file: std::fs::File, max: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(out)
}

/// Open `path` for reading without blocking (a FIFO would hang the caller) and check that it is
/// a regular file.
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    Ok(file)
}

/// Read a file holding secrets: a regular file (symlinks followed, as in Kubernetes secret
/// volumes) owned by this user or root, with no permission bits for group or others, at most
/// `MAX_SECRET_FILE` bytes.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let me = crate::sys::euid();
    check_dirs(path, me)?;
    let file = open_regular(path)?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(format!(
            "owned by uid {}, not by this user (uid {me}) or root: another user could change the credentials",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets other users read or change it: it holds secrets (chmod 600 {})",
            path.display()
        ));
    }
    read_at_most(file, MAX_SECRET_FILE)
}

/// Every directory on the way to `path` (symlinks resolved) must be owned by `me` or root and
/// not writable by group or others unless sticky (as `/tmp`), as ssh's StrictModes asks: whoever
/// could rename entries there could swap the credentials file for another private file.
fn check_dirs(path: &Path, me: u32) -> Result<(), String> {
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    let mut dir = real.parent();
    while let Some(d) = dir {
        let m = std::fs::metadata(d).map_err(|e| format!("{}: {e}", d.display()))?;
        let mode = m.mode();
        let open = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if (m.uid() != me && m.uid() != 0) || open {
            return Err(format!(
                "the directory {} (owner uid {}, mode {:04o}) lets another user replace files in it",
                d.display(),
                m.uid(),
                mode & 0o7777
            ));
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_in_directories_others_can_change_or_fifos_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("trustfs-net-dirs-{}", std::process::id()));
        let open = dir.join("open");
        std::fs::create_dir_all(&open).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let f = open.join("auth");
        std::fs::write(&f, "Authorization: Bearer t\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = read_secret(&f).unwrap_err();
        assert!(e.contains("lets another user replace files"), "{e}");
        // Sticky, as /tmp: others cannot rename our files there.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(read_secret(&f).is_ok());
        // A FIFO is refused at once, never waited on.
        let fifo = dir.join("fifo");
        crate::sys::mkfifo(&fifo, 0o600).unwrap();
        assert!(read_secret(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        assert!(read_public_file(&fifo)
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("trustfs-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("auth");
        std::fs::write(&f, "Authorization: Bearer t\n").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o604, false),
            (0o620, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_secret(&f).is_ok(), ok, "{mode:o}");
        }
        assert!(read_secret(&dir)
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
