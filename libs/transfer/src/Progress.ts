import type { RawReason } from "./Compression.js"

/**
 * Live counters of one transfer, written on the hot path and read by whoever renders progress.
 * Plain mutable fields so the chunk loop pays nothing for them.
 */
export class Progress {
  /** Index in the manifest of the file being moved, or -1 before the first. */
  file = -1
  /** Bytes of that file handed to the network (sender) or written (receiver). */
  fileBytes = 0
  /** Bytes the receiver has written, on both sides: the sender counts acknowledged bytes, not sent ones. */
  bytes = 0
  /** Sender: where in the transfer's bytes it has sent up to (those the receiver held at the start included). */
  sent = 0
  /** Sender: bytes sent a second time because a dropped connection lost them on the way. */
  resent = 0
  /** Sender: file bytes handed to the network, each time it sent them (resent ones too). */
  original = 0
  /** Sender: the bytes of the frames that carried them, after compression: the link's share. */
  wire = 0
  /** Sender: whether the receiver decodes a codec this sender may use (see `send --compress`). */
  compressing = false
  /** Sender: files `--compress auto` sent as they are, by manifest index, and why. */
  readonly raw = new Map<number, RawReason>()
  /** `--limit-rate` on this side, in bytes per second. */
  limit: number | undefined = undefined
  /** What the connection is doing instead of moving bytes (reconnecting), for the progress bar. */
  status: string | undefined = undefined
  constructor(readonly totalBytes: number) {}
}
