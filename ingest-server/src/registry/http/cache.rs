//! A short-lived, bounded cache of the gateway's answers, keyed by plate and
//! colour. The same plate is often looked up several times within minutes
//! (a burst of cases from one intersection, a reviewer opening the case
//! page after ingest resolved it); asking the national gateway once spares
//! it and us. Answers are kept for a fixed time (found and not found alike,
//! so a failing burst of unknown plates is not re-asked either) and the
//! oldest are dropped first when it is full.
//!
//! The cache only saves the call: the adapter writes the access log for a
//! cached answer as for any other (`found_cached`, …). Pure state with the
//! time passed in; kept behind a mutex never held across a call.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// (plate, colour or empty).
type Key = (String, String);

/// See the module documentation.
#[derive(Debug)]
pub(super) struct Cache<V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<Key, (V, Instant)>,
    /// Keys in the order they were stored, with the expiry they were stored
    /// with (all entries live equally long, so this is also expiry order).
    /// An entry stored again leaves its older line behind; such lines are
    /// skipped when they come up.
    order: VecDeque<(Key, Instant)>,
}

impl<V: Clone> Cache<V> {
    /// Keeping answers for `ttl`, at most `capacity`; either zero: off.
    pub(super) fn new(ttl: Duration, capacity: usize) -> Cache<V> {
        Cache {
            ttl,
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// The answer stored for `plate` and `colour`, if still fresh at `now`.
    pub(super) fn get(&mut self, plate: &str, colour: &str, now: Instant) -> Option<V> {
        let key = (plate.to_string(), colour.to_string());
        match self.entries.get(&key) {
            Some((v, expires)) if now < *expires => Some(v.clone()),
            Some(_) => {
                self.entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `plate` and `colour` at `now`.
    pub(super) fn put(&mut self, plate: &str, colour: &str, value: V, now: Instant) {
        if !self.enabled() {
            return;
        }
        let Some(expires) = now.checked_add(self.ttl) else {
            return;
        };
        let key = (plate.to_string(), colour.to_string());
        // Expired entries go first, then the oldest while there is no room.
        while let Some((k, e)) = self.order.front() {
            let room = self.entries.contains_key(&key) || self.entries.len() < self.capacity;
            if *e > now && room {
                break;
            }
            if self.entries.get(k).is_some_and(|(_, x)| x == e) {
                self.entries.remove(k);
            }
            self.order.pop_front();
        }
        self.entries.insert(key.clone(), (value, expires));
        self.order.push_back((key, expires));
        if self.order.len() > 2 * self.capacity + 16 {
            // Many lines left behind by entries stored again: rebuild.
            let mut live: Vec<_> = self
                .entries
                .iter()
                .map(|(k, (_, e))| (k.clone(), *e))
                .collect();
            live.sort_by_key(|(_, e)| *e);
            self.order = live.into();
        }
    }

    /// How many answers are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = Cache::new(Duration::from_millis(100), 10);
        c.put("30A12345", "white", Some(1), t0);
        c.put("30A99999", "", None::<i32>, t0);
        assert_eq!(c.get("30A12345", "white", t0), Some(Some(1)));
        assert_eq!(c.get("30A99999", "", t0), Some(None), "not found is kept");
        assert_eq!(
            c.get("30A12345", "yellow", t0),
            None,
            "colour is part of the key"
        );
        let later = t0 + Duration::from_millis(100);
        assert_eq!(c.get("30A12345", "white", later), None);
    }

    #[test]
    fn the_oldest_go_first_when_full() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut c = Cache::new(Duration::from_secs(60), 3);
        for (i, p) in ["A", "B", "C", "D"].iter().enumerate() {
            c.put(p, "", i, t0 + ms(i as u64));
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("A", "", t0 + ms(10)), None);
        assert_eq!(c.get("D", "", t0 + ms(10)), Some(3));
        // Storing one again many times keeps the bookkeeping bounded.
        for i in 0..100 {
            c.put("B", "", i, t0 + ms(10 + i as u64));
        }
        assert_eq!(c.len(), 3);
        assert!(c.order.len() <= 2 * 3 + 16 + 1);
        assert_eq!(c.get("B", "", t0 + ms(200)), Some(99));
    }

    #[test]
    fn zero_ttl_or_size_is_off() {
        let t0 = Instant::now();
        for (ttl, size) in [(0, 10), (100, 0)] {
            let mut c = Cache::new(Duration::from_millis(ttl), size);
            c.put("A", "", 1, t0);
            assert_eq!(c.get("A", "", t0), None);
        }
    }
}
