import { describe, expect, it } from "@effect/vitest"
import { PeerFailed } from "@p2pal/domain/Errors"
import * as Stripes from "@p2pal/infra/Stripes"
import { Deferred, Effect, Exit, Queue, Schedule, Stream } from "effect"
import { randomBytes } from "node:crypto"

const bytes = (...values: ReadonlyArray<number>) => Uint8Array.from(values)

describe("Reorder", () => {
  it("hands messages on in the order they were sent, whatever order they arrive in", () => {
    const reorder = new Stripes.Reorder()
    expect(reorder.accept(2, bytes(2))).toEqual([])
    expect(reorder.accept(1, bytes(1))).toEqual([])
    expect(reorder.accept(0, bytes(0))).toEqual([bytes(0), bytes(1), bytes(2)])
    expect(reorder.accept(3, bytes(3))).toEqual([bytes(3)])
    expect(reorder.next).toBe(4)
  })

  it("keeps the first copy of a message sent again after a lane died", () => {
    const reorder = new Stripes.Reorder()
    expect(reorder.accept(1, bytes(1))).toEqual([])
    expect(reorder.accept(1, bytes(9))).toEqual([])
    expect(reorder.accept(0, bytes(0))).toEqual([bytes(0), bytes(1)])
    expect(reorder.accept(0, bytes(7))).toEqual([])
  })

  it("refuses a message implausibly far ahead, and more held bytes than a window could explain", () => {
    expect(new Stripes.Reorder().accept(2 ** 21, bytes(1))).toMatch(/ahead of 0/)
    const reorder = new Stripes.Reorder()
    const big = new Uint8Array(Stripes.MaxHeldBytes / 2)
    expect(reorder.accept(1, big)).toEqual([])
    expect(reorder.accept(2, big)).toEqual([])
    expect(reorder.accept(3, bytes(1))).toMatch(/MiB arrived ahead of a missing message/)
  })
})

describe("frame", () => {
  it("puts a sequence number of up to 46 bits in front of the piece, and whether the message goes on", () => {
    for (const seq of [0, 1, 2 ** 32 + 5, 2 ** 46 - 1])
      for (const continued of [false, true]) {
        const framed = Stripes.frame(seq, bytes(7, 8), continued)
        expect(Stripes.unframe(framed)).toEqual({ seq, body: bytes(7, 8), continued })
      }
    expect(Stripes.unframe(bytes(1, 2, 3))).toBeUndefined()
  })
  it("carries a run of consecutive whole pieces, empty ones included, as one lane message", () => {
    for (const seq of [0, 2 ** 32 + 5, 2 ** 46 - 3]) {
      const bodies = [bytes(1), bytes(), bytes(2, 3, 4)]
      expect(Stripes.singles(Stripes.frameRun(seq, bodies))).toEqual(
        bodies.map((body, i) => ({ seq: seq + i, framed: Stripes.frame(seq + i, body) })),
      )
    }
    const alone = Stripes.frame(9, bytes(5), true)
    expect(Stripes.singles(alone)).toEqual([{ seq: 9, framed: alone }])
  })
  it("finds a run malformed when a length is cut short or points past its end, or it carries nothing", () => {
    const run = Stripes.frameRun(7, [bytes(1, 2), bytes(3)])
    expect(Stripes.singles(run.subarray(0, run.length - 1))).toBeUndefined()
    expect(Stripes.singles(run.subarray(0, run.length - 3))).toBeUndefined()
    expect(Stripes.singles(Stripes.frameRun(7, []))).toBeUndefined()
    expect(Stripes.singles(bytes(1, 2, 3))).toBeUndefined()
  })
})

