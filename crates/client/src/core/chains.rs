//! chains.rs: roster chains per room, acceptance, successor links, what rosters mean for me (TS twin: core/chains.ts).

use super::*;

impl<R: CryptoRng> Core<R> {
    /// The epoch of the newest signed roster I hold for a server channel.
    pub fn roster_epoch(&self, ch: &ChannelId) -> Option<u64> {
        self.head_for(ch).map(|h| h.roster.epoch)
    }

    /// The members of the newest signed roster I hold for a server channel (present or away).
    pub fn roster_members(&self, ch: &ChannelId) -> Vec<ParticipantId> {
        self.members_for(ch, |_| true)
    }

    /// The members present (not flagged away) in the newest signed roster of a server channel.
    pub fn roster_present(&self, ch: &ChannelId) -> Vec<ParticipantId> {
        self.members_for(ch, |m| !m.is_away())
    }

    // The roster of a server channel: the head of its current chain. Every reader (sealing,
    // the withheld and unsigned checks, the rosters shown) uses this one chain, so a room
    // that emptied and filled again (a new chain, from epoch 1) is never judged by its old
    // roster.
    pub(super) fn head_for(&self, ch: &ChannelId) -> Option<&SignedRoster> {
        self.current_chain(ch).and_then(|(_, s)| s.chain.head())
    }

    // The current chain of this server channel: the one that replaced every other chain of
    // that room (§7.6), never merely the one that advanced last.
    pub(super) fn current_chain(&self, ch: &ChannelId) -> Option<(&Id16, &ChainState)> {
        let cid = self.rooms.get(ch)?.current.as_ref()?;
        self.chains.get_key_value(cid)
    }

