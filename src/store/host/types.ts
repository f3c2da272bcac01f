/**
 * Host artefacts in a store (docs/store-format.md, "Host artefacts"; docs/hosts.md): a
 * hypervisor host's rescue media (ReaR ISO images) and backup archives (ReaR's tar archives),
 * each kind a series of generations named `<host>_rescue_<seq>.iso` and
 * `<host>_backup_<seq>.tar.gz`, `_1` newest, kept `copies` deep, with a manifest per host that
 * describes the host well enough to rebuild it from the store alone.
 */

import type { DigestAlgorithm } from '../../core/digest.ts';
import type { StoreCode } from '../errors.ts';
import type { TestRecord } from '../types.ts';

export type HostFileKind = 'rescue' | 'backup';
export const HOST_FILE_KINDS: readonly HostFileKind[] = ['rescue', 'backup'];

/** File name suffix per kind. */
export const HOST_FILE_SUFFIX: Record<HostFileKind, string> = { rescue: '.iso', backup: '.tar.gz' };

/** A disk of the host as ReaR's layout lists it (`disk /dev/vda 4294967296 msdos`). */
export interface HostDisk {
  /** Kernel name without /dev/: vda, sda, nvme0n1. */
  name: string;
  size: number;
  /** Partition table type (msdos, gpt), when the layout names one. */
  label?: string;
}

/** What the host was when its rescue media were made: enough to rebuild it on new hardware. */
export interface HostFacts {
  hostname: string;
  /** /etc/os-release PRETTY_NAME. */
  os: string;
  /** `uname -r`. */
  kernel: string;
  /** `rear --version`. */
  rearVersion: string;
  firmware: 'bios' | 'uefi';
  memoryBytes: number;
  disks: HostDisk[];
  /** ReaR's saved layout (/var/lib/rear/layout/disklayout.conf), as it is in the rescue media. */
  layout: string;
  /** Hex digest of `layout` (the store's algorithm): the media follow this layout. */
  layoutDigest: string;
  /** Haven's ReaR configuration as written into the media (/etc/rear/haven.conf). */
  rearConfig: string;
}

interface HostGenerationBase {
  /** Stable id (does not change when the sequence number does). */
  id: string;
  /** 1 = newest. */
  seq: number;
  /** When ReaR made the file on the host. */
  takenAt: string;
  committedAt: string;
  size: number;
  /** Hex digest of the whole file (the store's algorithm). */
  digest: string;
  tests: TestRecord[];
}

export interface RescueGeneration extends HostGenerationBase {
  kind: 'rescue';
  facts: HostFacts;
}

export interface BackupGeneration extends HostGenerationBase {
  kind: 'backup';
  /** The rescue media (generation id) that recover this archive: made for the same layout. */
  rescueId: string;
  /** Paths kept out of the archive. */
  excludes: string[];
}

export type HostGeneration = RescueGeneration | BackupGeneration;

/** `.haven/hosts/<host>/manifest.json`: what readers trust. */
export interface HostManifest {
  host: string;
  copies: number;
  digest: DigestAlgorithm;
  /** Newest first; rescue[i].seq === i + 1. */
  rescue: RescueGeneration[];
  /** Newest first; backup[i].seq === i + 1. */
  backup: BackupGeneration[];
}

/** What a sender says about a file before its bytes (FILE_OPEN, docs/stream-protocol.md §4.7). */
export interface HostFileMeta {
  host: string;
  kind: HostFileKind;
  copies: number;
  takenAt: string;
  /** Rescue media only. */
  facts?: HostFacts;
  /** Backup archives only: the rescue generation they belong with. */
  rescueId?: string;
  /** Backup archives only. */
  excludes?: string[];
}

export interface HostVerifyProblem {
  host: string;
  kind?: HostFileKind;
  seq?: number;
  generationId?: string;
  file?: string;
  code: StoreCode;
  message: string;
}

export interface HostVerifyReport {
  ok: boolean;
  checkedHosts: number;
  checkedFiles: number;
  checkedBytes: number;
  problems: HostVerifyProblem[];
}
