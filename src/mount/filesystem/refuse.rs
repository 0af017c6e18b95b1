//! How a refusal is answered: a denial or a fault counted, logged (repeats throttled) and audited,
//! and the errno the request gets.

use std::ffi::OsStr;
use std::time::SystemTime;

use fuser::Errno;

use super::generation::MetadataInForce;
use super::{Caller, MountState};
use crate::log_event;
use crate::mount::refusal::{Denial, Fault, Refusal};
use crate::telemetry::DenialRecord;

impl MountState {
    /// Answer a refused open: a denial (`EACCES`, `DENY`, denial metric, audit `deny`), a fault
    /// (`EIO`/`ENOSPC`/`EMFILE`, `ERROR`, fault metric, audit `fault`) or `ENOENT`.
    pub(super) fn refuse(
        &self,
        who: Caller,
        gen: &MetadataInForce,
        path: &OsStr,
        refusal: Refusal,
    ) -> Errno {
        match refusal {
            Refusal::Denied(d) => {
                self.deny(who, gen, path, &d);
                Errno::EACCES
            }
            Refusal::Fault(f) => {
                self.fault(who, gen, path, &f);
                Errno::from_i32(f.errno)
            }
            Refusal::Absent => Errno::ENOENT,
        }
    }

    fn deny(&self, caller: Caller, gen: &MetadataInForce, path: &OsStr, d: &Denial) {
        self.deny_op("open", caller, gen, path, d);
    }

    /// A denial of `op` (`open`, or `read` of a chunk that differs).
    pub(super) fn deny_op(
        &self,
        op: &str,
        caller: Caller,
        gen: &MetadataInForce,
        path: &OsStr,
        d: &Denial,
    ) {
        let who = format!("(pid {}, uid {})", caller.pid, caller.uid);
        self.counters.deny(
            d.reason,
            DenialRecord {
                time: crate::log::timestamp(SystemTime::now()),
                path: crate::telemetry::shown_path(path),
                reason: d.reason.label().to_owned(),
                detail: d.detail.clone(),
                pid: caller.pid,
                uid: caller.uid,
            },
        );
        let Some(left_out) = self.throttle.admit(caller.uid, path, d.reason.label()) else {
            return;
        };
        log_event!(
            "DENY {op} {path:?}: {} {who}{}",
            d.detail,
            repeats(left_out)
        );
        if let Some(audit) = &self.audit {
            let meta = gen.summary.clone().unwrap_or_default();
            let p = path.to_string_lossy();
            let caller = (caller.pid, caller.uid);
            audit.deny(&p, d.reason, &d.detail, caller, left_out, &meta);
        }
    }

    pub(super) fn fault(&self, caller: Caller, gen: &MetadataInForce, path: &OsStr, f: &Fault) {
        self.fault_op("open", caller, gen, path, f);
    }

    /// A fault of `op` (`open`, or `read`).
    pub(super) fn fault_op(
        &self,
        op: &str,
        caller: Caller,
        gen: &MetadataInForce,
        path: &OsStr,
        f: &Fault,
    ) {
        let errno = match f.errno {
            libc::ENOSPC => "ENOSPC",
            libc::EMFILE => "EMFILE",
            libc::ENOMEM => "ENOMEM",
            _ => "EIO",
        };
        let who = format!("(pid {}, uid {})", caller.pid, caller.uid);
        let at = crate::log::timestamp(SystemTime::now());
        self.counters.fault(
            f.kind,
            format!("{at} {path:?}: {} ({errno}) {who}", f.detail),
        );
        let Some(left_out) = self.throttle.admit(caller.uid, path, f.kind.label()) else {
            return;
        };
        log_event!(
            "ERROR {op} {path:?}: {} ({}: {errno}; not a denial: the content was not judged) {who}{}",
            f.detail,
            f.kind.label(),
            repeats(left_out)
        );
        if let Some(audit) = &self.audit {
            let meta = gen.summary.clone().unwrap_or_default();
            let p = path.to_string_lossy();
            let caller = (caller.pid, caller.uid);
            audit.fault(&p, f.kind, &f.detail, caller, left_out, &meta);
        }
    }
}

/// The tail of a log line written after `n` repeats were left out (see `mount/throttle.rs`).
fn repeats(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(
            "; {n} more like it in the last {} s not logged",
            crate::mount::throttle::WINDOW.as_secs()
        )
    }
}
