//! How many hash bins: the sharding `add` is asked for ([`Sharding`], `--bins`), the bit length
//! that gives about [`TARGETS_PER_BIN`] targets a bin, and when the current one is kept.

/// Targets the top-level role may list in its own file before `add` shards it.
pub const SHARD_THRESHOLD: usize = 2_000;
/// Targets a bin holds on average right after (re-)sharding.
pub const TARGETS_PER_BIN: usize = 500;
/// Most bits of a bin number trustfs uses: 2^15 bins. Snapshot lists every bin, and trustfs's
/// client indexes at most 2^15 (`Limits::max_bins`).
pub const MAX_BIT_LENGTH: u32 = 15;
/// The `name_prefix` of the bins trustfs creates, and so the name of their key in KEYDIR.
pub const NAME_PREFIX: &str = "bins";

/// How `add` lays out the top-level targets role's own files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharding {
    /// One file up to `threshold` targets; hash bins, their count chosen by the number of
    /// targets, beyond (and then for good, unless `Off` says otherwise).
    Auto { threshold: usize },
    /// Exactly `2^bit_length` hash bins (`--bins N`), whatever the number of targets.
    Bins { bit_length: u32 },
    /// One targets file however many targets (`--bins off`), for clients without TAP 15; a
    /// sharded repository goes back to one file.
    Off,
}

impl Default for Sharding {
    fn default() -> Self {
        Sharding::Auto {
            threshold: SHARD_THRESHOLD,
        }
    }
}

impl Sharding {
    /// `--bins N`: a power of two from 2 to 2^15.
    pub fn from_bin_count(n: u64) -> Result<Sharding, String> {
        if !n.is_power_of_two() || !(2..=1 << MAX_BIT_LENGTH).contains(&n) {
            return Err(format!(
                "{n} is not a power of two from 2 to {} (bins are numbered by the first bits of \
                 sha256(path))",
                1u64 << MAX_BIT_LENGTH
            ));
        }
        Ok(Sharding::Bins {
            bit_length: n.trailing_zeros(),
        })
    }
}

/// The bit length that gives `targets` targets about [`TARGETS_PER_BIN`] a bin (at least 1).
pub fn bit_length_for(targets: usize) -> u32 {
    let bins = targets.div_ceil(TARGETS_PER_BIN).max(1);
    // ceil(log2(bins)): bins - 1 has that many significant bits.
    let bits = usize::BITS - (bins - 1).leading_zeros();
    bits.clamp(1, MAX_BIT_LENGTH)
}

/// Whether `current` bits still suit `targets` targets: bins hold at most twice
/// [`TARGETS_PER_BIN`] on average. Fewer targets never shrink the bin count by themselves (a
/// count chosen with `--bins` stays; `--bins` changes it).
pub(super) fn keeps(current: u32, targets: usize) -> bool {
    current <= MAX_BIT_LENGTH && current + 1 >= bit_length_for(targets)
}

/// Whether an `add` with `sharding` of `targets` targets keeps the current `bit_length`.
pub(crate) fn keeps_layout(sharding: Sharding, bit_length: u32, targets: usize) -> bool {
    match sharding {
        Sharding::Auto { .. } => keeps(bit_length, targets),
        Sharding::Bins { bit_length: b } => b == bit_length,
        Sharding::Off => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_gives_about_500_targets_a_bin() {
        for (n, bits) in [
            (0, 1),
            (1, 1),
            (1000, 1),
            (1001, 2),
            (2001, 3),
            (100_000, 8),
            (128_000, 8),
            (128_001, 9),
            (1_000_000, 11),
            (usize::MAX / 2, MAX_BIT_LENGTH),
        ] {
            assert_eq!(bit_length_for(n), bits, "{n}");
        }
    }

    #[test]
    fn bit_length_is_kept_until_bins_hold_twice_500() {
        // 256 bins: kept up to 256,000 targets (1000 a bin), and however few there are.
        assert!(keeps(8, 100_000));
        assert!(keeps(8, 256_000));
        assert!(!keeps(8, 256_001));
        assert!(keeps(8, 10));
        assert!(keeps(15, 0));
        assert!(!keeps(16, 10));
    }

    #[test]
    fn bin_counts_are_powers_of_two_up_to_2_15() {
        assert_eq!(
            Sharding::from_bin_count(256),
            Ok(Sharding::Bins { bit_length: 8 })
        );
        assert_eq!(
            Sharding::from_bin_count(2),
            Ok(Sharding::Bins { bit_length: 1 })
        );
        assert_eq!(
            Sharding::from_bin_count(32768),
            Ok(Sharding::Bins { bit_length: 15 })
        );
        for bad in [0, 1, 3, 100, 65536] {
            assert!(Sharding::from_bin_count(bad).is_err(), "{bad}");
        }
    }
}
