import { CodeRejected, type ConnectError, PeerFailed, ServerFailed } from "@p2pal/domain/Errors"
import type { Channel, ConnectedPath } from "@p2pal/infra/PeerLink"
import { Chunk, Data, Duration, Effect, ExecutionStrategy, Exit, Random, Ref, Schedule, Scope } from "effect"
import type { Rounds } from "./Rounds.js"

/** How long the two peers may take to open a DataChannel once both are on the signal app. */
export const OpenTimeout = Duration.seconds(30)
/** One reconnect attempt: these peers have reached each other before, so a path that works opens fast. */
export const AttemptTimeout = Duration.seconds(15)

/** The receiver's connection attempt or transfer was overtaken by the sender's next round. */
export class Overtaken extends Data.TaggedError("Overtaken")<{ readonly round: number }> {}

/** How far the jitter moves a delay either way (Effect's default), named so the patience can use its top. */
const Jitter = { min: 0.8, max: 1.2 }

/**
 * The wait before each attempt after a drop: `backoff`, doubled each time, jittered, for `maxRetries`
 * attempts. Its output is the number of the attempt about to begin.
 */
export const policy = (maxRetries: number, backoff: Duration.DurationInput) =>
  Schedule.exponential(backoff).pipe(
    Schedule.jitteredWith(Jitter),
    Schedule.intersect(Schedule.recurs(maxRetries)),
    Schedule.map(([, before]) => before + 1),
  )

/**
 * How long the receiver waits for the sender's next round: no wait of a sender on `policy` is longer
 * than all its delays at the jitter's maximum together, plus the attempt before them.
 */
export const patience = (maxRetries: number, backoff: Duration.DurationInput) =>
  Schedule.run(
    Schedule.delays(policy(maxRetries, backoff)),
    0,
    Array.from({ length: maxRetries + 1 }, () => undefined),
  ).pipe(Effect.map(Chunk.reduce(AttemptTimeout, Duration.sum)), Effect.withRandom(Random.fixed([1])))

/** What a failure means for the peers' connection. */
export type Verdict<E> =
  /** The receiver: the sender opened a newer round; follow it at once. */
  | { readonly _tag: "Overtaken"; readonly round: number }
  /** The peers had met and the path went away: reconnect. */
  | { readonly _tag: "Lost"; readonly loss: PeerFailed }
  /** The peers had met, but the signal app no longer relays this transfer: nobody to reconnect with. */
  | { readonly _tag: "Unrelayed"; readonly error: ServerFailed | CodeRejected }
  /** Before the peers met, or the transfer itself failed (the peer refused, tampering, a disk): stop. */
  | { readonly _tag: "Final"; readonly error: E }

export const classify = <E>(error: E | Overtaken, met: boolean): Verdict<E> => {
  if (error instanceof Overtaken) return { _tag: "Overtaken", round: error.round }
  if (met && (error instanceof ServerFailed || error instanceof CodeRejected))
    return { _tag: "Unrelayed", error }
  if (met && error instanceof PeerFailed && error.lost === true) return { _tag: "Lost", loss: error }
  return { _tag: "Final", error }
}

/** Nobody to reconnect with: the peer stopped, or the signal app no longer relays this transfer. */
const unrelayed = (ended: ConnectError, loss: PeerFailed | undefined) =>
  ended instanceof PeerFailed || ended._tag === "CodeMismatch"
    ? ended
    : new PeerFailed({
        message: `${loss?.message ?? "the connection to the peer was lost"}; cannot reconnect: the signal app no longer relays this transfer`,
        lost: true,
      })

const gaveUp = (loss: PeerFailed, maxRetries: number) =>
  new PeerFailed({
    message: `${loss.message}; ${
      maxRetries === 0
        ? "not reconnecting (--max-retries 0)"
        : `gave up after ${maxRetries} ${maxRetries === 1 ? "attempt" : "attempts"} to reconnect`
    }`,
    lost: true,
  })

