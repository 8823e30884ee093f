// Accessibility: axe-core (through @axe-core/playwright, so Chromium pages) against WCAG 2.2 AA.

import { AxeBuilder } from "@axe-core/playwright";

import type { E2EPage } from "./browsers.js";

/** The rule sets WEB.md asks for: WCAG 2.0 A and AA, 2.1 AA, 2.2 AA. */
export const WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21aa", "wcag22aa"];

export interface AxeFinding {
  readonly id: string;
  readonly impact: string | undefined;
  readonly help: string;
  /** The offending elements, as CSS selectors. */
  readonly nodes: readonly string[];
}

/** Every WCAG violation axe finds in the page as it is now (empty when there are none). */
export async function axeViolations(page: E2EPage): Promise<AxeFinding[]> {
  if (page.playwright === undefined) {
    throw new Error("axe runs through @axe-core/playwright: use a Chromium page");
  }
  const results = await new AxeBuilder({ page: page.playwright }).withTags(WCAG_TAGS).analyze();
  return results.violations.map((v) => ({
    id: v.id,
    impact: v.impact ?? undefined,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.map(String).join(" ")),
  }));
}
