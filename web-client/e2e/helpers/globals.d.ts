// What the driver installs in every page before the page's own scripts run (browsers.ts,
// `instrument`): CSP violation reports and the streams a test captured. Test-only: the app
// never reads or writes it.

export interface ViolationReport {
  readonly directive: string;
  readonly blocked: string;
  readonly source: string;
  readonly line: number;
  readonly sample: string;
}

export interface E2EGlobals {
  readonly violations: ViolationReport[];
  readonly streams: Record<string, MediaStream>;
}

declare global {
  var __conferE2E: E2EGlobals | undefined;
}
