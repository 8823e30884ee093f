// The scenario runner of test/scenarios.test.ts: the twin of the `Run` of
// crates/client/tests/scenarios.rs, step for step: the same seeded RNG (SHA-256(seed bytes ||
// u64 BE counter) blocks), the same in-process server (honest routing, or the lies a step
// scripts), the same ops and checks (tests/scenarios/README.md). An unknown op, a failing
// step or a file without `expect` fails the replay.

import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { sha256 } from "@noble/hashes/sha2.js";
import { expect } from "vitest";

import { Core, CoreConfig, NotSecured, agreementHash } from "../src/core/client.js";
import type { Event } from "../src/core/client.js";
import { ShareRefused } from "../src/core/docs.js";
import type { SealedDoc } from "../src/core/docs.js";
import { concat, fromHex, u64Bytes } from "../src/core/enc.js";
import { SenderKeyMsg } from "../src/core/frame.js";
import type { Rng } from "../src/core/lib.js";
import { MsgType, Pair, seal } from "../src/core/pairwise.js";
import { Roster, SignedRoster } from "../src/core/roster.js";
import { Secret32 } from "../src/core/secret.js";
import { envelopeFromData, envelopeToData } from "../src/proto/envelope.js";
import { ChannelId, ParticipantId, Role, Side } from "../src/proto/ids.js";
import type { ChannelKind } from "../src/proto/ids.js";
import { parseClientMessage, parseServerMessage } from "../src/proto/message.js";
import type {
  ChannelMember,
  ChannelView,
  ClientMessage,
  ServerMessage,
  SessionView,
  WaitingView,
} from "../src/proto/message.js";
import type { Json, Obj } from "./helpers.js";
import { isObj } from "./helpers.js";

export const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../tests/scenarios");

/** A deterministic RNG: SHA-256(seed || counter) blocks, one block per 32 bytes asked for. */
export class SeededRng implements Rng {
  private counter = 0n;
  constructor(private readonly seed: Uint8Array) {}

  fill(dst: Uint8Array): void {
    for (let at = 0; at < dst.length; at += 32) {
      const block = sha256(concat(this.seed, u64Bytes(this.counter)));
      this.counter += 1n;
      dst.set(block.subarray(0, Math.min(32, dst.length - at)), at);
    }
  }
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const toHexBytes = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

interface Who {
  pid: ParticipantId;
  role: Role;
  side: Side | undefined;
  spec: Obj;
  core: Core | undefined;
  events: Event[];
  /** Everything this core sent since the last `mark`. */
  sent: ClientMessage[];
}

/** One relay as the server saw it. */
interface Relayed {
  from: string;
  to: string[];
  channel: ChannelId | undefined;
  data: string;
}

function s(v: Obj, k: string): string {
  const x = v[k];
  if (typeof x !== "string") {
    throw new Error(`missing string ${k} in ${JSON.stringify(v)}`);
  }
  return x;
}

function optStr(v: Obj, k: string): string | undefined {
  const x = v[k];
  return typeof x === "string" ? x : undefined;
}

function u64Of(v: Json | undefined): bigint | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : undefined;
}

function roleOf(x: string): Role {
  const r = Role.fromStr(x);
  if (r === undefined) {
    throw new Error(`unknown role ${x}`);
  }
  return r;
}

function sideOf(v: Obj): Side | undefined {
  const x = optStr(v, "side");
  if (x === undefined) {
    return undefined;
  }
  const side = Side.fromStr(x);
  if (side === undefined) {
    throw new Error(`unknown side ${x}`);
  }
  return side;
}

export function kindOf(data: string): string {
  const e = envelopeFromData(data);
  switch (e?.k) {
    case "announce":
      return "announce";
    case "roster":
      return "roster";
    case "chat":
      return "chat";
    case "delegate":
      return "delegate";
    case "pw":
      return ({ 1: "sender_key", 2: "ack", 3: "consent", 4: "name", 5: "doc_key", 6: "doc_ack" } as Record<number, string>)[e.t] ?? "other";
    case undefined:
      return "other";
  }
}

