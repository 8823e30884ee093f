//! chat.rs: encrypted chat per room, frames held for their key (TS twin: core/chat.ts).

use super::*;

impl<R: CryptoRng> Core<R> {
    /// Seals a chat message for my current channel.
    pub fn send_chat(&mut self, text: &str) -> Result<(), NotSecured> {
        let (ch, cid, frame) = self.seal_here(STREAM_DATA, Codec::Data, text.as_bytes())?;
        self.relay(
            RelayTarget::Channel(ch),
            &Envelope::Chat {
                cid: Bytes(cid.to_vec()),
                f: Bytes(frame),
            },
        );
        self.stats.messages_sent += 1;
        Ok(())
    }

    /// Decrypts a chat frame as if it came from `from` in channel `cid` (for tests that hand a
    /// non-member a ciphertext it was never sent), saying precisely why it does not open.
    /// Nothing is counted.
    pub fn try_open_chat(
        &mut self,
        from: &ParticipantId,
        cid: &Id16,
        frame: &[u8],
    ) -> Result<String, ChatRefused> {
        let sender = id16(from).ok_or(ChatRefused::NoKey)?;
        let opener = self
            .keys
            .openers
            .get_mut(&(*cid, sender, STREAM_DATA))
            .ok_or(ChatRefused::NoKey)?;
        let pt = opener
            .open(Codec::Data, frame)
            .map_err(|_| ChatRefused::DoesNotOpen)?;
        String::from_utf8(pt).map_err(|_| ChatRefused::DoesNotOpen)
    }

    pub(super) fn retry_early_chats(&mut self, now: Instant) {
        if self.stats.keys_deleted {
            self.early_chats.clear();
            return;
        }
        for (at, from, cid, f) in std::mem::take(&mut self.early_chats) {
            self.open_chat(at, from, cid, f, now);
        }
    }

    pub(super) fn on_chat(&mut self, from: ParticipantId, cid: Bytes, f: Bytes, now: Instant) {
        self.open_chat(now, from, cid, f, now);
    }

    // Opens a chat frame; one whose key has not arrived yet (its sender rekeyed on a roster
    // I have not seen: rosters and keys come from different senders) waits up to
    // HOLD_FOR_KEY, and fails only then.
    pub(super) fn open_chat(
        &mut self,
        since: Instant,
        from: ParticipantId,
        cid_b: Bytes,
        f: Bytes,
        now: Instant,
    ) {
        let (Some(cid), Some(sender)) = (cid_b.array::<16>(), id16(&from)) else {
            self.failed(FailureReason::ChatHeader);
            return;
        };
        // Malformed or oversized frames fail at once; only a well-formed one may wait.
        let Ok(g) = confer_e2ee::frame::frame_generation(Codec::Data, &f.0) else {
            self.failed(FailureReason::ChatMalformed);
            return;
        };
        let opener = self.keys.openers.get(&(cid, sender, STREAM_DATA));
        let key_held = opener.is_some_and(|o| o.holds(g));
        if opener.is_some_and(|o| o.oldest().is_some_and(|m| g < m)) {
            // Sealed before I joined (or under a key already deleted): never mine to read.
            self.stats.stale_frames += 1;
            return;
        }
        if !key_held
            && f.0.len() <= MAX_HELD_CHAT_BYTES
            && now.duration_since(since) < HOLD_FOR_KEY
            && self.early_chats.len() < MAX_EARLY_CHATS
        {
            self.early_chats.push((since, from, cid_b, f));
            return;
        }
        let channel = self.chains.get(&cid).map(|s| s.server_channel.clone());
        let opened = self
            .keys
            .openers
            .get_mut(&(cid, sender, STREAM_DATA))
            .map(|o| o.open(Codec::Data, &f.0));
        match (opened, channel) {
            (Some(Ok(pt)), Some(channel)) => {
                self.stats.messages_received += 1;
                let text = String::from_utf8_lossy(&pt).into_owned();
                self.events.push_back(Event::Chat {
                    from,
                    channel,
                    text,
                });
            }
            (Some(Ok(_)), None) => self.failed(FailureReason::ChatNoRoom),
            (Some(Err(_)), _) => self.failed(FailureReason::ChatOpen),
            (None, _) if key_held => self.failed(FailureReason::ChatOpen),
            (None, _) => self.failed(FailureReason::ChatNoKey),
        }
    }
}
