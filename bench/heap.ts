/**
 * Profile evidence for the memory case: a V8 heap snapshot of a Deno server
 * started with `--inspect=127.0.0.1:<port>`, taken over the inspector
 * protocol and reduced to live bytes and counts per object kind, so two
 * snapshots (warm, then with every idle connection open) say what each
 * connection keeps on the JavaScript heap. Used when `BENCH_HEAP_DIR` is set.
 * @module
 */

/** Live objects of one kind: V8's node type and constructor (or closure) name. */
export interface HeapKind {
  readonly kind: string;
  count: number;
  bytes: number;
}

/** A reduced snapshot: totals, and every kind with its count and self size. */
export interface HeapSummary {
  readonly totalBytes: number;
  readonly totalCount: number;
  readonly kinds: HeapKind[];
}

/** The inspector port in a `deno run` flag list, if any. */
export function inspectPortOf(flags: readonly string[]): number | null {
  for (const flag of flags) {
    const match = /^--inspect(?:-wait|-brk)?=[^:]+:(\d+)$/.exec(flag);
    if (match) return Number(match[1]);
  }
  return null;
}

/** Takes a heap snapshot (V8 collects garbage first) of the process listening on `port`. */
export async function heapSummary(port: number): Promise<HeapSummary> {
  const [target] = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  const socket = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = reject;
  });
  const chunks: string[] = [];
  const done = new Promise<void>((resolve) => {
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.method === "HeapProfiler.addHeapSnapshotChunk") {
        chunks.push(message.params.chunk);
      } else if (message.id === 2) resolve();
    };
  });
  socket.send(JSON.stringify({ id: 1, method: "HeapProfiler.enable" }));
  socket.send(JSON.stringify({
    id: 2,
    method: "HeapProfiler.takeHeapSnapshot",
    params: { reportProgress: false },
  }));
  await done;
  socket.close();
  return summarise(JSON.parse(chunks.join("")));
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

function summarise(snapshot: Snapshot): HeapSummary {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const kinds = new Map<string, HeapKind>();
  let totalBytes = 0;
  let totalCount = 0;
  for (let i = 0; i < snapshot.nodes.length; i += width) {
    const type = types[snapshot.nodes[i + typeAt]!]!;
    const bytes = snapshot.nodes[i + sizeAt]!;
    // Strings are grouped by type: their "name" is their content (payloads, tokens).
    const named = type === "object" || type === "closure" || type === "native";
    const kind = named ? `${type}:${snapshot.strings[snapshot.nodes[i + nameAt]!]}` : type;
    let entry = kinds.get(kind);
    if (entry === undefined) kinds.set(kind, entry = { kind, count: 0, bytes: 0 });
    entry.count++;
    entry.bytes += bytes;
    totalBytes += bytes;
    totalCount++;
  }
  return { totalBytes, totalCount, kinds: [...kinds.values()] };
}

/** What grew from `before` to `after`, per connection, largest first. */
export function heapGrowth(
  before: HeapSummary,
  after: HeapSummary,
  connections: number,
  top = 40,
): Record<string, unknown> {
  const earlier = new Map(before.kinds.map((kind) => [kind.kind, kind]));
  const grown = after.kinds.map((kind) => ({
    kind: kind.kind,
    count_per_conn: (kind.count - (earlier.get(kind.kind)?.count ?? 0)) / connections,
    bytes_per_conn: (kind.bytes - (earlier.get(kind.kind)?.bytes ?? 0)) / connections,
  })).filter((kind) => kind.bytes_per_conn > 1)
    .sort((a, b) => b.bytes_per_conn - a.bytes_per_conn);
  return {
    bytes_per_conn: (after.totalBytes - before.totalBytes) / connections,
    objects_per_conn: (after.totalCount - before.totalCount) / connections,
    kinds: grown.slice(0, top),
  };
}
