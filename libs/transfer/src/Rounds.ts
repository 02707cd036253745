import type { PeerSignal } from "@p2pal/domain"
import type { ConnectError, PeerFailed } from "@p2pal/domain/Errors"
import type { LanePorts, SignalPort } from "@p2pal/infra/PeerLink"
import { Deferred, Effect, Option, Queue, type Scope, Stream, SubscriptionRef } from "effect"
import type { SealedPort } from "./SecureSignal.js"

/**
 * The sealed relay split by round: every attempt at a peer connection (the first, then one per
 * reconnect attempt) signals in its own round, so a late candidate or answer of an abandoned attempt
 * never reaches the next one.
 */
export interface Rounds {
  /** What PeerLink.connect uses for the attempt of `round`: its first connection, and its lanes. */
  readonly port: (round: number) => SignalPort<ConnectError>
  readonly lanes: (round: number) => LanePorts<ConnectError>
  /** Waits until the peer has signaled in a round after `round`; returns the latest round heard of. */
  readonly after: (round: number) => Effect.Effect<number, ConnectError>
  /** Fails if the relay has ended (the peer left, the signal app lost the transfer): no round can work. */
  readonly ended: Effect.Effect<void, ConnectError>
  /** Fails once the relay ends. */
  readonly whenEnded: Effect.Effect<never, ConnectError>
  /** The receiver tells the sender it has verified every file. */
  readonly tellVerified: Effect.Effect<void, PeerFailed>
  /** Completes once the receiver has said it verified every file. */
  readonly verified: Effect.Effect<void>
}

export const make = (sealed: SealedPort): Effect.Effect<Rounds, never, Scope.Scope> =>
  Effect.gen(function* () {
    const latest = yield* SubscriptionRef.make(-1)
    /** The relay failed (the peer left, the server lost the transfer, tampering): every round fails. */
    const failed = yield* Deferred.make<never, ConnectError>()
    const verified = yield* Deferred.make<void>()
    const queues = new Map<string, Queue.Queue<PeerSignal.PeerSignal>>()
    /** Per round, the lanes the peer began to set up that this side had not: the answerer opens them. */
    const begun = new Map<number, Queue.Queue<number>>()
    const queueOf = <K, A>(map: Map<K, Queue.Queue<A>>, key: K): Effect.Effect<Queue.Queue<A>> =>
      Effect.suspend(() => {
        const known = map.get(key)
        if (known !== undefined) return Effect.succeed(known)
        return Effect.tap(Queue.unbounded<A>(), (queue) => map.set(key, queue))
      })
    const signals = (round: number, lane: number) => queueOf(queues, `${round}/${lane}`)
    const portOf = (round: number, lane: number): SignalPort<ConnectError> => ({
      send: (signal) => sealed.send(lane === 0 ? { round, signal } : { round, lane, signal }),
      incoming: Stream.unwrap(Effect.map(signals(round, lane), Stream.fromQueue)).pipe(
        Stream.interruptWhenDeferred(failed),
      ),
    })
    yield* sealed.incoming.pipe(
      Stream.runForEach(({ round, lane = 0, signal }) =>
        Effect.gen(function* () {
          // Sealed, so only the code's other holder can say it; it belongs to no attempt.
          if (signal._tag === "verified") return yield* Deferred.succeed(verified, undefined)
          // Heard of before it can be taken: whoever took it can count on `after` knowing the round.
          yield* SubscriptionRef.update(latest, (seen) => Math.max(seen, round))
          if (lane > 0 && !queues.has(`${round}/${lane}`))
            yield* Effect.flatMap(queueOf(begun, round), (lanes) => Queue.offer(lanes, lane))
          yield* Effect.flatMap(signals(round, lane), (queue) => Queue.offer(queue, signal))
        }),
      ),
      Effect.catchAll((e) => Deferred.fail(failed, e)),
      Effect.forkScoped,
    )
    return {
      port: (round) => portOf(round, 0),
      lanes: (round) => ({
        port: (lane) => portOf(round, lane),
        begun: Stream.unwrap(Effect.map(queueOf(begun, round), Stream.fromQueue)).pipe(
          Stream.interruptWhenDeferred(failed),
        ),
      }),
      after: (round) =>
        latest.changes.pipe(
          Stream.filter((seen) => seen > round),
          Stream.runHead,
          Effect.map((seen) => (seen._tag === "Some" ? seen.value : round)),
          Effect.raceFirst(Deferred.await(failed)),
        ),
      ended: Effect.flatMap(
        Deferred.poll(failed),
        Option.getOrElse(() => Effect.void),
      ),
      whenEnded: Deferred.await(failed),
      tellVerified: sealed.send({ round: 0, signal: { _tag: "verified" } }),
      verified: Deferred.await(verified),
    }
  })
