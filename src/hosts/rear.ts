/**
 * ReaR on a host, through HostShell: what is installed, Haven's configuration file, the layout
 * check, rescue media, the archive streamed out of a pipe, and the end of ReaR's log for errors.
 * Every ReaR run holds an flock on the host (`/var/lib/haven/rear/.lock`), so two Haven runs
 * never drive ReaR on one host at once (HOST_BUSY).
 */
import { createHasher, type DigestAlgorithm } from '../core/digest.ts';
import type { HostFacts } from '../store/host/types.ts';
import { hostError, rearFailed } from './errors.ts';
import { parseLayoutDisks } from './layout.ts';
import {
  ARCHIVE_PATH,
  HOST_WORK_DIR,
  type HostDetected,
  ISO_DIR,
  ISO_PATH,
  REAR_CONFIG_NAME,
  REAR_CONFIG_PATH,
  SITE_CONFIG_LINE,
  SITE_CONFIG_PATH,
  siteConfigScript,
} from './rear-config.ts';
import type { HostShell, ShellResult, StreamingCommand } from './shell.ts';

export const LAYOUT_FILE = '/var/lib/rear/layout/disklayout.conf';
/** The exit code of the lock guard: another Haven run drives ReaR on this host. */
const BUSY = 75;

export interface RearOptions {
  /** ReaR's -v, -d and -s (simulate: list the scripts it would run, change nothing). */
  verbose?: boolean;
  debug?: boolean;
  simulate?: boolean;
  /** ReaR's output lines as they come. */
  onLine?: (line: string) => void;
}

function rearCommand(workflow: string, o: RearOptions): string {
  const flags = [o.verbose ? '-v' : '', o.debug ? '-d' : '', o.simulate ? '-s' : ''].filter(Boolean);
  return ['rear', '-C', REAR_CONFIG_NAME, ...flags, workflow].join(' ');
}

/** Runs `body` holding Haven's ReaR lock on the host (fd 9, closed for ReaR's children). */
function locked(body: string): string {
  return `mkdir -p ${HOST_WORK_DIR} ${ISO_DIR} || exit 1
exec 9>${HOST_WORK_DIR}/.lock
flock -n 9 || { echo "another Haven run drives ReaR on this host" >&2; exit ${BUSY}; }
${body}`;
}

/** Programs ReaR 2.7 requires with Haven's configuration, and the Debian package of each. */
export const REQUIRED_PROGRAMS: Record<string, string> = {
  rear: 'rear',
  xorrisofs: 'xorriso',
  file: 'file',
  less: 'less',
  bc: 'bc',
  strings: 'binutils',
  dumpkeys: 'kbd',
  loadkeys: 'kbd',
  kbd_mode: 'kbd',
  cpio: 'cpio',
  parted: 'parted',
  getopt: 'util-linux',
  mountpoint: 'util-linux',
  flock: 'util-linux',
  findmnt: 'util-linux',
  ip: 'iproute2',
  diff: 'diffutils',
  cmp: 'diffutils',
  gzip: 'gzip',
  tar: 'tar',
  mkfifo: 'coreutils',
};

export interface Preflight {
  rearVersion: string | null;
  /** Missing programs and files, each with the package that provides it. */
  missing: { what: string; pkg: string }[];
  configPresent: boolean;
  /** The host installs Debian packages (apt-get). */
  apt: boolean;
}

export class Rear {
  constructor(readonly shell: HostShell) {}

  get host(): string {
    return this.shell.name;
  }

  async preflight(): Promise<Preflight> {
    const progs = Object.keys(REQUIRED_PROGRAMS).join(' ');
    const r =
      await this.shell.run(`for p in ${progs}; do command -v "$p" >/dev/null || echo "missing $p"; done
# Any one of the places distributions put it (ls of all of them fails when one is absent).
iso=; for f in /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/isolinux.bin /usr/share/syslinux/isolinux.bin; do test -e "$f" && iso=$f; done
test -n "$iso" || echo "missing isolinux.bin"
command -v rear >/dev/null && echo "version $(rear --version 2>/dev/null | head -n 1)"
test -f ${REAR_CONFIG_PATH} && echo config
command -v apt-get >/dev/null && echo apt
true`);
    const lines = r.stdout.split('\n');
    const missing = lines
      .filter((l) => l.startsWith('missing '))
      .map((l) => l.slice(8))
      .map((what) => ({
        what,
        pkg: what === 'isolinux.bin' ? 'isolinux' : (REQUIRED_PROGRAMS[what] ?? what),
      }));
    const version = lines
      .find((l) => l.startsWith('version '))
      ?.slice(8)
      .trim();
    return {
      rearVersion: version || null,
      missing,
      configPresent: lines.includes('config'),
      apt: lines.includes('apt'),
    };
  }

