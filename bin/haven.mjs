#!/usr/bin/env node
// Entry point of the `haven` command. TypeScript runs through tsx so the installed tree and the
// source tree are the same thing: a target reached over SSH runs exactly this file.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