export interface Context {
  /** A connection after a drop: the peers carry on the transfer they began. */
  readonly resumed: boolean
  /**
   * The receiver's part of the transfer that gives way when the sender opens a newer round (it saw the
   * drop first); not what follows it (hanging up after Done).
   */
  readonly following: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y | Overtaken, Z>
}

export interface Plan<A, E, R> {
  /** The receiver follows the sender's rounds; the sender opens one per attempt. */
  readonly follower: boolean
  /** `--max-retries`: attempts per drop. */
  readonly maxRetries: number
  /**
   * `--retry-backoff`: the sender's wait before its first attempt. The receiver keeps no pace of its own
   * (it follows the sender's rounds as they come) but waits for them as long as the sender's policy may.
   */
  readonly backoff: Duration.Duration
  readonly rounds: Pick<Rounds, "after" | "ended" | "whenEnded">
  /** Set once a connection has opened: from then on a drop is reconnected. */
  readonly met: Ref.Ref<boolean>
  /** Opens the connection of `round`. */
  readonly connect: (round: number) => Effect.Effect<Channel, ConnectError, Scope.Scope>
  /** Before each attempt: the signal socket may sit in TCP's backoff after the drop. */
  readonly refresh: Effect.Effect<void>
  readonly use: (channel: Channel, context: Context) => Effect.Effect<A, E | Overtaken, R>
  /** Attempt `attempt` of `of` begins; the last failure was `why`. */
  readonly onReconnecting: (attempt: number, of: number, why: string) => Effect.Effect<void>
  readonly onReconnected: (path: ConnectedPath | undefined) => Effect.Effect<void>
  /** This side stops reconnecting: tell the other. */
  readonly giveUp: Effect.Effect<void>
}

/** An open connection and the scope that closes it. */
interface Open {
  readonly channel: Channel
  readonly round: number
  readonly scope: Scope.CloseableScope
}

/**
 * Runs `use` over a connection, and when that connection is lost, over a new one, for as long as
 * reconnecting works: each drop is ridden out by a fresh `Effect.retry` of one connection attempt on
 * `policy`, cut short when the relay ends (the peer stopped, the signal app lost the transfer).
 */
