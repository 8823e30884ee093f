//! keys.rs: pairwise messages, sender keys in and out, bounded key state, the ratchet (TS twin: core/keys.ts).

use super::*;

/// Sender keys held for a roster that has not arrived, per sender.
const HELD_KEYS_PER_SENDER: usize = 16;

/// Sender keys: my sealers per (room, stream), others' openers, and what expires when.
#[derive(Default)]
pub(super) struct KeyState {
    /// Per (channel, sender, stream): the newest epoch I acknowledged a key for.
    pub(super) acked: BTreeMap<(Id16, Id16, u8), u64>,
    /// (channel, stream) -> my current generation, its sealer, and when it last stepped.
    pub(super) sealers: BTreeMap<(Id16, u8), (u64, Sealer, Option<Instant>)>,
    pub(super) next_generation: u64,
    /// (channel, sender, stream) -> receive keys.
    pub(super) openers: BTreeMap<(Id16, Id16, u8), Opener>,
    pub(super) key_epochs: BTreeMap<(Id16, Id16), u64>,
    pub(super) expiries: Vec<(Instant, Id16, Id16, Option<u64>)>,
    pub(super) early_keys: Vec<(Instant, Id16, SenderKeyMsg)>,
    /// When I last asked each publisher for a keyframe.
    pub(super) keyframe_asked: BTreeMap<Id16, Instant>,
    pub(super) channel_expiries: Vec<(Instant, Id16, ChannelId)>,
    /// The EK each member was last listed with (bounded like the other per-member state).
    pub(super) ek_seen: BTreeMap<Id16, [u8; 32]>,
}

impl<R: CryptoRng> Core<R> {
    /// How many senders' receive keys I hold for a server channel.
    pub fn receive_keys_for(&self, ch: &ChannelId) -> usize {
        let cids: BTreeSet<Id16> = self
            .chains
            .iter()
            .filter(|(_, s)| &s.server_channel == ch)
            .map(|(c, _)| *c)
            .collect();
        self.keys
            .openers
            .keys()
            .filter(|(c, _, s)| cids.contains(c) && *s == STREAM_DATA)
            .count()
    }

    /// How many generations of `from`'s key for `stream` I hold in the current chain of a
    /// server channel (bounded: the current one and `MAX_OLD_GENERATIONS` replaced ones).
    pub fn held_generations(&self, ch: &ChannelId, from: &ParticipantId, stream: u8) -> usize {
        let (Some((cid, _)), Some(sender)) = (self.current_chain(ch), id16(from)) else {
            return 0;
        };
        self.keys
            .openers
            .get(&(*cid, sender, stream))
            .map_or(0, |o| o.generations().len())
    }

    // Seals `pt` to `to` (pairwise, §6) and relays it; with an invite secret in auth_psk.
    pub(super) fn send_pairwise(
        &mut self,
        to_id: Id16,
        to_ek: &[u8; 32],
        msg_type: MsgType,
        pt: &[u8],
        psk: Option<&Secret32>,
    ) {
        let (Some(me), Some(to)) = (self.me.as_ref(), pid_of(&to_id)) else {
            return;
        };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let seq = self.seqs.next_send(to_id);
        let pair = Pair {
            session_id: &me.session,
            from: me.id,
            to: to_id,
        };
        let Ok(sealed) =
            pairwise::seal(&mut self.rng, identity, to_ek, pair, msg_type, seq, pt, psk)
        else {
            return;
        };
        let env = Envelope::Pw {
            t: msg_type as u8,
            seq,
            enc: Bytes(sealed.enc.to_vec()),
            ct: Bytes(sealed.ct),
            hint: psk.map(|p| Bytes(psk_hint(p).to_vec())),
        };
        self.relay(RelayTarget::Participant(to), &env);
    }

    /// The sender's EK: from its announcement (mediator side) or from any roster I hold.
    /// (Mediators: new keys a placed participant announced, once announced: it seals with
    /// those.) Otherwise the EK the newest roster I accepted lists for it.
    pub(super) fn ek_of(&self, p: &ParticipantId) -> Option<[u8; 32]> {
        if let Some(peer) = self.manager.peers.get(p) {
            return Some(
                peer.rekey
                    .as_ref()
                    .map_or(peer.ann.ek_pub, |r| r.ann.ek_pub),
            );
        }
        if let Some((m, _, ek)) = &self.mediator
            && m == p
        {
            return Some(*ek);
        }
        let id = id16(p)?;
        if let Some(ek) = self.keys.ek_seen.get(&id) {
            return Some(*ek);
        }
        self.chains
            .values()
            .find_map(|s| s.chain.head()?.roster.member(&id).map(|m| m.ek_pub))
    }

