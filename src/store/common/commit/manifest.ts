/** The manifest a commit writes (docs/design.md §4.2 step 4): the new generation first, then the survivors renumbered. */
import { storeError } from '../../errors.ts';
import type { Generation } from '../../types.ts';
import { MANIFEST_VERSION } from '../metadata.ts';
import { imageName } from '../names.ts';
import type { DeltaRecord, Journal, ManifestFile } from '../records.ts';

export function nextManifest(
  journal: Journal,
  delta: DeltaRecord,
  current: ManifestFile | null,
): { manifest: ManifestFile; generation: Generation } {
  const server = journal.server;
  const { meta } = delta;
  const generation: Generation = {
    id: journal.generationId,
    seq: 1,
    pointInTime: meta.pointInTime,
    takenAt: meta.takenAt,
    committedAt: new Date().toISOString(),
    mode: meta.mode,
    job: meta.job,
    disks: meta.disks.map((d) => ({ name: d.name, size: d.size, image: imageName(server, d.name, 1) })),
    deltaBytes: Object.values(delta.counts).reduce((n, c) => n + c.dataBytes, 0),
    tests: [],
  };
  const survivors = journal.survivors.map((s) => {
    const g = current?.generations.find((x) => x.id === s.id);
    if (!g) {
      throw storeError(
        'STORE_FILE_INVALID',
        'integrity',
        `generation ${s.id} of ${server} vanished from the manifest mid-rotation`,
        {
          hint: 'Run `haven verify`; restore the manifest from a copy if you have one.',
        },
      );
    }
    return {
      ...g,
      seq: s.toSeq,
      disks: g.disks.map((d) => ({ ...d, image: imageName(server, d.name, s.toSeq) })),
    };
  });
  const manifest: ManifestFile = {
    format: 'haven-manifest',
    version: MANIFEST_VERSION,
    server,
    copies: journal.copies,
    generations: [generation, ...survivors.sort((a, b) => a.seq - b.seq)],
    sourceDefinition: meta.sourceDefinition,
    bootPriority: current?.bootPriority ?? 100,
    ...(current?.activeAtDr ? { activeAtDr: current.activeAtDr } : {}),
  };
  return { manifest, generation };
}
