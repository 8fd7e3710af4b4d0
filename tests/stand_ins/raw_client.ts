/**
 * A raw WebSocket client over Deno.connect, for tests that must send what a
 * browser never would (unmasked or oversized frames, bad handshakes) or
 * behave badly (stop reading, vanish without a close frame).
 */

import {
  BufferedReader,
  closePayload,
  encodeFrame,
  type Frame,
  FrameReader,
  type FrameSpec,
  MessageReader,
  Opcode,
  parseHttpHead,
  splitHeaderList,
  writeAll,
  type WsEvent,
} from "./ws_frames.ts";

/** Options for rawClient. */
export interface RawClientOptions {
  /** Extra request headers (they override the defaults below, by lower-cased name). */
  headers?: Record<string, string>;
  /** Sent as one Sec-WebSocket-Protocol header when non-empty. */
  protocols?: string[];
  /** Sec-WebSocket-Key (default: 16 random bytes, base64). */
  key?: string;
  /** Request method (default GET). */
  method?: string;
  /** Headers to leave out entirely, e.g. ["sec-websocket-key"] for a malformed handshake. */
  omitHeaders?: string[];
}

/** A connected raw client; `status` tells whether the upgrade happened (101). */
export interface RawClient {
  readonly status: number;
  /** Response headers, lower-cased names. */
  readonly headers: Record<string, string>;
  /** The response body of a refused upgrade (decoded as UTF-8, per Content-Length). */
  readonly body: string;
  /** The protocol the server selected, if any. */
  readonly protocol: string | undefined;
  readonly conn: Deno.Conn;
  /** Sends one masked frame with the whole message (text for strings, binary for bytes). */
  send(data: string | Uint8Array): Promise<void>;
  /** Sends a frame built from `spec` (masked by default, as RFC 6455 requires of clients). */
  sendFrame(spec: FrameSpec): Promise<void>;
  /** Writes raw bytes to the socket. */
  writeRaw(bytes: Uint8Array): Promise<void>;
  /** Next raw frame, or null at end of stream. */
  readFrame(): Promise<Frame | null>;
  /** Next reassembled event (message, ping, pong, close), or null at end of stream. */
  readEvent(): Promise<WsEvent | null>;
  /** Reads until the server's close frame, answering pings; null if TCP ended without one. */
  readUntilClose(
    onMessage?: (e: WsEvent) => void,
  ): Promise<{ code?: number; reason: string } | null>;
  /** Sends a close frame (no code: empty payload). */
  close(code?: number, reason?: string | Uint8Array): Promise<void>;
  /**
   * Closes TCP at once, without a close frame. Idempotent. On Deno 2.1.4 a
   * write already blocked on a non-reading server keeps the socket open until
   * the server reads or closes.
   */
  abort(): void;
}

/** Opens TCP to a ws:// URL and performs the upgrade by hand. */
export async function rawClient(
  url: string,
  opts: RawClientOptions = {},
): Promise<RawClient> {
  const u = new URL(url);
  if (u.protocol !== "ws:" && u.protocol !== "http:") {
    throw new Error(`rawClient speaks plain ws:// only, got ${u.protocol}`);
  }
  const port = Number(u.port || 80);
  const conn = await Deno.connect({ hostname: u.hostname, port });
  let aborted = false;
  const abort = () => {
    if (aborted) return;
    aborted = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  try {
    const key = opts.key ??
      btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    const headers: Record<string, string> = {
      host: `${u.hostname}:${port}`,
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-key": key,
      "sec-websocket-version": "13",
    };
    if (opts.protocols?.length) {
      headers["sec-websocket-protocol"] = opts.protocols.join(", ");
    }
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      headers[k.toLowerCase()] = v;
    }
    for (const k of opts.omitHeaders ?? []) delete headers[k.toLowerCase()];
    const head = `${opts.method ?? "GET"} ${u.pathname}${u.search} HTTP/1.1\r\n` +
      Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
      "\r\n";
    await writeAll(conn, new TextEncoder().encode(head));

    const reader = new BufferedReader(conn);
    const text = await reader.readHead();
    if (text === null) throw new Error("server closed without answering");
    const res = parseHttpHead(text);
    const status = Number(res.startLine.split(" ")[1]);
    let body = "";
    if (status !== 101) {
      const len = Number(res.headers["content-length"] ?? 0);
      const bytes = len > 0 ? await reader.readExact(len, "a body") : null;
      body = bytes ? new TextDecoder().decode(bytes) : "";
    }
    const frames = new FrameReader(reader);
    const messages = new MessageReader(frames, { expectMasked: false });
    const sendFrame = (spec: FrameSpec) => writeAll(conn, encodeFrame({ mask: true, ...spec }));
    return {
      status,
      headers: res.headers,
      body,
      protocol: splitHeaderList(res.headers["sec-websocket-protocol"])[0],
      conn,
      send: (data) =>
        sendFrame({
          opcode: typeof data === "string" ? Opcode.Text : Opcode.Binary,
          payload: data,
        }),
      sendFrame,
      writeRaw: (bytes) => writeAll(conn, bytes),
      readFrame: () => frames.readFrame(),
      readEvent: () => messages.next(),
      async readUntilClose(onMessage) {
        for (;;) {
          let ev: WsEvent | null;
          try {
            ev = await messages.next();
          } catch {
            return null;
          }
          if (!ev) return null;
          if (ev.kind === "close") return { ...ev };
          if (ev.kind === "ping") {
            await sendFrame({ opcode: Opcode.Pong, payload: ev.payload })
              .catch(() => {});
          }
          onMessage?.(ev);
        }
      },
      close: (code, reason) =>
        sendFrame({ opcode: Opcode.Close, payload: closePayload(code, reason) }),
      abort,
    };
  } catch (err) {
    abort();
    throw err;
  }
}
