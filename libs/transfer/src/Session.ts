import { type Ids, JoinCode, Manifest, SignalApi } from "@p2pal/domain"
import {
  CodeMismatch,
  CodeRejected,
  type ConnectError,
  PeerFailed,
  ServerFailed,
  UsageError,
} from "@p2pal/domain/Errors"
import * as IceServers from "@p2pal/domain/IceServers"
import { type Channel, type ConnectedPath, PeerLink } from "@p2pal/infra/PeerLink"
import { SignalClient, type Session as SignalSession } from "@p2pal/infra/SignalClient"
import { Clock, Data, Duration, Effect, Either, Exit, Option, Schedule, Scope } from "effect"
import { randomInt } from "node:crypto"
import { Checkpoints } from "./Checkpoints.js"
import { Progress } from "./Progress.js"
import * as Receiver from "./Receiver.js"
import * as Rounds from "./Rounds.js"
import * as SecureSignal from "./SecureSignal.js"
import * as SendCheckpoint from "./SendCheckpoint.js"
import * as Sender from "./Sender.js"
import type { Sources } from "./Sources.js"

export interface PeerOptions {
  readonly server: string
  /** The user's own ICE servers (--stun, --turn): used before the ones the signal app offers. */
  readonly iceServers: ReadonlyArray<IceServers.IceServer>
  readonly relayOnly: boolean
  /** An ICE server the signal app offered that cannot be used, and why. */
  readonly onIceIgnored: (reason: string) => Effect.Effect<void>
  /** `--max-retries`: attempts to reconnect after a drop before giving up (the checkpoint stays). */
  readonly maxRetries: number
  /** `--retry-backoff`: the sender's wait before its first attempt; it doubles, jittered, each time. */
  readonly retryBackoff: Duration.Duration
  /** The connection dropped (`why`), and reconnect attempt `attempt` of `of` begins. */
  readonly onReconnecting: (attempt: number, of: number, why: string) => Effect.Effect<void>
  /** A new connection is up after a drop. */
  readonly onReconnected: (path: ConnectedPath | undefined) => Effect.Effect<void>
}

/** How long the two peers may take to open a DataChannel once both are on the signal app. */
const OpenTimeout = Duration.seconds(30)
/** One reconnect attempt: these peers have reached each other before, so a path that works opens fast. */
const AttemptTimeout = Duration.seconds(15)
/** After Done, how long the receiver waits for the sender to hang up, so Done is not lost in a close. */
const HangUpGrace = Duration.seconds(5)

/** What a side tells the other through the signal app when it stops for good mid-transfer. */
const StoppedReason = "the other side stopped the transfer"
const GaveUpReason = "the other side gave up reconnecting"
/** Its own failure (a full disk, a bad hash) stays with the side that had it: the other one hears only this. */
const FailedReason = "the other side stopped on an error"

/** The receiver's connection attempt or transfer was overtaken by the sender's next round. */
class Overtaken extends Data.TaggedError("Overtaken")<{ readonly round: number }> {}

const serverGone = (server: string) => new ServerFailed({ server, detail: "it closed the connection" })

/**
 * The abort reasons a side gives the signal app when the PAKE or a sealed message fails; the server
 * passes them on to the other side as `peer-left`, which then stops with the same explanation.
 */
const MismatchReason: Record<CodeMismatch["cause"], string> = {
  "wrong-code": "the code did not match",
  tampered: "a connection message was tampered with",
}

/** Tells the other side, through the signal app, why this one stops; best effort, as it is on its way out. */
const leave = (session: SignalSession, reason: string) =>
  session.send({ _tag: "abort", reason }).pipe(Effect.timeout("1 second"), Effect.ignore)

/**
 * The signal app's socket as a relay of opaque strings; the peer leaving or the socket closing ends it.
 * Once the peers have met (`met`), a socket of theirs that closed is not a peer that left: it comes back.
 */
const relay = (
  server: string,
  session: SignalSession,
  side: SecureSignal.Side,
  met: () => boolean,
): SecureSignal.RawPort => ({
  send: (data) => session.send({ _tag: "signal", data }),
  next: session.next.pipe(
    Effect.flatMap(
      Option.match({
        onNone: () => Effect.fail<ConnectError>(serverGone(server)),
        onSome: (message) => {
          if (message._tag !== "peer-left" || (met() && message.reason === SignalApi.PeerDisconnected))
            return Effect.succeed(message)
          const cause = (Object.keys(MismatchReason) as Array<CodeMismatch["cause"]>).find(
            (c) => MismatchReason[c] === message.reason,
          )
          return Effect.fail<ConnectError>(
            cause === undefined
              ? new PeerFailed({ message: `the peer left (${message.reason})`, lost: met() || undefined })
              : new CodeMismatch({ side, cause }),
          )
        },
      }),
    ),
    Effect.repeat({ until: (message) => message._tag === "signal" }),
    Effect.map((message) => (message._tag === "signal" ? message.data : "")),
  ),
})

