/**
 * The generated reference of the command tree: man pages and shell completions. scripts/build
 * writes them into dist/ from the program the same build produced (scripts/reference.mjs), so
 * a packaged haven's pages and completions always describe the commands it runs; `haven
 * completion bash|zsh` prints the same scripts from the running program.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { bashCompletion } from './bash.ts';
import { manPages } from './man.ts';
import { describeProgram } from './model.ts';
import { shellCommands } from './shell.ts';
import { zshCompletion } from './zsh.ts';

export type Shell = 'bash' | 'zsh';
export const SHELLS: readonly Shell[] = ['bash', 'zsh'];

export function completionScript(program: Command, shell: Shell): string {
  const commands = shellCommands(describeProgram(program));
  return shell === 'bash' ? bashCompletion(commands) : zshCompletion(commands);
}

/**
 * Writes `<dir>/man/man1/*.1`, `<dir>/completion/haven.bash` and `<dir>/completion/_haven`;
 * returns the paths written, relative to `dir`.
 */
export async function writeReference(program: Command, dir: string, version: string): Promise<string[]> {
  const written: string[] = [];
  const manDir = join(dir, 'man', 'man1');
  await rm(manDir, { recursive: true, force: true });
  await mkdir(manDir, { recursive: true });
  for (const page of manPages(describeProgram(program), version)) {
    await writeFile(join(manDir, page.file), page.text);
    written.push(join('man', 'man1', page.file));
  }
  await mkdir(join(dir, 'completion'), { recursive: true });
  for (const [shell, file] of [
    ['bash', 'haven.bash'],
    ['zsh', '_haven'],
  ] as const) {
    await writeFile(join(dir, 'completion', file), completionScript(program, shell));
    written.push(join('completion', file));
  }
  return written;
}

export { manPages } from './man.ts';
export { describeProgram } from './model.ts';
