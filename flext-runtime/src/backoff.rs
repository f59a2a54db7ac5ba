//! The one retry backoff policy, shared by the [`Retry`](crate::middleware::Retry)
//! middleware and the saga runner: exponential (truncated binary exponential backoff,
//! as in Ethernet and AWS's "Exponential Backoff and Jitter", without jitter so that
//! tests can assert the schedule), from a first wait, doubling, up to a cap.

use std::time::Duration;

/// Waits `first`, `2 × first`, `4 × first`, ... and never more than `cap`.
///
/// ```
/// use std::time::Duration;
/// use flext::Backoff;
///
/// let b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
/// let waits: Vec<u128> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
/// assert_eq!(waits, [100, 200, 400, 500, 500]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
}

impl Backoff {
    /// The saga runner's default cap: 60 seconds.
    pub const SAGA_CAP: Duration = Duration::from_secs(60);

    /// A policy whose first wait is `first` and whose waits never exceed `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Backoff { first, cap }
    }

    /// The wait after the `n`-th failure (`n` from 1): `first × 2^(n-1)`, at most `cap`.
    /// Saturates instead of overflowing for any `n`.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }

    /// The first wait.
    pub fn first(&self) -> Duration {
        self.first
    }

    /// The cap.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_and_never_overflows() {
        let b = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        assert_eq!(b.delay(1), Duration::from_millis(50));
        assert_eq!(b.delay(2), Duration::from_millis(100));
        assert_eq!(b.delay(7), Duration::from_millis(3200));
        assert_eq!(b.delay(8), Duration::from_secs(5));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
        assert_eq!(
            Backoff::new(Duration::ZERO, Duration::from_secs(1)).delay(9),
            Duration::ZERO
        );
    }
}