export const run = <A, E, R>(plan: Plan<A, E, R>) =>
  Effect.gen(function* () {
    const { rounds } = plan
    const waitForSender = yield* patience(plan.maxRetries, plan.backoff)
    /** The round of the latest connection attempt. */
    const current = yield* Ref.make(0)
    /** Every connection's scope is one of these: none outlives the loop, whatever race it was part of. */
    const connections = yield* Scope.make()

    const following =
      (round: number) =>
      <X, Y, Z>(effect: Effect.Effect<X, Y, Z>): Effect.Effect<X, Y | Overtaken, Z> =>
        plan.follower
          ? Effect.raceFirst(
              effect,
              rounds.after(round).pipe(
                // Only a newer round ends this one: the relay failing does not touch a working connection.
                Effect.orElse(() => Effect.never),
                Effect.flatMap((newer) => new Overtaken({ round: newer })),
              ),
            )
          : effect

    /** Connects in `round`; a newer round of the sender's is followed at once, counting no attempt. */
    const open = (round: number): Effect.Effect<Open, ConnectError> =>
      Effect.gen(function* () {
        yield* Ref.set(current, round)
        const scope = yield* Scope.fork(connections, ExecutionStrategy.sequential)
        const channel = yield* following(round)(plan.connect(round)).pipe(
          Scope.extend(scope),
          Effect.onExit((exit) => (Exit.isFailure(exit) ? Scope.close(scope, exit) : Effect.void)),
        )
        yield* Ref.set(plan.met, true)
        return { channel, round, scope }
      }).pipe(Effect.catchTag("Overtaken", (overtaken) => open(overtaken.round)))

    const nextRound = (round: number) =>
      plan.follower
        ? rounds.after(round).pipe(
            Effect.timeoutFail({
              duration: waitForSender,
              onTimeout: () => new PeerFailed({ message: "the sender did not try to reconnect", lost: true }),
            }),
          )
        : Effect.succeed(round + 1)

    const attempt = plan.refresh.pipe(
      Effect.zipRight(Ref.get(current)),
      Effect.flatMap(nextRound),
      Effect.flatMap(open),
    )

    /** Another attempt only for a connection still lost, with the relay still there to signal through. */
    const stillLost = (error: ConnectError) =>
      Effect.zipRight(rounds.ended, Ref.get(plan.met)).pipe(
        Effect.map((met) => classify(error, met)._tag === "Lost"),
        Effect.orElseSucceed(() => false),
      )
    const attempts = Schedule.intersect(
      policy(plan.maxRetries, plan.follower ? Duration.zero : plan.backoff),
      Schedule.identity<ConnectError>(),
    ).pipe(
      Schedule.whileInputEffect(stillLost),
      Schedule.onDecision(([number, why], decision) =>
        decision._tag === "Continue"
          ? plan.onReconnecting(number, plan.maxRetries, why.message)
          : Effect.void,
      ),
    )

    /** Rides out the drop `loss` with a fresh run of the policy. */
    const reconnect = (loss: PeerFailed) =>
      Effect.gen(function* () {
        // `Effect.retry` waits only after a failure, and the first attempt waits like the others: the
        // drop is the first failure the policy sees.
        const dropped = yield* Ref.make(true)
        const tries = Effect.flatMap(Ref.getAndSet(dropped, false), (first) =>
          first ? Effect.fail(loss) : attempt,
        )
        const opened = yield* Effect.retry(tries, attempts).pipe(
          Effect.raceFirst(Effect.mapError(rounds.whenEnded, (ended) => unrelayed(ended, loss))),
          Effect.catchAll((error) =>
            Effect.flatMap(Ref.get(plan.met), (met) => afterAttempts(error, met, loss)),
          ),
        )
        yield* plan.onReconnected(opened.channel.path())
        return opened
      })

    const afterAttempts = (error: ConnectError, met: boolean, loss: PeerFailed) => {
      const verdict = classify(error, met)
      switch (verdict._tag) {
        case "Lost":
          return Effect.mapError(rounds.ended, (ended) => unrelayed(ended, loss)).pipe(
            Effect.zipRight(plan.giveUp),
            Effect.zipRight(Effect.fail(gaveUp(loss, plan.maxRetries))),
          )
        case "Unrelayed":
          return Effect.fail(unrelayed(verdict.error, loss))
        default:
          return Effect.fail(error)
      }
    }

    /** What follows a failure while no drop is being ridden out. */
    const settle = (error: E | ConnectError | Overtaken): Effect.Effect<Open, E | ConnectError> =>
      Effect.flatMap(Ref.get(plan.met), (met) => {
        const verdict = classify(error, met)
        switch (verdict._tag) {
          case "Overtaken":
            return Effect.catchAll(open(verdict.round), settle)
          case "Lost":
            return reconnect(verdict.loss)
          case "Unrelayed":
            return Effect.fail(unrelayed(verdict.error, undefined))
          case "Final":
            return Effect.fail(verdict.error)
        }
      })

    const serve = (opened: Open): Effect.Effect<A, E | ConnectError, R> =>
      plan.use(opened.channel, { resumed: opened.round > 0, following: following(opened.round) }).pipe(
        Effect.onExit((exit) => Scope.close(opened.scope, exit)),
        Effect.catchAll((error) => Effect.flatMap(settle(error), serve)),
      )

    return yield* Effect.catchAll(open(0), settle).pipe(
      Effect.flatMap(serve),
      Effect.ensuring(Scope.close(connections, Exit.void)),
    )
  })