/** The keys of a JSON object in serde_json's (BTreeMap) order. */
function sortedKeys(o: Obj): string[] {
  return Object.keys(o).sort();
}

function byteSort(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Run {
  readonly name: string;
  readonly seed: string;
  readonly people = new Map<string, Who>();
  readonly order: string[] = [];
  /** Who the server has in which room, by participant name (iterated in name order). */
  rooms = new Map<string, ChannelId>();
  /** Who the last view showed with their connection down. */
  offline = new Set<string>();
  readonly invites = new Map<string, Secret32>();
  readonly log: Relayed[] = [];
  readonly captured = new Map<string, Relayed>();
  /** Documents shared so far, by name: their id and ciphertext chunks (the server's store). */
  readonly docs = new Map<string, SealedDoc>();
  readonly start = 0;
  now = 0;

  /** `configure` (not in the Rust runner) lets a unit test adjust a core's config before its welcome. */
  constructor(
    name: string,
    v: Obj,
    private readonly configure?: (name: string, cfg: CoreConfig) => void,
  ) {
    this.name = name;
    const list = v["participants"];
    if (!Array.isArray(list)) {
      throw new Error(`${name}: no participants`);
    }
    const specs = list.map((p) => {
      if (!isObj(p)) {
        throw new Error(`${name}: a participant is not an object`);
      }
      return p;
    });
    // Ids by position; an impersonator takes the id of the one it impersonates.
    const own = (i: number): ParticipantId => ParticipantId.create((i + 1).toString(16).padStart(2, "0").repeat(16));
    specs.forEach((p, i) => {
      const n = s(p, "name");
      const other = optStr(p, "impersonates");
      let id: ParticipantId;
      if (other !== undefined) {
        const j = specs.findIndex((q) => q["name"] === other);
        if (j < 0) {
          throw new Error(`${name}: nobody called ${other}`);
        }
        id = own(j);
      } else {
        id = own(i);
      }
      this.people.set(n, { pid: id, role: roleOf(s(p, "role")), side: sideOf(p), spec: p, core: undefined, events: [], sent: [] });
      this.order.push(n);
    });
    this.seed = optStr(v, "seed") ?? name;
  }

  who(n: string): Who {
    const w = this.people.get(n);
    if (w === undefined) {
      throw new Error(`${this.name}: nobody called ${n}`);
    }
    return w;
  }

  core(n: string): Core {
    const c = this.who(n).core;
    if (c === undefined) {
      throw new Error(`${this.name}: ${n} was not welcomed`);
    }
    return c;
  }

  pid(n: string): ParticipantId {
    return this.who(n).pid;
  }

  nameOf(p: ParticipantId): string {
    return this.order.find((n) => this.who(n).pid === p && this.who(n).spec["impersonates"] === undefined) ?? p;
  }

  /** `$name` strings in a JSON value become that participant's id. */
  subst(v: Json): Json {
    if (typeof v === "string" && v.startsWith("$")) {
      return this.pid(v.slice(1));
    }
    if (Array.isArray(v)) {
      return v.map((x) => this.subst(x));
    }
    if (isObj(v)) {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.subst(x)]));
    }
    return v;
  }

  member(n: string): ChannelMember {
    const w = this.who(n);
    return { participant_id: w.pid, role: w.role, side: w.side, connected: !this.offline.has(n) };
  }

  channelView(room: string, names: string[]): ChannelView {
    const id = ChannelId.create(room);
    const kind: ChannelKind = room === "joint" ? "joint" : room.startsWith("caucus-") ? "caucus" : "breakout";
    const members = names.map((n) => this.member(n)).sort((a, b) => byteSort(a.participant_id, b.participant_id));
    return { id, kind, members };
  }

  /** `rooms` in name order (Rust: a `BTreeMap` by name). */
  seated(): [string, ChannelId][] {
    return [...this.rooms.entries()].sort(([a], [b]) => byteSort(a, b));
  }

  async handle(n: string, m: ServerMessage): Promise<void> {
    await this.core(n).handle(m, this.now);
    this.collect(n);
  }

  collect(n: string): void {
    const w = this.who(n);
    const c = w.core;
    if (c === undefined) {
      return;
    }
    for (let e = c.pollEvent(); e !== undefined; e = c.pollEvent()) {
      w.events.push(e);
    }
  }

  /**
   * `reload`: the participant's page reloaded (keys gone): a fresh core resumes its id, in the
   * room the server has it in, with no invite secret.
   */
  async welcome(n: string, reload = false): Promise<void> {
    const w = this.who(n);
    const cfg = CoreConfig.create(agreementHash("scenario agreement"));
    cfg.autoAdmit = w.role === "mediator";
    cfg.admitWithoutInviteSecret = w.spec["strict"] !== true;
    cfg.displayName = optStr(w.spec, "display_name");
    const inv = reload ? undefined : optStr(w.spec, "invite");
    if (inv !== undefined) {
      const psk = this.invites.get(inv);
      if (psk === undefined) {
        throw new Error(`${this.name}: no invite called ${inv}`);
      }
      cfg.invite = { token: "t", psk: psk.clone(), mediatorIk: undefined };
    }
    this.configure?.(n, cfg);
    const rng = new SeededRng(utf8(`${this.seed}/${n}${reload ? "/reload" : ""}`));
    const manager = Role.isManager(w.role);
    if (reload && manager) {
      throw new Error(`${this.name}: only non-managers reload`);
    }
    let channel = reload ? this.roomOf(n) : undefined;
    if (channel === undefined && manager) {
      const inJoint = this.seated()
        .filter(([, r]) => r === "joint")
        .map(([k]) => k);
      inJoint.push(n);
      channel = this.channelView("joint", inJoint);
      this.rooms.set(n, ChannelId.joint());
    }
    const welcome = this.welcomeMessage(n, channel, false);
    w.core = new Core(rng, cfg);
    await this.handle(n, welcome);
  }

  /** The view of the room `n` is in, if any. */
  roomOf(n: string): ChannelView | undefined {
    const here = this.rooms.get(n);
    if (here === undefined) {
      return undefined;
    }
    const members = this.seated()
      .filter(([, r]) => r === here)
      .map(([k]) => k);
    return this.channelView(here, members);
  }

  /** A `welcome` for `n`: as the Rust runner does, through the strict decoder. */
  welcomeMessage(n: string, channel: ChannelView | undefined, resumed: boolean): ServerMessage {
    const w = this.who(n);
    return parseServerMessage({
      type: "welcome",
      participant_id: w.pid,
      session_id: "scenario",
      role: w.role,
      side: w.side ?? null,
      resume_token: resumed ? "r2" : "r",
      resume_grace_secs: 30,
      channel: channel ?? null,
      resumed,
      locked: false,
    });
  }

  /**
   * The same client resumes (its connection dropped; in cluster mode perhaps onto another
   * node): a welcome with `resumed`, into the room it is in, keys kept.
   */
  async resume(n: string): Promise<void> {
    await this.handle(n, this.welcomeMessage(n, this.roomOf(n), true));
  }

  /** The server's state: managers get the session view, each seated participant its room. */
  async view(v: Obj): Promise<void> {
    const roomsV = v["rooms"];
    if (!isObj(roomsV)) {
      throw new Error(`${this.name}: a view without rooms`);
    }
    const rooms: [string, string[]][] = [];
    const seated = new Map<string, ChannelId>();
    for (const room of sortedKeys(roomsV)) {
      const members = roomsV[room];
      if (!Array.isArray(members)) {
        throw new Error(`${this.name}: room ${room} is not a list`);
      }
      const names = members.map((x) => {
        if (typeof x !== "string") {
          throw new Error(`${this.name}: a member of ${room} is not a name`);
        }
        return x;
      });
      for (const n of names) {
        seated.set(n, ChannelId.create(room));
      }
      rooms.push([room, names]);
    }
    if (!rooms.some(([r]) => r === "joint")) {
      rooms.push(["joint", []]);
    }
    const offline = v["offline"];
    this.offline = new Set((Array.isArray(offline) ? offline : []).filter((x): x is string => typeof x === "string"));
    const waitingV = v["waiting"];
    const waiting: WaitingView[] = (Array.isArray(waitingV) ? waitingV : []).map((x) => {
      if (typeof x !== "string") {
        throw new Error(`${this.name}: a waiting entry is not a name`);
      }
      const w = this.who(x);
      return { participant_id: w.pid, role: w.role, side: w.side, consented: true, connected: true };
    });
    const session: SessionView = {
      locked: false,
      waiting,
      channels: rooms.map(([r, m]) => this.channelView(r, m)),
    };
    this.rooms = seated;
    const welcomed = this.order.filter((n) => this.who(n).core !== undefined);
    for (const n of welcomed) {
      const w = this.who(n);
      if (Role.isManager(w.role)) {
        await this.handle(n, { type: "session", session });
      }
      const room = this.rooms.get(n);
      if (room !== undefined) {
        const members = rooms.find(([r]) => r === room)?.[1] ?? [];
        await this.handle(n, { type: "channel", channel: this.channelView(room, members) });
      }
    }
  }

  static dropRule(v: Obj, r: Relayed, to: string): boolean {
    const rules = v["drop"];
    if (!Array.isArray(rules)) {
      return false;
    }
    return rules.some((d) => {
      if (!isObj(d)) {
        return false;
      }
      return (
        (d["from"] === undefined || d["from"] === r.from) &&
        (d["to"] === undefined || d["to"] === to) &&
        (d["kind"] === undefined || d["kind"] === kindOf(r.data))
      );
    });
  }

  /** Routes every queued relay as the server would, until nobody says anything more. */
  async deliver(v: Obj): Promise<void> {
    for (let round = 0; round < 1000; round++) {
      const batch: Relayed[] = [];
      for (const n of this.order) {
        const w = this.who(n);
        const c = w.core;
        if (c === undefined) {
          continue;
        }
        for (let m = c.pollSend(); m !== undefined; m = c.pollSend()) {
          w.sent.push(m);
          if (m.type !== "relay") {
            continue;
          }
          const to = m.to;
          if ("participant" in to) {
            batch.push({
              from: n,
              to: this.order.filter((x) => this.who(x).pid === to.participant),
              channel: undefined,
              data: m.data,
            });
          } else {
            batch.push({
              from: n,
              to: this.seated()
                .filter(([x, r]) => r === to.channel && x !== n)
                .map(([x]) => x),
              channel: to.channel,
              data: m.data,
            });
          }
        }
      }
      if (batch.length === 0) {
        return;
      }
      for (const r of batch) {
        this.log.push(r);
        for (const t of r.to) {
          if (Run.dropRule(v, r, t) || this.who(t).core === undefined) {
            continue;
          }
          await this.handle(t, { type: "relayed", from: this.pid(r.from), channel: r.channel, data: r.data });
        }
      }
    }
    throw new Error(`${this.name}: relays never settled`);
  }

  async tick(atMs: number): Promise<void> {
    this.now = this.start + atMs;
    for (const n of this.order) {
      const c = this.who(n).core;
      if (c !== undefined) {
        await c.tick(this.now);
      }
      this.collect(n);
    }
  }

  capture(v: Obj): void {
    const from = s(v, "from");
    const kind = s(v, "kind");
    const to = optStr(v, "to");
    const room = optStr(v, "room");
    const hits = this.log
      .filter((r) => r.from === from && kindOf(r.data) === kind)
      .filter((r) => to === undefined || r.to.includes(to))
      .filter((r) => {
        if (room === undefined) {
          return true;
        }
        const e = envelopeFromData(r.data);
        return e?.k === "roster" && e.ch === room;
      });
    // The `nth` one (from 0), or the last one.
    const nth = v["nth"];
    const pick = typeof nth === "number" ? hits[nth] : hits[hits.length - 1];
    if (pick === undefined) {
      throw new Error(`${this.name}: nothing to capture for ${JSON.stringify(v)}`);
    }
    this.captured.set(s(v, "name"), pick);
  }

  async inject(v: Obj): Promise<void> {
    const r = this.captured.get(s(v, "name"));
    if (r === undefined) {
      throw new Error(`${this.name}: nothing captured as ${s(v, "name")}`);
    }
    const as = optStr(v, "as") ?? r.from;
    await this.handle(s(v, "to"), { type: "relayed", from: this.pid(as), channel: r.channel, data: r.data });
  }

  /** `signer` signs the next roster after a captured one, as a forgery or a fork. */
  async forgeRoster(v: Obj): Promise<void> {
    const r = this.captured.get(s(v, "after"));
    const e = r === undefined ? undefined : envelopeFromData(r.data);
    if (e?.k !== "roster") {
      throw new Error(`${this.name}: capture a roster first`);
    }
    const prev = SignedRoster.fromParts(e.enc, e.sig);
    const p = prev.roster;
    const next = new Roster({
      sessionId: p.sessionId,
      channelId: p.channelId,
      kind: p.kind,
      epoch: p.epoch,
      prevHash: p.prevHash,
      members: [...p.members],
    });
    next.epoch = u64Of(v["epoch"]) ?? next.epoch + (u64Of(v["epoch_delta"]) ?? 1n);
    if (v["keep_prev_hash"] !== true) {
      next.prevHash = prev.hash;
    }
    const drop = optStr(v, "remove");
    if (drop !== undefined) {
      const id = fromHex(this.pid(drop));
      next.members = next.members.filter((m) => !m.participantId.every((b, i) => b === id[i]));
    }
    const identity = this.core(s(v, "signer")).identity();
    if (identity === undefined) {
      throw new Error(`${this.name}: the signer has no identity`);
    }
    const forged = next.sign(identity);
    const data = envelopeToData({ k: "roster", ch: e.ch, enc: forged.encoded, sig: forged.signature });
    await this.handle(s(v, "to"), { type: "relayed", from: this.pid(s(v, "from")), channel: undefined, data });
  }

  /** `n` well-formed sender keys from `from` to `to` for its current chain of `room`. */
  async keyFlood(v: Obj): Promise<void> {
    const from = s(v, "from");
    const to = s(v, "to");
    const room = ChannelId.create(s(v, "room"));
    const cid = this.core(to).channelId(room);
    const epoch = this.core(to).rosterEpoch(room);
    const n = u64Of(v["n"]);
    if (cid === undefined || epoch === undefined || n === undefined) {
      throw new Error(`${this.name}: key_flood needs ${to}'s chain of ${room} and n`);
    }
    const descending = v["order"] === "descending";
    const seq0 = u64Of(v["first_seq"]) ?? 1_000_000n;
    const toEk = this.core(to).identity()?.ekPub();
    const fromIdentity = this.core(from).identity();
    if (toEk === undefined || fromIdentity === undefined) {
      throw new Error(`${this.name}: key_flood needs both identities`);
    }
    const fromId = fromHex(this.pid(from));
    const toId = fromHex(this.pid(to));
    const rng = new SeededRng(utf8("flood"));
    for (let i = 0n; i < n; i++) {
      const generation = descending ? 1_000_000n - i : 2_000_000n + i;
      const msg = new SenderKeyMsg(cid, epoch, 3, generation, new Secret32(new Uint8Array(32).fill(Number(i % 251n))));
      const pair = new Pair(utf8("scenario"), fromId, toId);
      const sealed = await seal(rng, fromIdentity, toEk, pair, MsgType.SenderKey, seq0 + i, msg.encode());
      const data = envelopeToData({ k: "pw", t: 1, seq: seq0 + i, enc: sealed.enc, ct: sealed.ct });
      await this.handle(to, { type: "relayed", from: this.pid(from), channel: undefined, data });
    }
  }

  names(v: Json | undefined): string[] {
    if (!Array.isArray(v)) {
      throw new Error(`${this.name}: expected a list of strings`);
    }
    return v
      .map((x) => {
        if (typeof x !== "string") {
          throw new Error(`${this.name}: expected a list of strings`);
        }
        return x;
      })
      .sort(byteSort);
  }

  byName(ids: ParticipantId[]): string[] {
    return ids.map((p) => this.nameOf(p)).sort(byteSort);
  }

  sentOf(n: string, kind: string, to: string | undefined): number {
    const toPid = to === undefined ? undefined : this.pid(to);
    return this.who(n).sent.filter((m) => {
      if (m.type === "relay") {
        return (
          kindOf(m.data) === kind && (toPid === undefined || ("participant" in m.to && m.to.participant === toPid))
        );
      }
      return m.type === kind && (toPid === undefined || ("participant_id" in m && m.participant_id === toPid));
    }).length;
  }

  check(v: Obj, step: number): void {
    const n = s(v, "who");
    const at = `${this.name} step ${step.toString()} (${n})`;
    const core = this.core(n);
    const alarms = new Set(core.stats().alarms);
    if (v["alarms"] !== undefined) {
      expect([...alarms].sort(byteSort), `${at}: alarms`).toEqual([...new Set(this.names(v["alarms"]))]);
    }
    if (v["alarms_include"] !== undefined) {
      for (const a of this.names(v["alarms_include"])) {
        expect(alarms.has(a), `${at}: alarm ${a} missing from ${[...alarms].join(", ")}`).toBe(true);
      }
    }
    if (v["secured"] !== undefined) {
      const want = v["secured"];
      expect(core.secured(), `${at}: secured`).toBe(typeof want === "string" ? want : undefined);
    }
    for (const [field, present] of [
      ["present", true],
      ["members", false],
    ] as const) {
      const rooms = v[field];
      if (isObj(rooms)) {
        for (const [room, want] of Object.entries(rooms)) {
          const ch = ChannelId.create(room);
          const got = present ? core.rosterPresent(ch) : core.rosterMembers(ch);
          expect(this.byName(got), `${at}: ${field} ${room}`).toEqual(this.names(want));
        }
      }
    }
    const epochs = v["epoch"];
    if (isObj(epochs)) {
      for (const [room, want] of Object.entries(epochs)) {
        expect(core.rosterEpoch(ChannelId.create(room)), `${at}: epoch ${room}`).toBe(u64Of(want));
      }
    }
    const heard = this.who(n)
      .events.filter((e) => e.type === "chat")
      .map((e) => e.text);
    if (v["heard"] !== undefined) {
      for (const t of this.names(v["heard"])) {
        expect(heard.includes(t), `${at}: did not hear ${JSON.stringify(t)} (${JSON.stringify(heard)})`).toBe(true);
      }
    }
    if (v["not_heard"] !== undefined) {
      for (const t of this.names(v["not_heard"])) {
        expect(heard.includes(t), `${at}: heard ${JSON.stringify(t)}`).toBe(false);
      }
    }
    if (v["names"] !== undefined) {
      const got = core
        .names()
        .map(([, x]) => x)
        .sort(byteSort);
      expect(got, `${at}: names`).toEqual(this.names(v["names"]));
    }
    if (v["docs"] !== undefined) {
      const got = core
        .documents()
        .map((d) => d.name)
        .sort(byteSort);
      expect(got, `${at}: documents`).toEqual(this.names(v["docs"]));
    }
    const opens = v["opens"];
    if (isObj(opens)) {
      for (const [doc, text] of Object.entries(opens)) {
        const d = this.docs.get(doc);
        if (d === undefined || typeof text !== "string") {
          throw new Error(`${at}: no document ${doc}`);
        }
        expect(new TextDecoder().decode(core.openDocument(d.docId, d.chunks)), `${at}: opens ${doc}`).toBe(text);
      }
    }
    const acks = v["doc_acks"];
    if (isObj(acks)) {
      const got = core.documentAcks();
      for (const [doc, who] of Object.entries(acks)) {
        const d = this.docs.get(doc);
        if (d === undefined) {
          throw new Error(`${at}: no document ${doc}`);
        }
        const by = got
          .filter(([x]) => toHexBytes(x) === toHexBytes(d.docId))
          .map(([, p]) => this.nameOf(p))
          .sort(byteSort);
        expect(by, `${at}: acknowledged ${doc}`).toEqual(this.names(who));
      }
    }
    if (v["not_opens"] !== undefined) {
      for (const doc of this.names(v["not_opens"])) {
        const d = this.docs.get(doc);
        if (d === undefined) {
          throw new Error(`${at}: no document ${doc}`);
        }
        expect(() => core.openDocument(d.docId, d.chunks), `${at}: opens ${doc}`).toThrow();
      }
    }
    if (v["held"] !== undefined) {
      expect(this.byName(core.held()), `${at}: held`).toEqual(this.names(v["held"]));
    }
    const others = v["same_code_as"];
    if (Array.isArray(others)) {
      const mine = core.sessionCode();
      expect(mine, `${at}: no session code`).toBeDefined();
      for (const o of others) {
        if (typeof o !== "string") {
          throw new Error(`${at}: same_code_as holds a non-name`);
        }
        expect(this.core(o).sessionCode(), `${at}: session code vs ${o}`).toBe(mine);
      }
    }
    const g = v["held_generations"];
    if (isObj(g)) {
      const stream = g["stream"];
      const max = g["max"];
      if (typeof stream !== "number" || typeof max !== "number") {
        throw new Error(`${at}: held_generations needs stream and max`);
      }
      const got = core.heldGenerations(ChannelId.create(s(g, "room")), this.pid(s(g, "from")), stream);
      expect(got, `${at}: ${got.toString()} generations held`).toBeLessThanOrEqual(max);
    }
    const rules = v["sent"];
    if (Array.isArray(rules)) {
      for (const r of rules) {
        if (!isObj(r)) {
          throw new Error(`${at}: a sent rule is not an object`);
        }
        const got = this.sentOf(n, s(r, "kind"), optStr(r, "to"));
        const count = r["count"];
        const max = r["max"];
        const min = r["min"];
        if (typeof count === "number") {
          expect(got, `${at}: sent ${JSON.stringify(r)}`).toBe(count);
        }
        if (typeof max === "number") {
          expect(got, `${at}: sent ${got.toString()} for ${JSON.stringify(r)}`).toBeLessThanOrEqual(max);
        }
        if (typeof min === "number") {
          expect(got, `${at}: sent ${got.toString()} for ${JSON.stringify(r)}`).toBeGreaterThanOrEqual(min);
        }
      }
    }
    const failures = v["decrypt_failures"];
    if (typeof failures === "number") {
      expect(
        core.stats().decryptFailures,
        `${at}: ${JSON.stringify(Object.fromEntries(core.stats().failureReasons))}`,
      ).toBe(failures);
    }
  }

  async step(v: Obj, i: number): Promise<void> {
    const op = s(v, "op");
    switch (op) {
      case "welcome":
        await this.welcome(s(v, "who"));
        break;
      case "reload":
        await this.welcome(s(v, "who"), true);
        break;
      case "resume":
        await this.resume(s(v, "who"));
        break;
      case "issue_invite": {
        const psk = this.core(s(v, "who")).issueInvite(roleOf(s(v, "role")), sideOf(v));
        this.invites.set(s(v, "name"), psk);
        break;
      }
      case "view":
        await this.view(v);
        break;
      case "deliver":
        await this.deliver(v);
        break;
      case "command": {
        const message = v["message"];
        if (message === undefined) {
          throw new Error(`${this.name} step ${i.toString()}: a command without message`);
        }
        const m = parseClientMessage(this.subst(message));
        const who = s(v, "who");
        await this.core(who).command(m);
        this.collect(who);
        break;
      }
      case "chat": {
        const who = s(v, "who");
        const ok = await this.core(who)
          .sendChat(s(v, "text"))
          .then(
            () => true,
            (e: unknown) => {
              if (e instanceof NotSecured) {
                return false;
              }
              throw e;
            },
          );
        const want = v["refused"] !== true;
        expect(ok, `${this.name} step ${i.toString()}: chat sent`).toBe(want);
        break;
      }
      case "tick": {
        const at = v["at_ms"];
        if (typeof at !== "number") {
          throw new Error(`${this.name} step ${i.toString()}: tick without at_ms`);
        }
        await this.tick(at);
        break;
      }
      case "left": {
        const p = this.pid(s(v, "who"));
        this.rooms.delete(s(v, "who"));
        for (const n of this.order) {
          if (Role.isManager(this.who(n).role) && this.who(n).core !== undefined) {
            await this.handle(n, { type: "participant_left", participant_id: p, reason: "left" });
          }
        }
        break;
      }
      case "ack_doc": {
        const who = s(v, "who");
        const d = this.docs.get(s(v, "doc"));
        if (d === undefined) {
          throw new Error(`${this.name} step ${i.toString()}: no document ${s(v, "doc")}`);
        }
        const ok = await this.core(who)
          .acknowledgeDocument(d.docId)
          .then(
            () => true,
            (e: unknown) => {
              if (e instanceof ShareRefused) {
                return false;
              }
              throw e;
            },
          );
        this.collect(who);
        expect(ok, `${this.name} step ${i.toString()}: acknowledged`).toBe(v["refused"] !== true);
        break;
      }
      case "share_doc": {
        const who = s(v, "who");
        const into = optStr(v, "into");
        const name = s(v, "name");
        const core = this.core(who);
        const shared = await core
          .shareDocument(into === undefined ? undefined : ChannelId.create(into), name, "text/plain", utf8(s(v, "text")))
          .then(async (d) => {
            if (v["private"] === true) {
              core.keepDocumentPrivate(d.docId);
            } else {
              await core.publishDocument(d.docId);
            }
            return d;
          })
          .then(
            (d) => d,
            (e: unknown) => {
              if (e instanceof ShareRefused) {
                return undefined;
              }
              throw e;
            },
          );
        this.collect(who);
        expect(shared === undefined, `${this.name} step ${i.toString()}: refused`).toBe(v["refused"] === true);
        if (shared !== undefined) {
          this.docs.set(name, shared);
        }
        break;
      }
      case "admit_held": {
        const p = this.pid(s(v, "participant"));
        const ok = await this.core(s(v, "who")).admitHeld(p, roleOf(s(v, "role")), sideOf(v));
        const okV = v["ok"];
        expect(ok, `${this.name} step ${i.toString()}`).toBe(typeof okV === "boolean" ? okV : true);
        break;
      }
      case "mark":
        for (const w of this.people.values()) {
          w.sent = [];
        }
        break;
      case "capture":
        this.capture(v);
        break;
      case "inject":
        await this.inject(v);
        break;
      case "forge_roster":
        await this.forgeRoster(v);
        break;
      case "key_flood":
        await this.keyFlood(v);
        break;
      case "expect":
        this.check(v, i);
        break;
      default:
        throw new Error(`${this.name} step ${i.toString()}: unknown op ${op}`);
    }
  }
}

export function load(f: string): Obj {
  const v = JSON.parse(readFileSync(path.join(DIR, f), "utf8")) as Json;
  if (!isObj(v)) {
    throw new Error(`${f}: not a JSON object`);
  }
  return v;
}

/** Replays one scenario file; throws (or fails an expectation) where the Rust runner panics. */
export async function replay(name: string, v: Obj): Promise<void> {
  expect(v["format"], name).toBe("confer-scenario/1");
  const steps = v["steps"];
  if (!Array.isArray(steps)) {
    throw new Error(`${name}: no steps`);
  }
  if (!steps.some((st) => isObj(st) && st["op"] === "expect")) {
    throw new Error(`${name}: a scenario without expectations`);
  }
  const run = new Run(name, v);
  for (const [i, st] of steps.entries()) {
    if (!isObj(st)) {
      throw new Error(`${name} step ${i.toString()}: not an object`);
    }
    await run.step(st, i);
  }
}

