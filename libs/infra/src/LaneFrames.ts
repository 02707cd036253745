import { SeqBytes } from "@p2pal/domain/Lanes"

/**
 * Messages one side may hold out of order, or keep unconfirmed: an honest peer never has more than the
 * acknowledgement window in flight, so more than this is a peer abusing the lanes to fill our memory.
 */
export const MaxHeldBytes = 64 * 1024 * 1024
const MaxAhead = 1 << 20

/** Puts messages back in the order they were sent, whichever lane each took. Pure: no I/O. */
export class Reorder {
  /** How many messages were handed on: every sequence number below this one. */
  next = 0
  private readonly held = new Map<number, Uint8Array>()
  private heldBytes = 0

  /** The messages now in order (none while a gap remains), or why `seq` is refused. */
  accept(seq: number, body: Uint8Array): ReadonlyArray<Uint8Array> | string {
    // A lane that died may have delivered what the sender then sent again on another: the first stands.
    if (seq < this.next || this.held.has(seq)) return []
    if (seq >= this.next + MaxAhead) return `message ${seq} arrived ${MaxAhead} or more ahead of ${this.next}`
    if (seq > this.next) {
      this.heldBytes += body.length
      if (this.heldBytes > MaxHeldBytes)
        return `more than ${MaxHeldBytes / 1024 / 1024} MiB arrived ahead of a missing message`
      this.held.set(seq, body)
      return []
    }
    const ready = [body]
    this.next++
    for (let waiting = this.held.get(this.next); waiting !== undefined; waiting = this.held.get(this.next)) {
      this.held.delete(this.next)
      this.heldBytes -= waiting.length
      ready.push(waiting)
      this.next++
    }
    return ready
  }
}

/**
 * The most one lane message carries: a longer one goes as several pieces, each numbered, and the other
 * side joins them. A lane delivers only whole messages, so pieces are how a slow link shows progress:
 * at 64 kbit/s a 63 KiB chunk takes 8 s, longer than a lane may go silent (Liveness), a piece 2 s.
 */
export const PieceBytes = 16 * 1024
/**
 * The longest message the pieces may join into: as long as one lane message could be before pieces
 * (libdatachannel's default limit). More is a peer filling our memory.
 */
export const MaxJoinedBytes = 256 * 1024
/** Set in the sequence number's top bit: the message goes on in the next piece. */
const Continued = 0x8000
/** Set in the sequence number's next bit: the lane message carries a run of whole pieces (see frameRun). */
const Run = 0x4000
/** Bytes in front of each piece of a run: its length. */
const LengthBytes = 4
/**
 * Consecutive whole pieces (small messages) cross a lane as one lane message of at most this many bytes,
 * no more than a piece: per lane message libdatachannel costs a trip through its lock and its own
 * packets on each side, which a tree of small files, two messages per file, would pay thousands of
 * times a second.
 */
export const RunBytes = PieceBytes

/** A piece with its sequence number in front (under 2^46: the top two bits are flags), as it crosses a lane. */
export const frame = (seq: number, body: Uint8Array, continued = false): Uint8Array => {
  const framed = new Uint8Array(SeqBytes + body.length)
  const view = new DataView(framed.buffer)
  view.setUint16(0, Math.floor(seq / 2 ** 32) | (continued ? Continued : 0))
  view.setUint32(2, seq >>> 0)
  framed.set(body, SeqBytes)
  return framed
}

export const unframe = (
  framed: Uint8Array,
): { readonly seq: number; readonly body: Uint8Array; readonly continued: boolean } | undefined => {
  if (framed.length < SeqBytes) return undefined
  const view = new DataView(framed.buffer, framed.byteOffset, framed.byteLength)
  const high = view.getUint16(0)
  return {
    seq: (high & ~Continued) * 2 ** 32 + view.getUint32(2),
    body: framed.subarray(SeqBytes),
    continued: (high & Continued) !== 0,
  }
}

/**
 * Pieces numbered from `seq` on, none of them continued, as one lane message: the first one's sequence
 * number, flagged, then each piece after its length.
 */
export const frameRun = (seq: number, bodies: ReadonlyArray<Uint8Array>): Uint8Array => {
  const framed = new Uint8Array(bodies.reduce((sum, b) => sum + LengthBytes + b.length, SeqBytes))
  const view = new DataView(framed.buffer)
  view.setUint16(0, Math.floor(seq / 2 ** 32) | Run)
  view.setUint32(2, seq >>> 0)
  let at = SeqBytes
  for (const body of bodies) {
    view.setUint32(at, body.length)
    framed.set(body, at + LengthBytes)
    at += LengthBytes + body.length
  }
  return framed
}

/**
 * The pieces a lane message carries, each with its sequence number and framed alone (as `frame` gives
 * it): the message itself, or each piece of a run. Undefined if it is malformed.
 */
export const singles = (
  message: Uint8Array,
): ReadonlyArray<{ readonly seq: number; readonly framed: Uint8Array }> | undefined => {
  if (message.length < SeqBytes) return undefined
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength)
  const high = view.getUint16(0)
  const seq = (high & ~(Continued | Run)) * 2 ** 32 + view.getUint32(2)
  if ((high & Run) === 0) return [{ seq, framed: message }]
  if ((high & Continued) !== 0) return undefined
  const found: Array<{ seq: number; framed: Uint8Array }> = []
  for (let at = SeqBytes; at < message.length;) {
    if (at + LengthBytes > message.length) return undefined
    const end = at + LengthBytes + view.getUint32(at)
    if (end > message.length) return undefined
    found.push({
      seq: seq + found.length,
      framed: frame(seq + found.length, message.subarray(at + LengthBytes, end)),
    })
    at = end
  }
  return found.length === 0 ? undefined : found
}

/** `body` cut into pieces of at most `PieceBytes`; an empty one is one empty piece. */
export const pieces = (body: Uint8Array): ReadonlyArray<Uint8Array> =>
  Array.from({ length: Math.max(1, Math.ceil(body.length / PieceBytes)) }, (_, i) =>
    body.subarray(i * PieceBytes, (i + 1) * PieceBytes),
  )

/** Joins pieces, in order, back into the messages they were cut from. Pure: no I/O. */
export class Joiner {
  private parts: Array<Uint8Array> = []
  private bytes = 0

  /** The whole message once its last piece is in, undefined while more are to come, or why refused. */
  add(piece: Uint8Array, continued: boolean): Uint8Array | undefined | string {
    if (!continued && this.parts.length === 0) return piece
    this.bytes += piece.length
    if (this.bytes > MaxJoinedBytes) return `sent a message of more than ${MaxJoinedBytes / 1024} KiB`
    this.parts.push(piece)
    if (continued) return undefined
    const whole = new Uint8Array(this.bytes)
    let at = 0
    for (const part of this.parts) {
      whole.set(part, at)
      at += part.length
    }
    this.parts = []
    this.bytes = 0
    return whole
  }
}