interface LinkOptions extends PeerOptions {
  readonly side: SecureSignal.Side
  readonly words: readonly [string, string]
  readonly transferId: string
  /** The ICE servers the signal app offered with the token. */
  readonly offered: ReadonlyArray<SignalApi.IceServer>
  readonly onVerified: (verification: string) => Effect.Effect<void>
}

/**
 * Runs `use` over a peer connection, and when that connection is lost, over a new one, for as long as
 * reconnecting works. The PAKE over the relay comes first (a wrong code or tampering burns the code on
 * the way out, and a stop tells the other side); every connection then signals over the sealed relay
 * in its own round. node-datachannel has no ICE restart, so a new connection is a new PeerConnection.
 * The sender opens a round per attempt, waiting `--retry-backoff`, doubled each time, before each; the
 * receiver follows the sender's rounds. Both give up after `--max-retries` attempts per drop.
 */
const overConnections = <A, E, R>(
  session: SignalSession,
  options: LinkOptions,
  use: (
    channel: Channel,
    context: {
      /** A connection after a drop: the peers carry on the transfer they began. */
      readonly resumed: boolean
      readonly payloadKey: Buffer
      /**
       * The receiver's part of the transfer that gives way when the sender opens a newer round (it saw
       * the drop first); not what follows it (hanging up after Done).
       */
      readonly following: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y | Overtaken, Z>
    },
  ) => Effect.Effect<A, E | Overtaken, R>,
) => {
  /** The peers have had a connection: from here on a drop is reconnected, and a stop is told to the other. */
  let met = false
  return Effect.gen(function* () {
    const { side, maxRetries } = options
    const ice = IceServers.plan([
      ...options.iceServers.map(Either.right),
      ...options.offered.map(IceServers.parseIssued),
    ])
    yield* Effect.forEach(ice.ignored, options.onIceIgnored, { discard: true })
    if (options.relayOnly && !ice.servers.some((s) => s.kind === "turn"))
      return yield* new UsageError({
        message: "--relay-only needs a TURN server: --turn, or a signal app run with --turn-url",
      })
    const secured = yield* SecureSignal.secure(
      relay(options.server, session, side, () => met),
      options,
    ).pipe(
      // A signal app that dies between the two sides' PAKE messages must not leave them waiting for good.
      Effect.timeoutFail({
        duration: OpenTimeout,
        onTimeout: () => new PeerFailed({ message: "the other side did not finish the code exchange" }),
      }),
    )
    yield* options.onVerified(secured.verification)
    const rounds = yield* Rounds.make(secured.port)
    const link = yield* PeerLink
    const connect = (round: number) =>
      link
        .connect({
          role: side === "sender" ? "offerer" : "answerer",
          iceServers: ice.servers,
          relayOnly: options.relayOnly,
          signal: rounds.port(round),
          openTimeout: round === 0 ? OpenTimeout : AttemptTimeout,
        })
        .pipe(
          // A reconnect attempt that fails is the drop lasting longer: the next attempt may work.
          Effect.mapError((e) =>
            round > 0 && e._tag === "PeerFailed" ? new PeerFailed({ message: e.message, lost: true }) : e,
          ),
        )
    const driver = yield* Schedule.driver<unknown, unknown, never>(
      side === "sender"
        ? Schedule.exponential(options.retryBackoff).pipe(
            Schedule.jittered,
            Schedule.intersect(Schedule.recurs(maxRetries)),
          )
        : Schedule.recurs(maxRetries),
    )
    /** How long the receiver waits for the sender's next round: its attempt and its longest backoff. */
    const senderSilence = Duration.sum(
      AttemptTimeout,
      Duration.times(options.retryBackoff, 2 ** (maxRetries + 1)),
    )
    const nextRound = (round: number) =>
      side === "sender"
        ? Effect.succeed(round + 1)
        : rounds.after(round).pipe(
            Effect.timeoutFail({
              duration: senderSilence,
              onTimeout: () => new PeerFailed({ message: "the sender did not try to reconnect", lost: true }),
            }),
          )
    const followSender =
      (round: number) =>
      <X, Y, Z>(effect: Effect.Effect<X, Y, Z>): Effect.Effect<X, Y | Overtaken, Z> =>
        side === "sender"
          ? effect
          : Effect.raceFirst(
              effect,
              rounds.after(round).pipe(
                // Only a newer round ends this one: the relay failing does not touch a working connection.
                Effect.orElse(() => Effect.never),
                Effect.flatMap((newer) => new Overtaken({ round: newer })),
              ),
            )

    let round = 0
    let attempt = 0
    /** The drop being ridden out, while reconnecting. */
    let loss: PeerFailed | undefined
    /** Nobody to reconnect with: the peer stopped, or the signal app no longer relays this transfer. */
    const unrelayed = (ended: ConnectError) =>
      ended instanceof PeerFailed || ended instanceof CodeMismatch
        ? ended
        : new PeerFailed({
            message: `${loss?.message ?? "the connection to the peer was lost"}; cannot reconnect: the signal app no longer relays this transfer`,
            lost: true,
          })
    while (true) {
      const current = round
      const following = followSender(current)
      const outcome = yield* Effect.either(
        Effect.scoped(
          Effect.gen(function* () {
            const channel = yield* following(connect(current))
            met = true
            if (attempt > 0) {
              attempt = 0
              loss = undefined
              yield* driver.reset
              yield* options.onReconnected(channel.path())
            }
            return yield* use(channel, { resumed: current > 0, payloadKey: secured.payloadKey, following })
          }),
        ),
      )
      if (Either.isRight(outcome)) return outcome.right
      let error: E | ConnectError | Overtaken = outcome.left
      while (true) {
        if (error instanceof Overtaken) {
          round = error.round
          break
        }
        if (met && (error instanceof ServerFailed || error instanceof CodeRejected))
          return yield* unrelayed(error)
        if (!(met && error instanceof PeerFailed && error.lost === true)) return yield* Effect.fail(error)
        loss ??= error
        yield* Effect.mapError(rounds.ended, unrelayed)
        if (attempt >= maxRetries) {
          yield* leave(session, GaveUpReason)
          return yield* new PeerFailed({
            message: `${loss.message}; ${
              maxRetries === 0
                ? "not reconnecting (--max-retries 0)"
                : `gave up after ${maxRetries} ${maxRetries === 1 ? "attempt" : "attempts"} to reconnect`
            }`,
            lost: true,
          })
        }
        attempt++
        yield* options.onReconnecting(attempt, maxRetries, error.message)
        // The backoff, cut short if the peer stops meanwhile.
        yield* Effect.raceFirst(
          Effect.ignore(driver.next(error)),
          Effect.mapError(rounds.whenEnded, unrelayed),
        )
        yield* session.refresh
        const next: Either.Either<number, PeerFailed | ConnectError> = yield* Effect.either(nextRound(round))
        if (Either.isRight(next)) {
          round = next.right
          break
        }
        error = next.left
      }
    }
  }).pipe(
    Effect.tapError((e) =>
      e instanceof CodeMismatch
        ? leave(session, MismatchReason[e.cause])
        : met && !(e instanceof PeerFailed && e.lost === true)
          ? leave(session, FailedReason)
          : Effect.void,
    ),
    Effect.onInterrupt(() => leave(session, StoppedReason)),
  )
}

