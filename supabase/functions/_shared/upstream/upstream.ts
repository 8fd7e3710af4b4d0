/**
 * The far side of a relayed connection, as the relay loop sees it.
 * @module
 */

/** A relayed message: text as a string, binary as an ArrayBuffer. */
export type Message = string | ArrayBuffer;

/** What an upstream reports back to the relay loop (the session itself). */
export interface UpstreamEvents {
  onUpstreamOpen(): void;
  onUpstreamMessage(data: Message): void;
  /** Called once, whether the upstream closed, dropped or never opened. */
  onUpstreamClose(code: number, reason: string): void;
}

/** An open (or opening) upstream connection. */
export interface Upstream {
  send(data: Message): void;
  /** Closes with a code an outbound socket may send (1000 or 3000-4999). */
  close(code: number, reason: string): void;
  /** Bytes queued for the upstream and not yet written. */
  readonly bufferedAmount: number;
}

/** Opens an upstream for one client connection. */
export type UpstreamConnector = (model: string, events: UpstreamEvents) => Upstream;
