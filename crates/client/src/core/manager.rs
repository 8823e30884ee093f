//! manager.rs: what the mediator and co-mediators sign: placements, removals, breakouts, rosters (TS twin: core/manager.ts).

use super::*;

/// What the managers (the mediator and delegated co-mediators) keep to place people and sign
/// rosters.
#[derive(Default)]
pub(super) struct ManagerState {
    /// Participants whose placement my own commands changed and the server's view has not
    /// confirmed yet: a co-mediator signs only for these (§15.11).
    pub(super) own_pending: BTreeSet<ParticipantId>,
    // Mediator side.
    pub(super) peers: BTreeMap<ParticipantId, Peer>,
    pub(super) contacted: BTreeSet<ParticipantId>,
    /// Placed participants whose connection is down (per the server's view).
    pub(super) offline: BTreeSet<ParticipantId>,
    pub(super) admit_sent: BTreeSet<ParticipantId>,
    /// Mediators: invite secrets made, bound to role and side, single use.
    pub(super) invites: Vec<IssuedInvite>,
    /// Mediators: participants that left, timed out or were kicked: never signed again.
    pub(super) removed: BTreeMap<ParticipantId, Removal>,
    /// Mediators: where this client told the server to put each participant. The server's
    /// views are only believed where they agree with it.
    pub(super) intents: BTreeMap<ParticipantId, Intent>,
    /// Mediators: the last location where view and intent agreed.
    pub(super) confirmed: BTreeMap<ParticipantId, ChannelId>,
    /// Mediators: the `create_breakout` commands sent, in order.
    pub(super) breakouts: Vec<BreakoutCmd>,
    /// Mediators: every breakout the server ever listed.
    pub(super) seen_breakouts: BTreeSet<ChannelId>,
    pub(super) last_session: Option<SessionView>,
    /// Mediators: session views received so far.
    pub(super) views: u64,
    /// Mediators: my own connection dropped and I resumed (in cluster mode, perhaps on another
    /// node that took the session over): once everyone placed is connected again, every room
    /// is signed anew (a new epoch) and so every sender's keys rotate (e2ee §15.13).
    pub(super) resign_after_resume: bool,
}

/// Where the mediator's client sent someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Intent {
    In(ChannelId),
    /// A breakout the server is creating for the `create_breakout` command with this index
    /// (its name is not known yet).
    NewBreakout(usize),
}

/// A `create_breakout` the mediator's client sent: satisfied only by one breakout that did
/// not exist before the command, the same for all its members, claimed by no other command.
pub(super) struct BreakoutCmd {
    pub(super) members: Vec<ParticipantId>,
    /// Every breakout seen before the command.
    pub(super) known_before: BTreeSet<ChannelId>,
    /// The breakout it created, once every member was seen in it.
    pub(super) room: Option<ChannelId>,
    /// The server's breakouts did not match: never satisfied.
    pub(super) failed: bool,
}

/// Why the mediator's client holds a participant out of every roster for good.
pub(super) struct Removal {
    pub(super) at: Instant,
    /// How many session views had arrived then: only a later view can list it "again".
    pub(super) view: u64,
    /// By this client's own `kick` (the server may list it for a moment longer).
    pub(super) by_me: bool,
}

