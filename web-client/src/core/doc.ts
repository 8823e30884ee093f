// Twin of crates/e2ee/src/doc.rs: documents (e2ee.md §8.7). A file shared into a room is
// encrypted in chunks under a fresh per-file key that goes pairwise (type 5) to the room's
// present members only; the server stores the chunks and never sees the key.
//
//   doc_key  = HKDF-SHA256(ikm = file_key, salt = "", info = "confer/1 doc" || lp(doc_id))
//   nonce(i) = u32(0) || u64(i)
//   aad(i)   = "confer/1 doc-chunk" || lp(doc_id) || u64(i) || u8(last)
//   chunk(i) = ChaCha20-Poly1305(doc_key, nonce(i), aad(i), plaintext[i*CHUNK .. (i+1)*CHUNK])

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { Reader, Writer, bytesEqual, utf8Decode, utf8Encode } from "./enc.js";
import { OpenError } from "./lib.js";
import type { Id16 } from "./lib.js";
import { Secret32 } from "./secret.js";

/** Plaintext bytes per chunk (the last may hold fewer). */
export const CHUNK_BYTES = 65_536;
/** The AEAD tag each chunk adds. */
export const CHUNK_TAG = 16;
/** The longest document name, in UTF-8 bytes. */
export const MAX_DOC_NAME_BYTES = 255;
/** The longest media type, in bytes (ASCII). */
export const MAX_DOC_TYPE_BYTES = 127;

function aad(docId: Id16, index: bigint, last: boolean): Uint8Array {
  return Writer.label("confer/1 doc-chunk")
    .lp(docId)
    .u64(index)
    .u8(last ? 1 : 0)
    .intoBytes();
}

function nonce(index: bigint): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setBigUint64(4, index);
  return n;
}

/** Printable ASCII without spaces (0x21..0x7e), as a media type must be. */
function plainType(b: Uint8Array): boolean {
  return b.every((c) => c >= 0x21 && c < 0x7f);
}

/** A document's key, bound to its id. */
export class DocCipher {
  readonly #docId: Id16;
  readonly #key: Uint8Array;

  /** The chunk cipher of document `docId` under `fileKey`. */
  constructor(fileKey: Secret32, docId: Id16) {
    this.#docId = docId.slice();
    this.#key = hkdf(sha256, fileKey.expose(), new Uint8Array(0), Writer.label("confer/1 doc").lp(docId).intoBytes(), 32);
  }

  /** How many chunks a file of `size` bytes has (at least one). */
  static chunksFor(size: bigint): bigint {
    const chunk = BigInt(CHUNK_BYTES);
    return size === 0n ? 1n : (size + chunk - 1n) / chunk;
  }

  /** Seals chunk `index` (`last` for the final one). */
  sealChunk(index: bigint, last: boolean, plaintext: Uint8Array): Uint8Array {
    return chacha20poly1305(this.#key, nonce(index), aad(this.#docId, index, last)).encrypt(plaintext);
  }

  /** Opens chunk `index` (`last` for the final one). Throws `OpenError`. */
  openChunk(index: bigint, last: boolean, chunk: Uint8Array): Uint8Array {
    if (chunk.length < CHUNK_TAG || chunk.length > CHUNK_BYTES + CHUNK_TAG) {
      throw new OpenError();
    }
    try {
      return chacha20poly1305(this.#key, nonce(index), aad(this.#docId, index, last)).decrypt(chunk);
    } catch {
      throw new OpenError();
    }
  }

  /** Seals a whole file into its chunks. */
  sealAll(file: Uint8Array): Uint8Array[] {
    const n = Number(DocCipher.chunksFor(BigInt(file.length)));
    const out: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      out.push(this.sealChunk(BigInt(i), i + 1 === n, file.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES)));
    }
    return out;
  }

