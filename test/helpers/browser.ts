/**
 * Debian's Chromium (package chromium, installed by scripts/setup), driven by playwright-core:
 * never a downloaded browser. Headless, no sandbox (tests run as root), and nothing that talks to
 * the network on its own.
 */
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export function launchChromium(env: NodeJS.ProcessEnv = process.env): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    env,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
