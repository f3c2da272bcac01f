import { HavenError, type HavenErrorOptions } from '../core/errors.ts';

export type EngineCode =
  | 'ENGINE_NO_DISKS'
  | 'ENGINE_DISK_UNSUPPORTED'
  | 'ENGINE_DISK_NAME_CLASH'
  | 'ENGINE_FOREIGN_BACKUP'
  | 'ENGINE_SERVER_BUSY'
  | 'ENGINE_SHUTDOWN_TIMEOUT'
  | 'ENGINE_TRANSIENT_SHUTDOWN'
  | 'ENGINE_SOURCE_CHANGED'
  | 'ENGINE_GAVE_UP';

export class EngineError extends HavenError {
  constructor(code: EngineCode, message: string, options: HavenErrorOptions) {
    super(code, message, options);
  }
}