describe("pieces", () => {
  it("cuts a message longer than a piece, and the joiner puts it back together", () => {
    const body = Uint8Array.from({ length: 2 * Stripes.PieceBytes + 5 }, (_, i) => i % 251)
    const cut = Stripes.pieces(body)
    expect(cut.map((piece) => piece.length)).toEqual([Stripes.PieceBytes, Stripes.PieceBytes, 5])
    const joiner = new Stripes.Joiner()
    expect(cut.map((piece, i) => joiner.add(piece, i < cut.length - 1))).toEqual([undefined, undefined, body])
    expect(Stripes.pieces(bytes())).toEqual([bytes()])
    expect(joiner.add(bytes(4), false)).toEqual(bytes(4))
  })

  it("refuses to join a message longer than one lane message could be", () => {
    const joiner = new Stripes.Joiner()
    const piece = new Uint8Array(Stripes.PieceBytes)
    for (let joined = 0; joined < Stripes.MaxJoinedBytes; joined += piece.length)
      expect(joiner.add(piece, true)).toBeUndefined()
    expect(joiner.add(piece, true)).toMatch(/a message of more than 256 KiB/)
  })
})

describe("verdict", () => {
  const pressed = (rate: number) => ({ rate, pressed: true, rttMs: 50 })
  const MB = 1_000_000
  it("adds lanes while doubling them grows the rate, and stops when it does not", () => {
    expect(Stripes.verdict(undefined, pressed(10 * MB), 1)).toBe("add")
    expect(Stripes.verdict(10 * MB, pressed(19 * MB), 2)).toBe("add")
    expect(Stripes.verdict(10 * MB, pressed(11 * MB), 2)).toBe("stop")
  })
  it("waits while the link is not what holds the transfer back", () => {
    expect(Stripes.verdict(10 * MB, { rate: MB, pressed: false, rttMs: 50 }, 2)).toBe("wait")
  })
  it("keeps to one lane on a path as short as a LAN's, where the CPU is the limit", () => {
    expect(Stripes.verdict(undefined, { ...pressed(100 * MB), rttMs: Stripes.NearRttMs - 1 }, 1)).toBe("wait")
  })
  it("adds no lane that would not carry a piece a second: a 64 kbit/s link keeps to one", () => {
    expect(Stripes.verdict(undefined, pressed(8000), 1)).toBe("wait")
    expect(Stripes.verdict(undefined, pressed(4 * Stripes.MinLaneRate), 2)).toBe("add")
    expect(Stripes.verdict(undefined, pressed(4 * Stripes.MinLaneRate), 4)).toBe("wait")
  })
})

/**
 * Lanes in memory between two Stripes, `a` and `b`: each lane delivers after its own delay (so messages
 * overtake each other across lanes), counts what it has not delivered yet as buffered, and can die,
 * losing whatever it still carried.
 */
const memoryLanes = (delays: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    type Side = "a" | "b"
    const lanes = yield* Effect.forEach(delays, (delay) =>
      Effect.map(
        Effect.all([Deferred.make<never, PeerFailed>(), Deferred.make<never, PeerFailed>()]),
        ([lostA, lostB]) => ({
          delay,
          dead: false,
          lost: { a: lostA, b: lostB } as Record<Side, Deferred.Deferred<never, PeerFailed>>,
          heard: {} as Partial<Record<Side, Stripes.Heard>>,
          buffered: { a: 0, b: 0 } as Record<Side, number>,
          /** Binary lane messages each side handed to it. */
          sent: { a: 0, b: 0 } as Record<Side, number>,
          low: {} as Partial<Record<Side, () => void>>,
        }),
      ),
    )
    const end = (index: number, side: Side, heard: Stripes.Heard): Stripes.Lane => {
      const lane = lanes[index]!
      const other: Side = side === "a" ? "b" : "a"
      lane.heard[side] = heard
      const deliver = (message: Uint8Array | string, size: number) => {
        lane.buffered[side] += size
        setTimeout(() => {
          if (lane.dead) return
          lane.buffered[side] -= size
          if (lane.buffered[side] <= Stripes.LaneQueue / 2) lane.low[side]?.()
          lane.heard[other]?.(typeof message === "string" ? message : message.slice())
        }, lane.delay)
        return true
      }
      return {
        dc: {
          isOpen: () => !lane.dead,
          sendMessage: (text) => deliver(text, 0),
          sendMessageBinary: (message) => {
            lane.sent[side]++
            return deliver(message, message.length)
          },
          bufferedAmount: () => lane.buffered[side],
          setBufferedAmountLowThreshold: () => {},
          onBufferedAmountLow: (callback) => {
            lane.low[side] = callback
          },
        },
        lost: Deferred.await(lane.lost[side]),
      }
    }
    const kill = (index: number) => {
      const lane = lanes[index]!
      lane.dead = true
      const error = new PeerFailed({ message: `lane ${index} died`, lost: true })
      Deferred.unsafeDone(lane.lost.a, Exit.fail(error))
      Deferred.unsafeDone(lane.lost.b, Exit.fail(error))
    }
    /** Both ends open every lane at once: as the answerer does for the lanes the offerer began. */
    const stripes = (side: Side) =>
      Stripes.make<never>({
        first: (heard) => Effect.succeed(end(0, side, heard)),
        more: {
          begun: Stream.range(1, lanes.length - 1),
          open: (index, heard) => Effect.succeed(end(index, side, heard)),
        },
        rttMs: () => undefined,
      })
    return { stripes, kill, sent: (side: Side) => lanes.reduce((sum, lane) => sum + lane.sent[side], 0) }
  })

