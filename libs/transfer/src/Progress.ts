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
  constructor(readonly totalBytes: number) {}
}
