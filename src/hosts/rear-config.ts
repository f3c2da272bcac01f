/**
 * Haven's own ReaR configuration on a host (docs/hosts.md, "What Haven configures"):
 * `/etc/rear/haven.conf`, used as `rear -C haven …`, so the operator's `local.conf` stays theirs
 * (ReaR reads it first). Written by `haven host setup` and rewritten by `haven host backup` when
 * it would differ (new excludes, a new cache drive). ReaR watches /etc/rear/ in `checklayout`,
 * so a changed configuration also makes new rescue media, which carry it.
 *
 * Why each setting (ReaR 2.7; ../shared/research/host-recovery-rear.md):
 * - ISO rescue media, kept in Haven's directory only until they are stored (OUTPUT_URL=null);
 * - the backup archive through NETFS into a pipe in /run, which Haven reads and sends to the
 *   target: it never lands on the host's disks (ReaR refuses a backup directory on `/`, and /run
 *   is a tmpfs);
 * - the media's default boot entry boots the local disk (ISO_DEFAULT=boothd): booting them by
 *   mistake must not recover over a running host;
 * - at recovery, the archive comes from a medium labelled HAVEN-BACKUP (`haven host medium`),
 *   unless it is in the backup directory already. ReaR mounts it itself, through
 *   BACKUP_MOUNTCMD, at its own mount point (BUILD_DIR/outputfs): at the end of `rear recover`
 *   ReaR 2.7 removes that directory and stops with a BugError if anything is left in it, and
 *   its restore stage creates `outputfs/<NETFS_PREFIX>` for every scheme, `file://` too, which
 *   only an unmount ReaR does itself takes away (restore/NETFS/default/400_restore_backup.sh,
 *   cleanup_build_area_and_end_program in lib/_input-output-functions.sh);
 * - a drill (kernel option `haven.drill`) takes every prompt's default after 3 s and rebuilds the
 *   initramfs only when ReaR finds the storage drivers changed: the drill VM has the host's
 *   virtual hardware, and the recovered system boots the host's own initramfs.
 */
import type { HostConfig } from '../core/config.ts';

export const REAR_CONFIG_NAME = 'haven';
export const REAR_CONFIG_PATH = `/etc/rear/${REAR_CONFIG_NAME}.conf`;
/**
 * The rescue system's `rear recover` reads only site.conf, local.conf and rescue.conf (ReaR
 * 2.7, usr/sbin/rear), never a `-C` file: unattended recovery (system-setup) runs it plain. This
 * line in site.conf (the file Debian's local.conf reserves for automated tools) makes it read
 * Haven's file there, and only there: /etc/rear-release exists only in a rescue system.
 */
