//! Failed console sign-ins counted per source address.
//!
//! The account lock-out (`accounts::login`) stops guessing one account's
//! password; it does nothing against one address trying a few common
//! passwords on every account (password spraying), and each try costs an
//! Argon2 hash. So the sign-in form also counts failures per source address
//! ([`client_address`]): past [`MAX_FAILURES`] within [`WINDOW_MS`], that
//! address is answered 429 without a password check until the window ends.
//! Each attempt is counted *before* its password check, in the same step
//! that checks the budget ([`SignInThrottle::reserve`]), and given back
//! when the password was right: a burst of parallel requests gets at most
//! the budget of password checks, not one each.
//! A success does not reset the count (a sprayer who guesses one account
//! must not get a fresh budget). IPv6 addresses count per /64 (what one
//! subscriber is given).
//!
//! The client is the direct peer, or, when the peer is this machine or one
//! of `http.trusted_proxies`, the right-most `X-Forwarded-For` hop that is
//! not. When every hop is a proxy of ours (or there is none, or an entry
//! that does not parse stops the walk) the left-most proxy reached counts:
//! every request is counted under some address, never under none. A shared
//! proxy in front that is not listed makes one budget of everyone behind
//! it: list it, and only it (the Kubernetes manifest lists the ingress
//! controller): any host in a listed network can claim to forward anyone.
//! A direct client cannot escape its count with forwarding headers.
//!
//! Kept in memory, per server replica: a restart forgets it, and N replicas
//! allow N times the budget; the account lock-out, in the database, holds
//! across replicas. The table is bounded ([`MAX_ADDRESSES`]); when it is
//! full, expired entries go first, then the oldest that is not held back
//! (an attacker's fresh addresses cannot push out its own held one).

use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed sign-ins one address may make within [`WINDOW_MS`].
pub const MAX_FAILURES: u32 = 20;
/// The counting window, ms.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Most addresses remembered.
pub const MAX_ADDRESSES: usize = 10_000;

/// An address or network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`) whose
/// requests come from a proxy that appends the client to
/// `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(text: &str) -> Result<ProxyNet, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|e| format!("`{text}` is not an address or network: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix must be 0..={max}"))?,
        };
        Ok(ProxyNet { addr, prefix })
    }

    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address for counting (see the module comment). Never
/// none: a request that escaped the count would be a free guess.
pub fn client_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[ProxyNet]) -> IpAddr {
    // No peer (a router served without connection information): all such
    // requests share one budget.
    let Some(peer) = peer.map(|p| p.to_canonical()) else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let is_proxy = |ip: IpAddr| ip.is_loopback() || trusted.iter().any(|n| n.contains(ip));
    if !is_proxy(peer) {
        // A direct client, whatever headers it sends (a shared proxy in
        // front must be listed in `trusted_proxies`, or everyone behind it
        // shares its budget).
        return peer;
    }
    // From the right: the first hop no proxy of ours added. An entry that
    // does not parse (after dropping a port) stops the walk: what lies left
    // of it was written by someone we cannot vouch for. Every hop walked
    // is a proxy of ours: when the walk ends without a client, the
    // left-most of them, the nearest to the client we know of, counts.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut nearest = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_hop(entry) else {
            break;
        };
        let ip = ip.to_canonical();
        if !is_proxy(ip) {
            return ip;
        }
        nearest = ip;
    }
    nearest
}

/// One `X-Forwarded-For` entry: an address, `a.b.c.d:port` or `[v6]:port`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']').and_then(|(a, _)| a.parse().ok());
    }
    e.rsplit_once(':')
        .filter(|(a, p)| !a.contains(':') && p.parse::<u16>().is_ok())
        .and_then(|(a, _)| a.parse().ok())
}

/// The key an address is counted under: itself, or its /64 for IPv6
/// (an IPv4 address written as IPv6, `::ffff:a.b.c.d`, as itself).
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(_) => ip,
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !(u128::MAX >> 64)).into()),
    }
}

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
        let (start, failures) = *map.get(&key(ip))?;
        let ends = start.saturating_add(WINDOW_MS);
        (failures >= MAX_FAILURES && now < ends).then_some(ends - now)
    }

    /// Counts a sign-in attempt from `ip` at `now` as failed *before* its
    /// password is checked, in the same step as the check of the budget:
    /// `Err(wait ms)` when the address is held back. Checking first and
    /// counting after the (slow) password check let a burst of parallel
    /// requests all pass the check before any was counted, each getting a
    /// password guess. A right password gives its attempt back
    /// ([`SignInThrottle::give_back`]).
    pub fn reserve(&self, ip: IpAddr, now: i64) -> Result<Attempt, i64> {
        let ip = key(ip);
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(start, failures)) = map.get(&ip) {
            let ends = start.saturating_add(WINDOW_MS);
            if failures >= MAX_FAILURES && now < ends {
                return Err(ends - now);
            }
        }
        Ok(Attempt {
            ip,
            window: count(&mut map, ip, now),
        })
    }

    /// Gives back an attempt that was no failure: a sign-in whose password
    /// was right (it does not reset the count: a sprayer who guesses one
    /// account must not get a fresh budget), or one the server could not
    /// check (a database error is ours, not a wrong guess: staff must not be
    /// locked out of the console by an outage). Only within the window it
    /// was counted in.
    pub fn give_back(&self, attempt: Attempt) {
        let Some(window) = attempt.window else { return };
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&attempt.ip)
            && entry.0 == window
        {
            entry.1 = entry.1.saturating_sub(1);
        }
    }

    /// Counts a failed sign-in from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: i64) {
        let mut map = self.by_address.lock().unwrap_or_else(|p| p.into_inner());
        count(&mut map, key(ip), now);
    }
}

