import type { SignalApi } from "@p2pal/domain"
import type { CodeRejected, ServerFailed, ServerUnreachable } from "@p2pal/domain/Errors"
import { SignalClient } from "@p2pal/infra/SignalClient"
import { Duration, Effect, type Scope } from "effect"
import * as SignalRelay from "./SignalRelay.js"
import { type Sink, TransferEvent } from "./TransferEvent.js"

/**
 * Runs `session` under `created`'s code and, each time a claim of that code went no further than the
 * claim, under a new code with a TTL of its own: one request by someone who knows only the nameplate
 * must not end the transfer. The user is told, and the receiver asks for the new code.
 */
export const offering = <A, E, R>(
  options: { readonly server: string; readonly ttl: Duration.Duration },
  events: Sink,
  created: SignalApi.CreateTransferResponse,
  session: (
    created: SignalApi.CreateTransferResponse,
  ) => Effect.Effect<A, E | SignalRelay.ClaimAbandoned, R | Scope.Scope>,
) =>
  Effect.gen(function* () {
    const client = yield* SignalClient
    const attempt = (
      created: SignalApi.CreateTransferResponse,
    ): Effect.Effect<A, E | CodeRejected | ServerFailed | ServerUnreachable, R | SignalClient> =>
      session(created).pipe(
        Effect.scoped,
        Effect.catchIf(
          (e): e is SignalRelay.ClaimAbandoned => e instanceof SignalRelay.ClaimAbandoned,
          ({ why }) =>
            events
              .offer(TransferEvent.ClaimAbandoned({ why }))
              .pipe(
                Effect.zipRight(
                  client.create(options.server, { ttlSeconds: Duration.toSeconds(options.ttl) }),
                ),
                Effect.flatMap(attempt),
              ),
        ),
      )
    return yield* attempt(created)
  })
