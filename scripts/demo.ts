/**
 * Haven's main job, end to end, on this machine: a real DR cycle on a real VM.
 *
 *  1. Boots the test guest (a tiny Linux under libvirt/QEMU, two disks and a cdrom) and lets it
 *     write random blocks, all the time.
 *  2. Protects it three times to a local store with `haven protect --copies 3`: a full copy,
 *     then incrementals, while the guest keeps writing.
 *  3. For the third run, proves the copy exact: the guest is paused for a moment, QEMU's own
 *     view of its disks is read out with libnbd's nbdcopy (an independent tool) as the reference,
 *     the run takes its point in time, and the guest resumes at once and keeps writing while the
 *     data is sent. The newest generation must equal the reference byte for byte.
 *  4. Lists the generations (`haven images`) and re-reads them (`haven verify`).
 *
 * Run it with `npm run demo` (scripts/demo does the machine setup first). Set HAVEN_DEMO_DIR to
 * choose where the store goes (default /var/tmp/haven-demo), HAVEN_DEMO_KEEP=1 to keep the guest.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exec } from '../src/core/exec.ts';
import { HAVEN_BIN } from '../src/transport/index.ts';
import { backupBegin, backupEnd, resumeDomain } from '../src/virt/index.ts';
import { createTestGuest } from '../test/fixtures/guest/index.ts';
import { nbdCopyToFile } from '../test/fixtures/guest/tools.ts';
import { firstDifference } from '../test/helpers/disk-model.ts';

const root = process.env.HAVEN_DEMO_DIR ?? '/var/tmp/haven-demo';
const store = join(root, 'store');
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (s: string) => console.log(`\n${bold(`== ${s}`)}`);

/** Runs haven with the terminal attached (progress bar and tables go straight to the user). */
function haven(args: string[], onStderrLine?: (line: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [HAVEN_BIN, ...args], {
      stdio: ['ignore', 'inherit', onStderrLine ? 'pipe' : 'inherit'],
    });
    if (onStderrLine) {
      let buf = '';
      child.stderr!.on('data', (b: Buffer) => {
        process.stderr.write(b);
        buf += b.toString();
        let i = buf.indexOf('\n');
        while (i >= 0) {
          onStderrLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
          i = buf.indexOf('\n');
        }
      });
    }
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? 1));
  });
}

async function must(args: string[], onStderrLine?: (line: string) => void): Promise<void> {
  const code = await haven(args, onStderrLine);
  if (code !== 0) throw new Error(`haven ${args.join(' ')} failed with exit code ${code}`);
}

const cleanups: Array<() => unknown> = [];
async function main(): Promise<void> {
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });

  step('Booting the demo server (TCG guest: 256 MiB + 64 MiB qcow2 disks, a cdrom, guest agent)');
  const guest = await createTestGuest(
    { after: (fn) => cleanups.push(fn) },
    { prefix: 'haven-demo', disks: [{ sizeMiB: 256 }, { sizeMiB: 64 }], cdrom: 'iso', agent: true },
  );
  console.log(`server ${guest.name} is running`);
  await guest.writePattern('vda', 1, 600);
  await guest.writePattern('vdb', 2, 200);
  const writer = await guest.command('random start vda 40');
  console.log(`the guest writes random 64 KiB blocks on vda, 40 a second, from now on (${writer})`);

  const protect = ['protect', guest.name, '--to', store, '--copies', '3'];
  step('Run 1: full copy while the guest writes');
  await must(protect);
  await new Promise((r) => setTimeout(r, 3000));

  step('Run 2: incremental while the guest writes');
  await must(protect);
  await new Promise((r) => setTimeout(r, 3000));

  step('Run 3: incremental, with an exact reference of the disks at its point in time');
  const refDir = join(root, 'reference');
  await mkdir(refDir, { recursive: true });
  await exec('chmod', ['1777', refDir]);
  await exec('virsh', ['-c', guest.virsh.uri, 'suspend', guest.name]);
  let resumed = false;
  const resume = async () => {
    if (!resumed) {
      resumed = true;
      await resumeDomain(guest.virsh, guest.name);
    }
  };
  cleanups.unshift(resume);
  const socketPath = join(refDir, 'nbd.sock');
  const job = await backupBegin(guest.virsh, guest.name, { socketPath, scratchDir: refDir });
  const refs = new Map<string, string>();
  for (const e of job.exports)
    refs.set(e.disk, await nbdCopyToFile(socketPath, e.exportName, join(refDir, `${e.disk}.raw`)));
  await backupEnd(guest.virsh, guest.name);
  console.log('guest paused; reference read with nbdcopy; now the run takes its point in time');
  // -v: the run reports "point in time taken" on stderr, the moment to let the guest go.
  await must([...protect, '-v'], (line) => {
    if (/point in time taken/.test(line)) {
      void resume().then(() => console.error('(guest resumed: it keeps writing while run 3 sends its data)'));
    }
  });
  await resume();

  step('The generations in the store (haven images)');
  await must(['images', '--store', store]);

  step('Re-reading every image against its manifest (haven verify)');
  await must(['verify', '--store', store]);

  step('Proof: the newest generation equals the guest’s disks at run 3’s point in time');
  let identical = true;
  for (const d of guest.disks) {
    const image = join(store, `${guest.name}_${d.storeName}_1.raw`);
    const diff = await firstDifference(image, refs.get(d.target)!);
    console.log(
      `${d.target}: ${image}  ${diff === -1 ? 'byte for byte identical' : `DIFFERS at byte ${diff}`}`,
    );
    identical &&= diff === -1;
  }
  await guest.command('random stop');
  if (!identical) throw new Error('the newest generation differs from the source at its checkpoint');
  console.log(`\n${bold('Demo complete.')} The store is at ${store}; its definitions/ boot the copies:`);
  console.log(`  virsh create ${join(store, 'definitions', `${guest.name}.xml`)}`);
}

main()
  .then(
    () => 0,
    (e: Error) => {
      console.error(`\ndemo failed: ${e.message}`);
      return 1;
    },
  )
  .then(async (code) => {
    if (process.env.HAVEN_DEMO_KEEP !== '1') {
      for (const fn of cleanups) await Promise.resolve(fn()).catch(() => {});
    }
    process.exit(code);
  });
