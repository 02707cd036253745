import { type LaneControl, LaneControlFromJson, MaxLanes, SeqBytes } from "@p2pal/domain/Lanes"
import { PeerFailed } from "@p2pal/domain/Errors"
import { Clock, Deferred, Duration, Effect, Either, Exit, Mailbox, Schema, Scope, Stream } from "effect"
import type * as ndc from "node-datachannel"

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
 * Set in the first byte of a lane message that carries a run of messages (see `frameRun`). Sequence
 * numbers stay far below 2^47, so a single message never has it set.
 */
const RunFlag = 0x80
/** Bytes in front of each message of a run: its length. */
const LengthBytes = 4
/**
 * Consecutive small messages cross a lane as one, of at most this many bytes: per SCTP message the lane
 * costs a trip through libdatachannel (its lock, its own packets) on each side, which a tree of small
 * files, two messages per file, otherwise pays thousands of times a second.
 */
export const RunBytes = 64 * 1024

const putSeq = (into: Uint8Array, seq: number) => {
  const view = new DataView(into.buffer, into.byteOffset, into.byteLength)
  view.setUint16(0, Math.floor(seq / 2 ** 32))
  view.setUint32(2, seq >>> 0)
}

/** A binary message with its sequence number in front, as it crosses a lane. */
export const frame = (seq: number, body: Uint8Array): Uint8Array => {
  const framed = new Uint8Array(SeqBytes + body.length)
  putSeq(framed, seq)
  framed.set(body, SeqBytes)
  return framed
}

/**
 * Messages numbered from `seq` on, as one lane message: the first one's sequence number, flagged, then
 * each message after its length.
 */
export const frameRun = (seq: number, bodies: ReadonlyArray<Uint8Array>): Uint8Array => {
  const framed = new Uint8Array(bodies.reduce((sum, b) => sum + LengthBytes + b.length, SeqBytes))
  putSeq(framed, seq)
  framed[0]! |= RunFlag
  const view = new DataView(framed.buffer)
  let at = SeqBytes
  for (const body of bodies) {
    view.setUint32(at, body.length)
    framed.set(body, at + LengthBytes)
    at += LengthBytes + body.length
  }
  return framed
}

/** The messages a lane message carries and the first one's sequence number; undefined if it is malformed. */
export const unframe = (
  framed: Uint8Array,
): { readonly seq: number; readonly bodies: ReadonlyArray<Uint8Array> } | undefined => {
  if (framed.length < SeqBytes) return undefined
  const view = new DataView(framed.buffer, framed.byteOffset, framed.byteLength)
  const seq = (view.getUint16(0) & ~(RunFlag << 8)) * 2 ** 32 + view.getUint32(2)
  if ((framed[0]! & RunFlag) === 0) return { seq, bodies: [framed.subarray(SeqBytes)] }
  const bodies: Array<Uint8Array> = []
  for (let at = SeqBytes; at < framed.length;) {
    if (at + LengthBytes > framed.length) return undefined
    const end = at + LengthBytes + view.getUint32(at)
    if (end > framed.length) return undefined
    bodies.push(framed.subarray(at + LengthBytes, end))
    at = end
  }
  return bodies.length === 0 ? undefined : { seq, bodies }
}

/** One open peer connection's DataChannel, as the stripes drive it. */
export interface Lane {
  readonly dc: Pick<
    ndc.DataChannel,
    | "isOpen"
    | "sendMessage"
    | "sendMessageBinary"
    | "bufferedAmount"
    | "setBufferedAmountLowThreshold"
    | "onBufferedAmountLow"
  >
  /** Fails once this connection is gone. */
  readonly lost: Effect.Effect<never, PeerFailed>
}

/** What a lane hears that is not its heartbeat. */
export type Heard = (message: Uint8Array | string) => void

/**
 * What each lane may queue beyond the 512 KiB its SCTP association holds: enough that the pump rarely
 * waits on the event loop, little enough that what waits in a slow lane's queue (it holds up everything
 * sent after it on the others) is short, and the fast lanes take more. Control messages queue there too.
 */
export const LaneQueue = 256 * 1024

/** The receiving side confirms after this many messages or bytes handed on. */
const ConfirmEvery = 64
const ConfirmBytes = 512 * 1024

/**
 * Lanes are added while the rate grows by at least this factor when their number doubles: on a path
 * that one more flow cannot fill any faster (its bottleneck is full) it stays near 1.
 */
