import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** The S3 operation a request is, told from its method, path and query (path-style addressing). */
export type S3Operation =
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'DeleteObject'
  | 'ListObjectsV2'
  | 'ListMultipartUploads'
  | 'ListParts'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'Other';

/**
 * What to do to a matching request:
 * - `status`: answer with this HTTP status and an S3 XML error, without forwarding;
 * - `reset`: read the request, then cut the connection without answering;
 * - `stall`: read the request, then never answer (the connection stays open);
 * - `stall-body`: forward it, send the answer's headers and the first `afterBytes` of its body, then
 *   send nothing more;
 * - `ambiguous`: forward it (the write happens), then cut the connection instead of answering.
 */
export type FaultAction =
  | { readonly kind: 'status'; readonly status: number; readonly code?: string }
  | { readonly kind: 'reset' }
  | { readonly kind: 'stall' }
  | { readonly kind: 'stall-body'; readonly afterBytes: number }
  | { readonly kind: 'ambiguous' };

export interface FaultRule {
  readonly operation: S3Operation;
  /** Matches the object key below the bucket (decoded), e.g. `/locks\/backup\.lock$/`. */
  readonly key?: RegExp;
  readonly action: FaultAction;
  /** How many matching requests get the fault; later ones pass through. @default every one */
  readonly times?: number;
}

export interface ProxiedRequest {
  readonly operation: S3Operation;
  readonly key: string;
  /** The fault applied, or `pass`. */
  readonly fault: FaultAction['kind'] | 'pass';
}

/** Faults for the requests about one key prefix (one store), so cases can run side by side. */
export interface FaultScope {
  /** Replaces the rules (each with its own remaining count). */
  setRules(rules: readonly FaultRule[]): void;
  /** Every request about this prefix, in order. */
  readonly requests: ProxiedRequest[];
}

export interface S3FaultProxy {
  /** e.g. `http://127.0.0.1:41234`: point the S3 client here instead of at s3rver. */
  readonly endpoint: string;
  /** The fault scope of the requests whose key (or listing prefix) starts with `prefix`. */
  scope(prefix: string): FaultScope;
  stop(): Promise<void>;
}

/** Tells the S3 operation from a path-style request: `/<bucket>/<key>?<query>`. */
export function operationOf(method: string, url: URL): { operation: S3Operation; key: string } {
  const parts = url.pathname.split('/').slice(2);
  const key = decodeURIComponent(parts.join('/'));
  const q = url.searchParams;
  const hasKey = key !== '';
  let operation: S3Operation = 'Other';
  if (method === 'PUT' && hasKey) operation = q.has('partNumber') ? 'UploadPart' : 'PutObject';
  else if (method === 'POST' && q.has('uploads')) operation = 'CreateMultipartUpload';
  else if (method === 'POST' && q.has('uploadId')) operation = 'CompleteMultipartUpload';
  else if (method === 'DELETE') operation = q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  else if (method === 'GET' && !hasKey)
    operation = q.has('uploads') ? 'ListMultipartUploads' : 'ListObjectsV2';
  else if (method === 'GET') operation = q.has('uploadId') ? 'ListParts' : 'GetObject';
  else if (method === 'HEAD' && hasKey) operation = 'HeadObject';
  return { operation, key };
}

/**
 * A loopback HTTP proxy in front of an S3 server (s3rver) that injects faults into chosen requests.
 * Requests are forwarded with their headers untouched (the SigV4 signature covers `host`), so the
 * upstream checks signatures as if the client had called it directly.
 */
export async function startS3FaultProxy(upstream: string): Promise<S3FaultProxy> {
  const target = new URL(upstream);
  const scopes = new Map<
    string,
    { rules: { rule: FaultRule; left: number }[]; requests: ProxiedRequest[] }
  >();
  const sockets = new Set<Socket>();
  const upstreamAgent = new http.Agent({ keepAlive: false });

  const scopeOf = (subject: string) => {
    for (const [prefix, scope] of scopes) if (subject.startsWith(prefix)) return scope;
    return undefined;
  };
  const pick = (
    rules: { rule: FaultRule; left: number }[],
    operation: S3Operation,
    key: string,
  ): FaultAction | undefined => {
    for (const entry of rules) {
      if (entry.rule.operation !== operation || entry.left <= 0) continue;
      if (entry.rule.key && !entry.rule.key.test(key)) continue;
      entry.left -= 1;
      return entry.rule.action;
    }
    return undefined;
  };

  const forward = (
    req: http.IncomingMessage,
    onResponse: (res: http.IncomingMessage) => void,
    onError: (error: Error) => void,
  ): void => {
    const headers = { ...req.headers };
    // Node's client would wait for "100 Continue" itself; the body is already streaming.
    delete headers.expect;
    const out = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
        agent: upstreamAgent,
      },
      onResponse,
    );
    out.on('error', onError);
    req.pipe(out);
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const { operation, key } = operationOf(req.method ?? 'GET', url);
    // Listings name their prefix in the query, not the path.
    const scope = scopeOf(key || url.searchParams.get('prefix') || '');
    const action = scope ? pick(scope.rules, operation, key) : undefined;
    scope?.requests.push({ operation, key, fault: action?.kind ?? 'pass' });
    const cut = () => req.socket.destroy();

    if (!action) {
      forward(
        req,
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
        cut,
      );
      return;
    }
    switch (action.kind) {
      case 'status':
        req.resume();
        req.on('end', () => {
          // ServiceUnavailable, not SlowDown: the SDK backs off throttling errors for longer.
          const code = action.code ?? (action.status === 503 ? 'ServiceUnavailable' : 'InternalError');
          const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected ${action.status}</Message><RequestId>fault</RequestId></Error>`;
          res.writeHead(action.status, {
            'content-type': 'application/xml',
            'content-length': Buffer.byteLength(body),
          });
          res.end(body);
        });
        return;
      case 'reset':
        req.resume();
        req.on('end', cut);
        return;
      case 'stall':
        // Read what the client sends, then say nothing; stop() closes the socket.
        req.resume();
        return;
      case 'stall-body':
        forward(
          req,
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            let sent = 0;
            up.on('data', (chunk: Buffer) => {
              if (sent >= action.afterBytes) return;
              const part = chunk.subarray(0, action.afterBytes - sent);
              sent += part.length;
              res.write(part);
            });
          },
          cut,
        );
        return;
      case 'ambiguous':
        forward(
          req,
          (up) => {
            // The upstream did the write; the client never hears so.
            up.resume();
            up.on('end', cut);
          },
          cut,
        );
        return;
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    scope: (prefix) => {
      const state = { rules: [] as { rule: FaultRule; left: number }[], requests: [] as ProxiedRequest[] };
      scopes.set(prefix, state);
      return {
        requests: state.requests,
        setRules: (next) => {
          state.rules = next.map((rule) => ({ rule, left: rule.times ?? Number.POSITIVE_INFINITY }));
        },
      };
    },
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      upstreamAgent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
