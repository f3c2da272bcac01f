// Preloaded into profiled Haven processes by bench/replicate.ts --profile, through
// NODE_OPTIONS="--import <this file>" (Node 20 does not allow --cpu-prof in NODE_OPTIONS, and the
// receiver is a child the sender spawns, so command-line flags would not reach it). Plain
// JavaScript because it runs before tsx is registered. Writes what --cpu-prof would write:
// $HAVEN_BENCH_PROFILE_DIR/CPU.<pid>.cpuprofile when the process exits.
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.HAVEN_BENCH_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-process inspector answers synchronously, so this completes before the exit.
    session.post('Profiler.stop', (err, result) => {
      if (err || !result) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
