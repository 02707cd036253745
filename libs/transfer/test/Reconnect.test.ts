import { describe, expect, it } from "@effect/vitest"
import type { PeerSignal } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import * as Reconnect from "@p2pal/transfer/Reconnect"
import * as Rounds from "@p2pal/transfer/Rounds"
import type { SealedPort } from "@p2pal/transfer/SecureSignal"
import {
  Clock,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Mailbox,
  Option,
  Queue,
  Random,
  Ref,
  Stream,
  TestClock,
} from "effect"

const lost = (message: string) => new PeerFailed({ message, lost: true })

/**
 * Peer connections played by the test: each attempt is announced on `attempts` (its round) and opens or
 * fails as the script says; `drop` loses the open one, as a path going away does.
 */
const peers = (script: ReadonlyArray<"open" | PeerFailed>) =>
  Effect.gen(function* () {
    const attempts = yield* Queue.unbounded<number>()
    const tried = yield* Ref.make(0)
    const live = yield* Ref.make<Deferred.Deferred<never, PeerFailed> | undefined>(undefined)
    /** Rounds whose connection has been closed (its scope released). */
    const closed: Array<number> = []
    const connect = (round: number) =>
      Effect.gen(function* () {
        const n = yield* Ref.getAndUpdate(tried, (k) => k + 1)
        yield* Queue.offer(attempts, round)
        const step = script[n] ?? lost("no such attempt in the script")
        if (step !== "open") return yield* step
        const gone = yield* Deferred.make<never, PeerFailed>()
        yield* Effect.addFinalizer(() => Effect.sync(() => closed.push(round)))
        yield* Ref.set(live, gone)
        const channel: Channel = {
          send: () => Effect.void,
          incoming: yield* Mailbox.make<Uint8Array, PeerFailed>(),
          closed: Deferred.await(gone),
          path: () => ({
            local: `host 10.0.0.1:${round}`,
            remote: "host 10.0.0.2:1",
            relayed: false,
            rttMs: 1,
            lanes: 1,
          }),
        }
        return channel
      })
    const drop = (why: string) =>
      Effect.flatMap(Ref.get(live), (gone) =>
        gone === undefined ? Effect.void : Deferred.fail(gone, lost(why)),
      )
    return { attempts, connect, drop, closed }
  })

/** The sealed relay played by the test: what the peer "sends" is offered to `from`. */
const relay = Effect.gen(function* () {
  const from = yield* Queue.unbounded<PeerSignal.RoundSignal | PeerFailed>()
  const port: SealedPort = {
    send: () => Effect.void,
    incoming: Stream.fromQueue(from).pipe(
      Stream.mapEffect((m) => (m instanceof PeerFailed ? Effect.fail(m) : Effect.succeed(m))),
    ),
  }
  return { from, rounds: yield* Rounds.make(port) }
})

/**
 * One side's reconnect loop over the test's peers and relay. The transfer on each connection runs until
 * its channel drops or the test lets it finish; what the user would see is recorded in `seen`.
 */
const side = (options: {
  readonly follower: boolean
  readonly maxRetries: number
  readonly backoff: Duration.DurationInput
  readonly script: ReadonlyArray<"open" | PeerFailed>
}) =>
  Effect.gen(function* () {
    const link = yield* peers(options.script)
    const { from, rounds } = yield* relay
    const finish = yield* Deferred.make<void>()
    const seen: Array<string> = []
    /** Each line of `seen` as it comes, to wait for. */
    const said = yield* Queue.unbounded<string>()
    const say = (line: string) =>
      Effect.zipRight(
        Effect.sync(() => void seen.push(line)),
        Queue.offer(said, line),
      )
    const resumed: Array<boolean> = []
    /** Each use of a connection as it begins. */
    const used = yield* Queue.unbounded<boolean>()
    const met = yield* Ref.make(false)
    const fiber = yield* Reconnect.run({
      follower: options.follower,
      maxRetries: options.maxRetries,
      backoff: Duration.decode(options.backoff),
      rounds,
      met,
      connect: link.connect,
      refresh: say("refresh"),
      use: (channel, context) =>
        context.following(
          Effect.sync(() => resumed.push(context.resumed)).pipe(
            Effect.zipRight(Queue.offer(used, context.resumed)),
            Effect.zipRight(Effect.raceFirst(channel.closed, Deferred.await(finish))),
          ),
        ),
      onReconnecting: (attempt, of, why) => say(`attempt ${attempt}/${of}: ${why}`),
      onReconnected: (path) => say(`reconnected ${path?.local}`),
      giveUp: say("gave up"),
    }).pipe(
      // Jitter in the middle of its range: every delay is exactly the backoff, doubled each time.
      Effect.withRandom(Random.fixed([0.5])),
      Effect.fork,
    )
    return { ...link, from, finish, seen, said, resumed, used, fiber }
  })

