// JSON logs on stdout (pino). One line per state change; per-connection detail only at debug.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino({ level, base: { name: 'edgeproxy' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