impl<R: CryptoRng> Core<R> {
    /// Sends a signalling command. Mediators must send admissions and moves through here: the
    /// client signs rosters only for placements it asked for, never for what the server merely
    /// reports.
    pub fn command(&mut self, m: ClientMessage) {
        let now = self.now;
        match &m {
            ClientMessage::Admit { participant_id } => {
                self.manager
                    .intents
                    .insert(participant_id.clone(), Intent::In(ChannelId::joint()));
                self.manager.own_pending.insert(participant_id.clone());
            }
            ClientMessage::Kick { participant_id } if self.is_manager() => {
                // Final at once for me: never signed again. The mediator re-signs every room
                // without the target at once; a co-mediator leaves that to the mediator (one
                // signer per change, §15.11) and alarms if the server keeps listing it.
                if let Some(now) = now {
                    self.remove(participant_id.clone(), now, true);
                    self.out.push_back(m);
                    self.reconcile(now);
                    return;
                }
            }
            ClientMessage::Move {
                participant_id,
                channel_id,
            } => {
                self.manager
                    .intents
                    .insert(participant_id.clone(), Intent::In(channel_id.clone()));
                self.manager.own_pending.insert(participant_id.clone());
            }
            ClientMessage::CreateBreakout { members } => {
                let idx = self.manager.breakouts.len();
                let mut known_before = self.manager.seen_breakouts.clone();
                if let Some(v) = &self.manager.last_session {
                    known_before.extend(
                        v.channels
                            .iter()
                            .filter(|c| c.kind == ChannelKind::Breakout)
                            .map(|c| c.id.clone()),
                    );
                }
                self.manager.breakouts.push(BreakoutCmd {
                    members: members.clone(),
                    known_before,
                    room: None,
                    failed: false,
                });
                for p in members {
                    self.manager
                        .intents
                        .insert(p.clone(), Intent::NewBreakout(idx));
                    self.manager.own_pending.insert(p.clone());
                }
            }
            ClientMessage::ReturnAll => {
                for (p, i) in self.manager.intents.iter_mut() {
                    *i = Intent::In(ChannelId::joint());
                    self.manager.own_pending.insert(p.clone());
                }
            }
            _ => {}
        }
        self.out.push_back(m);
    }

    // Managers: a roster another manager signed is a placement decision, taken as if I had
    // asked for it (so two managers never undo each other's moves).
    pub(super) fn adopt_placements(&mut self, cid: Id16) {
        if !self.is_manager() {
            return;
        }
        let Some(s) = self.chains.get(&cid) else {
            return;
        };
        let Some(head) = s.chain.head() else { return };
        let room = s.server_channel.clone();
        let me = self.me.as_ref().map(|m| m.pid.clone());
        // Never my own placement (my commands decide it), never one of my moves still in
        // flight (an older roster of the other manager's must not cancel it).
        let present: Vec<ParticipantId> = head
            .roster
            .members
            .iter()
            .filter(|m| !m.is_away())
            .filter_map(|m| pid_of(&m.participant_id))
            .filter(|p| !self.manager.removed.contains_key(p) && Some(p) != me.as_ref())
            .filter(|p| !self.manager.own_pending.contains(p))
            .collect();
        for p in present {
            self.manager
                .intents
                .insert(p.clone(), Intent::In(room.clone()));
            self.manager.confirmed.insert(p, room.clone());
        }
    }

    // Managers: the roster entry (keys, role, side, name commitment) for a participant I may
    // sign: the mediator takes it from the verified announcement and the invite (or person)
    // that bound it; a co-mediator from the current JOINT roster, which the mediator signed.
    pub(super) fn known_member(&self, p: &ParticipantId) -> Option<Member> {
        if let Some(peer) = self.manager.peers.get(p)
            && (peer.consent_ok || Some(p) == self.me.as_ref().map(|m| &m.pid))
            && let Some(side) = peer.side
        {
            return Some(Member {
                participant_id: peer.ann.participant_id,
                ik_pub: peer.ann.ik_pub,
                ek_pub: peer.ann.ek_pub,
                role: role_code(peer.ann.role),
                side,
                flags: 0,
                name_commit: peer.name.unwrap_or([0; 32]),
            });
        }
        if self.is_mediator() {
            return None;
        }
        let id = id16(p)?;
        let (_, joint) = self.current_chain(&ChannelId::joint())?;
        let mut m = joint.chain.head()?.roster.member(&id)?.clone();
        m.flags = 0;
        Some(m)
    }

