// The offer of one peer connection and the server's replies (src/media/offer.ts): an answer is
// applied once, to an offer that went out; `rate_limited` sends the same offer again after the
// server's default interval, then longer; replies that do not add up (a second answer, a
// refusal after the answer) mean the answer applied was another offer's, and a new peer
// connection is made.
import { describe, expect, it } from "vitest";

import { OFFER_RETRY_MAX_MS, OFFER_RETRY_MS, OfferExchange } from "../src/media/offer.js";

describe("an offer and the server's replies", () => {
  it("applies the answer to an offer that went out, once", () => {
    const x = new OfferExchange();
    expect(x.waiting()).toBe(false);
    x.sent();
    expect(x.waiting()).toBe(true);
    expect(x.answer()).toBe("apply");
    expect(x.answered()).toBe(true);
    expect(x.waiting()).toBe(false);
  });

  it("ignores an answer or a refusal that came before the offer went out (an older offer's)", () => {
    const x = new OfferExchange();
    expect(x.answer()).toBe("ignore");
    expect(x.refused()).toEqual({ kind: "ignore" });
    x.sent();
    expect(x.answer()).toBe("apply");
  });

  it("sends a refused offer again after the interval, then twice as long each time, up to the cap", () => {
    const x = new OfferExchange();
    x.sent();
    const waits: number[] = [];
    for (let i = 0; i < 6; i++) {
      const v = x.refused();
      expect(v.kind).toBe("retry");
      waits.push(v.kind === "retry" ? v.afterMs : -1);
      x.sent(); // the same offer again: still waiting for its one reply
      expect(x.waiting()).toBe(true);
    }
    expect(waits).toEqual([OFFER_RETRY_MS, 2 * OFFER_RETRY_MS, 4 * OFFER_RETRY_MS, OFFER_RETRY_MAX_MS, OFFER_RETRY_MAX_MS, OFFER_RETRY_MAX_MS]);
    expect(OFFER_RETRY_MS).toBe(2_000); // the server's default media_offer_interval_ms
    expect(x.answer()).toBe("apply");
  });

  it("makes a new peer connection when a refusal follows the answer applied (that answer was an older offer's)", () => {
    // An offer of the link before, queued while the socket was down, went out on the new
    // connection first: its answer came while this offer waited, and this one was refused.
    const x = new OfferExchange();
    x.sent();
    expect(x.answer()).toBe("apply");
    expect(x.refused()).toEqual({ kind: "rebuild" });
  });

  it("makes a new peer connection on a second answer", () => {
    const x = new OfferExchange();
    x.sent();
    expect(x.answer()).toBe("apply");
    expect(x.answer()).toBe("rebuild");
  });
});
