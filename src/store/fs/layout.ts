/**
 * Where images live in a filesystem store: `<root>/<server>_<disk>_<seq>.raw` (docs/design.md §4.1), in
 * the same directory as the store's metadata (common/metadata-layout.ts), so the whole store is
 * one directory an operator can move.
 */
import { checkName } from '../../core/names.ts';
import { MetadataLayout } from '../common/metadata-layout.ts';
import { imageName, under } from '../common/names.ts';
import type { Seq } from '../common/rotation-plan.ts';

export { DESCRIPTOR_FILE } from '../common/metadata-layout.ts';

export const IMAGE_SUFFIX = '.raw';

export class FsLayout extends MetadataLayout {
  image(server: string, disk: string, seq: Seq): string {
    return under(
      this.root,
      imageName(checkName('server', server), checkName('disk', disk), seq) + IMAGE_SUFFIX,
    );
  }
}
