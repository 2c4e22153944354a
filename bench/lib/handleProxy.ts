// A yardstick, not a product path: the smallest proxy on Node's libuv handles (process.binding
// 'tcp_wrap' / 'stream_wrap'), with no net.Socket and no streams, one read buffer per direction
// and as many threads as asked. `node bench/tcpQuick.ts --plain-file bench/lib/handleProxy.ts`
// runs it in HAProxy's place (HTTP port only) and prints its CPU per short connection; it shows
// what a data path below Node's `net` would save per connection.
//   node handleProxy.ts LISTEN_PORT BACKEND_HOST BACKEND_PORT [THREADS=2]
import { Worker, isMainThread, workerData } from 'node:worker_threads';

interface Handle {
  bind(host: string, port: number, flags?: number): number;
  listen(backlog: number): number;
  connect(req: object, host: string, port: number): number;
  setNoDelay(on: boolean): number;
  useUserBuffer(buf: Buffer): void;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: object, buf: Buffer): number;
  shutdown(req: object): number;
  close(cb?: () => void): void;
  onconnection?: (err: number, client: Handle) => void;
  onread?: () => void;
}
type Ctor<T> = new (...args: unknown[]) => T;
const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
const tcp = binding('tcp_wrap') as { TCP: Ctor<Handle>; TCPConnectWrap: Ctor<{ oncomplete?: (status: number) => void }>; constants: Record<string, number> };
const stream = binding('stream_wrap') as { WriteWrap: Ctor<Record<string, unknown>>; ShutdownWrap: Ctor<Record<string, unknown>>; streamBaseState: Int32Array; kReadBytesOrError: number; kLastWriteWasAsync: number };
const UV_EOF = -4095;
const [listen = '0', host = '127.0.0.1', port = '0', threads = '2'] = (isMainThread ? process.argv.slice(2) : (workerData as string[]));

function relay(a: Handle, b: Handle): void {
  let ended = 0;
  let closed = false;
  const closeBoth = (): void => {
    if (closed) return;
    closed = true;
    a.close();
    b.close();
  };
  const oneWay = (from: Handle, to: Handle): void => {
    const buf = Buffer.allocUnsafe(65536);
    from.useUserBuffer(buf);
    from.onread = () => {
      const n = stream.streamBaseState[stream.kReadBytesOrError]!;
      if (n > 0) {
        const req = new stream.WriteWrap();
        req['handle'] = to;
        req['oncomplete'] = (status: number) => (status < 0 ? closeBoth() : from.readStart());
        if (to.writeBuffer(req, buf.subarray(0, n)) !== 0) return closeBoth();
        // Still queued: the write points into buf, so no read until it is out.
        if (stream.streamBaseState[stream.kLastWriteWasAsync]) {
          req['buffer'] = buf;
          from.readStop();
        }
        return;
      }
      if (n !== UV_EOF) return closeBoth();
      from.readStop();
      if (++ended === 2) return closeBoth();
      const req = new stream.ShutdownWrap();
      req['handle'] = to;
      req['oncomplete'] = () => {};
      if (to.shutdown(req) !== 0) closeBoth();
    };
    from.readStart();
  };
  oneWay(a, b);
  oneWay(b, a);
}

const server = new tcp.TCP(tcp.constants['SERVER']);
if (server.bind('0.0.0.0', Number(listen), tcp.constants['UV_TCP_REUSEPORT']) !== 0 || server.listen(4096) !== 0) throw new Error(`cannot listen on ${listen}`);
server.onconnection = (err, client) => {
  if (err !== 0) return;
  const upstream = new tcp.TCP(tcp.constants['SOCKET']);
  const req = new tcp.TCPConnectWrap();
  req.oncomplete = (status) => {
    if (status < 0) {
      client.close();
      upstream.close();
      return;
    }
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    relay(client, upstream);
  };
  if (upstream.connect(req, host, Number(port)) !== 0) {
    client.close();
    upstream.close();
  }
};
if (isMainThread) for (let i = 1; i < Number(threads); i++) new Worker(new URL(import.meta.url), { workerData: [listen, host, port, threads] });
