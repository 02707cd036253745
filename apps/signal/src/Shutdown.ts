import { Context, Deferred, Effect, Layer, Stream, SubscriptionRef } from "effect"

/**
 * Graceful shutdown: once it has begun, relays close their sockets with "going away" (clients reconnect
 * to another instance and resume) and /readyz says not ready, so a load balancer stops sending traffic.
 */
export class Shutdown extends Context.Tag("@p2pal/signal/Shutdown")<
  Shutdown,
  {
    /** Completes when shutdown begins. */
    readonly begun: Effect.Effect<void>
    readonly isBegun: Effect.Effect<boolean>
    /** Begins the shutdown, then waits for the held sockets to close, at most `within`. */
    readonly drain: (within: number) => Effect.Effect<void>
    /** Runs `effect` as one socket the drain waits for. */
    readonly hold: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  }
>() {
  static readonly layer = Layer.effect(
    Shutdown,
    Effect.gen(function* () {
      const begun = yield* Deferred.make<void>()
      const held = yield* SubscriptionRef.make(0)
      const change = (delta: number) => SubscriptionRef.update(held, (n) => n + delta)
      return {
        begun: Deferred.await(begun),
        isBegun: Deferred.isDone(begun),
        drain: (within) =>
          Deferred.succeed(begun, undefined).pipe(
            Effect.zipRight(
              held.changes.pipe(
                Stream.takeUntil((n) => n === 0),
                Stream.runDrain,
                Effect.timeout(within),
                Effect.ignore,
              ),
            ),
          ),
        hold: (effect) =>
          Effect.acquireUseRelease(
            change(1),
            () => effect,
            () => change(-1),
          ),
      }
    }),
  )

  /**
   * On exit: stops listening (so a client that reconnects lands on another instance, not this one
   * again), then drains. Built after the HTTP server layer, its finalizer runs first, while the server
   * still carries the sockets' close handshakes.
   */
  static readonly drainOnExit = (stopListening: Effect.Effect<void>, within: number) =>
    Layer.scopedDiscard(
      Effect.flatMap(Shutdown, (shutdown) =>
        Effect.addFinalizer(() => Effect.zipRight(stopListening, shutdown.drain(within))),
      ),
    )
}