/** Whether an attempt has begun by now (what the test's clock has let happen). */
const attempted = (attempts: Queue.Queue<number>) => Effect.map(Queue.poll(attempts), Option.isSome)

describe("Reconnect.policy and patience", () => {
  it.effect(
    "the receiver waits for the sender's next round as long as all its delays at most, plus an attempt",
    () =>
      Effect.gen(function* () {
        // 1 + 2 + 4 seconds, jittered up by at most 20 %, and one 15-second attempt.
        expect(Duration.toMillis(yield* Reconnect.patience(3, "1 second"))).toBe(15_000 + 1.2 * 7_000)
        expect(Duration.toMillis(yield* Reconnect.patience(0, "1 second"))).toBe(15_000)
      }),
  )

  it.effect("classifies a failure by whether the peers had met", () =>
    Effect.sync(() => {
      const drop = lost("the path went away")
      expect(Reconnect.classify(drop, true)).toEqual({ _tag: "Lost", loss: drop })
      expect(Reconnect.classify(drop, false)._tag).toBe("Final")
      expect(Reconnect.classify(new PeerFailed({ message: "refused" }), true)._tag).toBe("Final")
      expect(Reconnect.classify(new Reconnect.Overtaken({ round: 4 }), false)).toEqual({
        _tag: "Overtaken",
        round: 4,
      })
    }),
  )
})