    // My entry in a roster, only if it carries my own keys: an entry under my id with other
    // keys is someone else's, and I am not in that roster (§7.5).
    pub(super) fn my_entry<'a>(&self, roster: &'a Roster) -> Option<&'a Member> {
        let me = self.me.as_ref()?;
        let id = self.identity.as_ref()?;
        roster
            .member(&me.id)
            .filter(|m| m.ik_pub == id.ik_pub() && m.ek_pub == id.ek_pub())
    }

    pub(super) fn members_for(
        &self,
        ch: &ChannelId,
        keep: impl Fn(&Member) -> bool,
    ) -> Vec<ParticipantId> {
        self.head_for(ch)
            .map(|h| {
                h.roster
                    .members
                    .iter()
                    .filter(|m| keep(m))
                    .filter_map(|m| pid_of(&m.participant_id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The confer/1 channel id of a server channel's current chain, if I hold one.
    pub fn channel_id(&self, ch: &ChannelId) -> Option<Id16> {
        self.current_chain(ch).map(|(c, _)| *c)
    }

    pub(super) fn channel_id_of(&self, ch: &ChannelId) -> Option<&Id16> {
        // The current chain of this server channel (a room that emptied and filled again gets
        // a new chain), if it lists me, with my own keys, as present.
        let (cid, s) = self.current_chain(ch)?;
        self.my_entry(&s.chain.head()?.roster)
            .filter(|m| !m.is_away())
            .map(|_| cid)
    }

    // A chain verified against the mediator's key and every delegation I accepted.
    pub(super) fn new_chain(&self, session: &[u8], m_ik: [u8; 32]) -> Chain {
        let mut c = Chain::new(session, m_ik);
        for (ik, sig) in &self.delegations {
            // Each was verified when it was added; adding it again cannot fail.
            let _ = c.add_delegate(*ik, confer_e2ee::identity::SCOPE_ROSTERS, sig);
        }
        c
    }

    pub(super) fn on_roster(
        &mut self,
        from: ParticipantId,
        ch: String,
        enc: Bytes,
        sig: Bytes,
        del: Option<([u8; 32], [u8; 64])>,
        now: Instant,
    ) {
        let Some((m_pid, m_ik, _)) = self.mediator.clone() else {
            return;
        };
        // From the mediator, or from a co-mediator whose delegation comes with the roster
        // (verified under the mediator's key; the chain then checks the roster is signed by
        // that very key, listed with role 1).
        if from != m_pid {
            let Some((dik, dsig)) = del else {
                self.alarm(Alarm::RosterFromNonMediator, from.as_str().to_owned());
                return;
            };
            if !self.add_delegation(dik, dsig) {
                self.alarm(Alarm::DelegationInvalid, from.as_str().to_owned());
                return;
            }
        }
        let (Some(sig), Ok(server_channel)) = (sig.array::<64>(), ChannelId::new(ch)) else {
            return;
        };
        let Ok(sr) = SignedRoster::from_parts(&enc.0, sig) else {
            self.alarm(
                Alarm::Roster(RosterError::Malformed),
                hex::encode(&enc.0[..enc.0.len().min(8)]),
            );
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let cid = sr.roster.channel_id;
        // A roster I already hold (a manager resending a room's history to someone new to a
        // chain, §7.5) changes nothing and is no rollback.
        if self.chains.values().any(|s| s.seen.contains(&sr.hash)) {
            return;
        }
        // A chain that a newer chain of its room replaced stays closed (§7.6).
        if self.rooms.values().any(|r| r.retired.contains(&cid)) {
            self.alarm(Alarm::ChainRevived, hex::encode(cid));
            return;
        }
        // The envelope's room label is not signed: the signed kind must fit it, and a chain
        // stays bound to the room it was first seen for.
        let fits = match sr.roster.kind {
            Kind::Joint => server_channel.as_str() == "joint",
            Kind::Caucus => server_channel.as_str().starts_with("caucus-"),
            Kind::Breakout => server_channel.as_str().starts_with("breakout-"),
        };
        let rebound = self
            .chains
            .get(&cid)
            .is_some_and(|s| s.server_channel != server_channel);
        if !fits || rebound {
            self.alarm(Alarm::Roster(RosterError::WrongChannel), hex::encode(cid));
            return;
        }
        // A chain (and its room binding) exists only once a roster for it was accepted: a
        // refused first roster binds nothing.
        let fresh = !self.chains.contains_key(&cid);
        let mut chain = match self.chains.get(&cid) {
            Some(st) => st.chain.clone(),
            None => self.new_chain(&me.session, m_ik),
        };
        let (epoch, prev_hash) = (sr.roster.epoch, sr.roster.prev_hash);
        match chain.accept(sr) {
            Ok(Accepted::Advanced) => {
                if fresh && !self.adopt_chain(&server_channel, cid, epoch, prev_hash) {
                    self.alarm(Alarm::ChainUnlinked, hex::encode(cid));
                    return;
                }
                let mut seen = self
                    .chains
                    .get(&cid)
                    .map(|s| s.seen.clone())
                    .unwrap_or_default();
                if let Some(h) = chain.head() {
                    if seen.len() < MAX_CHAIN_HISTORY {
                        seen.insert(h.hash);
                    }
                    // Managers keep the room's history, to hand newcomers (with the
                    // delegation it came with, if a co-mediator signed it).
                    if self.is_manager() {
                        let extra = del.filter(|_| from != m_pid);
                        self.record_lineage(&server_channel, h.clone(), extra);
                    }
                }
                self.chains.insert(
                    cid,
                    ChainState {
                        chain,
                        server_channel,
                        advanced_at: now,
                        seen,
                    },
                );
                self.adopt_placements(cid);
                self.after_roster(cid, now);
            }
            Ok(Accepted::Unchanged) => {}
            Err(e) => {
                let key = format!("{}:{e:?}", hex::encode(cid));
                self.alarm(Alarm::Roster(e), key);
            }
        }
    }

    // A new chain `cid` for a room: it becomes the room's current chain if it links to the
    // chain I hold for that room (its first roster's prev_hash is that chain's head hash), or
    // if I hold none, or if I am not in the head I hold (I left that chain and cannot know its
    // later rosters; the new chain must still be a successor: epoch 1, non-zero link). The
    // chain it replaces is closed for good (§7.6).
    pub(super) fn adopt_chain(
        &mut self,
        room: &ChannelId,
        cid: Id16,
        epoch: u64,
        prev: [u8; 32],
    ) -> bool {
        let current = self.rooms.get(room).and_then(|r| r.current);
        if let Some(cur) = current {
            let head = self.chains.get(&cur).and_then(|s| s.chain.head());
            let linked = head.is_some_and(|h| epoch == 1 && prev == h.hash);
            let outside = head.is_none_or(|h| self.my_entry(&h.roster).is_none())
                && epoch == 1
                && prev != [0; 32];
            if !linked && !outside {
                return false;
            }
        }
        let r = self.rooms.entry(room.clone()).or_default();
        if let Some(cur) = current {
            r.retired.insert(cur);
        }
        r.current = Some(cid);
        true
    }

    // A roster advanced: rekey if I am present, drop keys of members who left, retry keys that
    // arrived early, refresh the session code.
    pub(super) fn after_roster(&mut self, cid: Id16, now: Instant) {
        let Some(me) = self.me.as_ref() else { return };
        let my_id = me.id;
        let Some(head) = self.chains.get(&cid).and_then(|s| s.chain.head()).cloned() else {
            return;
        };
        self.note_member_keys(&head.roster);
        let room = self.chains.get(&cid).map(|s| s.server_channel.clone());
        if let Some(room) = room.filter(|_| self.my_entry(&head.roster).is_some())
            && self.listed_rooms.len() < 4 * MAX_PEERS
        {
            self.listed_rooms.insert(room);
        }
        let present: BTreeSet<Id16> = head
            .roster
            .members
            .iter()
            .filter(|m| !m.is_away())
            .map(|m| m.participant_id)
            .collect();
        let senders: BTreeSet<(Id16, Id16)> =
            self.keys.openers.keys().map(|(c, s, _)| (*c, *s)).collect();
        for (c, sender) in senders {
            if c == cid && !present.contains(&sender) {
                self.keys
                    .expiries
                    .push((now + self.cfg.keep_old_keys, c, sender, None));
            }
        }
        // My id with keys that are not mine: that entry is someone else, and I am not in this
        // roster (no keys sent, "securing" stays on).
        let mine = self.my_entry(&head.roster).is_some_and(|m| !m.is_away());
        // (A client that resumed after losing its keys is first sent the room's history, which
        // lists its id with the keys it lost: that is no alarm until the room listed its new
        // keys once.)
        let history = self.rejoined
            && !self
                .chains
                .get(&cid)
                .is_some_and(|s| self.listed_rooms.contains(&s.server_channel));
        if !mine
            && !history
            && head.roster.member(&my_id).is_some()
            && self.my_entry(&head.roster).is_none()
        {
            self.alarm(
                Alarm::WrongSelfKey,
                format!("{}:{}", hex::encode(cid), head.roster.epoch),
            );
        }
        if mine && present.contains(&my_id) {
            self.rekey(cid, &head.roster);
            self.send_name(&head.roster);
        } else {
            // Away or gone from this channel: never encrypt to it again under an old key.
            self.drop_sealers(cid);
        }
        let pending: Vec<(ParticipantId, Envelope)> = self.pending.drain(..).collect();
        for (from, env) in pending {
            self.on_envelope(from, env, now);
        }
        let early = std::mem::take(&mut self.keys.early_keys);
        for (at, from_id, msg) in early {
            if !self.install_key(from_id, &msg, now)
                && now.duration_since(at) < self.cfg.stale_key_after
            {
                self.keys.early_keys.push((at, from_id, msg));
            }
        }
        if head.roster.kind == Kind::Joint {
            let members: Vec<(Id16, [u8; 32])> = head
                .roster
                .members
                .iter()
                .map(|m| (m.participant_id, m.ik_pub))
                .collect();
            let (_, code) = session_code(&head.roster.session_id, &members);
            if self.code.as_deref() != Some(code.as_str()) {
                self.code = Some(code.clone());
                self.events.push_back(Event::SessionCode(code));
            }
        }
        self.check_names();
        self.update_secured();
    }

    pub(super) fn update_secured(&mut self) {
        let now_secured = self.my_channel.as_ref().map(|c| c.id.clone()).filter(|ch| {
            self.channel_id_of(ch)
                .is_some_and(|cid| self.keys.sealers.contains_key(&(*cid, STREAM_DATA)))
        });
        if now_secured != self.secured {
            self.secured = now_secured.clone();
            if let Some(ch) = now_secured {
                self.events.push_back(Event::Secured(ch));
            }
        }
    }

    // I am no longer in `ch`: stop sending under its keys now, and forget its receive keys once
    // frames in flight have had time to arrive (unless I am back by then).
    pub(super) fn left_channel(&mut self, ch: &ChannelId, now: Instant) {
        let cids: Vec<Id16> = self
            .chains
            .iter()
            .filter(|(_, s)| &s.server_channel == ch)
            .map(|(c, _)| *c)
            .collect();
        for cid in cids {
            self.drop_sealers(cid);
            self.keys
                .channel_expiries
                .push((now + self.cfg.keep_old_keys, cid, ch.clone()));
        }
    }
}
