//! Failed console sign-ins counted per source address.
//!
//! The account lock-out (`accounts::login`) stops guessing one account's
//! password; it does nothing against one address trying a few common
//! passwords on every account (password spraying), and each try costs an
//! Argon2 hash. So the sign-in form also counts failures per source address
//! (the peer, or the last hop a local proxy added, as
//! [`crate::payments::web::source_ip`] reads it): past [`MAX_FAILURES`]
//! within [`WINDOW_MS`], that address is answered 429 without a password
//! check until the window ends. A success does not reset the count (a
//! sprayer who guesses one account must not get a fresh budget).
//!
//! Kept in memory, per server replica: a restart forgets it, and N replicas
//! allow N times the budget; the account lock-out, in the database, holds
//! across replicas. The table is bounded ([`MAX_ADDRESSES`]); when it is
//! full, expired entries go first, then the oldest window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed sign-ins one address may make within [`WINDOW_MS`].
pub const MAX_FAILURES: u32 = 20;
/// The counting window, ms.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Most addresses remembered.
pub const MAX_ADDRESSES: usize = 10_000;

/// Failures per address: `(window start ms, failures in it)`.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    by_address: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl SignInThrottle {
    /// How long (ms) `ip` must wait before it may try again at `now`, or
    /// `None` if it may try now.
    pub fn wait_ms(&self, ip: IpAddr, now: i64) -> Option<i64> {
        let map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        let (start, failures) = *map.get(&ip)?;
        let ends = start.saturating_add(WINDOW_MS);
        (failures >= MAX_FAILURES && now < ends).then_some(ends - now)
    }

    /// Counts a failed sign-in from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: i64) {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now < start.saturating_add(WINDOW_MS));
            if map.len() >= MAX_ADDRESSES
                && let Some(oldest) = map.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k)
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now >= entry.0.saturating_add(WINDOW_MS) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_held_back_after_its_budget_until_the_window_ends() {
        let t = SignInThrottle::default();
        let (a, b) = (
            IpAddr::from([203, 0, 113, 7]),
            IpAddr::from([203, 0, 113, 8]),
        );
        for i in 0..MAX_FAILURES {
            assert_eq!(t.wait_ms(a, 1_000 + i64::from(i)), None);
            t.failed(a, 1_000 + i64::from(i));
        }
        assert_eq!(t.wait_ms(a, 2_000), Some(WINDOW_MS - 1_000));
        assert_eq!(t.wait_ms(b, 2_000), None, "another address is not held");
        assert_eq!(t.wait_ms(a, 1_000 + WINDOW_MS), None, "the window ended");
        t.failed(a, 1_000 + WINDOW_MS);
        assert_eq!(t.wait_ms(a, 2_000 + WINDOW_MS), None, "a fresh window");
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = SignInThrottle::default();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            t.failed(IpAddr::from(i.to_be_bytes()), i64::from(i));
        }
        let len = t.by_address.lock().unwrap().len();
        assert!(len <= MAX_ADDRESSES, "{len}");
    }
}
