// Runs inside the client namespace: many HTTP/1.0 GETs one after another, each on a new
// connection, timed from connect() to the server's close. One process for all transfers, so a
// process start (~20 ms) never ends up in the figure. Prints one JSON line.
//   node transferClient.ts HOST PORT PATH MIN_BYTES COUNT MAX_MS
import { connect } from 'node:net';

const [host = '', portText = '', reqPath = '/', minBytesText = '0', countText = '100', maxMsText = '10000'] = process.argv.slice(2);
const port = Number(portText);
const minBytes = Number(minBytesText);
const count = Number(countText);
const maxMs = Number(maxMsText);
const WARMUP = 5;

function transfer(): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let bytes = 0;
    const socket = connect({ host, port, noDelay: true });
    socket.setTimeout(5000, () => socket.destroy(new Error('transfer timed out after 5 s')));
    socket.on('connect', () => socket.write(`GET ${reqPath} HTTP/1.0\r\nHost: bench\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.on('error', reject);
    socket.on('end', () => {
      const ms = performance.now() - t0;
      socket.destroy();
      if (bytes < minBytes) reject(new Error(`short transfer: ${bytes} bytes < ${minBytes}`));
      else resolve({ ms, bytes });
    });
  });
}

const started = performance.now();
const times: number[] = [];
let errors = 0;
let lastError = '';
for (let i = 0; i < count + WARMUP && performance.now() - started < maxMs; i++) {
  try {
    const { ms } = await transfer();
    if (i >= WARMUP) times.push(ms);
  } catch (err) {
    errors++;
    lastError = (err as Error).message;
    if (errors > 20) break;
  }
}
process.stdout.write(`${JSON.stringify({ times, errors, lastError })}\n`);
