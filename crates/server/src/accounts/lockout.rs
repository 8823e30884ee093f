//! Login throttling: failed attempts are counted per account name and per client address; at
//! the limit the key is locked for `lockout_secs`.
//!
//! The rule, one paragraph: a key's failures count within a window of `lockout_secs` from its
//! first failure (an older first failure starts a new window). The failure that reaches the
//! limit locks the key until `now + lockout_secs` and clears the count. While locked, every
//! attempt is refused before any password is checked, and refused attempts do not extend the
//! lock. A successful login clears the account's key (not the address's: one good login must
//! not wash out a guessing address). A limit of 0 turns that kind of key off.
//!
//! Account keys are counted whether or not an account of that name exists, so a lock says
//! nothing about which names exist. Counts live in memory (a restart forgets them) and never
//! reach a log or a file; at most [`MAX_KEYS`] keys are held, the idle ones dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Keys held at most; past it, keys neither locked nor in a window are dropped.
pub const MAX_KEYS: usize = 100_000;

/// The numbers of the rule (config: `login_max_failures`, `login_max_failures_per_address`,
/// `login_lockout_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures of one account name before it is locked (0: no account lockout).
    pub per_account: u32,
    /// Failures from one client address before it is locked (0: no address lockout).
    pub per_address: u32,
    /// How long a lock lasts, and the window failures are counted in.
    pub lockout_secs: u64,
}

/// One key's record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Failures in the current window.
    pub failures: u32,
    /// When the window's first failure happened.
    pub window_start: u64,
    /// Locked until this time (Unix seconds); 0: not locked.
    pub locked_until: u64,
}

impl Record {
    /// Whether the key is locked at `now`.
    pub fn is_locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    /// The record after one more failure at `now` under `limit` failures per `lockout_secs`.
    pub fn after_failure(self, now: u64, limit: u32, lockout_secs: u64) -> Self {
        if self.is_locked(now) {
            return self;
        }
        let in_window = self.failures > 0 && now < self.window_start.saturating_add(lockout_secs);
        let (failures, window_start) = if in_window {
            (self.failures + 1, self.window_start)
        } else {
            (1, now)
        };
        if failures >= limit {
            return Self {
                failures: 0,
                window_start: now,
                locked_until: now.saturating_add(lockout_secs),
            };
        }
        Self {
            failures,
            window_start,
            locked_until: 0,
        }
    }

    /// Whether the record still matters at `now` (locked, or failures in their window).
    fn is_live(&self, now: u64, lockout_secs: u64) -> bool {
        self.is_locked(now)
            || (self.failures > 0 && now < self.window_start.saturating_add(lockout_secs))
    }
}

/// A refused attempt: locked until `until` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// When the lock ends.
    pub until: u64,
}

/// The failure records of one server.
#[derive(Debug)]
pub struct Throttle {
    policy: Policy,
    keys: Mutex<HashMap<Key, Record>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

impl Throttle {
    /// An empty table under `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Refused when the account name or the address is locked at `now`.
    pub fn check(&self, account: &str, address: IpAddr, now: u64) -> Result<(), Locked> {
        let keys = self.lock();
        let until = [Key::Account(account.to_owned()), Key::Address(address)]
            .iter()
            .filter_map(|k| keys.get(k))
            .filter(|r| r.is_locked(now))
            .map(|r| r.locked_until)
            .max();
        match until {
            Some(until) => Err(Locked { until }),
            None => Ok(()),
        }
    }

    /// Counts one failed attempt against the account name and the address.
    pub fn fail(&self, account: &str, address: IpAddr, now: u64) {
        let p = self.policy;
        let mut keys = self.lock();
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, r| r.is_live(now, p.lockout_secs));
        }
        for (key, limit) in [
            (Key::Account(account.to_owned()), p.per_account),
            (Key::Address(address), p.per_address),
        ] {
            if limit == 0 {
                continue;
            }
            let r = keys.entry(key).or_default();
            *r = r.after_failure(now, limit, p.lockout_secs);
        }
    }

    /// A login succeeded: the account's failures are forgotten.
    pub fn succeed(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_owned()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        // The map holds plain counters; a panic elsewhere cannot leave it half-written.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    fn fails(n: u32, at: impl Fn(u32) -> u64) -> Record {
        (0..n).fold(Record::default(), |r, i| r.after_failure(at(i), 5, 900))
    }

    #[test]
    fn the_fifth_failure_in_the_window_locks_for_the_lockout() {
        let r = fails(4, |i| T0 + u64::from(i));
        assert_eq!((r.failures, r.is_locked(T0 + 4)), (4, false));
        let r = r.after_failure(T0 + 4, 5, 900);
        assert!(r.is_locked(T0 + 4));
        assert!(r.is_locked(T0 + 4 + 899));
        assert!(!r.is_locked(T0 + 4 + 900));
        // Attempts while locked do not extend it.
        let again = r.after_failure(T0 + 500, 5, 900);
        assert_eq!(again, r);
    }

    #[test]
    fn failures_older_than_the_window_start_a_new_count() {
        let r = fails(4, |i| T0 + u64::from(i));
        let r = r.after_failure(T0 + 900, 5, 900);
        assert_eq!((r.failures, r.window_start), (1, T0 + 900));
        assert!(!r.is_locked(T0 + 900));
    }

    #[test]
    fn account_and_address_are_counted_apart_and_success_clears_only_the_account() {
        let t = Throttle::new(Policy {
            per_account: 3,
            per_address: 5,
            lockout_secs: 60,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.check("ann", a, T0), Ok(()));
            t.fail("ann", a, T0);
        }
        // ann is locked from everywhere; another name from the same address is not.
        assert_eq!(t.check("ann", b, T0), Err(Locked { until: T0 + 60 }));
        assert_eq!(t.check("bob", a, T0), Ok(()));
        t.fail("bob", a, T0);
        t.succeed("bob");
        t.fail("cat", a, T0);
        // Five failures from `a` in all: the address is locked for any name.
        assert_eq!(t.check("dan", a, T0 + 1), Err(Locked { until: T0 + 60 }));
        assert_eq!(t.check("dan", b, T0 + 1), Ok(()));
        assert_eq!(t.check("ann", b, T0 + 60), Ok(()));
    }

    #[test]
    fn a_limit_of_zero_is_off() {
        let t = Throttle::new(Policy {
            per_account: 2,
            per_address: 0,
            lockout_secs: 60,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..10 {
            t.fail(&format!("n{i}"), a, T0);
        }
        assert_eq!(t.check("other", a, T0), Ok(()));
    }
}