/// One attempt counted by [`SignInThrottle::reserve`]: the address key and
/// the start of the window it was counted in (`None`: the table was full
/// of held-back addresses and it went uncounted).
#[derive(Debug)]
#[must_use = "give an attempt that was no failure back with `give_back`"]
pub struct Attempt {
    ip: IpAddr,
    window: Option<i64>,
}

/// Adds one failure for the key `ip` at `now`, making room in a full table
/// (see the module comment); the start of its window, or `None` when every
/// entry is held back and this one goes uncounted.
fn count(map: &mut HashMap<IpAddr, (i64, u32)>, ip: IpAddr, now: i64) -> Option<i64> {
    if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
        map.retain(|_, (start, _)| now < start.saturating_add(WINDOW_MS));
        if map.len() >= MAX_ADDRESSES {
            let oldest_free = map
                .iter()
                .filter(|(_, (_, n))| *n < MAX_FAILURES)
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| *k);
            map.remove(&oldest_free?);
        }
    }
    let entry = map.entry(ip).or_insert((now, 0));
    if now >= entry.0.saturating_add(WINDOW_MS) {
        *entry = (now, 0);
    }
    entry.1 = entry.1.saturating_add(1);
    Some(entry.0)
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
    fn attempts_are_counted_before_the_check_and_a_success_given_back() {
        let t = SignInThrottle::default();
        let a = IpAddr::from([203, 0, 113, 9]);
        let first = t.reserve(a, 1_000).unwrap();
        t.give_back(first);
        let held: Vec<Attempt> = (0..MAX_FAILURES)
            .map(|i| t.reserve(a, 1_001 + i64::from(i)).unwrap())
            .collect();
        assert_eq!(t.reserve(a, 2_000).map(|_| ()), Err(WINDOW_MS - 1_000));
        // A success gives back its own attempt only.
        held.into_iter().take(1).for_each(|h| t.give_back(h));
        assert!(t.reserve(a, 2_000).is_ok());
        assert!(t.reserve(a, 2_000).is_err());
    }

    #[test]
    fn only_an_address_that_is_the_clients_is_counted() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = [ProxyNet::parse("10.0.0.0/8").unwrap()];
        let fwd = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", v.parse().unwrap());
            h
        };
        let none = HeaderMap::new();
        // A direct client.
        assert_eq!(
            client_address(Some(ip("203.0.113.5")), &none, &trusted),
            ip("203.0.113.5")
        );
        // Through a trusted ingress: the right-most hop that is not a proxy
        // (the client may put anything before it).
        assert_eq!(
            client_address(
                Some(ip("10.1.2.3")),
                &fwd("1.2.3.4, 198.51.100.9, 10.4.4.4"),
                &trusted
            ),
            ip("198.51.100.9")
        );
        // A direct peer counts as itself whatever it claims to forward.
        assert_eq!(
            client_address(Some(ip("192.0.2.1")), &fwd("198.51.100.9"), &trusted),
            ip("192.0.2.1")
        );
        // A proxy that writes ports; an entry that does not parse stops
        // the walk; an IPv4 address written as IPv6 is that address.
        assert_eq!(
            client_address(
                Some(ip("10.1.2.3")),
                &fwd("198.51.100.9:4431, 10.4.4.4"),
                &trusted
            ),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_address(
                Some(ip("10.1.2.3")),
                &fwd("198.51.100.9, junk, 10.4.4.4"),
                &trusted
            ),
            ip("10.4.4.4"),
            "the left-most proxy before the junk"
        );
        assert_eq!(
            client_address(
                Some(ip("::ffff:10.1.2.3")),
                &fwd("::ffff:198.51.100.9"),
                &trusted
            ),
            ip("198.51.100.9")
        );
        // Never counted under no address: a local proxy that forwards
        // nobody is counted itself; a chain of proxies only, under the
        // left-most; an unknown peer under one shared key.
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &none, &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &fwd("10.9.9.9, 10.4.4.4"), &trusted),
            ip("10.9.9.9")
        );
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &fwd("unknown"), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(client_address(None, &none, &trusted), ip("0.0.0.0"));
        // Only the ingress trusted: another internal client's forged hops
        // do not move its count.
        let ingress = [ProxyNet::parse("10.96.0.8/30").unwrap()];
        assert_eq!(
            client_address(Some(ip("10.1.2.3")), &fwd("198.51.100.77"), &ingress),
            ip("10.1.2.3")
        );
        assert!(ProxyNet::parse("10.0.0.0/33").is_err() && ProxyNet::parse("proxy").is_err());
        assert!(ProxyNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
    }

    #[test]
    fn ipv6_counts_per_64_and_held_entries_are_not_pushed_out() {
        let t = SignInThrottle::default();
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            t.failed(ip, 1_000);
        }
        let other_in_64: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert!(
            t.wait_ms(other_in_64, 2_000).is_some(),
            "one /64, one budget"
        );
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            t.failed(IpAddr::from(i.to_be_bytes()), 1_500);
        }
        assert!(t.wait_ms(other_in_64, 2_000).is_some(), "still held");
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
