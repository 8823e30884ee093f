//! timers.rs: the timer tick: key expiry, ratchet, alarms that wait (TS twin: core/timers.ts).

use super::*;

impl<R: CryptoRng> Core<R> {
    /// Timers: expire old keys, raise unsigned-member and stale-key alarms.
    pub fn tick(&mut self, now: Instant) {
        self.now = Some(now);
        self.ratchet_sealers(now);
        let due: Vec<_> = self
            .keys
            .expiries
            .iter()
            .filter(|e| e.0 <= now)
            .cloned()
            .collect();
        self.keys.expiries.retain(|e| e.0 > now);
        for (_, cid, sender, g) in due {
            match g {
                Some(g) => {
                    for ((c, s, _), o) in self.keys.openers.iter_mut() {
                        if *c == cid && *s == sender {
                            o.remove_generation(g);
                        }
                    }
                }
                None => {
                    // Gone from the channel: only if still absent from its roster.
                    let absent = self
                        .chains
                        .get(&cid)
                        .and_then(|s| s.chain.head())
                        .is_none_or(|h| h.roster.member(&sender).is_none_or(Member::is_away));
                    if absent {
                        self.keys
                            .openers
                            .retain(|(c, s, _), _| !(*c == cid && *s == sender));
                    }
                }
            }
        }
        let keep = self.cfg.stale_key_after;
        self.keys
            .early_keys
            .retain(|(at, _, _)| now.duration_since(*at) < keep);
        let due: Vec<_> = self
            .keys
            .channel_expiries
            .iter()
            .filter(|e| e.0 <= now)
            .cloned()
            .collect();
        self.keys.channel_expiries.retain(|e| e.0 > now);
        for (_, cid, ch) in due {
            if self.my_channel.as_ref().map(|c| &c.id) != Some(&ch) {
                self.keys.openers.retain(|(c, _, _), _| *c != cid);
                self.drop_sealers(cid);
            }
        }
        self.retry_early_chats(now);
        if self.is_mediator() {
            self.check_relisted(now);
        }
        self.check_unsigned(now);
        self.check_stale(now);
    }
}