const message = (n: number) => {
  const body = new Uint8Array(1000 + (n % 7) * 4000)
  new DataView(body.buffer).setUint32(0, n)
  return body
}
const numberOf = (body: Uint8Array) => new DataView(body.buffer, body.byteOffset).getUint32(0)

const receiveAll = (incoming: Stripes.Stripes["incoming"], count: number) =>
  Effect.gen(function* () {
    const got: Array<number> = []
    while (got.length < count) got.push(numberOf(yield* incoming.take))
    return got
  })

/** Both ends open the lanes in fibers of their own: waits until `stripes` has `count` of them open. */
const allOpen = (stripes: Stripes.Stripes, count: number) =>
  Effect.repeat(Effect.sync(stripes.lanes), {
    until: (open) => open === count,
    schedule: Schedule.spaced("1 millis"),
  })

const range = (count: number) => Array.from({ length: count }, (_, i) => i)

describe("Stripes over several lanes", () => {
  it.live("hands every message on in order while the lanes deliver out of order", () =>
    Effect.gen(function* () {
      const lanes = yield* memoryLanes([1, 12, 5])
      const [a, b] = yield* Effect.all([lanes.stripes("a"), lanes.stripes("b")])
      yield* allOpen(a, 3)
      yield* allOpen(b, 3)
      const receiving = yield* Effect.fork(receiveAll(b.incoming, 600))
      for (const n of range(600)) yield* a.send(message(n))
      expect(yield* receiving.await.pipe(Effect.flatten)).toEqual(range(600))
    }).pipe(Effect.scoped),
  )

  it.live(
    "goes on when one lane of several dies mid-transfer: what it carried goes again on the others",
    () =>
      Effect.gen(function* () {
        const lanes = yield* memoryLanes([2, 15, 4])
        const [a, b] = yield* Effect.all([lanes.stripes("a"), lanes.stripes("b")])
        yield* allOpen(a, 3)
        yield* allOpen(b, 3)
        const receiving = yield* Effect.fork(receiveAll(b.incoming, 800))
        for (const n of range(800)) {
          if (n === 300) lanes.kill(1)
          yield* a.send(message(n))
        }
        expect(yield* receiving.await.pipe(Effect.flatten)).toEqual(range(800))
        expect(a.lanes()).toBe(2)
      }).pipe(Effect.scoped),
  )

  it.live("hands on messages several pieces long whole, their pieces spread over the lanes", () =>
    Effect.gen(function* () {
      const lanes = yield* memoryLanes([1, 9, 4])
      const [a, b] = yield* Effect.all([lanes.stripes("a"), lanes.stripes("b")])
      yield* allOpen(a, 3)
      yield* allOpen(b, 3)
      const long = (n: number) => randomBytes(63 * 1024 + n)
      const sent = range(40).map(long)
      const receiving = yield* Effect.fork(Effect.forEach(range(40), () => b.incoming.take))
      for (const body of sent) yield* a.send(body)
      // Compared as buffers: a deep equality of 2.5 MB byte by byte takes seconds.
      const got = yield* receiving.await.pipe(Effect.flatten)
      expect(got.map((body, i) => Buffer.from(body).equals(sent[i]!))).toEqual(range(40).map(() => true))
    }).pipe(Effect.scoped),
  )

  it.live("sends a burst of small messages as runs of up to RunBytes, not one lane message each", () =>
    Effect.gen(function* () {
      const lanes = yield* memoryLanes([1])
      const [a, b] = yield* Effect.all([lanes.stripes("a"), lanes.stripes("b")])
      const receiving = yield* Effect.fork(receiveAll(b.incoming, 2000))
      // 2000 messages of 100 bytes: about 210 KB as runs, about 13 lane messages' worth.
      yield* a.send(...range(2000).map((n) => message(n).subarray(0, 100)))
      expect(yield* receiving.await.pipe(Effect.flatten)).toEqual(range(2000))
      expect(lanes.sent("a")).toBeLessThanOrEqual(Math.ceil((2000 * 110) / Stripes.RunBytes))
    }).pipe(Effect.scoped),
  )

  it.live("fails once its last lane is gone", () =>
    Effect.gen(function* () {
      const lanes = yield* memoryLanes([1])
      const a = yield* lanes.stripes("a")
      lanes.kill(0)
      const error = yield* Effect.flip(a.closed)
      expect(error.message).toBe("lane 0 died")
      expect((yield* Effect.exit(a.incoming.take))._tag).toBe("Failure")
    }).pipe(Effect.scoped),
  )
})

