import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { test } from 'node:test';
import { asHavenError } from '../core/errors.ts';
import { JoinedStream } from './connection.ts';

test('a write completes only when the inner stream has finished with the chunk', async () => {
  const done: string[] = [];
  const pending: Array<() => void> = [];
  // The inner side takes each chunk but finishes with it only when told to.
  const inner = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      done.push(`inner got ${chunk.toString()}`);
      pending.push(cb);
    },
  });
  const joined = new JoinedStream(new PassThrough(), inner, { mapError: (e) => asHavenError(e) });
  joined.write(Buffer.from('a'), () => done.push('a written'));
  joined.write(Buffer.from('b'), () => done.push('b written'));
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(done, ['inner got a'], 'nothing reported written while the inner write runs');
  pending.shift()!();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual([...done].sort(), ['a written', 'inner got a', 'inner got b']);
  pending.shift()!();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(done.at(-1), 'b written');
});
