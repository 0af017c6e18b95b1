//! How long newly signed metadata stays valid: [`Expiries`] (per role, from `--expires` specs)
//! and the `expires` string of a role signed now.

use std::time::Duration;

use crate::schema::{parse_duration, UtcTime};

use super::error::RepoError;

/// How long newly signed metadata of each role stays valid, counted from the time of signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
    /// The delegated role a command signs (`delegate`, `add --role`); `None`: as `targets`.
    pub delegated: Option<Duration>,
    /// Hash bins (`bins=DURATION`); `None`: as `targets`.
    pub bins: Option<Duration>,
}

impl Default for Expiries {
    /// root 365 days, targets 90 days, snapshot 7 days, timestamp 1 day; delegated roles as
    /// targets.
    fn default() -> Self {
        const DAY: u64 = 86400;
        Expiries {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(7 * DAY),
            timestamp: Duration::from_secs(DAY),
            delegated: None,
            bins: None,
        }
    }
}

impl Expiries {
    /// The defaults, overridden by `ROLE=DURATION` specs such as `timestamp=2h`.
    pub fn from_specs<S: AsRef<str>>(specs: &[S]) -> Result<Expiries, RepoError> {
        let mut e = Expiries::default();
        for spec in specs {
            e.set(spec.as_ref())?;
        }
        Ok(e)
    }

    /// The defaults, overridden by specs, for a command that signs the delegated role `role`:
    /// besides `ROLE=DURATION` for the top-level roles, `NAME=DURATION` (with the delegated role's
    /// name) or a bare `DURATION` set how long that role's new metadata stays valid.
    pub fn from_specs_for_role<S: AsRef<str>>(
        specs: &[S],
        role: &str,
    ) -> Result<Expiries, RepoError> {
        let mut e = Expiries::default();
        for spec in specs {
            let spec = spec.as_ref();
            match spec.split_once('=') {
                Some((name, dur)) if name.trim() == role => {
                    e.delegated = Some(positive_duration(spec, dur)?)
                }
                None => e.delegated = Some(positive_duration(spec, spec)?),
                Some(_) => e.set(spec)?,
            }
        }
        Ok(e)
    }

    /// How long a delegated role's new metadata stays valid.
    pub(crate) fn delegated(&self) -> Duration {
        self.delegated.unwrap_or(self.targets)
    }

    /// How long a hash bin's new metadata stays valid.
    pub(crate) fn bins(&self) -> Duration {
        self.bins.unwrap_or(self.targets)
    }

    /// Apply one `ROLE=DURATION` spec.
    pub fn set(&mut self, spec: &str) -> Result<(), RepoError> {
        let bad = |why: String| RepoError::InvalidArgument(format!("--expires {spec:?}: {why}"));
        let (role, dur) = spec
            .split_once('=')
            .ok_or_else(|| bad("expected ROLE=DURATION, e.g. timestamp=2h".into()))?;
        let d = positive_duration(spec, dur)?;
        match role.trim() {
            "root" => self.root = d,
            "targets" => self.targets = d,
            "snapshot" => self.snapshot = d,
            "timestamp" => self.timestamp = d,
            "bins" => self.bins = Some(d),
            other => {
                return Err(bad(format!(
                    "unknown role {other:?} (use root, targets, snapshot, timestamp or bins)"
                )))
            }
        }
        Ok(())
    }
}

fn positive_duration(spec: &str, dur: &str) -> Result<Duration, RepoError> {
    let bad = |why: String| RepoError::InvalidArgument(format!("--expires {spec:?}: {why}"));
    let d = parse_duration(dur.trim()).map_err(bad)?;
    if d.is_zero() {
        return Err(bad("the duration must be positive".into()));
    }
    Ok(d)
}

pub(crate) fn expiry(d: Duration) -> String {
    UtcTime::now().plus(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_role_specs() {
        let e = Expiries::from_specs(&["timestamp=2h", "root=2y"]).unwrap();
        assert_eq!(e.timestamp, Duration::from_secs(7200));
        assert_eq!(e.root, Duration::from_secs(2 * 365 * 86400));
        assert_eq!(e.targets, Expiries::default().targets);
        for bad in ["timestamp", "mirror=1d", "timestamp=0s", "timestamp=1x"] {
            assert!(
                matches!(
                    Expiries::from_specs(&[bad]),
                    Err(RepoError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn expiries_for_a_delegated_role() {
        let e = Expiries::from_specs_for_role(&["team=2d", "timestamp=2h"], "team").unwrap();
        assert_eq!(e.delegated(), Duration::from_secs(2 * 86400));
        assert_eq!(e.timestamp, Duration::from_secs(7200));
        let e = Expiries::from_specs_for_role(&["3d"], "team").unwrap();
        assert_eq!(e.delegated(), Duration::from_secs(3 * 86400));
        let e = Expiries::from_specs_for_role(&["targets=5d"], "team").unwrap();
        assert_eq!(
            e.delegated(),
            Duration::from_secs(5 * 86400),
            "default: as targets"
        );
        for bad in ["other=1d", "0s", "team=1x"] {
            assert!(
                Expiries::from_specs_for_role(&[bad], "team").is_err(),
                "{bad}"
            );
        }
        // Without a role, a bare duration is still an error.
        assert!(Expiries::from_specs(&["3d"]).is_err());
    }
}
