import { describe, expect, it } from "@effect/vitest"
import type { PeerSignal } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import * as Rounds from "@p2pal/transfer/Rounds"
import type { SealedPort } from "@p2pal/transfer/SecureSignal"
import { Chunk, Effect, Fiber, Option, Queue, Stream } from "effect"

const candidate = (candidate: string): PeerSignal.PeerSignal => ({ _tag: "candidate", candidate, mid: "0" })

/** A sealed relay played by the test: what the peer "sends" is offered to `from`; ours lands in `sent`. */
const relay = Effect.gen(function* () {
  const from = yield* Queue.unbounded<PeerSignal.RoundSignal | PeerFailed>()
  const sent: Array<PeerSignal.RoundSignal> = []
  const port: SealedPort = {
    send: (message) => Effect.sync(() => void sent.push(message)),
    incoming: Stream.fromQueue(from).pipe(
      Stream.mapEffect((m) => (m instanceof PeerFailed ? Effect.fail(m) : Effect.succeed(m))),
    ),
  }
  return { from, sent, port }
})

const take = (port: ReturnType<Rounds.Rounds["port"]>, n: number) =>
  port.incoming.pipe(Stream.take(n), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

describe("Rounds (one sealed relay, one round per connection attempt)", () => {
  it.scoped("each round's port sees only its own round, and sends tagged with it", () =>
    Effect.gen(function* () {
      const { from, sent, port } = yield* relay
      const rounds = yield* Rounds.make(port)
      yield* Queue.offerAll(from, [
        { round: 0, signal: candidate("a") },
        { round: 1, signal: candidate("b") },
        // A late candidate of the abandoned round 0 arrives after round 1 began.
        { round: 0, signal: candidate("late") },
        { round: 1, signal: candidate("c") },
      ])
      expect(yield* take(rounds.port(1), 2)).toEqual([candidate("b"), candidate("c")])
      expect(yield* take(rounds.port(0), 2)).toEqual([candidate("a"), candidate("late")])
      yield* rounds.port(2).send({ _tag: "answered" })
      expect(sent).toEqual([{ round: 2, signal: { _tag: "answered" } }])
    }),
  )

  it.scoped("after(r) waits for a later round and returns the latest one heard", () =>
    Effect.gen(function* () {
      const { from, port } = yield* relay
      const rounds = yield* Rounds.make(port)
      const waiting = yield* Effect.fork(rounds.after(1))
      yield* Queue.offer(from, { round: 1, signal: candidate("same round") })
      // Taken, so the relay has been read past it; then the waiter gets its turn.
      expect(yield* take(rounds.port(1), 1)).toEqual([candidate("same round")])
      yield* Effect.yieldNow()
      expect(Option.isNone(yield* Fiber.poll(waiting)), "answered for its own round").toBe(true)
      yield* Queue.offer(from, { round: 3, signal: candidate("x") })
      expect(yield* Fiber.join(waiting)).toBe(3)
      // Already heard: answered at once.
      expect(yield* rounds.after(2)).toBe(3)
    }),
  )

  it.scoped("a relay that fails (the peer left) fails every round's port and after()", () =>
    Effect.gen(function* () {
      const { from, port } = yield* relay
      const rounds = yield* Rounds.make(port)
      const left = new PeerFailed({ message: "the peer left (the other side stopped the transfer)" })
      yield* Queue.offer(from, left)
      expect(yield* Effect.flip(take(rounds.port(0), 1))).toBe(left)
      expect(yield* Effect.flip(rounds.after(0))).toBe(left)
    }),
  )
})