describe("Stripes against a hostile peer", () => {
  const hostile = (
    inject: (heard: Stripes.Heard, stripes: Stripes.Stripes) => Effect.Effect<void, PeerFailed> | void,
  ) =>
    Effect.gen(function* () {
      const heard = yield* Queue.unbounded<Stripes.Heard>()
      const lost = yield* Deferred.make<never, PeerFailed>()
      const stripes = yield* Stripes.make<never>({
        first: (h) =>
          Effect.as(Queue.offer(heard, h), {
            dc: {
              isOpen: () => true,
              sendMessage: () => true,
              sendMessageBinary: () => true,
              bufferedAmount: () => 0,
              setBufferedAmountLowThreshold: () => {},
              onBufferedAmountLow: () => {},
            },
            lost: Deferred.await(lost),
          }),
        more: undefined,
        rttMs: () => undefined,
      })
      const injected = inject(yield* Queue.take(heard), stripes)
      if (injected !== undefined) yield* Effect.ignore(injected)
      return (yield* Effect.flip(stripes.incoming.takeAll)).message
    }).pipe(Effect.scoped)

  it.effect("refuses a message without its sequence number", () =>
    Effect.map(
      hostile((heard) => heard(bytes(1, 2))),
      (why) =>
        expect(why).toBe(
          "protocol error: the peer sent a malformed message (no sequence number, or a bad run)",
        ),
    ),
  )
  it.effect("refuses a malformed lane message, and a confirmation of what was never sent", () =>
    Effect.gen(function* () {
      expect(yield* hostile((heard) => heard('{"_tag":"got"}'))).toMatch(/malformed lane message/)
      expect(yield* hostile((heard) => heard('{"_tag":"got","seq":5}'))).toMatch(/confirmed message 5/)
    }),
  )
  it.effect("refuses a peer that confirms nothing of what it is sent, rather than keep it all", () =>
    Effect.map(
      hostile((_, stripes) =>
        Effect.forEach(Array.from({ length: 65 }), () => stripes.send(new Uint8Array(1024 * 1024)), {
          discard: true,
        }),
      ),
      (why) => expect(why).toBe("protocol error: the peer confirmed nothing of the last 64 MiB"),
    ),
  )
  it.effect("refuses pieces that never end", () =>
    Effect.map(
      hostile((heard) => {
        for (let seq = 0; seq <= Stripes.MaxJoinedBytes / Stripes.PieceBytes; seq++)
          heard(Stripes.frame(seq, new Uint8Array(Stripes.PieceBytes), true))
      }),
      (why) => expect(why).toBe("protocol error: the peer sent a message of more than 256 KiB"),
    ),
  )
  it.effect("refuses a message so far ahead that holding it could only fill memory", () =>
    Effect.map(
      hostile((heard) => heard(Stripes.frame(2 ** 40, bytes(1)))),
      (why) => expect(why).toMatch(/ahead of 0/),
    ),
  )
})
