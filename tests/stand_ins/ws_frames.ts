/**
 * Minimal RFC 6455 building blocks shared by the OpenAI stand-in (server side)
 * and the raw test client. Written by hand on purpose: tests need to produce
 * and observe byte sequences that a WebSocket library would refuse to
 * (unmasked client frames, reserved close codes, truncated streams, ...).
 */

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  Continuation: 0x0,
  Text: 0x1,
  Binary: 0x2,
  Close: 0x8,
  Ping: 0x9,
  Pong: 0xa,
} as const;

/** The GUID every Sec-WebSocket-Accept is derived from (RFC 6455 §1.3). */
export const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** A decoded frame; `payload` is already unmasked. */
export interface Frame {
  fin: boolean;
  /** The three RSV bits as a number 0-7 (non-zero is a protocol error without extensions). */
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Uint8Array;
}

/** What encodeFrame needs; `mask: true` picks a random key, a 4-byte array uses that key. */
export interface FrameSpec {
  fin?: boolean;
  rsv?: number;
  opcode: number;
  payload?: Uint8Array | string;
  mask?: boolean | Uint8Array;
}

const encoder = new TextEncoder();

/** Encodes one frame exactly as specified (no validation, so tests can build invalid frames). */
export function encodeFrame(spec: FrameSpec): Uint8Array {
  const payload = typeof spec.payload === "string"
    ? encoder.encode(spec.payload)
    : spec.payload ?? new Uint8Array(0);
  const fin = spec.fin ?? true;
  const rsv = (spec.rsv ?? 0) & 0x7;
  let maskKey: Uint8Array | undefined;
  if (spec.mask instanceof Uint8Array) maskKey = spec.mask;
  else if (spec.mask === true) {
    maskKey = crypto.getRandomValues(new Uint8Array(4));
  }
  const len = payload.byteLength;
  const extLen = len < 126 ? 0 : len < 0x10000 ? 2 : 8;
  const headerLen = 2 + extLen + (maskKey ? 4 : 0);
  const out = new Uint8Array(headerLen + len);
  out[0] = (fin ? 0x80 : 0) | (rsv << 4) | (spec.opcode & 0x0f);
  const maskBit = maskKey ? 0x80 : 0;
  const view = new DataView(out.buffer);
  if (extLen === 0) out[1] = maskBit | len;
  else if (extLen === 2) {
    out[1] = maskBit | 126;
    view.setUint16(2, len);
  } else {
    out[1] = maskBit | 127;
    view.setBigUint64(2, BigInt(len));
  }
  if (maskKey) {
    out.set(maskKey.subarray(0, 4), 2 + extLen);
    const body = out.subarray(headerLen);
    for (let i = 0; i < len; i++) {
      body[i] = (payload[i] as number) ^ (maskKey[i & 3] as number);
    }
  } else {
    out.set(payload, headerLen);
  }
  return out;
}

/** Builds a close frame payload: empty when `code` is undefined (the peer then reports 1005). */
export function closePayload(
  code?: number,
  reason: string | Uint8Array = "",
): Uint8Array {
  if (code === undefined) return new Uint8Array(0);
  const r = typeof reason === "string" ? encoder.encode(reason) : reason;
  const out = new Uint8Array(2 + r.byteLength);
  new DataView(out.buffer).setUint16(0, code);
  out.set(r, 2);
  return out;
}

/** Decodes a close frame payload; `code` is undefined for an empty payload. */
export function parseClosePayload(
  payload: Uint8Array,
): { code?: number; reason: string } {
  if (payload.byteLength < 2) return { reason: "" };
  const code = (payload[0] as number) << 8 | (payload[1] as number);
  // fatal: false so a test can still inspect a close with invalid UTF-8.
  const reason = new TextDecoder().decode(payload.subarray(2));
  return { code, reason };
}

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)). */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(key + WS_GUID),
  );
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** Anything with Deno.Conn's read signature. */
export interface ByteSource {
  read(p: Uint8Array): Promise<number | null>;
}

/** Thrown when the stream ends in the middle of a frame or HTTP head. */
export class UnexpectedEof extends Error {
  constructor(what: string) {
    super(`connection closed in the middle of ${what}`);
    this.name = "UnexpectedEof";
  }
}

/**
 * Buffered reader over a byte source. Reads only when asked, so a caller that
 * stops asking really stops reading from the socket (TCP backpressure builds).
 */
export class BufferedReader {
  #src: ByteSource;
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #eof = false;

