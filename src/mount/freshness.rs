//! How fresh the metadata in force is: when it was last confirmed (mount start or a successful
//! refresh), and how many refreshes failed since.
//!
//! With `--refresh-interval`, metadata that has not been confirmed for the staleness bound
//! (`--stale-after`, default [`default_stale_after`]: three refresh intervals, at least a minute)
//! is *stale*: the mount keeps serving what it trusts until that expires (TUF's freeze
//! protection is the expiry), but `trustfs status` shows ✘ with the reason and `trustfs_up`
//! drops to 0, so a dead repository, a broken network or a refresh thread that stopped cannot
//! hide behind a green check mark.

use std::time::{Duration, SystemTime};

/// The default staleness bound for a refresh interval: three intervals, at least a minute.
pub fn default_stale_after(interval: Duration) -> Duration {
    interval.saturating_mul(3).max(Duration::from_secs(60))
}

#[derive(Debug)]
pub(super) struct Freshness {
    /// Refreshing every `interval`, stale after `stale_after` without success (None: no refresh).
    refresh: Option<(Duration, Duration)>,
    last_ok: SystemTime,
    failures: u64,
    last_problem: Option<String>,
    /// Started from the state dir without reaching the repository, and why; cleared by a
    /// successful refresh.
    offline: Option<String>,
}

/// The judgement of [`Freshness::judge`].
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FreshnessVerdict {
    pub(super) stale: bool,
    /// Why stale, or the last failure while still fresh.
    pub(super) problem: Option<String>,
    pub(super) last_ok: SystemTime,
}

impl Freshness {
    pub(super) fn new(now: SystemTime) -> Freshness {
        Freshness {
            refresh: None,
            last_ok: now,
            failures: 0,
            last_problem: None,
            offline: None,
        }
    }

    pub(super) fn offline(&mut self, why: String) {
        self.offline = Some(why);
    }

    pub(super) fn set_refresh(&mut self, interval: Duration, stale_after: Duration) {
        self.refresh = Some((interval, stale_after));
    }

    /// How often the metadata is refreshed and when it counts as stale (None: no refresh).
    pub(super) fn refresh(&self) -> Option<(Duration, Duration)> {
        self.refresh
    }

    pub(super) fn ok(&mut self, now: SystemTime) {
        self.last_ok = now;
        self.failures = 0;
        self.last_problem = None;
        self.offline = None;
    }

    pub(super) fn failed(&mut self, problem: String) {
        self.failures += 1;
        self.last_problem = Some(problem);
    }

    pub(super) fn judge(&self, now: SystemTime) -> FreshnessVerdict {
        if let Some(why) = &self.offline {
            let last = match &self.last_problem {
                Some(p) => format!("; since then: {p}"),
                None => String::new(),
            };
            return FreshnessVerdict {
                stale: true,
                problem: Some(format!("{why}{last}")),
                last_ok: self.last_ok,
            };
        }
        let since = now.duration_since(self.last_ok).unwrap_or_default();
        let stale = self.refresh.is_some_and(|(_, after)| since > after);
        let problem = if stale {
            let at = crate::log::timestamp(self.last_ok);
            let why = match &self.last_problem {
                Some(p) => format!("{} refreshes failed since; the last: {p}", self.failures),
                None => "no refresh has finished since (is the refresh thread stuck?)".into(),
            };
            Some(format!(
                "the metadata is stale: last confirmed at {at}, {} s ago; {why}",
                since.as_secs()
            ))
        } else {
            self.last_problem.clone()
        };
        FreshnessVerdict {
            stale,
            problem,
            last_ok: self.last_ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_only_after_the_bound_without_success() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut f = Freshness::new(t0);
        // Without refresh, never stale.
        assert!(!f.judge(t0 + Duration::from_secs(86400)).stale);
        f.set_refresh(Duration::from_secs(10), Duration::from_secs(60));
        f.failed("timestamp.json: connection refused".into());
        let v = f.judge(t0 + Duration::from_secs(30));
        assert!(!v.stale);
        assert_eq!(
            v.problem.as_deref(),
            Some("timestamp.json: connection refused")
        );
        let v = f.judge(t0 + Duration::from_secs(61));
        assert!(v.stale);
        let p = v.problem.unwrap();
        assert!(
            p.contains("stale") && p.contains("1 refreshes failed") && p.contains("refused"),
            "{p}"
        );
        f.ok(t0 + Duration::from_secs(62));
        assert_eq!(
            f.judge(t0 + Duration::from_secs(63)),
            FreshnessVerdict {
                stale: false,
                problem: None,
                last_ok: t0 + Duration::from_secs(62)
            }
        );
        // No attempt finished at all: stale too, and says so.
        let v = f.judge(t0 + Duration::from_secs(200));
        assert!(v.stale && v.problem.unwrap().contains("stuck"));
    }

    #[test]
    fn an_offline_start_is_unconfirmed_until_a_refresh_succeeds() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut f = Freshness::new(t0);
        f.offline("started offline: connection refused".into());
        let v = f.judge(t0);
        assert!(v.stale && v.problem.unwrap().contains("started offline"));
        f.failed("still refused".into());
        assert!(f.judge(t0).problem.unwrap().contains("still refused"));
        f.ok(t0 + Duration::from_secs(5));
        assert!(!f.judge(t0 + Duration::from_secs(6)).stale);
    }

    #[test]
    fn default_bound() {
        assert_eq!(
            default_stale_after(Duration::from_secs(1)),
            Duration::from_secs(60)
        );
        assert_eq!(
            default_stale_after(Duration::from_secs(600)),
            Duration::from_secs(1800)
        );
    }
}
