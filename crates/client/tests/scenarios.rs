#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays every scenario under `tests/scenarios/` (format: `tests/scenarios/README.md`)
//! against real cores with real crypto, the test playing the server: honest routing, or the
//! lies a scenario scripts. The TypeScript twin replays the same files.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use confer_client::envelope::{Bytes, Envelope};
use confer_client::link::Invite;
use confer_client::{Core, CoreConfig, Event, agreement_hash};
use confer_e2ee::frame::SenderKeyMsg;
use confer_e2ee::pairwise::{self, MsgType, Pair};
use confer_e2ee::roster::SignedRoster;
use confer_e2ee::secret::Secret32;
use confer_proto::{
    ChannelId, ChannelKind, ChannelMember, ChannelView, ClientMessage, LeaveReason, ParticipantId,
    RelayTarget, Role, ServerMessage, SessionView, Side, WaitingView,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A deterministic RNG: SHA-256(seed || counter) blocks. Scenarios name their seed.
#[derive(Clone)]
struct SeededRng {
    seed: Vec<u8>,
    counter: u64,
}

impl rand_core::TryRng for SeededRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(&self.seed);
            h.update(self.counter.to_be_bytes());
            self.counter += 1;
            chunk.copy_from_slice(&h.finalize()[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SeededRng {}

type C = Core<SeededRng>;

struct Who {
    pid: ParticipantId,
    role: Role,
    side: Option<Side>,
    spec: Value,
    core: Option<C>,
    events: Vec<Event>,
    /// Everything this core sent since the last `mark`.
    sent: Vec<ClientMessage>,
}

/// One relay as the server saw it.
#[derive(Clone)]
struct Relayed {
    from: String,
    to: Vec<String>,
    channel: Option<ChannelId>,
    data: String,
}

struct Run {
    name: String,
    seed: String,
    people: BTreeMap<String, Who>,
    order: Vec<String>,
    rooms: BTreeMap<String, ChannelId>,
    /// Who the last view showed with their connection down.
    offline: BTreeSet<String>,
    invites: BTreeMap<String, Secret32>,
    log: Vec<Relayed>,
    captured: BTreeMap<String, Relayed>,
    /// Documents shared so far, by name: their id and ciphertext chunks (the server's store).
    docs: BTreeMap<String, ([u8; 16], Vec<Vec<u8>>)>,
    start: Instant,
    now: Instant,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string {k} in {v}"))
}

fn side_of(v: &Value) -> Option<Side> {
    v.get("side")
        .and_then(Value::as_str)
        .map(|x| x.parse().unwrap())
}

fn kind_of(data: &str) -> &'static str {
    match Envelope::from_data(data) {
        Some(Envelope::Announce { .. }) => "announce",
        Some(Envelope::Roster { .. }) => "roster",
        Some(Envelope::Chat { .. }) => "chat",
        Some(Envelope::Delegate { .. }) => "delegate",
        Some(Envelope::Pw { t: 1, .. }) => "sender_key",
        Some(Envelope::Pw { t: 2, .. }) => "ack",
        Some(Envelope::Pw { t: 3, .. }) => "consent",
        Some(Envelope::Pw { t: 4, .. }) => "name",
        Some(Envelope::Pw { t: 5, .. }) => "doc_key",
        Some(Envelope::Pw { t: 6, .. }) => "doc_ack",
        _ => "other",
    }
}

impl Run {
    fn new(name: &str, v: &Value) -> Self {
        let mut people = BTreeMap::new();
        let mut order = Vec::new();
        let list = v["participants"].as_array().unwrap();
        // Ids by position; an impersonator takes the id of the one it impersonates.
        let own = |i: usize| ParticipantId::new(format!("{:02x}", i + 1).repeat(16)).unwrap();
        for (i, p) in list.iter().enumerate() {
            let n = s(p, "name").to_owned();
            let id = match p.get("impersonates").and_then(Value::as_str) {
                Some(other) => own(list
                    .iter()
                    .position(|q| q["name"] == other)
                    .unwrap_or_else(|| panic!("{name}: nobody called {other}"))),
                None => own(i),
            };
            people.insert(
                n.clone(),
                Who {
                    pid: id,
                    role: s(p, "role").parse().unwrap(),
                    side: side_of(p),
                    spec: p.clone(),
                    core: None,
                    events: Vec::new(),
                    sent: Vec::new(),
                },
            );
            order.push(n);
        }
        let now = Instant::now();
        Self {
            name: name.to_owned(),
            seed: v["seed"].as_str().unwrap_or(name).to_owned(),
            people,
            order,
            rooms: BTreeMap::new(),
            offline: BTreeSet::new(),
            invites: BTreeMap::new(),
            log: Vec::new(),
            captured: BTreeMap::new(),
            docs: BTreeMap::new(),
            start: now,
            now,
        }
    }

    fn who(&mut self, n: &str) -> &mut Who {
        let name = self.name.clone();
        self.people
            .get_mut(n)
            .unwrap_or_else(|| panic!("{name}: nobody called {n}"))
    }

    fn core(&mut self, n: &str) -> &mut C {
        let name = self.name.clone();
        self.who(n)
            .core
            .as_mut()
            .unwrap_or_else(|| panic!("{name}: {n} was not welcomed"))
    }

    fn pid(&self, n: &str) -> ParticipantId {
        self.people[n].pid.clone()
    }

    fn name_of(&self, p: &ParticipantId) -> String {
        self.order
            .iter()
            .find(|n| {
                self.people[*n].pid == *p && self.people[*n].spec.get("impersonates").is_none()
            })
            .cloned()
            .unwrap_or_else(|| p.as_str().to_owned())
    }

    /// `$name` strings in a JSON value become that participant's id.
    fn subst(&self, v: &Value) -> Value {
        match v {
            Value::String(x) if x.starts_with('$') => {
                Value::String(self.pid(&x[1..]).as_str().to_owned())
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.subst(x)).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), self.subst(x))).collect())
            }
            _ => v.clone(),
        }
    }

    fn member(&self, n: &str) -> ChannelMember {
        let w = &self.people[n];
        ChannelMember {
            participant_id: w.pid.clone(),
            role: w.role,
            side: w.side,
            connected: !self.offline.contains(n),
        }
    }

    fn channel_view(&self, room: &str, members: &[String]) -> ChannelView {
        let id = ChannelId::new(room).unwrap();
        let kind = if room == "joint" {
            ChannelKind::Joint
        } else if room.starts_with("caucus-") {
            ChannelKind::Caucus
        } else {
            ChannelKind::Breakout
        };
        let mut members: Vec<ChannelMember> = members.iter().map(|n| self.member(n)).collect();
        members.sort_by(|a, b| a.participant_id.cmp(&b.participant_id));
        ChannelView { id, kind, members }
    }

    fn handle(&mut self, n: &str, m: ServerMessage) {
        let now = self.now;
        self.core(n).handle(m, now);
        self.collect(n);
    }

    fn collect(&mut self, n: &str) {
        let w = self.who(n);
        let Some(c) = w.core.as_mut() else { return };
        while let Some(e) = c.poll_event() {
            w.events.push(e);
        }
    }

    /// `reload`: the participant's page reloaded (keys gone): a fresh core resumes its id, in
    /// the room the server has it in, with no invite secret.
    fn welcome(&mut self, n: &str, reload: bool) {
        let w = &self.people[n];
        let mut cfg = CoreConfig::new(agreement_hash("scenario agreement"));
        cfg.auto_admit = w.role == Role::Mediator;
        cfg.admit_without_invite_secret = !w.spec["strict"].as_bool().unwrap_or(false);
        cfg.display_name = w.spec["display_name"].as_str().map(str::to_owned);
        if let Some(inv) = w.spec["invite"].as_str().filter(|_| !reload) {
            cfg.invite = Some(Invite {
                token: "t".into(),
                psk: Some(self.invites[inv].clone()),
                mediator_ik: None,
            });
        }
        let rng = SeededRng {
            seed: format!("{}/{n}{}", self.seed, if reload { "/reload" } else { "" }).into_bytes(),
            counter: 0,
        };
        let role = w.role;
        let manager = role.is_manager();
        assert!(
            !(reload && manager),
            "{}: only non-managers reload",
            self.name
        );
        let here = if reload { self.room_of(n) } else { None };
        let channel = here.or_else(|| {
            manager.then(|| {
                let mut in_joint: Vec<String> = self
                    .rooms
                    .iter()
                    .filter(|(_, r)| r.as_str() == "joint")
                    .map(|(k, _)| k.clone())
                    .collect();
                in_joint.push(n.to_owned());
                self.channel_view("joint", &in_joint)
            })
        });
        if manager {
            self.rooms.insert(n.to_owned(), ChannelId::joint());
        }
        let welcome = self.welcome_message(n, channel, false);
        self.who(n).core = Some(Core::new(rng, cfg));
        self.handle(n, welcome);
    }

    /// The view of the room `n` is in, if any.
    fn room_of(&self, n: &str) -> Option<ChannelView> {
        let room = self.rooms.get(n)?;
        let members: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, r)| *r == room)
            .map(|(k, _)| k.clone())
            .collect();
        Some(self.channel_view(room.as_str(), &members))
    }

    /// A `welcome` for `n`, through the strict decoder.
    fn welcome_message(
        &self,
        n: &str,
        channel: Option<ChannelView>,
        resumed: bool,
    ) -> ServerMessage {
        let w = &self.people[n];
        let v = serde_json::json!({"type": "welcome", "participant_id": w.pid.as_str(), "session_id": "scenario",
            "role": w.role, "side": w.side, "resume_token": if resumed { "r2" } else { "r" },
            "resume_grace_secs": 30, "channel": channel, "resumed": resumed, "locked": false});
        serde_json::from_value(v).unwrap()
    }

    /// The same client resumes (its connection dropped; in cluster mode perhaps onto another
    /// node): a welcome with `resumed`, into the room it is in, keys kept.
    fn resume(&mut self, n: &str) {
        let welcome = self.welcome_message(n, self.room_of(n), true);
        self.handle(n, welcome);
    }

    /// The server's state: managers get the session view, each seated participant its room.
    fn view(&mut self, v: &Value) {
        let mut rooms: Vec<(String, Vec<String>)> = Vec::new();
        let mut seated = BTreeMap::new();
        for (room, members) in v["rooms"].as_object().unwrap() {
            let names: Vec<String> = members
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect();
            for n in &names {
                seated.insert(n.clone(), ChannelId::new(room.as_str()).unwrap());
            }
            rooms.push((room.clone(), names));
        }
        if !rooms.iter().any(|(r, _)| r == "joint") {
            rooms.push(("joint".into(), Vec::new()));
        }
        self.offline = v["offline"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let waiting: Vec<WaitingView> = v["waiting"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        let w = &self.people[x.as_str().unwrap()];
                        WaitingView {
                            participant_id: w.pid.clone(),
                            role: w.role,
                            side: w.side,
                            consented: true,
                            connected: true,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let session = SessionView {
            locked: false,
            waiting,
            channels: rooms.iter().map(|(r, m)| self.channel_view(r, m)).collect(),
        };
        self.rooms = seated;
        let welcomed: Vec<String> = self
            .order
            .iter()
            .filter(|n| self.people[*n].core.is_some())
            .cloned()
            .collect();
        for n in welcomed {
            let w = &self.people[&n];
            if w.role.is_manager() {
                let m = ServerMessage::Session {
                    session: session.clone(),
                };
                self.handle(&n, m);
            }
            if let Some(room) = self.rooms.get(&n).cloned() {
                let members = rooms
                    .iter()
                    .find(|(r, _)| r == room.as_str())
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default();
                let channel = self.channel_view(room.as_str(), &members);
                self.handle(&n, ServerMessage::Channel { channel });
            }
        }
    }

    fn drop_rule(v: &Value, r: &Relayed, to: &str) -> bool {
        v["drop"].as_array().is_some_and(|rules| {
            rules.iter().any(|d| {
                d.get("from").is_none_or(|f| f == r.from.as_str())
                    && d.get("to").is_none_or(|t| t == to)
                    && d.get("kind").is_none_or(|k| k == kind_of(&r.data))
            })
        })
    }

    /// Routes every queued relay as the server would, until nobody says anything more.
    fn deliver(&mut self, v: &Value) {
        for _ in 0..1000 {
            let mut batch = Vec::new();
            for n in self.order.clone() {
                let Some(c) = self.who(&n).core.as_mut() else {
                    continue;
                };
                let out: Vec<ClientMessage> = std::iter::from_fn(|| c.poll_send()).collect();
                for m in out {
                    self.who(&n).sent.push(m.clone());
                    let ClientMessage::Relay { to, data } = m else {
                        continue;
                    };
                    let (targets, channel) = match &to {
                        RelayTarget::Participant(p) => (
                            self.order
                                .iter()
                                .filter(|x| self.people[*x].pid == *p)
                                .cloned()
                                .collect(),
                            None,
                        ),
                        RelayTarget::Channel(ch) => (
                            self.rooms
                                .iter()
                                .filter(|(x, r)| *r == ch && **x != n)
                                .map(|(x, _)| x.clone())
                                .collect(),
                            Some(ch.clone()),
                        ),
                    };
                    batch.push(Relayed {
                        from: n.clone(),
                        to: targets,
                        channel,
                        data,
                    });
                }
            }
            if batch.is_empty() {
                return;
            }
            for r in batch {
                self.log.push(r.clone());
                for t in &r.to {
                    if Self::drop_rule(v, &r, t) || self.people[t].core.is_none() {
                        continue;
                    }
                    let msg = ServerMessage::Relayed {
                        from: self.pid(&r.from),
                        channel: r.channel.clone(),
                        data: r.data.clone(),
                    };
                    self.handle(t, msg);
                }
            }
        }
        panic!("{}: relays never settled", self.name);
    }

    fn tick(&mut self, at_ms: u64) {
        self.now = self.start + Duration::from_millis(at_ms);
        for n in self.order.clone() {
            let now = self.now;
            if let Some(c) = self.who(&n).core.as_mut() {
                c.tick(now);
            }
            self.collect(&n);
        }
    }

    fn capture(&mut self, v: &Value) {
        let (from, kind) = (s(v, "from"), s(v, "kind"));
        let to = v.get("to").and_then(Value::as_str);
        let room = v.get("room").and_then(Value::as_str);

        let hits: Vec<&Relayed> = self
            .log
            .iter()
            .filter(|r| r.from == from && kind_of(&r.data) == kind)
            .filter(|r| to.is_none_or(|t| r.to.iter().any(|x| x == t)))
            .filter(|r| {
                room.is_none_or(|room| {
                    matches!(Envelope::from_data(&r.data), Some(Envelope::Roster { ch, .. }) if ch == room)
                })
            })
            .collect();
        // The `nth` one (from 0), or the last one.
        let pick = match v["nth"].as_u64() {
            Some(n) => hits.get(n as usize),
            None => hits.last(),
        };
        let r =
            (*pick.unwrap_or_else(|| panic!("{}: nothing to capture for {v}", self.name))).clone();
        self.captured.insert(s(v, "name").to_owned(), r);
    }

    fn inject(&mut self, v: &Value) {
        let r = self.captured[s(v, "name")].clone();
        let to = s(v, "to");
        let msg = ServerMessage::Relayed {
            from: self.pid(v.get("as").and_then(Value::as_str).unwrap_or(&r.from)),
            channel: r.channel.clone(),
            data: r.data.clone(),
        };
        self.handle(to, msg);
    }

    /// `signer` signs the next roster after a captured one, as a forgery or a fork.
    fn forge_roster(&mut self, v: &Value) {
        let r = self.captured[s(v, "after")].clone();
        let Some(Envelope::Roster { ch, enc, sig, .. }) = Envelope::from_data(&r.data) else {
            panic!("{}: capture a roster first", self.name);
        };
        let prev = SignedRoster::from_parts(&enc.0, sig.array().unwrap()).unwrap();
        let mut next = prev.roster.clone();
        let delta = v["epoch_delta"].as_u64().unwrap_or(1);
        next.epoch = v["epoch"].as_u64().unwrap_or(next.epoch + delta);
        if v["keep_prev_hash"].as_bool() != Some(true) {
            next.prev_hash = prev.hash;
        }
        if let Some(drop) = v.get("remove").and_then(Value::as_str) {
            let id: [u8; 16] = hex::decode(self.pid(drop).as_str())
                .unwrap()
                .try_into()
                .unwrap();
            next.members.retain(|m| m.participant_id != id);
        }
        let signer = s(v, "signer").to_owned();
        let forged = next.sign(self.core(&signer).identity().unwrap()).unwrap();
        let env = Envelope::Roster {
            ch,
            enc: Bytes(forged.encoded),
            sig: Bytes(forged.signature.to_vec()),
            dik: None,
            dsig: None,
        };
        let msg = ServerMessage::Relayed {
            from: self.pid(s(v, "from")),
            channel: None,
            data: env.to_data(),
        };
        self.handle(s(v, "to"), msg);
    }

    /// `n` well-formed sender keys from `from` to `to` for its current chain of `room`.
    fn key_flood(&mut self, v: &Value) {
        let (from, to) = (s(v, "from").to_owned(), s(v, "to").to_owned());
        let room = ChannelId::new(s(v, "room")).unwrap();
        let cid = self.core(&to).channel_id(&room).unwrap();
        let epoch = self.core(&to).roster_epoch(&room).unwrap();
        let n = v["n"].as_u64().unwrap();
        let descending = v["order"] == "descending";
        let seq0 = v["first_seq"].as_u64().unwrap_or(1_000_000);
        let to_ek = self.core(&to).identity().unwrap().ek_pub();
        let from_id: [u8; 16] = hex::decode(self.pid(&from).as_str())
            .unwrap()
            .try_into()
            .unwrap();
        let to_id: [u8; 16] = hex::decode(self.pid(&to).as_str())
            .unwrap()
            .try_into()
            .unwrap();
        let mut rng = SeededRng {
            seed: b"flood".to_vec(),
            counter: 0,
        };
        for i in 0..n {
            let generation = if descending {
                1_000_000 - i
            } else {
                2_000_000 + i
            };
            let msg = SenderKeyMsg {
                channel_id: cid,
                epoch,
                stream: 3,
                generation,
                base_key: Secret32::new([(i % 251) as u8; 32]),
            };
            let pair = Pair {
                session_id: b"scenario",
                from: from_id,
                to: to_id,
            };
            let sealed = pairwise::seal(
                &mut rng,
                self.people[&from]
                    .core
                    .as_ref()
                    .unwrap()
                    .identity()
                    .unwrap(),
                &to_ek,
                pair,
                MsgType::SenderKey,
                seq0 + i,
                &msg.encode(),
                None,
            )
            .unwrap();
            let env = Envelope::Pw {
                t: 1,
                seq: seq0 + i,
                enc: Bytes(sealed.enc.to_vec()),
                ct: Bytes(sealed.ct),
                hint: None,
            };
            let m = ServerMessage::Relayed {
                from: self.pid(&from),
                channel: None,
                data: env.to_data(),
            };
            self.handle(&to, m);
        }
    }

    fn names(&self, v: &Value) -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    }

    fn by_name(&self, ids: Vec<ParticipantId>) -> Vec<String> {
        let mut out: Vec<String> = ids.iter().map(|p| self.name_of(p)).collect();
        out.sort();
        out
    }

    fn sent_of(&self, n: &str, kind: &str, to: Option<&str>) -> usize {
        let to_pid = to.map(|t| self.pid(t));
        self.people[n]
            .sent
            .iter()
            .filter(|m| match m {
                ClientMessage::Relay { to: target, data } => {
                    kind_of(data) == kind
                        && to_pid
                            .as_ref()
                            .is_none_or(|p| matches!(target, RelayTarget::Participant(q) if q == p))
                }
                other => {
                    let t = serde_json::to_value(other).unwrap();
                    t["type"] == kind
                        && to_pid
                            .as_ref()
                            .is_none_or(|p| t["participant_id"].as_str() == Some(p.as_str()))
                }
            })
            .count()
    }

    fn expect(&mut self, v: &Value, step: usize) {
        let n = s(v, "who").to_owned();
        let at = format!("{} step {step} ({n})", self.name);
        let ch = |r: &str| ChannelId::new(r).unwrap();
        let core = self.people[&n].core.as_ref().unwrap();
        let alarms: BTreeSet<String> = core.stats().alarms.iter().cloned().collect();
        if let Some(want) = v.get("alarms") {
            let want: BTreeSet<String> = self.names(want).into_iter().collect();
            assert_eq!(alarms, want, "{at}: alarms");
        }
        if let Some(want) = v.get("alarms_include") {
            for a in self.names(want) {
                assert!(
                    alarms.contains(&a),
                    "{at}: alarm {a} missing from {alarms:?}"
                );
            }
        }
        if let Some(want) = v.get("secured") {
            let got = core.secured().map(|c| c.as_str().to_owned());
            assert_eq!(got.as_deref(), want.as_str(), "{at}: secured");
        }
        for (field, present) in [("present", true), ("members", false)] {
            if let Some(rooms) = v.get(field).and_then(Value::as_object) {
                for (room, want) in rooms {
                    let got = if present {
                        core.roster_present(&ch(room))
                    } else {
                        core.roster_members(&ch(room))
                    };
                    assert_eq!(self.by_name(got), self.names(want), "{at}: {field} {room}");
                }
            }
        }
        if let Some(rooms) = v.get("epoch").and_then(Value::as_object) {
            for (room, want) in rooms {
                assert_eq!(
                    core.roster_epoch(&ch(room)),
                    want.as_u64(),
                    "{at}: epoch {room}"
                );
            }
        }
        let heard: Vec<String> = self.people[&n]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Chat { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect();
        if let Some(want) = v.get("heard") {
            for t in self.names(want) {
                assert!(heard.contains(&t), "{at}: did not hear {t:?} ({heard:?})");
            }
        }
        if let Some(want) = v.get("not_heard") {
            for t in self.names(want) {
                assert!(!heard.contains(&t), "{at}: heard {t:?}");
            }
        }
        if let Some(want) = v.get("names") {
            let mut got: Vec<String> = core.names().into_iter().map(|(_, x)| x).collect();
            got.sort();
            assert_eq!(got, self.names(want), "{at}: names");
        }
        if let Some(want) = v.get("docs") {
            let mut got: Vec<String> = core.documents().into_iter().map(|d| d.name).collect();
            got.sort();
            assert_eq!(got, self.names(want), "{at}: documents");
        }
        if let Some(opens) = v.get("opens").and_then(Value::as_object) {
            for (doc, text) in opens {
                let (id, chunks) = &self.docs[doc.as_str()];
                let got = core.open_document(id, chunks);
                let want = text.as_str().unwrap().as_bytes();
                assert_eq!(got.as_deref().ok(), Some(want), "{at}: opens {doc}");
            }
        }
        if let Some(acks) = v.get("doc_acks").and_then(Value::as_object) {
            let got = core.document_acks();
            for (doc, who) in acks {
                let id = self.docs[doc.as_str()].0;
                let mut by: Vec<String> = got
                    .iter()
                    .filter(|(d, _)| *d == id)
                    .map(|(_, p)| self.name_of(p))
                    .collect();
                by.sort();
                assert_eq!(by, self.names(who), "{at}: acknowledged {doc}");
            }
        }
        if let Some(docs) = v.get("not_opens") {
            for doc in self.names(docs) {
                let (id, chunks) = &self.docs[doc.as_str()];
                assert!(core.open_document(id, chunks).is_err(), "{at}: opens {doc}");
            }
        }
        if let Some(want) = v.get("held") {
            assert_eq!(self.by_name(core.held()), self.names(want), "{at}: held");
        }
        if let Some(others) = v.get("same_code_as").and_then(Value::as_array) {
            let mine = core.session_code().map(str::to_owned);
            assert!(mine.is_some(), "{at}: no session code");
            for o in others {
                let theirs = self.people[o.as_str().unwrap()]
                    .core
                    .as_ref()
                    .unwrap()
                    .session_code()
                    .map(str::to_owned);
                assert_eq!(mine, theirs, "{at}: session code vs {o}");
            }
        }
        if let Some(g) = v.get("held_generations") {
            let got = core.held_generations(
                &ch(s(g, "room")),
                &self.pid(s(g, "from")),
                g["stream"].as_u64().unwrap() as u8,
            );
            assert!(
                got as u64 <= g["max"].as_u64().unwrap(),
                "{at}: {got} generations held"
            );
        }
        if let Some(rules) = v.get("sent").and_then(Value::as_array) {
            for r in rules {
                let got = self.sent_of(&n, s(r, "kind"), r.get("to").and_then(Value::as_str));
                if let Some(x) = r.get("count").and_then(Value::as_u64) {
                    assert_eq!(got as u64, x, "{at}: sent {r}");
                }
                if let Some(x) = r.get("max").and_then(Value::as_u64) {
                    assert!(got as u64 <= x, "{at}: sent {got} for {r}");
                }
                if let Some(x) = r.get("min").and_then(Value::as_u64) {
                    assert!(got as u64 >= x, "{at}: sent {got} for {r}");
                }
            }
        }
        if let Some(want) = v.get("decrypt_failures").and_then(Value::as_u64) {
            assert_eq!(
                core.stats().decrypt_failures,
                want,
                "{at}: {:?}",
                core.stats().failure_reasons
            );
        }
    }

    fn step(&mut self, v: &Value, i: usize) {
        match s(v, "op") {
            "welcome" => self.welcome(s(v, "who"), false),
            "reload" => self.welcome(s(v, "who"), true),
            "resume" => self.resume(s(v, "who")),
            "issue_invite" => {
                let who = s(v, "who").to_owned();
                let role: Role = s(v, "role").parse().unwrap();
                let psk = self.core(&who).issue_invite(role, side_of(v));
                self.invites.insert(s(v, "name").to_owned(), psk);
            }
            "view" => self.view(v),
            "deliver" => self.deliver(v),
            "command" => {
                let m: ClientMessage = serde_json::from_value(self.subst(&v["message"])).unwrap();
                let who = s(v, "who").to_owned();
                self.core(&who).command(m);
                self.collect(&who);
            }
            "chat" => {
                let who = s(v, "who").to_owned();
                let ok = self.core(&who).send_chat(s(v, "text")).is_ok();
                let want = !v["refused"].as_bool().unwrap_or(false);
                assert_eq!(ok, want, "{} step {i}: chat sent", self.name);
            }
            "tick" => self.tick(v["at_ms"].as_u64().unwrap()),
            "left" => {
                let p = self.pid(s(v, "who"));
                self.rooms.remove(s(v, "who"));
                for n in self.order.clone() {
                    if self.people[&n].role.is_manager() && self.people[&n].core.is_some() {
                        let m = ServerMessage::ParticipantLeft {
                            participant_id: p.clone(),
                            reason: LeaveReason::Left,
                        };
                        self.handle(&n, m);
                    }
                }
            }
            "ack_doc" => {
                let who = s(v, "who").to_owned();
                let id = self.docs[s(v, "doc")].0;
                let ok = self.core(&who).acknowledge_document(&id).is_ok();
                self.collect(&who);
                let want = !v["refused"].as_bool().unwrap_or(false);
                assert_eq!(ok, want, "{} step {i}: acknowledged", self.name);
            }
            "share_doc" => {
                let who = s(v, "who").to_owned();
                let into = v["into"].as_str().map(|r| ChannelId::new(r).unwrap());
                let name = s(v, "name").to_owned();
                let shared = self.core(&who).share_document(
                    into.as_ref(),
                    &name,
                    "text/plain",
                    s(v, "text").as_bytes(),
                );
                self.collect(&who);
                let private = v["private"].as_bool().unwrap_or(false);
                let shared = shared.and_then(|d| {
                    if private {
                        self.core(&who).keep_document_private(&d.doc_id)?;
                    } else {
                        self.core(&who).publish_document(&d.doc_id)?;
                    }
                    Ok(d)
                });
                self.collect(&who);
                match shared {
                    Ok(d) => {
                        assert!(
                            !v["refused"].as_bool().unwrap_or(false),
                            "{} step {i}: shared",
                            self.name
                        );
                        self.docs.insert(name, (d.doc_id, d.chunks));
                    }
                    Err(e) => assert!(
                        v["refused"].as_bool().unwrap_or(false),
                        "{} step {i}: not shared: {e}",
                        self.name
                    ),
                }
            }
            "admit_held" => {
                let who = s(v, "who").to_owned();
                let p = self.pid(s(v, "participant"));
                let role: Role = s(v, "role").parse().unwrap();
                let side = side_of(v);
                let ok = self.core(&who).admit_held(&p, role, side);
                assert_eq!(
                    ok,
                    v["ok"].as_bool().unwrap_or(true),
                    "{} step {i}",
                    self.name
                );
            }
            "mark" => {
                for w in self.people.values_mut() {
                    w.sent.clear();
                }
            }
            "capture" => self.capture(v),
            "inject" => self.inject(v),
            "forge_roster" => self.forge_roster(v),
            "key_flood" => self.key_flood(v),
            "expect" => self.expect(v, i),
            other => panic!("{} step {i}: unknown op {other}", self.name),
        }
    }
}

#[test]
fn every_scenario_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "{} scenario files", files.len());
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(v["format"], "confer-scenario/1", "{}", f.display());
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let mut run = Run::new(&name, &v);
        let steps = v["steps"].as_array().unwrap();
        assert!(
            steps.iter().any(|s| s["op"] == "expect"),
            "{name}: a scenario without expectations"
        );
        for (i, st) in steps.iter().enumerate() {
            run.step(st, i);
        }
    }
}
