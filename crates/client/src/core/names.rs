//! names.rs: display names, end to end, checked against roster commitments (TS twin: core/names.ts).

use super::*;

impl<R: CryptoRng> Core<R> {
    // A display name (type 4): shown only when it matches the sender's commitment in a
    // signed roster; kept (one per sender) until such a roster arrives.
    pub(super) fn on_name(&mut self, from: ParticipantId, from_id: Id16, pt: &[u8]) {
        let Ok(n) = NameMsg::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        if self.is_mediator() {
            // The mediator commits to what the participant sent before it was admitted, once:
            // a later rename would make the mediator re-sign every room (and everyone rekey)
            // at the participant's will.
            match self.manager.peers.get_mut(&from) {
                Some(p) => match p.rekey.as_mut() {
                    // New keys after a lost page: the name before their acknowledgment.
                    Some(r) if r.name.is_none() && !r.consent_ok => r.name = Some(n.commit()),
                    None if p.name.is_none() && !p.consent_ok => p.name = Some(n.commit()),
                    _ => return,
                },
                None => return,
            }
        }
        if self.name_claims.len() < MAX_PEERS || self.name_claims.contains_key(&from_id) {
            self.name_claims.insert(from_id, n);
        }
        self.check_names();
    }

    // Shows each claimed name that the newest roster listing its sender commits to.
    pub(super) fn check_names(&mut self) {
        let mut shown = Vec::new();
        let my_id = self.me.as_ref().map(|m| m.id);
        for (id, n) in &self.name_claims {
            let commit = n.commit();
            if Some(*id) == my_id {
                continue;
            }
            if self.names_shown.get(id) == Some(&commit) {
                continue;
            }
            let listed: Vec<[u8; 32]> = self
                .rooms
                .values()
                .filter_map(|r| r.current.as_ref())
                .filter_map(|c| self.chains.get(c)?.chain.head())
                .filter_map(|h| h.roster.member(id).map(|m| m.name_commit))
                .collect();
            if listed.is_empty() {
                continue;
            }
            shown.push((*id, commit, listed.contains(&commit), n.name.clone()));
        }
        for (id, commit, ok, name) in shown {
            if !ok {
                self.stats.names_rejected += 1;
                self.name_claims.remove(&id);
                continue;
            }
            self.names_shown.insert(id, commit);
            self.stats.names_verified += 1;
            if let Some(participant_id) = pid_of(&id) {
                self.events.push_back(Event::Name {
                    participant_id,
                    name,
                });
            }
        }
    }

    /// The display names verified so far (against signed rosters), by participant.
    pub fn names(&self) -> Vec<(ParticipantId, String)> {
        self.names_shown
            .iter()
            .filter_map(|(id, c)| {
                let n = self.name_claims.get(id).filter(|n| n.commit() == *c)?;
                Some((pid_of(id)?, n.name.clone()))
            })
            .collect()
    }

    // My display name, once, to each other present member of a roster I am present in.
    pub(super) fn send_name(&mut self, roster: &Roster) {
        let Some(pt) = self.my_name.as_ref().map(|n| Zeroizing::new(n.encode())) else {
            return;
        };
        let my_id = self.me.as_ref().map(|m| m.id);
        let to: Vec<(Id16, [u8; 32])> = roster
            .members
            .iter()
            .filter(|m| !m.is_away() && Some(m.participant_id) != my_id)
            .filter(|m| !self.named.contains(&m.participant_id))
            .map(|m| (m.participant_id, m.ek_pub))
            .collect();
        for (id, ek) in to {
            self.send_pairwise(id, &ek, MsgType::Name, &pt, None);
            self.named.insert(id);
        }
    }
}
