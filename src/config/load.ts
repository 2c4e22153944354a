// Reads and validates the YAML config; every error names the file and the field's path.
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';
import { translateEdgeMeshConfig } from './edgemesh.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** warnings receives one line per EdgeMesh key that was ignored (see edgemesh.ts). */
export function parseConfig(value: unknown, source: string, warnings?: string[]): Config {
  const translated = translateEdgeMeshConfig(value ?? {});
  warnings?.push(...translated.warnings.map((w) => `${source}: ${w}`));
  const result = configSchema.safeParse(translated.config);
  if (result.success) return result.data;
  throw new ConfigError(`${source}: invalid config:\n${formatIssues(result.error.issues)}`);
}

export async function loadConfig(file: string | undefined, warnings?: string[]): Promise<Config> {
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
  return parseConfig(value, file, warnings);
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
