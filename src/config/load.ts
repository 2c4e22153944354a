// Reads and validates the YAML config; every error names the file and the field's path.
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function parseConfig(value: unknown, source: string): Config {
  const result = configSchema.safeParse(value ?? {});
  if (result.success) return result.data;
  throw new ConfigError(`${source}: invalid config:\n${formatIssues(result.error.issues)}`);
}

export async function loadConfig(file: string | undefined): Promise<Config> {
  if (!file) return parseConfig({}, 'defaults');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read config: ${(err as Error).message}`);
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message}`);
  }
  return parseConfig(value, file);
}

function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .flatMap((issue) => {
      const at = issue.path.map(String).join('.');
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `  ${at ? `${at}.` : ''}${k}: unknown field`);
      }
      return [`  ${at || '(root)'}: ${issue.message}`];
    })
    .join('\n');
}