    // Managers: the room's history, newest `MAX_CHAIN_HISTORY` rosters of all its chains.
    pub(super) fn record_lineage(
        &mut self,
        room: &ChannelId,
        sr: SignedRoster,
        del: Option<Delegation>,
    ) {
        let r = self.rooms.entry(room.clone()).or_default();
        if r.lineage.len() >= MAX_CHAIN_HISTORY {
            r.lineage.remove(0);
        }
        r.lineage.push((sr, del));
    }

    // Mediators: `p` left, timed out or was kicked: out of every roster for good.
    pub(super) fn remove(&mut self, p: ParticipantId, now: Instant, by_me: bool) {
        // Only someone this client knows of (an announcement, bounded by MAX_PEERS, or for a
        // co-mediator the JOINT roster): an id the server invents was never signed and costs
        // nothing to forget.
        let in_joint = id16(&p).is_some_and(|id| {
            self.head_for(&ChannelId::joint())
                .is_some_and(|h| h.roster.member(&id).is_some())
        });
        if !self.manager.peers.contains_key(&p) && !in_joint {
            return;
        }
        self.manager.own_pending.remove(&p);
        self.manager.confirmed.remove(&p);
        self.manager.intents.remove(&p);
        if let Some(peer) = self.manager.peers.get_mut(&p) {
            peer.consent_ok = false;
            peer.held = false;
        }
        let view = self.manager.views;
        self.manager.removed.entry(p).or_insert(Removal {
            at: now,
            by_me,
            view,
        });
    }

    // Mediators: a removed participant that a view received after the removal still lists is
    // an alarm (after my own kick, once the grace has passed: a view may have been in flight).
    pub(super) fn check_relisted(&mut self, now: Instant) {
        let Some(v) = &self.manager.last_session else {
            return;
        };
        let listed: Vec<ParticipantId> = v
            .waiting
            .iter()
            .map(|w| &w.participant_id)
            .chain(
                v.channels
                    .iter()
                    .flat_map(|c| c.members.iter().map(|m| &m.participant_id)),
            )
            .filter(|p| {
                self.manager.removed.get(*p).is_some_and(|r| {
                    self.manager.views > r.view
                        && (!r.by_me
                            || now.saturating_duration_since(r.at) >= self.cfg.unsigned_grace)
                })
            })
            .cloned()
            .collect();
        for p in listed {
            let key = p.as_str().to_owned();
            self.alarm(Alarm::RemovedRelisted(p), key);
        }
    }

    // Mediators: a `create_breakout` is satisfied by exactly one breakout that did not exist
    // before it, the same for all its members and claimed by no other command; anything else
    // is refused with an alarm and its members stay where they were last agreed.
    pub(super) fn resolve_breakouts(&mut self, session: &SessionView) {
        let mut room_of: BTreeMap<&ParticipantId, &ChannelId> = BTreeMap::new();
        for c in session
            .channels
            .iter()
            .filter(|c| c.kind == ChannelKind::Breakout)
        {
            for m in &c.members {
                room_of.insert(&m.participant_id, &c.id);
            }
        }
        for idx in 0..self.manager.breakouts.len() {
            let cmd = &self.manager.breakouts[idx];
            if cmd.room.is_some() || cmd.failed {
                continue;
            }
            // Only new breakouts count: a member still in an old one is a move in flight.
            let rooms: BTreeSet<&ChannelId> = cmd
                .members
                .iter()
                .filter_map(|p| room_of.get(p).copied())
                .filter(|r| !cmd.known_before.contains(*r))
                .collect();
            let claimed = rooms.iter().any(|r| {
                self.manager
                    .breakouts
                    .iter()
                    .enumerate()
                    .any(|(j, b)| j != idx && b.room.as_ref() == Some(*r))
            });
            if rooms.len() > 1 || claimed {
                self.manager.breakouts[idx].failed = true;
                self.alarm(Alarm::BreakoutMismatch, idx.to_string());
                continue;
            }
            let Some(room) = rooms.first().map(|r| (*r).clone()) else {
                continue;
            };
            if !cmd.members.iter().all(|p| room_of.get(p) == Some(&&room)) {
                continue;
            }
            for p in cmd.members.clone() {
                if self.manager.intents.get(&p) == Some(&Intent::NewBreakout(idx)) {
                    self.manager.intents.insert(p, Intent::In(room.clone()));
                }
            }
            self.manager.breakouts[idx].room = Some(room);
        }
        // Bounded like the other server-named sets (breakout numbers are never reused, so a
        // full set only makes later commands wait, never accept an old room).
        for c in room_of.values() {
            if self.manager.seen_breakouts.len() < 4 * MAX_PEERS {
                self.manager.seen_breakouts.insert((*c).clone());
            }
        }
    }

