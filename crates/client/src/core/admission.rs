//! admission.rs: arrivals, announcements, consent, bound invites, delegation (TS twin: core/admission.ts).

use super::*;

/// An invite secret this (mediator's) client made, bound to the role and side it was made
/// for, and to the one arrival it admitted.
pub(super) struct IssuedInvite {
    pub(super) psk: Secret32,
    pub(super) hint: [u8; 8],
    pub(super) role: Role,
    pub(super) side: u8,
    pub(super) used_by: Option<ParticipantId>,
}

/// A verified announcement (mediator side: candidates for rosters).
#[derive(Clone)]
pub(super) struct Peer {
    pub(super) ann: Announcement,
    pub(super) consent_ok: bool,
    /// The acknowledgment verified but came without an invite secret (or under one already
    /// used, or for another role): a person decides.
    pub(super) held: bool,
    /// The side this participant was bound to: by its invite, or by the person who admitted
    /// it. Never taken from the server (except with `admit_without_invite_secret`).
    pub(super) side: Option<u8>,
    /// Its display name as it sent it (committed to in the rosters).
    pub(super) name: Option<[u8; 32]>,
    /// New keys announced after it was admitted and placed (§15.12: a client that resumed after
    /// losing its keys, e.g. a page reload; or someone else claiming its id). The rosters keep
    /// the old keys until a person lets the new ones in.
    pub(super) rekey: Option<Box<Rekey>>,
}

/// A placed participant's new announcement, waiting for a person's decision.
#[derive(Clone)]
pub(super) struct Rekey {
    pub(super) ann: Announcement,
    /// Its acknowledgment verified under the new identity key.
    pub(super) consent_ok: bool,
    pub(super) name: Option<[u8; 32]>,
}