const Growth = 1.15
const Linear = 1.8
/** A rate is measured over at least this many bytes, or this long. */
const SampleBytes = 2 * 1024 * 1024
const MaxSampleMs = 8000

export interface Sample {
  /** Bytes per second the lanes moved. */
  readonly rate: number
  /** The sender waited for room in the lanes for a good part of the time: the link held it back. */
  readonly pressed: boolean
  /** The least round trip seen: the path's own, without the queues. */
  readonly rttMs: number
}

/**
 * On a path this short (a LAN, loopback) one association is neither window- nor loss-bound, and what
 * holds it back is the CPU: more lanes would only cost more of it.
 */
export const NearRttMs = 5

/**
 * After a sample, the offerer doubles its lanes, stops adding for good, or waits for one where a long
 * path is what holds the transfer back (with disk or small files in the way, more lanes would not help).
 */
export const verdict = (before: number | undefined, now: Sample): "add" | "stop" | "wait" =>
  !now.pressed || now.rttMs < NearRttMs
    ? "wait"
    : before !== undefined && now.rate < before * Growth
      ? "stop"
      : "add"

export interface Options<E> {
  /** Opens lane 0; `heard` gets what it receives. */
  readonly first: (heard: Heard) => Effect.Effect<Lane, PeerFailed | E, Scope.Scope>
  /** How to open more; without, the stripes keep to lane 0. */
  readonly more:
    | {
        /** The offerer adds lanes (none here); the answerer opens the ones the offerer began. */
        readonly begun: Stream.Stream<number, E> | undefined
        readonly open: (lane: number, heard: Heard) => Effect.Effect<Lane, PeerFailed | E, Scope.Scope>
      }
    | undefined
  /** The round trip time lane 0 measures, in ms, to pace the decisions to add lanes. */
  readonly rttMs: () => number | undefined
  /** Called with the number of open lanes whenever it changes. */
  readonly onLanes?: (count: number) => void
}

export interface Stripes {
  readonly send: (...messages: ReadonlyArray<Uint8Array>) => Effect.Effect<void, PeerFailed>
  /** What arrived, in order; fails once the last lane is gone and everything before was taken. */
  readonly incoming: Mailbox.ReadonlyMailbox<Uint8Array, PeerFailed>
  /** Fails once the last lane is gone, or the peer broke the protocol. */
  readonly closed: Effect.Effect<never, PeerFailed>
  readonly lanes: () => number
}

interface Outgoing {
  readonly seq: number
  /**
   * Framed alone, a copy: the caller may reuse its memory once `send` returns, and this is what goes
   * again if the lane it took dies.
   */
  readonly framed: Uint8Array
  /** The lane it was last handed to; -1 while waiting for room. */
  lane: number
}

/**
 * A reliable, ordered message channel over several lanes. Each message is numbered and handed to the lane
 * with the least queued, once one has room; the other side reorders. Every message stays with the sender
 * until the other side confirms it, so when a lane dies what it may not have delivered goes again on the
 * others: one lane of several dying does not stop the transfer, only the last one does.
 */
