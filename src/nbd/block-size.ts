/**
 * How long one data request may be, from the block size constraints the server advertised
 * (proto.md "Block size constraints"; defaults when it advertised none).
 */
import { DEFAULT_MAX_BLOCK, MAX_REQUEST_LENGTH } from './constants.ts';
import type { BlockSize } from './handshake.ts';

/**
 * The longest READ, WRITE or WRITE_ZEROES length to send (longer requests are split into pieces
 * of this length):
 * - at most the advertised maximum, and at most the export size ("the client MUST treat the
 *   export size as the effective maximum block size");
 * - a maximum of 0xffffffff means "no inherent limit", yet "either the server or the client MAY
 *   initiate a hard disconnect if the payload … would be large enough to be deemed a denial of
 *   service attack", and only lengths under 2^25 are promised not to be: nbdkit advertises
 *   0xffffffff and refuses reads over 64 MiB. So then 2^25, what a portable client sends;
 * - a multiple of the preferred block size where it can be ("SHOULD use integer multiples of any
 *   advertised preferred block size where possible"), else of the minimum ("MUST ensure that
 *   offset and length are integer multiples of any advertised minimum block size").
 */
export function maxRequestLength(bs: BlockSize, exportSize: number): number {
  const advertised = bs.maximum >= MAX_REQUEST_LENGTH ? DEFAULT_MAX_BLOCK : bs.maximum;
  const limit = Math.min(advertised, Math.max(exportSize, 1));
  const unit = limit >= bs.preferred ? bs.preferred : bs.minimum;
  return Math.max(limit - (limit % unit), bs.minimum);
}
