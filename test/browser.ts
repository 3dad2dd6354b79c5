/**
 * Debian's chromium, headless, driven by playwright-core (which brings no
 * browser of its own): the web console's tests and benchmark use it.
 * scripts/ensure-deps.ts installs the chromium package.
 */
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { ROOT } from "../extras/mini-os/paths.js";

export const CHROMIUM = "/usr/bin/chromium";
/** Where the tests' screenshots go. */
export const SHOTS = join(ROOT, "build", "test-output", "web");

/** Launches the browser (as root, chromium needs --no-sandbox). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}
