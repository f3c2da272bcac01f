/**
 * The dashboard's files, read once at start: our page, script and styles (plain files under
 * src/daemon/ui/, no build step) and the charting library, uPlot (MIT, a dependency in
 * package.json), served from where npm installed it. Nothing is loaded from elsewhere: the page
 * works on a DR network without internet.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { installPath } from '../core/package-root.ts';

/** The dashboard's own files, served from the package (the bundle holds only code). */
const UI_DIR = installPath('src', 'daemon', 'ui');

const JS = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** `/ui/<name>` → its file and type. */
const FILES: Record<string, { path: () => string; type: string }> = {
  'index.html': { path: () => join(UI_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  'app.js': { path: () => join(UI_DIR, 'app.js'), type: JS },
  'charts.js': { path: () => join(UI_DIR, 'charts.js'), type: JS },
  'panels.js': { path: () => join(UI_DIR, 'panels.js'), type: JS },
  'app.css': { path: () => join(UI_DIR, 'app.css'), type: CSS },
  // Resolved as Node resolves the package (hoisted or not, from src/ or from the bundle).
  'uPlot.iife.min.js': { path: () => uplot('uPlot.iife.min.js'), type: JS },
  'uPlot.min.css': { path: () => uplot('uPlot.min.css'), type: CSS },
};

function uplot(file: string): string {
  return createRequire(import.meta.url).resolve(`uplot/dist/${file}`);
}

/**
 * The page only talks to this origin and runs no inline code, so injected markup could neither
 * run nor send anything away; no framing (clickjacking the Run now button). Scripts may set
 * styles through the DOM (the charts size their canvases so), not with inline markup.
 */
export const UI_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
};

export interface UiFile {
  body: Buffer;
  type: string;
}

export async function loadUi(): Promise<Map<string, UiFile>> {
  const files = new Map<string, UiFile>();
  for (const [name, f] of Object.entries(FILES))
    files.set(name, { body: await readFile(f.path()), type: f.type });
  return files;
}