    /// Managers: make the signed rosters match who is where, as far as the manager verified
    /// them.
    pub(super) fn reconcile(&mut self, now: Instant) {
        if !self.is_manager() {
            return;
        }
        let Some(session) = self.manager.last_session.clone() else {
            return;
        };
        let Some(me) = self.me.as_ref() else { return };
        let my_pid = me.pid.clone();
        self.check_relisted(now);
        self.resolve_breakouts(&session);
        let mut mine: BTreeSet<ChannelId> = BTreeSet::new();
        // Where each admitted, verified participant is.
        // Only where the server's view agrees with what this client asked for; elsewhere the
        // last agreed place stands (a move in flight, or a server that lies).
        let mut location: BTreeMap<ParticipantId, (ChannelId, Role, u8)> = BTreeMap::new();
        for ch in &session.channels {
            for m in &ch.members {
                if self.manager.removed.contains_key(&m.participant_id) {
                    continue;
                }
                // The role the server reports must be the one the participant announced, and
                // the side the one its invite (or a person) bound it to; otherwise the view is
                // not believed.
                let Some(known) = self.known_member(&m.participant_id) else {
                    continue;
                };
                let side = known.side;
                if known.role != role_code(m.role) || m.side.map_or(0, |s| s.number()) != side {
                    continue;
                }
                // A caucus holds only its own side (and the mediators).
                let fits = match ch.id.as_str().strip_prefix("caucus-") {
                    Some(x) => m.role.is_manager() || m.side.is_some_and(|s| s.to_string() == x),
                    None => true,
                };
                let agreed = fits
                    && matches!(self.manager.intents.get(&m.participant_id), Some(Intent::In(c)) if *c == ch.id);
                if agreed {
                    let before = self
                        .manager
                        .confirmed
                        .insert(m.participant_id.clone(), ch.id.clone());
                    // A placement of my own command, now confirmed: the rooms it touches are
                    // mine to sign (a co-mediator signs nothing else).
                    if self.manager.own_pending.remove(&m.participant_id) {
                        mine.insert(ch.id.clone());
                        mine.insert(ChannelId::joint());
                        mine.extend(before);
                    }
                }
                if let Some(c) = self.manager.confirmed.get(&m.participant_id) {
                    location.insert(m.participant_id.clone(), (c.clone(), m.role, side));
                }
            }
        }
        // Whoever the server no longer lists is gone for good; someone sent back to the waiting
        // room is only unplaced.
        let in_rooms: BTreeSet<ParticipantId> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter().map(|m| m.participant_id.clone()))
            .collect();
        let waiting: BTreeSet<ParticipantId> = session
            .waiting
            .iter()
            .map(|w| w.participant_id.clone())
            .collect();
        let unplaced: Vec<ParticipantId> = self
            .manager
            .confirmed
            .keys()
            .filter(|p| !in_rooms.contains(*p) && **p != my_pid)
            .cloned()
            .collect();
        for p in unplaced {
            if waiting.contains(&p) {
                self.manager.confirmed.remove(&p);
            } else {
                self.remove(p, now, false);
            }
        }
        let mut channels: Vec<(ChannelId, ChannelKind)> = session
            .channels
            .iter()
            .map(|c| (c.id.clone(), c.kind))
            .collect();
        if !channels.iter().any(|(c, _)| c.as_str() == "joint") {
            channels.push((ChannelId::joint(), ChannelKind::Joint));
        }
        // A room that emptied is gone: if it fills again it gets a new chain and new keys
        // (its last roster is stale, and everyone deleted its keys when they left). The new
        // chain's first roster links to the old chain's last roster (§7.6).
        let live: BTreeSet<ChannelId> = channels.iter().map(|(c, _)| c.clone()).collect();
        let gone: Vec<(ChannelId, Id16)> = self
            .rooms
            .iter()
            .filter(|(c, _)| !live.contains(*c))
            .filter_map(|(c, r)| Some((c.clone(), r.current?)))
            .collect();
        for (room, cid) in gone {
            let last = self
                .chains
                .get(&cid)
                .and_then(|s| s.chain.head())
                .map(|h| h.hash);
            if let Some(r) = self.rooms.get_mut(&room) {
                r.current = None;
                r.retired.insert(cid);
                r.link = last;
            }
            self.drop_sealers(cid);
        }
        // One signer per change (§15.11): the mediator signs whatever changed; a co-mediator
        // only the rooms its own commands just changed (never a departure the server reports,
        // which the mediator signs), so two managers do not sign one epoch twice.
        let co_mediator = !self.is_mediator();
        // After my own resume, once everyone placed is back: every room anew (§15.13).
        let all_back = session
            .channels
            .iter()
            .flat_map(|c| &c.members)
            .all(|m| m.connected);
        let resign = !co_mediator && self.manager.resign_after_resume && all_back;
        if resign {
            self.manager.resign_after_resume = false;
        }
        for (ch, kind) in channels {
            if co_mediator && !mine.contains(&ch) {
                continue;
            }
            let joint = kind == ChannelKind::Joint;
            // Managers sign rosters, so every manager is listed in every one: present where
            // it is, flagged away elsewhere (and then sent no keys there). Every manager
            // computes the same list, so they never undo each other.
            let mut members: Vec<Member> = location
                .iter()
                .filter(|(pid, (at, role, _))| {
                    joint || at == &ch || role.is_manager() || **pid == my_pid
                })
                .filter_map(|(pid, (at, _, _))| {
                    let mut m = self.known_member(pid)?;
                    m.flags = if at == &ch { 0 } else { FLAG_AWAY };
                    Some(m)
                })
                .collect();
            members.sort_by_key(|m| m.participant_id);
            // A room with nobody verified present in it gets no roster (and no keys).
            if members.iter().all(Member::is_away) {
                continue;
            }
            self.publish_roster(&ch, kind, members, now, resign);
        }
    }

    pub(super) fn publish_roster(
        &mut self,
        ch: &ChannelId,
        kind: ChannelKind,
        members: Vec<Member>,
        now: Instant,
        anew: bool,
    ) {
        let (Some(me), Some(identity)) = (self.me.as_ref(), self.identity.as_ref()) else {
            return;
        };
        let (my_id, m_ik, session) = (me.id, identity.ik_pub(), me.session.clone());
        let room = self.rooms.entry(ch.clone()).or_default();
        let (cid, genesis_link) = match room.current {
            Some(c) => (c, [0; 32]),
            None => {
                let mut c = [0u8; 16];
                self.rng.fill_bytes(&mut c);
                (c, room.link.unwrap_or([0; 32]))
            }
        };
        let head = self.chains.get(&cid).and_then(|s| s.chain.head()).cloned();
        if !anew && head.as_ref().is_some_and(|h| h.roster.members == members) {
            return;
        }
        let epoch = match &head {
            Some(h) => match h.roster.epoch.checked_add(1) {
                Some(e) => e,
                None => return,
            },
            None => 1,
        };
        let roster = Roster {
            session_id: session.clone(),
            channel_id: cid,
            kind: match kind {
                ChannelKind::Joint => Kind::Joint,
                ChannelKind::Caucus => Kind::Caucus,
                ChannelKind::Breakout => Kind::Breakout,
            },
            epoch,
            prev_hash: head.as_ref().map_or(genesis_link, |h| h.hash),
            members,
        };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let Ok(signed) = roster.sign(identity) else {
            return;
        };
        // Checked as every member will check it before anyone is sent it.
        let mediator_ik = self.mediator.as_ref().map_or(m_ik, |m| m.1);
        let mut chain = self
            .chains
            .get(&cid)
            .map(|s| s.chain.clone())
            .unwrap_or_else(|| self.new_chain(&session, mediator_ik));
        if chain.accept(signed.clone()) != Ok(Accepted::Advanced) {
            return;
        }
        let room = self.rooms.entry(ch.clone()).or_default();
        room.current = Some(cid);
        let state = self.chains.entry(cid).or_insert_with(|| ChainState {
            chain: chain.clone(),
            server_channel: ch.clone(),
            advanced_at: now,
            seen: BTreeSet::new(),
        });
        state.chain = chain;
        state.advanced_at = now;
        if state.seen.len() < MAX_CHAIN_HISTORY {
            state.seen.insert(signed.hash);
        }
        // A co-mediator's rosters carry the mediator's delegation of its key.
        let mine = self
            .my_delegation
            .filter(|_| !self.is_mediator())
            .map(|d| (m_ik, d));
        self.record_lineage(ch, signed.clone(), mine);
        // Every member gets the new roster; a newcomer to the chain gets the chain from its
        // genesis (so it can check the link to the room's previous chain, §7.6); a member it
        // removes gets the roster that removed it.
        // (A member listed with new keys is new to the chain: it lost the old keys, and the
        // state that went with them, §15.12.)
        let before: BTreeMap<Id16, [u8; 32]> = head
            .as_ref()
            .map(|h| {
                h.roster
                    .members
                    .iter()
                    .map(|m| (m.participant_id, m.ek_pub))
                    .collect()
            })
            .unwrap_or_default();
        let after: BTreeMap<Id16, [u8; 32]> = signed
            .roster
            .members
            .iter()
            .map(|m| (m.participant_id, m.ek_pub))
            .collect();
        let env = |(s, del): &(SignedRoster, Option<Delegation>)| Envelope::Roster {
            ch: ch.as_str().to_owned(),
            enc: Bytes(s.encoded.clone()),
            sig: Bytes(s.signature.to_vec()),
            dik: del.map(|d| Bytes(d.0.to_vec())),
            dsig: del.map(|d| Bytes(d.1.to_vec())),
        };
        // Each envelope is built once: the newest roster for everyone, the room's whole
        // history only when someone is new to the chain.
        let everyone: BTreeSet<Id16> = before.keys().chain(after.keys()).copied().collect();
        let recipients: Vec<(ParticipantId, bool)> = everyone
            .iter()
            .filter(|r| **r != my_id)
            .filter_map(|r| {
                let new = after.get(r).is_some_and(|ek| before.get(r) != Some(ek));
                Some((pid_of(r)?, new))
            })
            .collect();
        let lineage = self
            .rooms
            .get(ch)
            .map(|r| &r.lineage[..])
            .unwrap_or_default();
        let newest = lineage.last().map(|x| env(x).to_data());
        let history: Vec<String> = if recipients.iter().any(|(_, new)| *new) {
            lineage.iter().map(|x| env(x).to_data()).collect()
        } else {
            Vec::new()
        };
        for (to, new) in recipients {
            let send = if new { &history[..] } else { newest.as_slice() };
            for data in send {
                self.out.push_back(ClientMessage::Relay {
                    to: RelayTarget::Participant(to.clone()),
                    data: data.clone(),
                });
            }
        }
        self.after_roster(cid, now);
    }
}