  constructor(src: ByteSource, initial?: Uint8Array) {
    this.#src = src;
    this.#buf = new Uint8Array(Math.max(16384, initial?.byteLength ?? 0));
    if (initial) {
      this.#buf.set(initial);
      this.#end = initial.byteLength;
    }
  }

  /** Bytes already read from the source but not consumed yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Pulls one chunk from the source; false at end of stream. */
  async fill(): Promise<boolean> {
    if (this.#eof) return false;
    if (this.#start > 0 && this.#start === this.#end) {
      this.#start = this.#end = 0;
    }
    if (this.#end === this.#buf.byteLength) {
      // Full: compact in place, or grow when more than half is still unread.
      const live = this.#end - this.#start;
      if (live * 2 > this.#buf.byteLength) {
        const next = new Uint8Array(this.#buf.byteLength * 2);
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = next;
      } else {
        this.#buf.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = live;
    }
    const n = await this.#src.read(this.#buf.subarray(this.#end));
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#end += n;
    return true;
  }

  /** Returns exactly n bytes (a copy), or null if the stream ended before any of them. */
  async readExact(n: number, what = "a frame"): Promise<Uint8Array | null> {
    while (this.buffered < n) {
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new UnexpectedEof(what);
      }
    }
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /** Reads up to and including "\r\n\r\n"; null on a clean EOF before any byte. */
  async readHead(maxBytes = 65536): Promise<string | null> {
    for (;;) {
      const view = this.#buf.subarray(this.#start, this.#end);
      const idx = indexOfCrlfCrlf(view);
      if (idx >= 0) {
        const head = new TextDecoder().decode(view.subarray(0, idx));
        this.#start += idx + 4;
        return head;
      }
      if (view.byteLength > maxBytes) {
        throw new Error(`HTTP head larger than ${maxBytes} bytes`);
      }
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new UnexpectedEof("an HTTP head");
      }
    }
  }

  /** Hands over whatever is buffered (used after reading an HTTP head). */
  takeBuffered(): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end;
    return out;
  }
}

function indexOfCrlfCrlf(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.byteLength; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/** Parses frames one by one from a byte stream. */
export class FrameReader {
  readonly reader: BufferedReader;
  /** Frames announcing a payload over this many bytes throw instead of allocating. */
  maxPayload: number;

  constructor(
    src: ByteSource | BufferedReader,
    opts: { initial?: Uint8Array; maxPayload?: number } = {},
  ) {
    this.reader = src instanceof BufferedReader ? src : new BufferedReader(src, opts.initial);
    this.maxPayload = opts.maxPayload ?? 64 * 1024 * 1024;
  }

  /** Next frame, or null on a clean end of stream between frames. */
  async readFrame(): Promise<Frame | null> {
    const head = await this.reader.readExact(2);
    if (!head) return null;
    const b0 = head[0] as number;
    const b1 = head[1] as number;
    let len = b1 & 0x7f;
    if (len === 126) {
      const ext = await this.#need(2);
      len = (ext[0] as number) << 8 | (ext[1] as number);
    } else if (len === 127) {
      const ext = await this.#need(8);
      const big = new DataView(ext.buffer, ext.byteOffset, 8).getBigUint64(0);
      if (big > BigInt(this.maxPayload)) {
        throw new Error(`frame payload of ${big} bytes exceeds the limit`);
      }
      len = Number(big);
    }
    if (len > this.maxPayload) {
      throw new Error(`frame payload of ${len} bytes exceeds the limit`);
    }
    const masked = (b1 & 0x80) !== 0;
    const key = masked ? await this.#need(4) : undefined;
    const payload = len === 0 ? new Uint8Array(0) : await this.#need(len);
    if (key) {
      for (let i = 0; i < payload.byteLength; i++) {
        payload[i] = (payload[i] as number) ^ (key[i & 3] as number);
      }
    }
    return {
      fin: (b0 & 0x80) !== 0,
      rsv: (b0 >> 4) & 0x7,
      opcode: b0 & 0x0f,
      masked,
      payload,
    };
  }

  async #need(n: number): Promise<Uint8Array> {
    const b = await this.reader.readExact(n);
    if (!b) throw new UnexpectedEof("a frame");
    return b;
  }
}

/** One reassembled WebSocket event. */
export type WsEvent =
  | { kind: "message"; type: "text"; data: string }
  | { kind: "message"; type: "binary"; data: Uint8Array }
  | { kind: "ping"; payload: Uint8Array }
  | { kind: "pong"; payload: Uint8Array }
  | { kind: "close"; code?: number; reason: string };

/** Protocol violation found while reassembling messages. */
export class ProtocolError extends Error {
  constructor(message: string, readonly closeCode = 1002) {
    super(message);
    this.name = "ProtocolError";
  }
}

/**
 * Reassembles fragmented data frames into messages and surfaces control
 * frames (which may arrive between fragments) as they come.
 */
export class MessageReader {
  #frames: FrameReader;
  #parts: Uint8Array[] = [];
  #partsType: number | undefined;
  #size = 0;
  /** Whether incoming frames must be masked (true on a server) or unmasked (false on a client); undefined: either. */
  expectMasked: boolean | undefined;
  /** Messages over this many bytes throw ProtocolError(1009). */
  maxMessage: number;