export interface SendSession extends PeerOptions {
  readonly ttl: Duration.Duration
  readonly chunkSize: number
  /** Seal chunk payloads with a key from the PAKE, on top of DTLS. */
  readonly encrypt: boolean
  readonly sources: Sources
  /** `--skip-errors`: see Sender.SendOptions. */
  readonly skipUnreadable?: Sender.SendOptions["skipUnreadable"]
  /** How long the checkpoint stays resumable after its last save. */
  readonly checkpointTtl: Duration.Duration
  /** `send --resume`: the transfer the checkpoint belongs to and when it began; `sources` come from it. */
  readonly resume?: { readonly transferId: Ids.TransferId; readonly createdAt: number } | undefined
  /** The checkpoint is saved under this id, the one `send --resume` takes. */
  readonly onCheckpoint: (transferId: Ids.TransferId) => Effect.Effect<void>
  /** The code is ready: show it to the user. */
  readonly onCode: (code: string) => Effect.Effect<void>
  /** The PAKE succeeded: the string both sides can compare (`--verify`). */
  readonly onVerified: (verification: string) => Effect.Effect<void>
  readonly onConnected: (progress: Progress) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * Offers the sources under a new code and sends them, keeping the sender's checkpoint under the
 * transfer's id (the first session's, for `send --resume`) until the receiver has verified every file.
 */
