//! media.rs: sealing and opening media frames with the room keys (TS twin: core/media.ts).

use super::*;

impl<R: CryptoRng> Core<R> {
    /// Seals one media frame (the whole payload, VP8 frame tag included) for the room I am in,
    /// under my current key for `stream`. Refused ("securing channel": stay muted) until that
    /// room's roster lists me and my new generation for it is out, so no frame of a caucus is
    /// ever sealed under a key a non-member holds.
    pub fn seal_media(&mut self, stream: u8, payload: &[u8]) -> Result<Vec<u8>, NotSecured> {
        let codec = media_codec(stream).ok_or(NotSecured)?;
        let (_, _, frame) = self.seal_here(stream, codec, payload)?;
        self.stats.frames_sealed += 1;
        Ok(frame)
    }

    // Seals under my current key for `stream` in the room I am secured in: refused while a
    // withheld roster stopped me, or before that room's roster lists me and my key is out.
    pub(super) fn seal_here(
        &mut self,
        stream: u8,
        codec: Codec,
        payload: &[u8],
    ) -> Result<(ChannelId, Id16, Vec<u8>), NotSecured> {
        if self.withheld {
            return Err(NotSecured);
        }
        let ch = self.secured.clone().ok_or(NotSecured)?;
        let cid = *self.channel_id_of(&ch).ok_or(NotSecured)?;
        let (_, sealer, _) = self
            .keys
            .sealers
            .get_mut(&(cid, stream))
            .ok_or(NotSecured)?;
        let frame = sealer.seal(codec, payload).map_err(|_| NotSecured)?;
        Ok((ch, cid, frame))
    }

    /// My current generation for `stream` in the room I am in (a change means new keys: the
    /// next video frame should be a key frame).
    pub fn media_generation(&self, stream: u8) -> Option<u64> {
        let ch = self.secured.as_ref()?;
        let cid = self.channel_id_of(ch)?;
        self.keys.sealers.get(&(*cid, stream)).map(|(g, _, _)| *g)
    }

    /// Opens a media frame that arrived from `publisher` on `stream` (the SFU slot it came in
    /// says who). The key is the one the frame's KID names among `publisher`'s keys for that
    /// stream in my rooms: normally the room I am in; during a move, the room the frame was
    /// sealed for, if I still hold its keys (kept 10 s). Any failure is counted and nothing is
    /// returned.
    pub fn open_media(
        &mut self,
        publisher: &ParticipantId,
        stream: u8,
        frame: &[u8],
    ) -> Result<Vec<u8>, MediaRejected> {
        if self.stats.keys_deleted {
            return Err(MediaRejected::Ended);
        }
        let r = self.try_open_media(publisher, stream, frame);
        match r {
            Ok(_) => self.stats.frames_opened += 1,
            Err(MediaRejected::NoKey | MediaRejected::Ended) => {}
            Err(MediaRejected::Stale) => self.stats.stale_frames += 1,
            Err(MediaRejected::Invalid) => self.media_failed(),
        }
        r
    }

    /// A frame held for want of its key never opened: counted as a decrypt failure.
    pub fn media_frame_expired(&mut self) {
        self.media_failed();
    }

    pub(super) fn media_failed(&mut self) {
        // After the end every key is gone on purpose: what still arrives is not a failure.
        if self.stats.keys_deleted {
            return;
        }
        self.stats.media_decrypt_failures += 1;
        self.failed(FailureReason::Media);
    }

    pub(super) fn try_open_media(
        &mut self,
        publisher: &ParticipantId,
        stream: u8,
        frame: &[u8],
    ) -> Result<Vec<u8>, MediaRejected> {
        let codec = media_codec(stream).ok_or(MediaRejected::Invalid)?;
        let sender = id16(publisher).ok_or(MediaRejected::Invalid)?;
        let generation = confer_e2ee::frame::frame_generation(codec, frame)
            .map_err(|_| MediaRejected::Invalid)?;
        let here = self
            .my_channel
            .as_ref()
            .and_then(|c| self.channel_id_of(&c.id))
            .copied();
        let holds = |o: &Opener| o.holds(generation);
        let key = match here
            .map(|c| (c, sender, stream))
            .filter(|k| self.keys.openers.get(k).is_some_and(holds))
        {
            Some(k) => k,
            None => {
                let mine = || {
                    self.keys
                        .openers
                        .iter()
                        .filter(|((_, s, st), _)| *s == sender && *st == stream)
                };
                if let Some((k, _)) = mine().find(|(_, o)| holds(o)) {
                    *k
                } else if mine().next().is_some()
                    && mine().all(|(_, o)| o.oldest().is_some_and(|m| generation < m))
                {
                    return Err(MediaRejected::Stale);
                } else {
                    return Err(MediaRejected::NoKey);
                }
            }
        };
        let opener = self
            .keys
            .openers
            .get_mut(&key)
            .ok_or(MediaRejected::NoKey)?;
        opener
            .open(codec, frame)
            .map_err(|_| MediaRejected::Invalid)
    }
}
