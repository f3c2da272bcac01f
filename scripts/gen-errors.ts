// docs/errors.md from the catalogues (see scripts/gen-errors).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderErrorsDoc } from '../src/cli/error-catalogue.ts';

const path = join(import.meta.dirname, '..', 'docs', 'errors.md');
writeFileSync(path, renderErrorsDoc());
console.log(`wrote ${path}`);
