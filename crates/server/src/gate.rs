//! Caps on connections that have not completed `hello`: in all, and per client IP address.
//!
//! Before `hello` a connection is nobody: it holds a socket, a task and a send queue while it
//! proves nothing. These caps bound what strangers can hold open for up to
//! `hello_timeout_secs` each. A connection takes a [`Pass`] before its WebSocket upgrade and
//! gives it back when it completes `hello` or closes; without a pass the upgrade is refused
//! with HTTP 503. The address is counted, never logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts of unauthenticated connections.
#[derive(Debug)]
pub(crate) struct Gate {
    max_total: u32,
    max_per_address: u32,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_address: HashMap<IpAddr, u32>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_unauthenticated_connections` are waiting for `hello` already.
    Total,
    /// `max_unauthenticated_per_address` from this address are.
    PerAddress,
}

impl Refused {
    /// The metrics label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "unauthenticated_total",
            Refused::PerAddress => "unauthenticated_per_address",
        }
    }
}

/// One unauthenticated connection's place; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Arc<Gate>,
    address: IpAddr,
}

impl Gate {
    /// Caps of 0 are off.
    pub(crate) fn new(max_total: u32, max_per_address: u32) -> Self {
        Self {
            max_total,
            max_per_address,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Takes a place for a connection from `address`, if the caps allow.
    pub(crate) fn enter(self: &Arc<Self>, address: IpAddr) -> Result<Pass, Refused> {
        // An IPv4 client on a dual-stack socket is the same client as over IPv4.
        let address = address.to_canonical();
        let mut c = self.lock();
        if self.max_total > 0 && c.total >= self.max_total {
            return Err(Refused::Total);
        }
        let here = c.by_address.get(&address).copied().unwrap_or(0);
        if self.max_per_address > 0 && here >= self.max_per_address {
            return Err(Refused::PerAddress);
        }
        c.total += 1;
        c.by_address.insert(address, here + 1);
        Ok(Pass {
            gate: self.clone(),
            address,
        })
    }

    /// Unauthenticated connections now.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u32 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut c = self.gate.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                c.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address_and_places_come_back() {
        let gate = Arc::new(Gate::new(3, 2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = gate.enter(a).unwrap();
        let _a2 = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).unwrap_err(), Refused::PerAddress);
        // The same client over a dual-stack socket.
        let mapped: IpAddr = std::net::Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1]).into();
        assert_eq!(gate.enter(mapped).unwrap_err(), Refused::PerAddress);
        let _b1 = gate.enter(b).unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(gate.total(), 2);
        let _b2 = gate.enter(b).unwrap();
        assert!(gate.enter(b).is_err());
    }

    #[test]
    fn zero_is_no_cap() {
        let gate = Arc::new(Gate::new(0, 0));
        let a: IpAddr = [10, 0, 0, 1].into();
        let passes: Vec<Pass> = (0..1000).map(|_| gate.enter(a).unwrap()).collect();
        assert_eq!(gate.total(), 1000);
        drop(passes);
        assert_eq!(gate.total(), 0);
    }
}
