/**
 * Pure parsers for what cache drive discovery reads from the system: `blkid -o export` (which
 * block devices hold which filesystem) and /proc/self/mountinfo (where each is mounted, and
 * which part of it: a bind mount of a subdirectory does not show the filesystem's root).
 */

export interface BlockFs {
  device: string;
  fstype: string;
  uuid: string | undefined;
  label: string | undefined;
}

/** blkid escapes spaces and other specials in values with a backslash. */
function unescapeBlkid(v: string): string {
  return v.replace(/\\(.)/g, '$1');
}

/** `blkid -c /dev/null -o export`: blocks of KEY=value lines separated by blank lines. */
export function parseBlkidExport(text: string): BlockFs[] {
  const out: BlockFs[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const kv = new Map<string, string>();
    for (const line of block.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) kv.set(line.slice(0, i).trim(), unescapeBlkid(line.slice(i + 1).trim()));
    }
    const device = kv.get('DEVNAME');
    const fstype = kv.get('TYPE');
    if (device && fstype) out.push({ device, fstype, uuid: kv.get('UUID'), label: kv.get('LABEL') });
  }
  return out;
}

export interface MountEntry {
  /** "major:minor" of the filesystem's device. */
  majMin: string;
  /** The path inside the filesystem that is mounted ("/" for the whole filesystem). */
  root: string;
  mountpoint: string;
  /** Per-mount options (rw/ro, nosuid, ...). */
  options: string[];
  fstype: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMount(v: string): string {
  return v.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** /proc/self/mountinfo (proc(5)): `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 10 || sep < 0 || sep + 2 >= f.length) continue;
    out.push({
      majMin: f[2]!,
      root: unescapeMount(f[3]!),
      mountpoint: unescapeMount(f[4]!),
      options: f[5]!.split(','),
      fstype: f[sep + 1]!,
      source: unescapeMount(f[sep + 2]!),
    });
  }
  return out;
}

/** Linux's dev_t encoding (major in bits 8–19 and 32–43, minor in 0–7 and 20–31). */
export function majMinOf(rdev: number): string {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}