  /** Installs Debian packages on the host (apt-get); the host needs package access. */
  async install(packages: string[]): Promise<ShellResult> {
    return this.shell.run(
      `DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${packages.join(' ')} 2>&1 | tail -n 20`,
      { timeoutMs: 30 * 60_000 },
    );
  }

  async readConfig(): Promise<string | null> {
    // Without the site.conf line the file is as good as absent: rescue systems would not read it.
    const r = await this.shell.run(
      `grep -qxF '${SITE_CONFIG_LINE.replace(/'/g, `'\\''`)}' ${SITE_CONFIG_PATH} 2>/dev/null || { echo -n '<none>'; exit 0; }; cat ${REAR_CONFIG_PATH} 2>/dev/null || echo -n '<none>'`,
    );
    return r.stdout === '<none>' ? null : r.stdout;
  }

  /**
   * Replaces Haven's configuration file atomically, and makes sure site.conf holds the line that
   * makes rescue systems read it (SITE_CONFIG_LINE; appended once to an operator's site.conf,
   * whose other lines stay). The operator's local.conf is not touched.
   */
  async writeConfig(text: string): Promise<void> {
    const r = await this.shell.run(
      `set -e; mkdir -p /etc/rear ${HOST_WORK_DIR}; t=$(mktemp ${REAR_CONFIG_PATH}.XXXXXX); cat >"$t"; chmod 644 "$t"; sync "$t"; mv "$t" ${REAR_CONFIG_PATH}
${siteConfigScript()}`,
      { input: text },
    );
    if (r.code !== 0) {
      throw hostError(
        'HOST_CONFIG_WRITE_FAILED',
        'io',
        `cannot write ${REAR_CONFIG_PATH} on ${this.host}: ${r.stderr.trim()}`,
        {
          hint: 'Check that the ssh user may write /etc/rear (Haven logs in as root by default).',
        },
      );
    }
  }

  /** Cache drives (their root holds `signature`) and Haven stores on the host. */
  async detect(signature: string): Promise<HostDetected> {
    const r = await this.shell.run(`findmnt -rn -o TARGET,FSTYPE | while read -r mp fs; do
  case "$fs" in ext2|ext3|ext4|xfs|btrfs|vfat) ;; *) continue ;; esac
  mp=$(printf '%b' "$mp")
  test -e "$mp/${signature.replace(/'/g, '')}" && printf 'cache\\t%s\\n' "$mp"
  find "$mp" -xdev -maxdepth 3 -name haven-store.json -printf 'store\\t%h\\n' 2>/dev/null
done; true`);
    const pick = (kind: string) =>
      r.stdout
        .split('\n')
        .filter((l) => l.startsWith(`${kind}\t`))
        .map((l) => l.slice(kind.length + 1))
        .filter((p) => p !== '/' && p.startsWith('/'));
    return { cacheMounts: [...new Set(pick('cache'))], storeDirs: [...new Set(pick('store'))] };
  }

  /** The saved layout (ReaR's last mkrescue), or null when none was saved. */
  async savedLayout(): Promise<string | null> {
    const r = await this.shell.run(`cat ${LAYOUT_FILE} 2>/dev/null || echo -n '<none>'`);
    return r.stdout === '<none>' ? null : r.stdout;
  }

  /** `rear checklayout`: has the disk layout (or a watched configuration file) changed? */
  async checkLayout(o: RearOptions = {}): Promise<'unchanged' | 'changed' | 'none'> {
    const r = await this.run(
      'checklayout',
      `test -s ${LAYOUT_FILE} || { echo no-layout; exit 0; }\n${rearCommand('checklayout', o)}`,
      o,
      [0, 1],
    );
    if (r.stdout.includes('no-layout')) return 'none';
    return r.code === 0 ? 'unchanged' : 'changed';
  }

  async mkrescue(o: RearOptions = {}): Promise<ShellResult> {
    return this.run('mkrescue', `rm -f ${ISO_PATH}\n${rearCommand('mkrescue', o)}`, o, [0]);
  }

  /** `rear -s mkbackuponly`: the scripts a backup would run (nothing runs). */
  async simulateBackup(o: RearOptions = {}): Promise<ShellResult> {
    return this.run('mkbackuponly', rearCommand('mkbackuponly', { ...o, simulate: true }), o, [0]);
  }

  private async run(what: string, body: string, o: RearOptions, ok: number[]): Promise<ShellResult> {
    const r = await this.shell.run(locked(body), { onStderrLine: o.onLine, timeoutMs: 6 * 3600_000 });
    if (r.code === BUSY) {
      throw hostError('HOST_BUSY', 'conflict', `another Haven run drives ReaR on ${this.host}`, {
        hint: `Wait for it to finish (see \`haven host show ${this.host}\`), then run again.`,
      });
    }
    if (!ok.includes(r.code))
      throw rearFailed(this.host, what, r.code, `${r.stdout}\n${r.stderr}`, await this.logTail());
    return r;
  }

  /** The host's facts for a rescue generation made just now (digests in the store's algorithm). */
  async facts(digest: DigestAlgorithm): Promise<HostFacts> {
    const r = await this.shell.run(`echo "hostname=$(uname -n)"; echo "kernel=$(uname -r)"
. /etc/os-release 2>/dev/null; echo "os=\${PRETTY_NAME:-unknown}"
test -d /sys/firmware/efi && echo firmware=uefi || echo firmware=bios
echo "memory=$(awk '/^MemTotal:/ { print $2 * 1024 }' /proc/meminfo)"
echo "rear=$(rear --version 2>/dev/null | head -n 1)"`);
    const v = Object.fromEntries(
      r.stdout
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1).trim()]),
    ) as Record<string, string>;
    const layout = (await this.savedLayout()) ?? '';
    const h = createHasher(digest);
    h.update(Buffer.from(layout, 'utf8'));
    return {
      hostname: v.hostname ?? this.host,
      os: v.os ?? 'unknown',
      kernel: v.kernel ?? 'unknown',
      rearVersion: v.rear ?? 'unknown',
      firmware: v.firmware === 'uefi' ? 'uefi' : 'bios',
      memoryBytes: Number(v.memory) || 0,
      disks: parseLayoutDisks(layout),
      layout,
      layoutDigest: h.digest().toString('hex'),
      rearConfig: (await this.readConfig()) ?? '',
    };
  }

  /** The rescue media ReaR made: its size and a stream of its bytes. */
  async isoSize(): Promise<number> {
    const r = await this.shell.run(`stat -c %s ${ISO_PATH}`);
    const size = Number(r.stdout.trim());
    if (r.code !== 0 || !Number.isInteger(size)) {
      throw hostError('HOST_MEDIA_MISSING', 'io', `rear mkrescue left no ${ISO_PATH} on ${this.host}`, {
        hint: `Read ReaR's log on ${this.host} (/var/log/rear/); ISO_DIR may be overridden in /etc/rear/local.conf.`,
      });
    }
    return size;
  }

  streamIso(): StreamingCommand {
    return this.shell.stream(`exec cat ${ISO_PATH}`);
  }

  async removeIso(): Promise<void> {
    await this.shell.run(`rm -f ${ISO_PATH}`);
  }

  /**
   * `rear mkbackuponly` writing into a pipe whose other end is this command's stdout: the archive
   * streams to Haven as tar makes it. Should ReaR stop before it opens the pipe, opening the pipe
   * read-write (which never blocks) ends `cat`.
   */
  streamBackup(o: RearOptions = {}): StreamingCommand {
    const dir = ARCHIVE_PATH.slice(0, ARCHIVE_PATH.lastIndexOf('/'));
    return this.shell.stream(
      locked(`f=${ARCHIVE_PATH}
mkdir -p ${dir} && rm -f "$f" && mkfifo -m 600 "$f" || exit 1
( ${rearCommand('mkbackuponly', o)} 1>&2 9>&-; echo $? >"$f.rc"; : <>"$f" ) &
cat "$f"
wait
rc=$(cat "$f.rc" 2>/dev/null || echo 1)
rm -f "$f" "$f.rc"
exit "$rc"`),
      { onStderrLine: o.onLine, timeoutMs: 24 * 3600_000 },
    );
  }

  /** The end of ReaR's newest log on the host (what ReaR said before it stopped). */
  async logTail(lines = 30): Promise<string> {
    const r = await this.shell
      .run(
        `f=$(ls -t /var/log/rear/rear-*.log 2>/dev/null | head -n 1); test -n "$f" && tail -n ${lines} "$f"; true`,
      )
      .catch(() => null);
    return r?.stdout ?? '';
  }

  /** A backup stream that ended badly, as an error (busy, or ReaR's failure with its log). */
  async backupFailed(r: ShellResult): Promise<never> {
    if (r.code === BUSY) {
      throw hostError('HOST_BUSY', 'conflict', `another Haven run drives ReaR on ${this.host}`, {
        hint: `Wait for it to finish, then run \`haven host backup ${this.host}\` again.`,
      });
    }
    throw rearFailed(this.host, 'mkbackuponly', r.code, r.stderr, await this.logTail());
  }
}
