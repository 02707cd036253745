import { type LaneControl, LaneControlFromJson, MaxLanes, SeqBytes } from "@p2pal/domain/Lanes"
import { PeerFailed } from "@p2pal/domain/Errors"
import {
  Joiner,
  MaxHeldBytes,
  PieceBytes,
  Reorder,
  RunBytes,
  frame,
  frameRun,
  pieces,
  singles,
  unframe,
} from "./LaneFrames.js"
import { Clock, Deferred, Duration, Effect, Either, Exit, Mailbox, Schema, Scope, Stream } from "effect"
import type * as ndc from "node-datachannel"

// Over 250 lines: sending and receiving share the lanes' state (what each holds, what is confirmed);
// the pure parts are in LaneFrames.

export * from "./LaneFrames.js"

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
 * The least each lane must carry after a doubling: a piece a second keeps every lane well within the
 * silence a lane may keep (Liveness). A link too slow to give each lane that much is held back by its
 * rate, not by one flow's window, and more lanes would only share the same few bytes.
 */
export const MinLaneRate = PieceBytes

/**
 * After a sample over `lanes` lanes, the offerer doubles them, stops adding for good, or waits for one
 * where a long path is what holds the transfer back (with disk or small files in the way, more lanes
 * would not help) and the rate would give the doubled lanes their share.
 */
export const verdict = (before: number | undefined, now: Sample, lanes: number): "add" | "stop" | "wait" =>
  !now.pressed || now.rttMs < NearRttMs || now.rate < MinLaneRate * lanes * 2
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
  /** A copy: the caller may reuse its memory once `send` returns, and this is what goes again if its lane dies. */
  readonly framed: Uint8Array
  /** A piece the next one continues, which cannot go in a run. */
  readonly continued: boolean
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

  /** How many of the first pending pieces go as one: consecutive whole ones, up to about RunBytes. */
  const runLength = () => {
    let count = 1
    let bytes = pending[0]!.framed.length
    for (; count < pending.length; count++) {
      const next = pending[count]!
      bytes += next.framed.length
      if (next.continued || next.seq !== pending[count - 1]!.seq + 1 || bytes > RunBytes) break
    }
    return pending[0]!.continued ? 1 : count
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
  const joiner = new Joiner()
  let confirmedUpTo = 0
  let unconfirmedBytes = 0
  const heard: Heard = (message) => {
    if (typeof message === "string") {
      const control = Schema.decodeUnknownEither(LaneControlFromJson)(message)
      return Either.isLeft(control) ? refuse("sent a malformed lane message") : confirm(control.right.seq)
    }
    const found = singles(message)
    if (found === undefined) return refuse("sent a malformed message (no sequence number, or a bad run)")
    for (const one of found) {
      // Held whole, piece flag and all, until its turn.
      const ready = reorder.accept(one.seq, one.framed)
      if (typeof ready === "string") return refuse(ready)
      for (const framed of ready) {
        const { body, continued } = unframe(framed)!
        unconfirmedBytes += body.length
        const whole = joiner.add(body, continued)
        if (typeof whole === "string") return refuse(whole)
        if (whole !== undefined) incoming.unsafeOffer(whole)
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
        const next = verdict(before, now, lanes.size)
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
        const cut = pieces(body)
        cut.forEach((piece, i) => {
          const continued = i < cut.length - 1
          const outgoing: Outgoing = {
            seq: nextSeq,
            framed: frame(nextSeq, piece, continued),
            continued,
            lane: -1,
          }
          last = nextSeq++
          retained.push(outgoing)
          retainedBytes += outgoing.framed.length
          pending.push(outgoing)
        })
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