export const SITE_CONFIG_PATH = '/etc/rear/site.conf';
const SITE_CONFIG_MARK = '# haven: rescue systems made by Haven recover with its configuration';
/** An `if`, not `&&`: ReaR stops when sourcing a configuration file returns non-zero. */
export const SITE_CONFIG_LINE = `if test -f /etc/rear-release && test -f ${REAR_CONFIG_PATH}; then source ${REAR_CONFIG_PATH}; fi ${SITE_CONFIG_MARK}`;
/** Shell: puts SITE_CONFIG_LINE into site.conf, replacing an older line of Haven's, keeping the rest. */
export function siteConfigScript(): string {
  const q = (t: string) => `'${t.replace(/'/g, `'\\''`)}'`;
  return `grep -qxF ${q(SITE_CONFIG_LINE)} ${SITE_CONFIG_PATH} 2>/dev/null || {
  t=$(mktemp ${SITE_CONFIG_PATH}.XXXXXX)
  { grep -vF ${q(SITE_CONFIG_MARK)} ${SITE_CONFIG_PATH} 2>/dev/null || true; printf '%s\\n' ${q(SITE_CONFIG_LINE)}; } >"$t"
  chmod 644 "$t"; sync "$t"; mv "$t" ${SITE_CONFIG_PATH}
}`;
}
/** Haven's working directory on the host. */
export const HOST_WORK_DIR = '/var/lib/haven/rear';
export const ISO_DIR = `${HOST_WORK_DIR}/output`;
export const ISO_PATH = `${ISO_DIR}/haven-rescue.iso`;
export const BACKUP_DIR = '/run/haven/rear-backup';
/** NETFS puts the archive at `<BACKUP_URL path>/<NETFS_PREFIX>/backup.tar.gz`. */
export const ARCHIVE_PREFIX = 'haven';
export const ARCHIVE_PATH = `${BACKUP_DIR}/${ARCHIVE_PREFIX}/backup.tar.gz`;
/** The ext4 label of the medium that carries the archive at recovery. */
export const MEDIUM_LABEL = 'HAVEN-BACKUP';
/** Kernel option that marks a drill's rescue boot. */
export const DRILL_KERNEL_OPTION = 'haven.drill';

/** What Haven found on the host that the archive must leave out. */
export interface HostDetected {
  /** Mount points of cache drives (their root holds the signature file). */
  cacheMounts: string[];
  /** Directories of Haven stores (they hold haven-store.json). */
  storeDirs: string[];
}

/** Always left out: the host's VM images (Haven replicates the servers) and Haven's own work. */
export const DEFAULT_EXCLUDES = ['/var/lib/libvirt/images/*', `${HOST_WORK_DIR}/*`];

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The patterns kept out of the archive: defaults, stores, cache drives, then the operator's. */
export function backupExcludes(host: HostConfig, detected: HostDetected): string[] {
  const all = [
    ...DEFAULT_EXCLUDES,
    ...detected.storeDirs.map((d) => `${d}/*`),
    ...detected.cacheMounts.map((d) => `${d}/*`),
    ...host.exclude,
  ];
  return [...new Set(all)];
}

export function rearConfig(host: HostConfig, detected: HostDetected, signature: string): string {
  const excludes = backupExcludes(host, detected);
  const restoreSignatures = detected.cacheMounts.map(
    (m) => `POST_RECOVERY_COMMANDS+=( ${q(`touch "$TARGET_FS_ROOT"${q(`${m}/${signature}`)}`)} )`,
  );
  return `# Haven's ReaR configuration for host ${host.name}, used as \`rear -C ${REAR_CONFIG_NAME} ...\`.
# Written by \`haven host setup\` and \`haven host backup\`; edits here are overwritten.
# /etc/rear/local.conf stays yours and is read before this file.
OUTPUT=ISO
ISO_DIR=${ISO_DIR}
ISO_PREFIX=haven-rescue
OUTPUT_URL=null
BACKUP=NETFS
# The archive goes into a pipe Haven reads and sends to the target's store.
BACKUP_URL=file://${BACKUP_DIR}
NETFS_PREFIX=${ARCHIVE_PREFIX}
# Booting these media by mistake boots the local disk; recovering is chosen from the menu.
ISO_DEFAULT=boothd
USE_SERIAL_CONSOLE=yes
USER_INPUT_TIMEOUT=${Math.max(1, Math.round(host.rear.userInputTimeoutMs / 1000))}
${host.rear.firmware ? '' : "FIRMWARE_FILES=( 'no' )\n"}BACKUP_PROG_EXCLUDE+=( ${excludes.map(q).join(' ')} )
${restoreSignatures.map((l) => `${l}\n`).join('')}
# At recovery the archive comes from a medium labelled ${MEDIUM_LABEL} (haven host medium),
# unless ${BACKUP_DIR}/${ARCHIVE_PREFIX}/backup.tar.gz is there already. ReaR mounts it at its
# own mount point through BACKUP_MOUNTCMD and unmounts it there when done.
haven_mount_backup_medium() {
  local mnt=$1 dev=/dev/disk/by-label/${MEDIUM_LABEL} i
  if test -e ${BACKUP_DIR}/${ARCHIVE_PREFIX}/backup.tar.gz; then mount --bind ${BACKUP_DIR} "$mnt"; return; fi
  for i in $(seq 1 30); do test -e "$dev" && break; sleep 1; done
  test -e "$dev" || Error "No backup archive: attach the medium labelled ${MEDIUM_LABEL} (haven host medium) or put the archive at ${BACKUP_DIR}/${ARCHIVE_PREFIX}/backup.tar.gz"
  mount -o ro "$dev" "$mnt" && LogPrint "Backup archive from $dev"
}
if test -f /etc/rear-release; then
  BACKUP_MOUNTCMD=haven_mount_backup_medium
  BACKUP_UMOUNTCMD=umount
fi

# A drill: prompts take their defaults at once; the initramfs is rebuilt only for new drivers.
if test -f /etc/rear-release && grep -qw ${DRILL_KERNEL_OPTION} /proc/cmdline 2>/dev/null; then
  USER_INPUT_TIMEOUT=3
  REBUILD_INITRAMFS=""
fi
`;
}