describe("Reconnect.run (a drop ridden out in-process, on the test clock)", () => {
  it.scoped(
    "waits the backoff before each attempt, doubling it, and carries on over the new connection",
    () =>
      Effect.gen(function* () {
        const s = yield* side({
          follower: false,
          maxRetries: 3,
          backoff: "1 second",
          script: ["open", lost("no answer"), "open"],
        })
        expect(yield* Queue.take(s.attempts)).toBe(0)
        yield* s.drop("heartbeat silence")
        yield* TestClock.adjust("999 millis")
        expect(yield* attempted(s.attempts), "no attempt before the backoff elapsed").toBe(false)
        yield* TestClock.adjust("1 millis")
        expect(yield* Queue.take(s.attempts)).toBe(1)
        // The second wait is twice the first.
        yield* TestClock.adjust("1999 millis")
        expect(yield* attempted(s.attempts)).toBe(false)
        yield* TestClock.adjust("1 millis")
        expect(yield* Queue.take(s.attempts)).toBe(2)
        yield* Deferred.succeed(s.finish, undefined)
        yield* Fiber.join(s.fiber)
        expect(s.seen).toEqual([
          "attempt 1/3: heartbeat silence",
          "refresh",
          "attempt 2/3: no answer",
          "refresh",
          "reconnected host 10.0.0.1:2",
        ])
        // The second connection carries on the transfer the first began.
        expect(s.resumed).toEqual([false, true])
        expect(s.closed).toEqual([0, 2])
      }),
  )

  it.scoped("a later drop starts a fresh count and the first backoff again", () =>
    Effect.gen(function* () {
      const s = yield* side({
        follower: false,
        maxRetries: 1,
        backoff: "1 second",
        script: ["open", "open", "open"],
      })
      yield* Queue.take(s.attempts)
      yield* Queue.take(s.used)
      for (const round of [1, 2]) {
        yield* s.drop(`drop ${round}`)
        yield* TestClock.adjust("999 millis")
        expect(yield* attempted(s.attempts)).toBe(false)
        yield* TestClock.adjust("1 millis")
        expect(yield* Queue.take(s.attempts)).toBe(round)
        // Up again before the next drop.
        expect(yield* Queue.take(s.used)).toBe(true)
      }
      yield* Deferred.succeed(s.finish, undefined)
      yield* Fiber.join(s.fiber)
      expect(s.seen.filter((line) => line.startsWith("attempt"))).toEqual([
        "attempt 1/1: drop 1",
        "attempt 1/1: drop 2",
      ])
    }),
  )

  it.scoped("gives up after --max-retries attempts, telling the other side", () =>
    Effect.gen(function* () {
      const s = yield* side({
        follower: false,
        maxRetries: 2,
        backoff: "100 millis",
        script: ["open", lost("no answer"), lost("still no answer")],
      })
      yield* Queue.take(s.attempts)
      yield* s.drop("heartbeat silence")
      yield* TestClock.adjust("100 millis")
      expect(yield* Queue.take(s.attempts)).toBe(1)
      yield* TestClock.adjust("200 millis")
      expect(yield* Queue.take(s.attempts)).toBe(2)
      const error = yield* Effect.flip(Fiber.join(s.fiber))
      expect(error).toEqual(lost("heartbeat silence; gave up after 2 attempts to reconnect"))
      expect(s.seen.at(-1)).toBe("gave up")
    }),
  )

  it.scoped("with --max-retries 0 it does not try at all", () =>
    Effect.gen(function* () {
      const s = yield* side({ follower: false, maxRetries: 0, backoff: "1 second", script: ["open"] })
      yield* Queue.take(s.attempts)
      yield* s.drop("heartbeat silence")
      const error = yield* Effect.flip(Fiber.join(s.fiber))
      expect(error).toEqual(lost("heartbeat silence; not reconnecting (--max-retries 0)"))
      expect(s.seen).toEqual(["gave up"])
      expect(yield* attempted(s.attempts)).toBe(false)
    }),
  )

  it.scoped("a peer that stops during the backoff ends it at once", () =>
    Effect.gen(function* () {
      const s = yield* side({
        follower: false,
        maxRetries: 3,
        backoff: "10 seconds",
        script: ["open", "open"],
      })
      yield* Queue.take(s.attempts)
      yield* s.drop("heartbeat silence")
      // In the backoff now.
      expect(yield* Queue.take(s.said)).toBe("attempt 1/3: heartbeat silence")
      const stopped = lost("the peer left (the other side stopped the transfer)")
      yield* Queue.offer(s.from, stopped)
      expect(yield* Effect.flip(Fiber.join(s.fiber))).toBe(stopped)
      expect(yield* Clock.currentTimeMillis, "no time passed").toBe(0)
      expect(yield* attempted(s.attempts)).toBe(false)
      expect(s.seen).toEqual(["attempt 1/3: heartbeat silence"])
    }),
  )

  it.scoped("the receiver follows a newer round of the sender's at once, counting no attempt", () =>
    Effect.gen(function* () {
      const s = yield* side({ follower: true, maxRetries: 3, backoff: "1 second", script: ["open", "open"] })
      expect(yield* Queue.take(s.attempts)).toBe(0)
      // The sender saw the drop first and opened round 1.
      yield* Queue.offer(s.from, { round: 1, signal: { _tag: "answered" } })
      expect(yield* Queue.take(s.attempts)).toBe(1)
      yield* Deferred.succeed(s.finish, undefined)
      yield* Fiber.join(s.fiber)
      expect(s.resumed).toEqual([false, true])
      expect(s.seen).toEqual([])
      expect(s.closed).toEqual([0, 1])
    }),
  )

  it.scoped("the receiver gives up on a sender that does not open a new round within its patience", () =>
    Effect.gen(function* () {
      const s = yield* side({ follower: true, maxRetries: 1, backoff: "1 second", script: ["open"] })
      yield* Queue.take(s.attempts)
      yield* s.drop("heartbeat silence")
      const patience = Duration.toMillis(yield* Reconnect.patience(1, "1 second"))
      yield* TestClock.adjust(patience - 1)
      expect(Option.isNone(yield* Fiber.poll(s.fiber)), "still waiting").toBe(true)
      yield* TestClock.adjust(1)
      expect(yield* Effect.flip(Fiber.join(s.fiber))).toEqual(
        lost("heartbeat silence; gave up after 1 attempt to reconnect"),
      )
      expect(s.seen).toEqual(["attempt 1/1: heartbeat silence", "refresh", "gave up"])
    }),
  )

  it.scoped("a failure before the peers ever met is not reconnected", () =>
    Effect.gen(function* () {
      const unreachable = new PeerFailed({ message: "could not reach the peer" })
      const s = yield* side({ follower: false, maxRetries: 3, backoff: "1 second", script: [unreachable] })
      expect(yield* Fiber.await(s.fiber)).toEqual(Exit.fail(unreachable))
      expect(s.seen).toEqual([])
    }),
  )
})