  /** Opens every chunk in order and checks the file against its size and hash. Throws `OpenError`. */
  openAll(chunks: readonly Uint8Array[], meta: DocKeyMsg): Uint8Array {
    const n = DocCipher.chunksFor(meta.size);
    if (BigInt(chunks.length) !== n || meta.size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new OpenError();
    }
    const out = new Uint8Array(Number(meta.size));
    let at = 0;
    for (let i = 0; i < chunks.length; i++) {
      const last = BigInt(i) + 1n === n;
      const c = chunks[i];
      if (c === undefined) {
        throw new OpenError();
      }
      const pt = this.openChunk(BigInt(i), last, c);
      if ((!last && pt.length !== CHUNK_BYTES) || at + pt.length > out.length) {
        throw new OpenError();
      }
      out.set(pt, at);
      at += pt.length;
    }
    if (at !== out.length || !bytesEqual(sha256(out), meta.sha256)) {
      out.fill(0);
      throw new OpenError();
    }
    return out;
  }
}

/** What a participant signs when it acknowledges one version of a document (a settlement draft). */
export function docAckSignedBytes(sessionId: Uint8Array, participantId: Id16, sha256: Uint8Array): Uint8Array {
  return Writer.label("confer/1 doc-ack").lp(sessionId).lp(participantId).raw(sha256).intoBytes();
}

/**
 * Pairwise type 6: a participant's acknowledgment of one version of a document, to the
 * mediator: `sha256[32] || signature[64]`.
 */
export class DocAck {
  constructor(
    readonly sha256: Uint8Array,
    readonly signature: Uint8Array,
  ) {}

  /** The 96 bytes. */
  encode(): Uint8Array {
    return new Writer().raw(this.sha256).raw(this.signature).intoBytes();
  }

  /** Exactly 96 bytes. Throws `OpenError`. */
  static decode(b: Uint8Array): DocAck {
    try {
      const r = new Reader(b);
      const sha = r.array(32);
      const sig = r.array(64);
      if (r.remaining() !== 0) {
        throw new OpenError();
      }
      return new DocAck(sha, sig);
    } catch {
      throw new OpenError();
    }
  }
}

/** Pairwise type 5: a document's key and what it is. */
export class DocKeyMsg {
  constructor(
    /** The chain (room) it is shared into. */
    readonly channelId: Id16,
    /** The document's random id. */
    readonly docId: Id16,
    /** The file key. */
    readonly fileKey: Secret32,
    /** The file's size in bytes. */
    readonly size: bigint,
    /** SHA-256 of the file. */
    readonly sha256: Uint8Array,
    /** Its name (1 to `MAX_DOC_NAME_BYTES` bytes of UTF-8). */
    readonly name: string,
    /** Its media type (0 to `MAX_DOC_TYPE_BYTES` bytes of printable ASCII). */
    readonly mediaType: string,
  ) {}

  /**
   * `"confer/1 doc-key" || lp(channel_id) || lp(doc_id) || file_key[32] || u64(size) ||
   * sha256[32] || lp(name) || lp(media_type)`.
   */
  encode(): Uint8Array {
    const name = utf8Encode(this.name);
    const type = utf8Encode(this.mediaType);
    if (name === undefined || type === undefined) {
      throw new RangeError("a document's name and type are Unicode strings");
    }
    return Writer.label("confer/1 doc-key")
      .lp(this.channelId)
      .lp(this.docId)
      .raw(this.fileKey.expose())
      .u64(this.size)
      .raw(this.sha256)
      .lp(name)
      .lp(type)
      .intoBytes();
  }

  /** Strict decode (as Rust's). Throws `OpenError`. */
  static decode(b: Uint8Array): DocKeyMsg {
    try {
      const r = new Reader(b);
      r.expect("confer/1 doc-key");
      const channelId = r.lp().slice();
      const docId = r.lp().slice();
      const fileKey = new Secret32(r.array(32));
      const size = r.u64();
      const hash = r.array(32).slice();
      const name = r.lp();
      const type = r.lp();
      const nameS = utf8Decode(name);
      const typeS = utf8Decode(type);
      if (
        channelId.length !== 16 ||
        docId.length !== 16 ||
        r.remaining() !== 0 ||
        name.length === 0 ||
        name.length > MAX_DOC_NAME_BYTES ||
        type.length > MAX_DOC_TYPE_BYTES ||
        !plainType(type) ||
        nameS === undefined ||
        typeS === undefined
      ) {
        throw new OpenError();
      }
      return new DocKeyMsg(channelId, docId, fileKey, size, hash, nameS, typeS);
    } catch {
      throw new OpenError();
    }
  }
}