export const make = Effect.fn("Stripes.make")(function* <E>(options: Options<E>) {
  const lost = yield* Deferred.make<never, PeerFailed>()
  const incoming = yield* Effect.acquireRelease(Mailbox.make<Uint8Array, PeerFailed>(), (m) => m.shutdown)
  const failAll = (error: PeerFailed) => {
    Deferred.unsafeDone(lost, Exit.fail(error))
    incoming.unsafeDone(Exit.fail(error))
  }
  const refuse = (why: string) => failAll(new PeerFailed({ message: `protocol error: the peer ${why}` }))

  const lanes = new Map<number, Lane>()
  let created = 1
  const retained: Array<Outgoing> = []
  let retainedBytes = 0
  const pending: Array<Outgoing> = []
  let nextSeq = 0
  let waiters: Array<() => void> = []

  // What the offerer measures to decide on more lanes: bytes handed to the lanes, and time spent
  // without room. Less what the lanes still queue, that is what they moved: unlike the in-order stream
  // it does not stall while one lane waits out a retransmission timeout.
  let handedBytes = 0
  let blockedMs = 0
  let blockedSince: number | undefined

  const roomiest = () => {
    let best: [number, Lane] | undefined
    let bestAmount = LaneQueue
    for (const entry of lanes) {
      const amount = entry[1].dc.bufferedAmount()
      if (amount < bestAmount) {
        best = entry
        bestAmount = amount
      }
    }
    return best
  }

  /** How many of the first pending messages go as one: consecutive ones, up to about RunBytes. */
  const runLength = () => {
    let count = 1
    let bytes = pending[0]!.framed.length
    for (; count < pending.length; count++) {
      const next = pending[count]!
      bytes += next.framed.length
      if (next.seq !== pending[count - 1]!.seq + 1 || bytes > RunBytes) break
    }
    return count
  }

  const drain = () => {
    while (pending.length > 0) {
      const roomy = roomiest()
      if (roomy === undefined) break
      const count = runLength()
      const run = pending.slice(0, count)
      const framed =
        count === 1
          ? run[0]!.framed
          : frameRun(
              run[0]!.seq,
              run.map((o) => o.framed.subarray(SeqBytes)),
            )
      try {
        roomy[1].dc.sendMessageBinary(framed)
      } catch {
        // Closed in the middle of a burst (libdatachannel's thread): its loss handler sends it again.
        lanes.delete(roomy[0])
        continue
      }
      for (const o of run) o.lane = roomy[0]
      handedBytes += framed.length
      pending.splice(0, count)
    }
    const now = Date.now()
    if (pending.length > 0) blockedSince ??= now
    else if (blockedSince !== undefined) {
      blockedMs += now - blockedSince
      blockedSince = undefined
    }
    const ready = waiters
    waiters = []
    ready.forEach((wake) => wake())
  }

  const watch = (index: number, lane: Lane) => {
    lanes.set(index, lane)
    lane.dc.setBufferedAmountLowThreshold(LaneQueue / 2)
    lane.dc.onBufferedAmountLow(drain)
    drain()
    options.onLanes?.(lanes.size)
    return lane.lost.pipe(
      Effect.catchAll((error) =>
        Effect.sync(() => {
          lanes.delete(index)
          options.onLanes?.(lanes.size)
          if (lanes.size === 0) return failAll(error)
          const again = retained.filter((o) => o.lane === index)
          again.forEach((o) => (o.lane = -1))
          pending.unshift(...again)
          drain()
        }),
      ),
      Effect.forkScoped,
    )
  }

  /** On the lane with the least queued: a control message waits behind what is queued before it. */
  const say = (control: LaneControl) => {
    const text = JSON.stringify(control)
    const byQueue = [...lanes.values()].sort((a, b) => a.dc.bufferedAmount() - b.dc.bufferedAmount())
    for (const lane of byQueue) {
      try {
        lane.dc.sendMessage(text)
        return
      } catch {
        // That lane is closing: the next one carries it.
      }
    }
  }

  const reorder = new Reorder()
  let confirmedUpTo = 0
  let unconfirmedBytes = 0
  const heard: Heard = (message) => {
    if (typeof message === "string") {
      const control = Schema.decodeUnknownEither(LaneControlFromJson)(message)
      return Either.isLeft(control) ? refuse("sent a malformed lane message") : confirm(control.right.seq)
    }
    const parsed = unframe(message)
    if (parsed === undefined) return refuse("sent a malformed message (no sequence number, or a bad run)")
    for (const [i, one] of parsed.bodies.entries()) {
      const ready = reorder.accept(parsed.seq + i, one)
      if (typeof ready === "string") return refuse(ready)
      for (const body of ready) {
        unconfirmedBytes += body.length
        incoming.unsafeOffer(body)
      }
    }
    if (reorder.next - confirmedUpTo >= ConfirmEvery || unconfirmedBytes >= ConfirmBytes) {
      confirmedUpTo = reorder.next
      unconfirmedBytes = 0
      say({ _tag: "got", seq: reorder.next })
    }
  }

  const confirm = (upTo: number) => {
    if (upTo > nextSeq) return refuse(`confirmed message ${upTo} that was never sent`)
    while (retained.length > 0 && retained[0]!.seq < upTo) retainedBytes -= retained.shift()!.framed.length
  }

  const scope = yield* Effect.scope
  yield* watch(0, yield* options.first(heard))

  const { more } = options
  /** Opens lane `index` in the stripes' scope; one that does not open only means fewer lanes. */
  const openLane = (index: number) =>
    more === undefined
      ? Effect.void
      : more.open(index, heard).pipe(
          Effect.flatMap((lane) => watch(index, lane)),
          Effect.ignore,
          Scope.extend(scope),
        )

  if (more?.begun !== undefined)
    yield* more.begun.pipe(
      // Each in its own fiber: the relay goes on feeding the new lanes their signals meanwhile.
      Stream.runForEach((index) => Effect.forkIn(openLane(index), scope)),
      Effect.ignore,
      Effect.forkScoped,
    )

  if (more !== undefined && more.begun === undefined) {
    const queued = () => [...lanes.values()].reduce((sum, lane) => sum + lane.dc.bufferedAmount(), 0)
    /** The path's own round trip: SCTP's smoothed one also counts the queues a busy transfer builds. */
    let baseRtt = Infinity
    const rounds = (trips: number) => Math.max(1000, trips * (options.rttMs() ?? 0))
    /** Many round trips, and enough bytes for a rate to mean something on a lossy path. */
    const minimum = () => rounds(10)
    /** A new lane's slow start fills its 512 KiB send buffer in a few round trips. */
    const warmUp = Effect.suspend(() => Effect.sleep(Duration.millis(rounds(5))))
    const sample = Effect.gen(function* () {
      handedBytes = -queued()
      blockedMs = 0
      const from = yield* Clock.currentTimeMillis
      if (blockedSince !== undefined) blockedSince = from
      let elapsed = 0
      while (elapsed < minimum() || (handedBytes - queued() < SampleBytes && elapsed < MaxSampleMs)) {
        yield* Effect.sleep(Duration.millis(250))
        elapsed = (yield* Clock.currentTimeMillis) - from
        baseRtt = Math.min(baseRtt, options.rttMs() ?? Infinity)
      }
      if (blockedSince !== undefined) {
        blockedMs += from + elapsed - blockedSince
        blockedSince = from + elapsed
      }
      return {
        rate: ((handedBytes - queued()) * 1000) / elapsed,
        pressed: blockedMs > elapsed / 4,
        rttMs: baseRtt,
      }
    })
    yield* Effect.gen(function* () {
      let before: number | undefined
      // One sample that did not grow may be a lane waiting out a retransmission timeout: two in a row stop.
      let doubted = false
      // The first lane's slow start would make a rate to compare with that it cannot keep up.
      yield* warmUp
      while (created < MaxLanes) {
        const now = yield* sample
        const next = verdict(before, now)
        if (next === "stop" && doubted) return
        doubted = next === "stop"
        if (next !== "add") continue
        // Lanes that each add their full share (a lossy path, a long one) are quadrupled at once.
        const step = before !== undefined && now.rate >= before * Linear ? 3 : 1
        before = now.rate
        const indices = Array.from(
          { length: Math.min(lanes.size * step, MaxLanes - created) },
          (_, i) => created + i,
        )
        created += indices.length
        yield* Effect.forEach(indices, openLane, { concurrency: "unbounded", discard: true })
        // The new lanes start slow: judge them once they are up to speed.
        yield* warmUp
      }
    }).pipe(Effect.forkScoped)
  }

  const send = (...messages: ReadonlyArray<Uint8Array>): Effect.Effect<void, PeerFailed> =>
    Effect.suspend(() => {
      let last = -1
      for (const body of messages) {
        const outgoing: Outgoing = { seq: nextSeq, framed: frame(nextSeq, body), lane: -1 }
        last = nextSeq++
        retained.push(outgoing)
        retainedBytes += outgoing.framed.length
        pending.push(outgoing)
      }
      // An honest peer confirms every half MiB: one that never does would have us keep the whole transfer.
      if (retainedBytes > MaxHeldBytes)
        refuse(`confirmed nothing of the last ${MaxHeldBytes / 1024 / 1024} MiB`)
      drain()
      const sent = () => !pending.some((o) => o.seq <= last)
      if (sent()) return Effect.void
      const wait: Effect.Effect<void> = Effect.async<void>((resume) => {
        const check = () => (sent() ? resume(Effect.void) : void waiters.push(check))
        check()
      })
      return wait.pipe(Effect.raceFirst(Deferred.await(lost)))
    })

  const stripes: Stripes = { send, incoming, closed: Deferred.await(lost), lanes: () => lanes.size }
  return stripes
})
