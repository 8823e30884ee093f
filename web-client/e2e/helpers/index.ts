// The browser tests' helpers: a real server, one browser process per participant, fake media
// per participant, probes of who is seen and heard, and axe.

export * from "./a11y.js";
export * from "./browsers.js";
export * from "./media.js";
export * from "./paths.js";
export * from "./probes.js";
export * from "./server.js";
export type { E2EGlobals, ViolationReport } from "./globals.js";
export * from "./session.js";
export * from "./bots.js";
export * from "./turn.js";
export * from "./identity.js";