  constructor(
    frames: FrameReader,
    opts: { expectMasked?: boolean; maxMessage?: number } = {},
  ) {
    this.#frames = frames;
    this.expectMasked = opts.expectMasked;
    this.maxMessage = opts.maxMessage ?? 64 * 1024 * 1024;
  }

  /** Next event, or null on end of stream. */
  async next(): Promise<WsEvent | null> {
    for (;;) {
      const f = await this.#frames.readFrame();
      if (!f) return null;
      if (f.rsv !== 0) throw new ProtocolError("reserved bits set");
      if (this.expectMasked !== undefined && f.masked !== this.expectMasked) {
        throw new ProtocolError(
          this.expectMasked ? "unmasked client frame" : "masked server frame",
        );
      }
      if (f.opcode >= 0x8) {
        if (!f.fin || f.payload.byteLength > 125) {
          throw new ProtocolError("invalid control frame");
        }
        if (f.opcode === Opcode.Close) {
          if (f.payload.byteLength === 1) {
            throw new ProtocolError("one-byte close payload");
          }
          return { kind: "close", ...parseClosePayload(f.payload) };
        }
        if (f.opcode === Opcode.Ping) return { kind: "ping", payload: f.payload };
        if (f.opcode === Opcode.Pong) return { kind: "pong", payload: f.payload };
        throw new ProtocolError(`unknown control opcode ${f.opcode}`);
      }
      if (f.opcode === Opcode.Continuation) {
        if (this.#partsType === undefined) {
          throw new ProtocolError("continuation without a message");
        }
      } else if (f.opcode === Opcode.Text || f.opcode === Opcode.Binary) {
        if (this.#partsType !== undefined) {
          throw new ProtocolError("new message inside a fragmented one");
        }
        this.#partsType = f.opcode;
      } else {
        throw new ProtocolError(`unknown data opcode ${f.opcode}`);
      }
      this.#size += f.payload.byteLength;
      if (this.#size > this.maxMessage) {
        throw new ProtocolError("message too big", 1009);
      }
      this.#parts.push(f.payload);
      if (!f.fin) continue;
      const data = concat(this.#parts, this.#size);
      const type = this.#partsType;
      this.#parts = [];
      this.#partsType = undefined;
      this.#size = 0;
      if (type === Opcode.Text) {
        let text: string;
        try {
          text = new TextDecoder("utf-8", { fatal: true }).decode(data);
        } catch {
          throw new ProtocolError("invalid UTF-8 in a text message", 1007);
        }
        return { kind: "message", type: "text", data: text };
      }
      return { kind: "message", type: "binary", data };
    }
  }
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[], total?: number): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  const out = new Uint8Array(
    total ?? parts.reduce((n, p) => n + p.byteLength, 0),
  );
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** Anything with Deno.Conn's write signature. */
export interface ByteSink {
  write(p: Uint8Array): Promise<number>;
}

/** Writes every byte (Deno.Conn.write may write only part of a buffer). */
export async function writeAll(sink: ByteSink, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    off += await sink.write(data.subarray(off));
  }
}

/** A parsed HTTP/1.1 head (request or response). */
export interface HttpHead {
  /** "GET /path HTTP/1.1" or "HTTP/1.1 101 Switching Protocols". */
  startLine: string;
  /** Header lines in order, names as sent. */
  rawHeaders: [string, string][];
  /** Lower-cased names; repeated headers joined with ", " as HTTP allows. */
  headers: Record<string, string>;
}

/** Parses the text returned by BufferedReader.readHead. */
export function parseHttpHead(text: string): HttpHead {
  const lines = text.split("\r\n");
  const startLine = lines.shift() ?? "";
  const rawHeaders: [string, string][] = [];
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    if (i <= 0) continue;
    const name = line.slice(0, i).trim();
    const value = line.slice(i + 1).trim();
    rawHeaders.push([name, value]);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { startLine, rawHeaders, headers };
}

/** Splits a comma-separated header value (e.g. Sec-WebSocket-Protocol) into trimmed entries. */
export function splitHeaderList(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}