impl<R: CryptoRng> Core<R> {
    /// Mediators: arrivals whose acknowledgment verified without an invite secret, waiting for
    /// a person's decision.
    pub fn held(&self) -> Vec<ParticipantId> {
        self.manager
            .peers
            .iter()
            .filter(|(_, p)| p.held || p.rekey.as_ref().is_some_and(|r| r.consent_ok))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Mediators: whether `p` is held because it announced new keys after it was placed (a
    /// person lets it back in with `admit_held`, into the rooms it is in).
    pub fn rekeyed(&self, p: &ParticipantId) -> bool {
        self.manager.peers.get(p).is_some_and(|x| x.rekey.is_some())
    }

    /// Mediators: a person admits a held arrival (after checking who it is, e.g. by voice),
    /// choosing the role and side it is admitted as: the announced role must be that role.
    /// Returns false if nobody with that id is held, it was removed, or the role differs.
    pub fn admit_held(&mut self, p: &ParticipantId, role: Role, side: Option<Side>) -> bool {
        if self.manager.removed.contains_key(p) {
            return false;
        }
        // New keys of someone already placed: they replace the old ones in every roster it is
        // in (its side stays the one it was bound to).
        if let Some(peer) = self.manager.peers.get_mut(p)
            && let Some(r) = peer.rekey.take_if(|r| r.consent_ok && r.ann.role == role)
        {
            peer.ann = r.ann;
            peer.name = r.name;
            if let Some(now) = self.now {
                self.reconcile(now);
            }
            return true;
        }
        let Some(peer) = self
            .manager
            .peers
            .get_mut(p)
            .filter(|x| x.held && x.ann.role == role)
        else {
            return false;
        };
        peer.held = false;
        peer.consent_ok = true;
        peer.side = Some(side.map_or(0, |s| s.number()));
        if role == Role::CoMediator {
            // Seated in joint by the server already: a person's decision delegates to it.
            self.delegate_to(p);
        } else {
            self.admit_ready();
        }
        true
    }

    /// Mediators: makes the invite secret for a link to be sent to someone invited as
    /// `role` (and `side`). The secret admits one arrival only, and only as that role; its
    /// side comes from here, never from the server. Put it in the link's `k=`.
    pub fn issue_invite(&mut self, role: Role, side: Option<Side>) -> Secret32 {
        let psk = Secret32::random(&mut self.rng);
        self.manager.invites.push(IssuedInvite {
            hint: psk_hint(&psk),
            psk: psk.clone(),
            role,
            side: side.map_or(0, |s| s.number()),
            used_by: None,
        });
        psk
    }

    pub(super) fn announcement(&self) -> Announcement {
        let me = self.me.as_ref().expect("announce after welcome");
        self.identity
            .as_ref()
            .expect("identity until the end")
            .announce(&me.session, me.id, me.role)
    }

    pub(super) fn announce_envelope(&self) -> Envelope {
        let a = self.announcement();
        Envelope::Announce {
            pid: Bytes(a.participant_id.to_vec()),
            role: role_code(a.role),
            ik: Bytes(a.ik_pub.to_vec()),
            ek: Bytes(a.ek_pub.to_vec()),
            sig: Bytes(a.signature.to_vec()),
        }
    }

    // A delegation that verifies under the mediator's key: remembered, applied to every chain.
    pub(super) fn add_delegation(&mut self, ik: [u8; 32], sig: [u8; 64]) -> bool {
        let Some((_, m_ik, _)) = self.mediator else {
            return false;
        };
        let Some(me) = self.me.as_ref() else {
            return false;
        };
        let msg = confer_e2ee::identity::delegation_bytes(
            &me.session,
            &ik,
            confer_e2ee::identity::SCOPE_ROSTERS,
        );
        if verify(&m_ik, &msg, &sig).is_err() {
            return false;
        }
        if !self.delegations.iter().any(|(i, _)| *i == ik) {
            if self.delegations.len() >= MAX_PEERS {
                return false;
            }
            self.delegations.push((ik, sig));
            for s in self.chains.values_mut() {
                let _ = s
                    .chain
                    .add_delegate(ik, confer_e2ee::identity::SCOPE_ROSTERS, &sig);
            }
        }
        true
    }

    // Co-mediators: the mediator delegated roster signing to me.
    pub(super) fn on_delegate(
        &mut self,
        from: &ParticipantId,
        ik: Bytes,
        sig: Bytes,
        now: Instant,
    ) {
        let from_mediator = self.mediator.as_ref().is_some_and(|m| m.0 == *from);
        let mine = self.identity.as_ref().map(Identity::ik_pub);
        let (Some(ik), Some(sig)) = (ik.array::<32>(), sig.array::<64>()) else {
            return;
        };
        if !from_mediator
            || Some(ik) != mine
            || self.me.as_ref().map(|m| m.role) != Some(Role::CoMediator)
        {
            return;
        }
        if !self.add_delegation(ik, sig) {
            self.alarm(Alarm::DelegationInvalid, String::new());
            return;
        }
        self.my_delegation = Some(sig);
        self.reconcile(now);
    }

    // Mediator: introduce myself to everyone in the waiting room (once each).
    pub(super) fn contact_waiting(&mut self) {
        if !self.is_mediator() {
            return;
        }
        let Some(session) = &self.manager.last_session else {
            return;
        };
        // Everyone in the waiting room, and co-mediators (the server seats managers in joint
        // at once; they still announce and consent before they are signed in).
        let me = self.me.as_ref().map(|m| m.pid.clone());
        let co: Vec<ParticipantId> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter())
            .filter(|m| m.role == Role::CoMediator && Some(&m.participant_id) != me.as_ref())
            .map(|m| m.participant_id.clone())
            .collect();
        let new: Vec<ParticipantId> = session
            .waiting
            .iter()
            .map(|w| w.participant_id.clone())
            .chain(co)
            .filter(|p| {
                !self.manager.contacted.contains(p) && !self.manager.removed.contains_key(p)
            })
            .collect();
        let placed: Vec<(ParticipantId, bool)> = session
            .channels
            .iter()
            .flat_map(|c| c.members.iter())
            .map(|m| (m.participant_id.clone(), m.connected))
            .collect();
        for p in new {
            // Bounded: the server names the arrivals, and may not grow this without end.
            if self.manager.contacted.len() >= 4 * MAX_PEERS {
                break;
            }
            let env = self.announce_envelope();
            self.relay(RelayTarget::Participant(p.clone()), &env);
            self.manager.contacted.insert(p);
        }
        // Someone placed whose connection came back: introduce myself again. A client that
        // kept its keys ignores it; one that lost them (a page reload, §15.12) answers with its
        // new announcement and acknowledgment, as an arrival does.
        let mut back = Vec::new();
        for (p, connected) in placed {
            if Some(&p) == me.as_ref() || !self.manager.peers.contains_key(&p) {
                continue;
            }
            if !connected {
                if self.manager.offline.len() < 4 * MAX_PEERS {
                    self.manager.offline.insert(p.clone());
                }
            } else if self.manager.offline.remove(&p) {
                back.push(p);
            }
        }
        for p in back {
            let env = self.announce_envelope();
            self.relay(RelayTarget::Participant(p), &env);
        }
    }

    // Mediator: admit each waiting participant whose consent verified and whose hash the
    // server recorded.
    /// Mediators: the arrivals ready to be let in (their acknowledgment verified under an
    /// invite secret, or a person admitted them as held), not admitted yet, in arrival order.
    pub fn ready(&self) -> Vec<ParticipantId> {
        if !self.is_mediator() {
            return Vec::new();
        }
        let Some(session) = &self.manager.last_session else {
            return Vec::new();
        };
        // The role the server shows must be the announced one (§5.2); the side is the invite's
        // (or the admitting person's), never the server's.
        session
            .waiting
            .iter()
            .filter(|w| {
                w.consented
                    && self
                        .manager
                        .peers
                        .get(&w.participant_id)
                        .is_some_and(|p| p.consent_ok && p.side.is_some() && p.ann.role == w.role)
            })
            .map(|w| w.participant_id.clone())
            .filter(|p| {
                !self.manager.admit_sent.contains(p) && !self.manager.removed.contains_key(p)
            })
            .collect()
    }

    /// Mediators who let people in one by one (`auto_admit` off): a person admits one ready
    /// arrival. False if it is not ready (see [`Core::ready`]).
    pub fn admit(&mut self, p: &ParticipantId) -> bool {
        if !self.ready().contains(p) {
            return false;
        }
        self.send_admit(p.clone());
        true
    }

    /// The identity key an arrival announced (its fingerprint is what a mediator compares with
    /// the one the person reads out); for someone back with new keys, the new one.
    pub fn announced_key(&self, p: &ParticipantId) -> Option<[u8; 32]> {
        self.manager
            .peers
            .get(p)
            .map(|x| x.rekey.as_ref().map_or(x.ann.ik_pub, |r| r.ann.ik_pub))
    }

    pub(super) fn admit_ready(&mut self) {
        if !self.cfg.auto_admit {
            return;
        }
        for p in self.ready() {
            self.send_admit(p);
        }
    }

    fn send_admit(&mut self, p: ParticipantId) {
        self.manager
            .intents
            .insert(p.clone(), Intent::In(ChannelId::joint()));
        self.out.push_back(ClientMessage::Admit {
            participant_id: p.clone(),
        });
        self.manager.admit_sent.insert(p);
    }

    pub(super) fn on_announce(
        &mut self,
        from: ParticipantId,
        pid: Bytes,
        role: u8,
        ik: Bytes,
        ek: Bytes,
        sig: Bytes,
    ) {
        let (Some(me), Some(pid16), Some(role), Some(ik), Some(ek), Some(sig)) = (
            self.me.as_ref(),
            pid.array::<16>(),
            role_from_code(role),
            ik.array::<32>(),
            ek.array::<32>(),
            sig.array::<64>(),
        ) else {
            return;
        };
        let ann = Announcement {
            participant_id: pid16,
            role,
            ik_pub: ik,
            ek_pub: ek,
            signature: sig,
        };
        // The announcement must be for the sender's own pseudonym in this session.
        if id16(&from) != Some(pid16) || ann.verify(&me.session).is_err() {
            self.failed(FailureReason::Announcement);
            return;
        }
        if self.is_mediator() {
            // Only someone the server lists in this session (bounded), not any id it invents,
            // and never someone removed for good.
            let listed = self.manager.last_session.as_ref().is_some_and(|v| {
                v.waiting.iter().any(|w| w.participant_id == from)
                    || v.channels
                        .iter()
                        .any(|c| c.members.iter().any(|m| m.participant_id == from))
            });
            // (Never an announcement under my own id: my keys are mine.)
            if !listed || self.manager.removed.contains_key(&from) || me.pid == from {
                return;
            }
            if let Some(known) = self.manager.peers.get(&from) {
                if known.ann == ann || known.rekey.as_ref().is_some_and(|r| r.ann == ann) {
                    return;
                }
                // Someone placed in a room announces new keys: a client that resumed after
                // losing its keys (§15.12), or someone else claiming its id. Held for a person,
                // who compares the new fingerprint; the rosters keep the old keys meanwhile.
                let placed = known.consent_ok && self.manager.confirmed.contains_key(&from);
                if placed && known.ann.role == ann.role {
                    let from_id = ann.participant_id;
                    if let Some(p) = self.manager.peers.get_mut(&from) {
                        p.rekey = Some(Box::new(Rekey {
                            ann,
                            consent_ok: false,
                            name: None,
                        }));
                    }
                    // It counts its pairwise messages from 0 again. (It announced in answer to
                    // mine, sent when its connection came back: see `contact_waiting`.)
                    self.seqs.forget_received(&from_id);
                    return;
                }
                // Before it is placed, one participant id has one set of keys: a second,
                // different announcement is someone else claiming that id. The first stands.
                self.alarm(
                    Alarm::AnnouncementChanged(from.clone()),
                    from.as_str().to_owned(),
                );
                return;
            }
            if self.manager.peers.len() >= MAX_PEERS {
                return;
            }
            self.manager.peers.insert(
                from,
                Peer {
                    ann,
                    consent_ok: false,
                    held: false,
                    side: None,
                    name: None,
                    rekey: None,
                },
            );
            return;
        }
        if role != Role::Mediator {
            return;
        }
        if let Some(pinned) = self.cfg.invite.as_ref().and_then(|i| i.mediator_ik)
            && pinned != ik
        {
            self.alarm(Alarm::MediatorKeyMismatch, String::new());
            return;
        }
        if self.mediator.is_none() {
            self.mediator = Some((from.clone(), ik, ek));
        }
        if !self.consent_sent && self.mediator.as_ref().is_some_and(|m| m.0 == from) {
            self.consent_sent = true;
            self.send_consent(&from, ek);
        }
    }

    pub(super) fn send_consent(&mut self, mediator: &ParticipantId, mediator_ek: [u8; 32]) {
        let env = self.announce_envelope();
        self.relay(RelayTarget::Participant(mediator.clone()), &env);
        let (Some(me), Some(identity)) = (self.me.as_ref(), self.identity.as_ref()) else {
            return;
        };
        let Some(m_id) = id16(mediator) else { return };
        let hash = self.cfg.agreement_hash;
        let signed = consent_signed_bytes(&me.session, &me.id, &hash, ATTEST_ALL);
        let ack = ConsentAck {
            agreement_hash: hash,
            attestations: ATTEST_ALL,
            signature: identity.sign(&signed),
        };
        let psk = self.cfg.invite.as_ref().and_then(|i| i.psk.clone());
        // My name goes to the mediator just before my consent (under the same invite secret):
        // the mediator takes a name only before the consent that admits me, and commits to it
        // in the roster that does.
        if let Some(n) = self.my_name.as_ref().map(NameMsg::encode) {
            self.send_pairwise(m_id, &mediator_ek, MsgType::Name, &n, psk.as_ref());
            self.named.insert(m_id);
        }
        self.send_pairwise(
            m_id,
            &mediator_ek,
            MsgType::Consent,
            &ack.encode(),
            psk.as_ref(),
        );
        // Managers are seated by the server without a waiting room: the acknowledgment to
        // the mediator is all there is.
        // (Nor for someone placed already: a client that resumed into a room.)
        let manager = self.me.as_ref().is_some_and(|m| m.role.is_manager());
        if let Ok(h) = AgreementHash::new(hex::encode(hash))
            && !manager
            && !self.rejoined
        {
            self.out
                .push_back(ClientMessage::Consent { agreement_hash: h });
        }
    }

    pub(super) fn on_consent(&mut self, from: ParticipantId, pt: &[u8], invite: Option<usize>) {
        if !self.is_mediator() || self.manager.removed.contains_key(&from) {
            return;
        }
        let Some(me) = self.me.as_ref() else { return };
        let Some(peer) = self.manager.peers.get(&from) else {
            return;
        };
        // New keys of someone placed: their acknowledgment (under the new identity key)
        // makes them ready for a person's decision, never more.
        if let Some(r) = peer.rekey.as_ref() {
            if r.consent_ok {
                return;
            }
            let ok = ConsentAck::decode(pt).is_ok_and(|ack| {
                ack.agreement_hash == self.cfg.agreement_hash
                    && ack.attestations == ATTEST_ALL
                    && verify(
                        &r.ann.ik_pub,
                        &consent_signed_bytes(
                            &me.session,
                            &r.ann.participant_id,
                            &ack.agreement_hash,
                            ack.attestations,
                        ),
                        &ack.signature,
                    )
                    .is_ok()
            });
            if ok {
                self.stats.consents_verified += 1;
                self.stats.consents_held += 1;
                if let Some(r) = self
                    .manager
                    .peers
                    .get_mut(&from)
                    .and_then(|p| p.rekey.as_mut())
                {
                    r.consent_ok = true;
                }
            } else {
                self.stats.consents_rejected += 1;
            }
            return;
        }
        // One consent per arrival: a second one (bare, or under another invite) can neither
        // hold an admitted participant again nor rebind its side.
        if peer.consent_ok || peer.held {
            return;
        }
        let Ok(ack) = ConsentAck::decode(pt) else {
            self.stats.consents_rejected += 1;
            return;
        };
        let signed = consent_signed_bytes(
            &me.session,
            &peer.ann.participant_id,
            &ack.agreement_hash,
            ack.attestations,
        );
        let ok = ack.agreement_hash == self.cfg.agreement_hash
            && ack.attestations == ATTEST_ALL
            && verify(&peer.ann.ik_pub, &signed, &ack.signature).is_ok();
        if !ok {
            self.stats.consents_rejected += 1;
            return;
        }
        self.stats.consents_verified += 1;
        let announced = peer.ann.role;
        let bound = match invite {
            // An invite secret admits one arrival, only as the role it was made for; its
            // side comes from the invite.
            Some(i) => {
                let inv = &self.manager.invites[i];
                if inv.role != announced {
                    self.alarm(
                        Alarm::InviteRoleMismatch(from.clone()),
                        from.as_str().to_owned(),
                    );
                    None
                } else if inv.used_by.as_ref().is_some_and(|u| *u != from) {
                    self.alarm(Alarm::InviteReused(from.clone()), from.as_str().to_owned());
                    None
                } else {
                    let side = inv.side;
                    self.manager.invites[i].used_by = Some(from.clone());
                    Some(side)
                }
            }
            // A bare token: the server could have minted it. Held for a person, unless this
            // client was told to admit those too (then the server's side is all there is).
            // Never a co-mediator: roster signing is delegated only under an invite made for
            // that role, or by a person (`admit_held`).
            None if self.cfg.admit_without_invite_secret && announced != Role::CoMediator => Some(
                self.manager
                    .last_session
                    .as_ref()
                    .and_then(|v| v.waiting.iter().find(|w| w.participant_id == from))
                    .and_then(|w| w.side)
                    .map_or(0, |s| s.number()),
            ),
            None => None,
        };
        let Some(p) = self.manager.peers.get_mut(&from) else {
            return;
        };
        match bound {
            Some(side) => {
                p.consent_ok = true;
                p.side = Some(side);
                if announced == Role::CoMediator {
                    self.delegate_to(&from);
                } else {
                    self.admit_ready();
                }
            }
            None => {
                if !p.held {
                    p.held = true;
                    self.stats.consents_held += 1;
                }
            }
        }
    }

    // Mediators: a co-mediator whose consent verified under its invite is seated in joint by
    // the server already: sign it in there, and delegate roster signing to its key (§5.3).
    pub(super) fn delegate_to(&mut self, co: &ParticipantId) {
        let (Some(me), Some(identity), Some(peer)) = (
            self.me.as_ref(),
            self.identity.as_ref(),
            self.manager.peers.get(co),
        ) else {
            return;
        };
        let ik = peer.ann.ik_pub;
        let sig = identity.delegate(&me.session, &ik, confer_e2ee::identity::SCOPE_ROSTERS);
        self.manager
            .intents
            .insert(co.clone(), Intent::In(ChannelId::joint()));
        if !self.add_delegation(ik, sig) {
            return;
        }
        self.relay(
            RelayTarget::Participant(co.clone()),
            &Envelope::Delegate {
                ik: Bytes(ik.to_vec()),
                sig: Bytes(sig.to_vec()),
            },
        );
        if let Some(now) = self.now {
            self.reconcile(now);
        }
    }
}