    // A roster advanced: a member listed with another EK than before lost its keys and
    // announced new ones (§15.12). Everything held from its old keys goes at once (a replaced
    // generation would refuse its new generations, numbered afresh), and its pairwise
    // sequence numbers count from 0 again.
    pub(super) fn note_member_keys(&mut self, roster: &Roster) {
        let my_id = self.me.as_ref().map(|m| m.id);
        for m in &roster.members {
            if Some(m.participant_id) == my_id {
                continue;
            }
            let before = self.keys.ek_seen.get(&m.participant_id).copied();
            if before == Some(m.ek_pub) {
                continue;
            }
            if before.is_some() {
                let id = m.participant_id;
                self.keys.openers.retain(|(_, s, _), _| *s != id);
                self.keys.acked.retain(|(_, s, _), _| *s != id);
                self.keys.key_epochs.retain(|(_, s), _| *s != id);
                self.keys.expiries.retain(|(_, _, s, _)| *s != id);
                self.keys.early_keys.retain(|(_, s, _)| *s != id);
                self.seqs.forget_received(&id);
                // It lost my name with its keys.
                self.named.remove(&id);
            }
            if self.keys.ek_seen.len() < 4 * MAX_PEERS || before.is_some() {
                self.keys.ek_seen.insert(m.participant_id, m.ek_pub);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_pairwise(
        &mut self,
        from: ParticipantId,
        t: u8,
        seq: u64,
        enc: Bytes,
        ct: Bytes,
        hint: Option<Bytes>,
        now: Instant,
    ) {
        let (Some(msg_type), Some(enc)) = (MsgType::from_code(t), enc.array::<32>()) else {
            self.failed(FailureReason::PairwiseHeader);
            return;
        };
        let Some(ek) = self.ek_of(&from) else {
            // A key may arrive before the roster that names its sender.
            if self.pending.len() < MAX_HELD_KEYS {
                self.pending.push_back((
                    from,
                    Envelope::Pw {
                        t,
                        seq,
                        enc: Bytes(enc.to_vec()),
                        ct,
                        hint,
                    },
                ));
            }
            return;
        };
        let (Some(me), Some(from_id)) = (self.me.as_ref(), id16(&from)) else {
            return;
        };
        if !self.seqs.is_fresh(&from_id, seq) {
            self.failed(FailureReason::PairwiseReplay);
            return;
        }
        // The hint names the invite secret; no trial decryption.
        let invite = match &hint {
            Some(h) => match self
                .manager
                .invites
                .iter()
                .position(|i| i.hint[..] == h.0[..])
            {
                Some(i) => Some(i),
                None => {
                    self.failed(FailureReason::PairwiseUnknownPsk);
                    return;
                }
            },
            None => None,
        };
        let pair = Pair {
            session_id: &me.session,
            from: from_id,
            to: me.id,
        };
        let sealed = pairwise::Sealed { enc, ct: ct.0 };
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let psk = invite.map(|i| &self.manager.invites[i].psk);
        let Ok(pt) = pairwise::open(identity, &ek, pair, msg_type, seq, &sealed, psk) else {
            self.failed(FailureReason::PairwiseOpen);
            return;
        };
        // Plaintexts may hold keys: wiped when dropped.
        let pt = Zeroizing::new(pt);
        self.seqs.accept(from_id, seq);
        match msg_type {
            MsgType::Consent => self.on_consent(from, &pt, invite),
            MsgType::SenderKey => self.on_sender_key(from_id, &pt, now),
            MsgType::SenderKeyAck => {
                if SenderKeyAck::decode(&pt).is_ok() {
                    self.stats.acks_received += 1;
                } else {
                    self.failed(FailureReason::PairwiseDecode);
                }
            }
            MsgType::Name => self.on_name(from, from_id, &pt),
            MsgType::DocKey => self.on_doc_key(from, from_id, &pt),
            MsgType::DocAck => self.on_doc_ack(from, from_id, &pt),
        }
    }

    pub(super) fn on_sender_key(&mut self, from_id: Id16, pt: &[u8], now: Instant) {
        let Ok(msg) = SenderKeyMsg::decode(pt) else {
            self.failed(FailureReason::PairwiseDecode);
            return;
        };
        // The sender saw the roster before I did (rosters and keys come from different
        // senders, so their order is not guaranteed): keep the key until my roster arrives;
        // at most a few per sender, so one member cannot crowd out everyone else's.
        let mine = self
            .keys
            .early_keys
            .iter()
            .filter(|(_, s, _)| *s == from_id)
            .count();
        if !self.install_key(from_id, &msg, now)
            && self.keys.early_keys.len() < MAX_HELD_KEYS
            && mine < HELD_KEYS_PER_SENDER
        {
            self.keys.early_keys.push((now, from_id, msg));
        }
    }

    /// Installs a sender key; `false` if it is for an epoch I have not seen yet.
    pub(super) fn install_key(&mut self, from_id: Id16, msg: &SenderKeyMsg, now: Instant) -> bool {
        if self.me.is_none() {
            return true;
        }
        let Some(head) = self
            .chains
            .get(&msg.channel_id)
            .and_then(|s| s.chain.head())
        else {
            return false;
        };
        if msg.epoch > head.roster.epoch {
            return false;
        }
        // Keys only under a room's current chain: a chain a newer one replaced keys nobody.
        if !self
            .rooms
            .values()
            .any(|r| r.current == Some(msg.channel_id))
        {
            return true;
        }
        // Only members the mediator signed into the current epoch get to key this channel, and
        // only if I am in it too (with my own keys). A key for an older epoch from a sender
        // still present comes from a sender that had not seen the newest roster yet (rosters
        // and keys come from different senders): frames under it are in flight, so it is kept
        // like a replaced generation (KEEP_OLD_KEYS), never as the sender's current one.
        let sender_ok = head.roster.member(&from_id).is_some_and(|m| !m.is_away());
        let me_ok = self.my_entry(&head.roster).is_some();
        let head_epoch = head.roster.epoch;
        if !sender_ok || !me_ok {
            return true;
        }
        let superseded = msg.epoch < head_epoch;
        let Some(me) = self.me.as_ref() else {
            return true;
        };
        let Some(ctx) = FrameCtx::new(&me.session, msg.channel_id, from_id, msg.stream) else {
            return true;
        };
        // A generation beyond the KID range, one already held, or one older than the newest
        // held is refused without an acknowledgment: a sender numbers its generations from one
        // rising counter and the relay keeps its order, so such a key could never be used
        // (and installing one again would reset its replay windows).
        let key = (msg.channel_id, from_id, msg.stream);
        let stale = self.keys.openers.get(&key).is_some_and(|o| {
            o.holds(msg.generation) || o.generations().iter().any(|g| *g > msg.generation)
        });
        if msg.generation > confer_e2ee::frame::MAX_GENERATION || stale {
            return true;
        }
        let keep = self.cfg.keep_old_keys;
        let opener = self
            .keys
            .openers
            .entry(key)
            .or_insert_with(|| Opener::new(ctx));
        opener.add_generation_key(msg.generation, &msg.base_key);
        // Bounded: the current generation and at most MAX_OLD_GENERATIONS replaced ones.
        let mut held = opener.generations();
        held.sort_unstable();
        let excess = held.len().saturating_sub(1 + MAX_OLD_GENERATIONS);
        let dropped: Vec<u64> = held[..excess].to_vec();
        for g in &dropped {
            opener.remove_generation(*g);
        }
        let older: Vec<u64> = held[excess..]
            .iter()
            .copied()
            .filter(|g| *g < msg.generation)
            .collect();
        self.keys.expiries.retain(|(_, c, s, g)| {
            !(*c == msg.channel_id && *s == from_id && g.is_some_and(|g| dropped.contains(&g)))
        });
        for g in older {
            let e = (now + keep, msg.channel_id, from_id, Some(g));
            if !self
                .keys
                .expiries
                .iter()
                .any(|x| (x.1, x.2, x.3) == (e.1, e.2, e.3))
            {
                self.keys.expiries.push(e);
            }
        }
        self.stats.keys_received += 1;
        // At most one acknowledgment per sender, room, stream and epoch: a member that floods
        // me with keys cannot make me flood it back.
        let acked = self.keys.acked.get(&key).is_some_and(|e| *e >= msg.epoch);
        if !acked {
            self.keys.acked.insert(key, msg.epoch);
            self.send_ack(from_id, msg);
        }
        if superseded {
            self.keys
                .expiries
                .push((now + keep, msg.channel_id, from_id, Some(msg.generation)));
            return true;
        }
        self.keys
            .key_epochs
            .insert((msg.channel_id, from_id), msg.epoch);
        // A receiver that switched to a publisher's new video key for the room it is in asks
        // for a keyframe, so its picture restarts under the new key without waiting for the
        // next periodic one; at most once a second per publisher, however many keys arrive.
        let here = self
            .my_channel
            .as_ref()
            .and_then(|c| self.channel_id_of(&c.id))
            .is_some_and(|c| *c == msg.channel_id);
        let due = self
            .keys
            .keyframe_asked
            .get(&from_id)
            .is_none_or(|t| now.saturating_duration_since(*t) >= KEYFRAME_REQUEST_EVERY);
        if self.cfg.media_receive
            && here
            && due
            && (msg.stream == STREAM_CAMERA || msg.stream == STREAM_SCREEN)
            && let Some(publisher) = pid_of(&from_id)
        {
            self.keys.keyframe_asked.insert(from_id, now);
            self.out
                .push_back(ClientMessage::KeyframeRequest { publisher });
        }
        true
    }

    // Acknowledges a sender key (msg type 2): counted by the sender, not waited for.
    pub(super) fn send_ack(&mut self, to_id: Id16, msg: &SenderKeyMsg) {
        let Some(ek) = self.ek_of_id(&to_id) else {
            return;
        };
        let pt = SenderKeyAck {
            channel_id: msg.channel_id,
            epoch: msg.epoch,
            stream: msg.stream,
            generation: msg.generation,
        }
        .encode();
        self.send_pairwise(to_id, &ek, MsgType::SenderKeyAck, &pt, None);
    }

    pub(super) fn ek_of_id(&self, id: &Id16) -> Option<[u8; 32]> {
        pid_of(id).and_then(|p| self.ek_of(&p))
    }

    // A fresh generation for each stream I send in `cid` (chat, and my media streams), sent
    // to every other present member.
    pub(super) fn rekey(&mut self, cid: Id16, roster: &Roster) {
        let mut streams = vec![STREAM_DATA];
        streams.extend(
            self.cfg
                .media_streams
                .iter()
                .copied()
                .filter(|s| *s < STREAM_DATA),
        );
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            self.rekey_stream(cid, roster, stream);
        }
    }

    pub(super) fn rekey_stream(&mut self, cid: Id16, roster: &Roster, stream: u8) {
        let Some(me) = self.me.as_ref() else { return };
        let Some(ctx) = FrameCtx::new(&me.session, cid, me.id, stream) else {
            return;
        };
        // One counter for every (channel, stream): a generation names one key of mine.
        let generation = self.keys.next_generation;
        self.keys.next_generation += 1;
        let base = Secret32::random(&mut self.rng);
        let msg = SenderKeyMsg {
            channel_id: cid,
            epoch: roster.epoch,
            stream,
            generation,
            base_key: base.clone(),
        };
        let pt = Zeroizing::new(msg.encode());
        for (id, ek) in super::docs::present_others(roster, me.id) {
            self.send_pairwise(id, &ek, MsgType::SenderKey, &pt, None);
        }
        // Switch at once: the relay keeps each sender's messages in order, so every recipient
        // holds the key before the first frame under it.
        self.keys.sealers.insert(
            (cid, stream),
            (
                generation,
                Sealer::with_key(ctx, &base, generation),
                self.now,
            ),
        );
    }

    // The 60 s timer (§10): each of my sealers moves one ratchet step, so what its current key
    // reveals about earlier frames is bounded; after step 15 it starts a new generation.
    pub(super) fn ratchet_sealers(&mut self, now: Instant) {
        let due: Vec<(Id16, u8)> = self
            .keys
            .sealers
            .iter()
            .filter(|(_, (_, _, at))| {
                at.is_none_or(|at| now.saturating_duration_since(at) >= RATCHET_EVERY)
            })
            .map(|(k, _)| *k)
            .collect();
        for (cid, stream) in due {
            let Some((_, sealer, at)) = self.keys.sealers.get_mut(&(cid, stream)) else {
                continue;
            };
            if at.is_none() {
                *at = Some(now);
                continue;
            }
            if sealer.ratchet().is_ok() {
                *at = Some(now);
                continue;
            }
            let roster = self
                .chains
                .get(&cid)
                .and_then(|s| s.chain.head())
                .map(|h| h.roster.clone());
            match roster {
                Some(r) => self.rekey_stream(cid, &r, stream),
                None => {
                    self.keys.sealers.remove(&(cid, stream));
                }
            }
        }
    }

    // Never encrypt to `cid` again under any of my current keys for it.
    pub(super) fn drop_sealers(&mut self, cid: Id16) {
        self.keys.sealers.retain(|(c, _), _| *c != cid);
    }
}
