//! alarms.rs: what a person must be shown, and the checks that raise it (TS twin: core/alarms.ts).

use super::*;

/// Something the user must see: the protocol detected misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alarm {
    /// A roster did not verify or did not extend the chain.
    Roster(RosterError),
    /// Someone is in my channel (per the server) but in no roster the mediator signed.
    UnsignedMember(ParticipantId),
    /// A roster changed but this member sent no new key in time.
    StaleKey(ParticipantId),
    /// The mediator's key differs from the one the invite link pinned.
    MediatorKeyMismatch,
    /// A roster arrived from someone other than the mediator.
    RosterFromNonMediator,
    /// The server said I am someone else (another participant or role) than I joined as.
    IdentityMismatch,
    /// Someone left my channel (per the server) but no new roster came: I stop sending there.
    RosterWithheld,
    /// A roster of a chain that a newer chain of the same room replaced (an old chain
    /// delivered late).
    ChainRevived,
    /// A new chain for a room that does not link to the chain I hold for that room.
    ChainUnlinked,
    /// A roster lists my participant id with keys that are not mine: I am not in it.
    WrongSelfKey,
    /// Mediators: a participant that left, timed out or was kicked is listed again.
    RemovedRelisted(ParticipantId),
    /// Mediators: a second, different announcement for a participant already announced.
    AnnouncementChanged(ParticipantId),
    /// Mediators: an arrival announced another role than its invite was made for.
    InviteRoleMismatch(ParticipantId),
    /// Mediators: a second arrival under an invite secret that already admitted someone.
    InviteReused(ParticipantId),
    /// Mediators: the server's breakouts do not match the breakout commands sent.
    BreakoutMismatch,
    /// A delegation that does not verify under the mediator's key.
    DelegationInvalid,
}

impl Alarm {
    /// The alarm's kind, one of the codes every implementation shares.
    pub fn kind(&self) -> AlarmCode {
        match self {
            Alarm::Roster(RosterError::Fork) => AlarmCode::RosterFork,
            Alarm::Roster(RosterError::Rollback) => AlarmCode::RosterRollback,
            Alarm::Roster(RosterError::Gap) => AlarmCode::RosterGap,
            Alarm::Roster(RosterError::BadSignature) => AlarmCode::RosterBadSignature,
            Alarm::Roster(RosterError::WrongChannel) => AlarmCode::RosterWrongChannel,
            Alarm::Roster(RosterError::Malformed | RosterError::SignerNotMember) => {
                AlarmCode::RosterInvalid
            }
            Alarm::UnsignedMember(_) => AlarmCode::UnsignedMember,
            Alarm::StaleKey(_) => AlarmCode::StaleKey,
            Alarm::MediatorKeyMismatch => AlarmCode::MediatorKeyMismatch,
            Alarm::RosterFromNonMediator => AlarmCode::RosterFromNonMediator,
            Alarm::IdentityMismatch => AlarmCode::IdentityMismatch,
            Alarm::RosterWithheld => AlarmCode::RosterWithheld,
            Alarm::ChainRevived => AlarmCode::RosterChainRevived,
            Alarm::ChainUnlinked => AlarmCode::RosterChainUnlinked,
            Alarm::WrongSelfKey => AlarmCode::RosterWrongSelfKey,
            Alarm::RemovedRelisted(_) => AlarmCode::RemovedRelisted,
            Alarm::AnnouncementChanged(_) => AlarmCode::AnnouncementChanged,
            Alarm::InviteRoleMismatch(_) => AlarmCode::InviteRoleMismatch,
            Alarm::InviteReused(_) => AlarmCode::InviteReused,
            Alarm::BreakoutMismatch => AlarmCode::BreakoutMismatch,
            Alarm::DelegationInvalid => AlarmCode::DelegationInvalid,
        }
    }

    /// A stable short code for summaries.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }
}

impl<R: CryptoRng> Core<R> {
    pub(super) fn alarm(&mut self, a: Alarm, key: String) {
        // Each distinct alarm once; a server that invents ids cannot grow this without bound.
        if self.alarmed.len() >= MAX_ALARMS {
            self.stats.alarms_dropped += 1;
            return;
        }
        if self.alarmed.insert((a.code().to_owned(), key)) {
            self.stats.alarms.push(a.code().to_owned());
            self.events.push_back(Event::Alarm(a));
        }
    }

    pub(super) fn check_unsigned(&mut self, now: Instant) {
        let Some(view) = self.my_channel.clone() else {
            return;
        };
        // Resumed after losing my keys: until the mediator lets my new keys into this room, I
        // hold none of its rosters, and wait as in the waiting room.
        if self.rejoined && !self.listed_rooms.contains(&view.id) {
            return;
        }
        let Some(me) = self.me.as_ref() else { return };
        let my_pid = me.pid.clone();
        let signed: BTreeSet<Id16> = self
            .head_for(&view.id)
            .map(|h| h.roster.members.iter().map(|m| m.participant_id).collect())
            .unwrap_or_default();
        let mut seen = BTreeSet::new();
        for m in &view.members {
            if m.participant_id == my_pid
                || id16(&m.participant_id).is_some_and(|i| signed.contains(&i))
            {
                continue;
            }
            seen.insert(m.participant_id.clone());
            let since = *self
                .unsigned_since
                .entry(m.participant_id.clone())
                .or_insert(now);
            if now.duration_since(since) >= self.cfg.unsigned_grace {
                self.alarm(
                    Alarm::UnsignedMember(m.participant_id.clone()),
                    m.participant_id.as_str().to_owned(),
                );
            }
        }
        self.unsigned_since.retain(|p, _| seen.contains(p));

        // The other way round: someone my roster says is present has left the room (per the
        // server) and no new roster came. If it is withheld, the departed may still hold my
        // current key: stop sending until a roster arrives.
        let in_view: BTreeSet<ParticipantId> = view
            .members
            .iter()
            .map(|m| m.participant_id.clone())
            .collect();
        let gone: Vec<ParticipantId> = self
            .roster_present(&view.id)
            .into_iter()
            .filter(|p| *p != my_pid && !in_view.contains(p))
            .collect();
        if gone.is_empty() {
            self.departed_since = None;
            self.withheld = false;
            return;
        }
        let since = *self.departed_since.get_or_insert(now);
        if now.duration_since(since) >= self.cfg.unsigned_grace {
            self.withheld = true;
            self.alarm(Alarm::RosterWithheld, view.id.as_str().to_owned());
        }
    }

    pub(super) fn check_stale(&mut self, now: Instant) {
        let Some(me) = self.me.as_ref() else { return };
        let my_id = me.id;
        let mut stale = Vec::new();
        for (cid, s) in &self.chains {
            let Some(head) = s.chain.head() else { continue };
            if head.roster.member(&my_id).is_none_or(Member::is_away)
                || now.duration_since(s.advanced_at) < self.cfg.stale_key_after
            {
                continue;
            }
            for m in head
                .roster
                .members
                .iter()
                .filter(|m| !m.is_away() && m.participant_id != my_id)
            {
                let fresh = self
                    .keys
                    .key_epochs
                    .get(&(*cid, m.participant_id))
                    .is_some_and(|e| *e >= head.roster.epoch);
                if !fresh {
                    stale.push((
                        m.participant_id,
                        format!("{}:{}", hex::encode(cid), head.roster.epoch),
                    ));
                }
            }
        }
        for (id, key) in stale {
            if let Some(p) = pid_of(&id) {
                self.alarm(Alarm::StaleKey(p), format!("{key}:{}", hex::encode(id)));
            }
        }
    }
}