export const send = Effect.fn("Session.send")(function* (options: SendSession) {
  const client = yield* SignalClient
  const created = yield* client.create(options.server, {
    ttlSeconds: Duration.toSeconds(options.ttl),
  })
  // A resumed transfer keeps its first id: both sides' checkpoints are keyed by it.
  const transferId = options.resume?.transferId ?? created.transferId
  const checkpoint = yield* SendCheckpoint.make(
    yield* Checkpoints,
    transferId,
    options.sources,
    options.checkpointTtl,
    options.resume?.createdAt ?? (yield* Clock.currentTimeMillis),
  )
  // Saved before anyone joins, so that from here on even a crash leaves something to resume.
  yield* checkpoint.save
  yield* options.onCheckpoint(transferId)
  const path = yield* sendSession(options, created, transferId, checkpoint.acked).pipe(
    // Whatever stopped it, the latest acknowledgements are worth keeping.
    Effect.onExit((exit) => (Exit.isFailure(exit) ? Effect.ignore(checkpoint.save) : Effect.void)),
  )
  yield* checkpoint.remove
  return path
})

/** One session: the code, the PAKE, the peer connection, and the files, offered under `transferId`. */
const sendSession = (
  options: SendSession,
  created: SignalApi.CreateTransferResponse,
  transferId: Ids.TransferId,
  acked: Sender.AckedFiles,
) =>
  Effect.gen(function* () {
    const client = yield* SignalClient
    const words = JoinCode.pickWords((bound) => randomInt(bound))
    yield* options.onCode(JoinCode.format({ words, nameplate: created.nameplate }))
    const session = yield* client.open(options.server, created.token)

    yield* session.next.pipe(
      Effect.flatMap(
        Option.match({ onNone: () => Effect.fail(serverGone(options.server)), onSome: Effect.succeed }),
      ),
      Effect.repeat({ until: (message) => message._tag === "peer-joined" }),
      // The TTL we asked for, not the server's expiresAt: the two machines' clocks need not agree.
      Effect.timeoutFail({ duration: options.ttl, onTimeout: () => new CodeRejected({ reason: "expired" }) }),
    )
    const { sources } = options
    const progress = new Progress(Manifest.totalBytes(sources.manifest))
    // The progress display lasts as long as the session, not as one connection.
    const outer = yield* Effect.scope
    const path = yield* overConnections(
      session,
      { ...options, side: "sender", words, transferId: created.transferId, offered: created.iceServers },
      (channel, { resumed, payloadKey }) =>
        Effect.gen(function* () {
          if (!resumed) yield* options.onConnected(progress).pipe(Scope.extend(outer))
          yield* Sender.send(
            channel,
            { ...sources, manifest: { ...sources.manifest, transfer: transferId } },
            {
              chunkSize: options.chunkSize,
              progress,
              payloadKey: options.encrypt ? payloadKey : undefined,
              skipUnreadable: options.skipUnreadable,
              acked,
            },
          )
          return channel.path()
        }),
    )
    // Only bookkeeping for the signal app: the files are there whether or not it hears of it.
    yield* session.send({ _tag: "complete" }).pipe(Effect.timeout("2 seconds"), Effect.ignore)
    return path
  })

export interface ReceiveSession extends PeerOptions, Receiver.ReceiveOptions {
  readonly code: JoinCode.JoinCode
  readonly onVerified: (verification: string) => Effect.Effect<void>
}

export const receive = Effect.fn("Session.receive")(function* (options: ReceiveSession) {
  const client = yield* SignalClient
  const joined = yield* client.join(options.server, { nameplate: options.code.nameplate })
  const session = yield* client.open(options.server, joined.token)
  /** What the user accepted, and the counters on screen: a connection after a drop carries them on. */
  let accepted: { readonly manifest: Uint8Array; readonly progress: Progress } | undefined
  const outer = yield* Effect.scope
  return yield* overConnections(
    session,
    {
      ...options,
      side: "receiver",
      words: options.code.words,
      transferId: joined.transferId,
      offered: joined.iceServers,
    },
    (channel, { resumed, payloadKey, following }) =>
      Effect.gen(function* () {
        const before = resumed ? accepted : undefined
        // The sender may hang up the moment it has Done, taking the selected pair with it.
        const atStart = channel.path()
        yield* following(
          Receiver.receive(channel, {
            ...options,
            payloadKey,
            // After a drop the sender must offer what the user accepted, and nothing else.
            confirm: (manifest) =>
              before === undefined
                ? options.confirm(manifest)
                : Buffer.from(Manifest.encodeManifest(manifest)).equals(before.manifest)
                  ? Effect.succeed(true)
                  : new PeerFailed({ message: "the sender offered other files after reconnecting" }),
            progress: before?.progress,
            onStart: (progress, manifest) => {
              accepted = { manifest: Manifest.encodeManifest(manifest), progress }
              return before === undefined
                ? options.onStart(progress, manifest).pipe(Scope.extend(outer))
                : Effect.void
            },
          }),
        )
        // Read while the connection is up, if it still is: the sender hangs up next.
        const path = channel.path() ?? atStart
        yield* channel.closed.pipe(Effect.timeout(HangUpGrace), Effect.ignore)
        return path
      }),
  )
})
