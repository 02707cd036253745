import type { PeerSignal } from "@p2pal/domain"
import type { ConnectError } from "@p2pal/domain/Errors"
import type { SignalPort } from "@p2pal/infra/PeerLink"
import { Deferred, Effect, Option, Queue, type Scope, Stream, SubscriptionRef } from "effect"
import type { SealedPort } from "./SecureSignal.js"

/**
 * The sealed relay split by round: every attempt at a peer connection (the first, then one per
 * reconnect attempt) signals in its own round, so a late candidate or answer of an abandoned attempt
 * never reaches the next one.
 */
export interface Rounds {
  /** What PeerLink.connect uses for the attempt of `round`. */
  readonly port: (round: number) => SignalPort<ConnectError>
  /** Waits until the peer has signaled in a round after `round`; returns the latest round heard of. */
  readonly after: (round: number) => Effect.Effect<number, ConnectError>
  /** Fails if the relay has ended (the peer left, the signal app lost the transfer): no round can work. */
  readonly ended: Effect.Effect<void, ConnectError>
  /** Fails once the relay ends. */
  readonly whenEnded: Effect.Effect<never, ConnectError>
}

export const make = (sealed: SealedPort): Effect.Effect<Rounds, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queues = new Map<number, Queue.Queue<PeerSignal.PeerSignal>>()
    const queueOf = (round: number) =>
      Effect.suspend(() => {
        const known = queues.get(round)
        if (known !== undefined) return Effect.succeed(known)
        return Effect.tap(Queue.unbounded<PeerSignal.PeerSignal>(), (queue) => queues.set(round, queue))
      })
    const latest = yield* SubscriptionRef.make(-1)
    /** The relay failed (the peer left, the server lost the transfer, tampering): every round fails. */
    const failed = yield* Deferred.make<never, ConnectError>()
    yield* sealed.incoming.pipe(
      Stream.runForEach(({ round, signal }) =>
        // Heard of before it can be taken: whoever took it can count on `after` knowing the round.
        Effect.zipRight(
          SubscriptionRef.update(latest, (seen) => Math.max(seen, round)),
          Effect.flatMap(queueOf(round), (queue) => Queue.offer(queue, signal)),
        ),
      ),
      Effect.catchAll((e) => Deferred.fail(failed, e)),
      Effect.forkScoped,
    )
    return {
      port: (round) => ({
        send: (signal) => sealed.send({ round, signal }),
        incoming: Stream.unwrap(Effect.map(queueOf(round), Stream.fromQueue)).pipe(
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
    }
  })
