/**
 * The store descriptor (`haven-store.json`, docs/design.md §4.4): read, or written once when a store is
 * created, and checked to be a store of this kind, format and chunk size. Fixed at creation.
 */
import { randomUUID } from 'node:crypto';
import { DIGEST_ALGORITHMS, type DigestAlgorithm } from '../../core/digest.ts';
import type { Logger } from '../../core/log.ts';
import { storeError } from '../errors.ts';
import { CHUNK_SIZE, STORE_FORMAT_VERSION, type StoreDescriptor, type StoreKind } from '../types.ts';
import { createFileOnce, ensureDir, readJson, writeFileDurable } from './files.ts';
import { MetadataLayout } from './metadata-layout.ts';
import { parseDescriptor, toJson } from './records.ts';

export interface DescriptorOptions {
  /** Write a descriptor when the location holds none yet. */
  create?: boolean;
  /** Digest algorithm of a new store (default blake3); must match an existing store's. */
  digest?: DigestAlgorithm;
  /** An LVM store's volume groups, recorded when it is created (docs/store-lvm.md). */
  volumeGroups?: string;
  /** An rbd store's location, recorded when it is created (docs/store-rbd.md). */
  rbd?: string;
  log: Logger;
}

/** The descriptor of the `kind` store at `layout`, which then has its metadata folders. */
export async function openDescriptor(
  layout: MetadataLayout,
  kind: StoreKind,
  options: DescriptorOptions,
): Promise<StoreDescriptor> {
  const descriptor = (await readDescriptor(layout)) ?? (await createDescriptor(layout, kind, options));
  if (
    descriptor.kind !== kind ||
    descriptor.version > STORE_FORMAT_VERSION ||
    descriptor.chunkSize !== CHUNK_SIZE
  ) {
    throw storeError(
      'STORE_FORMAT_UNSUPPORTED',
      'integrity',
      `${layout.root} is a ${descriptor.kind} store of format ${descriptor.version} with ${descriptor.chunkSize}-byte chunks; this Haven reads ${kind} stores up to format ${STORE_FORMAT_VERSION} with ${CHUNK_SIZE}-byte chunks`,
      { hint: 'Use the Haven version that created this store, or a newer one.' },
    );
  }
  if (options.digest && options.digest !== descriptor.digest) {
    throw storeError(
      'STORE_DIGEST_CONFLICT',
      'usage',
      `${layout.root} uses ${descriptor.digest} digests, not ${options.digest}`,
      {
        hint: 'Leave the digest option out for an existing store; its algorithm is fixed when it is created.',
      },
    );
  }
  for (const d of [layout.havenDir, layout.serversDir, layout.locksDir, layout.definitionsDir])
    await ensureDir(d);
  if (descriptor.version < STORE_FORMAT_VERSION && options.create) {
    // Before anything of the newer format is written, so an older Haven refuses the store
    // (STORE_FORMAT_UNSUPPORTED) rather than misreading zero entries as digests.
    const upgraded = { ...descriptor, version: STORE_FORMAT_VERSION };
    await writeFileDurable(layout.descriptor, toJson(upgraded));
    options.log.info('store format upgraded', {
      path: layout.root,
      from: descriptor.version,
      to: upgraded.version,
    });
    return upgraded;
  }
  return descriptor;
}

export function readDescriptor(layout: MetadataLayout): Promise<StoreDescriptor | null> {
  return readJson(layout.descriptor, parseDescriptor(layout.descriptor));
}

async function createDescriptor(
  layout: MetadataLayout,
  kind: StoreKind,
  options: DescriptorOptions,
): Promise<StoreDescriptor> {
  if (!options.create) {
    throw storeError('STORE_NOT_FOUND', 'not-found', `${layout.root} is not a Haven store`, {
      hint: 'Check the path, or create the store (haven receive --store creates it).',
      details: { path: layout.root },
    });
  }
  const digest = options.digest ?? 'blake3';
  if (!DIGEST_ALGORITHMS.includes(digest))
    throw storeError('STORE_BAD_DIGEST', 'usage', `unknown digest ${digest}`, {
      hint: `Use one of ${DIGEST_ALGORITHMS.join(', ')}.`,
    });
  const fresh: StoreDescriptor = {
    format: 'haven-store',
    version: STORE_FORMAT_VERSION,
    kind,
    id: randomUUID(),
    createdAt: new Date().toISOString(),
    chunkSize: CHUNK_SIZE,
    digest,
    ...(options.volumeGroups ? { volumeGroups: options.volumeGroups } : {}),
    ...(options.rbd ? { rbd: options.rbd } : {}),
  };
  await ensureDir(layout.root);
  if (await createFileOnce(layout.descriptor, toJson(fresh)))
    options.log.info('store created', { path: layout.root, id: fresh.id });
  // Another process may have created it first: theirs is the store's.
  const descriptor = await readDescriptor(layout);
  if (!descriptor) {
    throw storeError('STORE_NOT_FOUND', 'not-found', `${layout.root} is not a Haven store`, {
      hint: 'Another process removed the descriptor while the store was being created; try again.',
    });
  }
  return descriptor;
}

/** The kind of the store at `dir`, or null where no descriptor is (yet). */
export async function openDescriptorKind(dir: string): Promise<StoreKind | null> {
  return (await readDescriptor(new MetadataLayout(dir)))?.kind ?? null;
}
