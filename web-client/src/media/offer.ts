// The offer of one peer connection and the server's replies to it (signalling.md, `media_offer`):
// a pure decision, no WebRTC, so the unit tests drive it (test/offer.test.ts).
//
// Every `media_offer` gets one reply on the connection it went out on: `media_answer`, or an
// `error` in reply to `media_offer`. `rate_limited` means "sooner than
// `media_offer_interval_ms` after your previous offer" (a resume moments after the last offer,
// a session that moved to another node and back): the offer was dropped unread, so the same
// offer goes out again once the interval has passed. The client does not know the server's
// interval: it waits the default (2 s), then twice as long after each further refusal, up to
// `OFFER_RETRY_MAX_MS`.
//
// A reply that does not add up means an earlier one was not for this offer: an offer made for an
// older peer connection, queued while the socket was down and sent on the new connection, is
// answered there too. Its answer is applied to whichever offer is waiting, wrongly if that is
// a newer one. Such a reply arrives before this offer went out (ignored: the server cannot answer
// an offer it has not seen), or as a second reply to this one (a second answer, or a refusal
// after an answer): then the answer applied was the wrong one, and the peer connection is made
// again.

/** The server's default `media_offer_interval_ms`: the first wait before an offer goes again. */
export const OFFER_RETRY_MS = 2_000;
/** The longest wait between two tries of one offer. */
export const OFFER_RETRY_MAX_MS = 16_000;

/** What to do with a `media_answer`. */
export type AnswerVerdict =
  /** The answer to this offer: apply it. */
  | "apply"
  /** Not for this offer (it has not gone out yet): drop it. */
  | "ignore"
  /** A second reply: the answer applied before was another offer's. Make a new peer connection. */
  | "rebuild";

/** What to do after `rate_limited` in reply to `media_offer`. */
export type RefusalVerdict =
  /** Send the same offer again after this many milliseconds. */
  | { kind: "retry"; afterMs: number }
  /** Not about this offer (it has not gone out yet): nothing to do. */
  | { kind: "ignore" }
  /** This offer was answered already: the answer applied was another offer's. */
  | { kind: "rebuild" };

export class OfferExchange {
  #state: "making" | "sent" | "answered" = "making";
  #refusals = 0;

  /** The offer went out (again, after a refusal). */
  sent(): void {
    if (this.#state === "making") {
      this.#state = "sent";
    }
  }

  /** The offer went out and no answer has come yet: a refused one may be sent again. */
  waiting(): boolean {
    return this.#state === "sent";
  }

  answered(): boolean {
    return this.#state === "answered";
  }

  /** A `media_answer` arrived on the connection. */
  answer(): AnswerVerdict {
    switch (this.#state) {
      case "making":
        return "ignore";
      case "sent":
        this.#state = "answered";
        return "apply";
      case "answered":
        return "rebuild";
    }
  }

  /** `rate_limited` in reply to `media_offer` arrived on the connection. */
  refused(): RefusalVerdict {
    switch (this.#state) {
      case "making":
        return { kind: "ignore" };
      case "sent":
        this.#refusals += 1;
        return { kind: "retry", afterMs: Math.min(OFFER_RETRY_MAX_MS, OFFER_RETRY_MS * 2 ** (this.#refusals - 1)) };
      case "answered":
        return { kind: "rebuild" };
    }
  }
}
