import { SignalApi } from "@p2pal/domain"
import { CodeMismatch, CodeRejected, type ConnectError, PeerFailed, ServerFailed } from "@p2pal/domain/Errors"
import type { Session } from "@p2pal/infra/SignalClient"
import { Data, Duration, Effect, Option, Ref } from "effect"
import type * as SecureSignal from "./SecureSignal.js"

/** The other side's reason for leaving, in the words this side prints (`the peer left (...)`). */
export const LeftText: Record<SignalApi.PeerLeftReason, string> = {
  stopped: "the other side stopped the transfer",
  "gave-up": "the other side gave up reconnecting",
  // Its own failure (a full disk, a bad hash) stays with the side that had it: the other one hears only this.
  failed: "the other side stopped on an error",
  "wrong-code": "the code did not match",
  tampered: "a connection message was tampered with",
  "code-voided": "the code was claimed without its words; the sender made a new code",
  disconnected: "peer disconnected",
}

export const serverGone = (server: string) => new ServerFailed({ server, detail: "it closed the connection" })

/** Tells the other side, through the signal app, why this one stops; best effort, as it is on its way out. */
export const leave = (session: Session, reason: SignalApi.AbortReason) =>
  session.send({ _tag: "abort", reason }).pipe(Effect.timeout("1 second"), Effect.ignore)

/**
 * What the other side hears when this one fails with `error`: a code mismatch burns the code, a failure
 * after the peers met stops the other side too; a lost connection says nothing (the other side saw it).
 */
export const farewell = (error: unknown, met: boolean): SignalApi.AbortReason | undefined =>
  error instanceof CodeMismatch
    ? error.cause
    : met && !(error instanceof PeerFailed && error.lost === true)
      ? "failed"
      : undefined

/**
 * The signal app's socket as a relay of opaque strings; the peer leaving or the socket closing ends it.
 * Once the peers have met (`met`), a socket of theirs that closed is not a peer that left: it comes back.
 */
export const relay = (
  server: string,
  session: Session,
  side: SecureSignal.Side,
  met: Ref.Ref<boolean>,
): SecureSignal.RawPort => ({
  send: (data) => session.send({ _tag: "signal", data }),
  next: Effect.flatMap(next(server, session), (message) =>
    Effect.flatMap(Ref.get(met), (hasMet) => {
      if (message._tag !== "peer-left" || (hasMet && message.reason === "disconnected"))
        return Effect.succeed(message)
      const { reason } = message
      return Effect.fail<ConnectError>(
        reason === "wrong-code" || reason === "tampered"
          ? new CodeMismatch({ side, cause: reason })
          : new PeerFailed({ message: `the peer left (${LeftText[reason]})`, lost: hasMet || undefined }),
      )
    }),
  ).pipe(
    Effect.repeat({ until: (message) => message._tag === "signal" }),
    Effect.map((message) => (message._tag === "signal" ? message.data : "")),
  ),
})

/** The next message of the session; the socket closing without a word is the server gone. */
const next = (server: string, session: Session) =>
  Effect.flatMap(
    session.next,
    Option.match({ onNone: () => Effect.fail(serverGone(server)), onSome: Effect.succeed }),
  )

/**
 * How long a claim of the code (POST /api/join) may take to become a receiver that connected, and then
 * how long its PAKE may take. An honest receiver does both at once; someone who knows only the nameplate
 * does neither.
 */
export const ClaimTimeout = Duration.seconds(10)

/**
 * Someone claimed the code but did not go on to prove they know its words: the sender voids the code
 * (abort "code-voided") and offers a new one rather than wait until its TTL for a receiver that can no
 * longer join.
 */
export class ClaimAbandoned extends Data.TaggedError("ClaimAbandoned")<{ readonly why: string }> {}

const until = (tags: ReadonlyArray<SignalApi.ServerMessage["_tag"]>) => (message: SignalApi.ServerMessage) =>
  tags.includes(message._tag)

/**
 * Waits for the receiver to claim the code, for as long as the code lives (`ttl`, the one the sender asked
 * for), then for ClaimTimeout for its socket to connect.
 */
export const awaitPeer = (server: string, session: Session, ttl: Duration.Duration) =>
  next(server, session).pipe(
    Effect.repeat({ until: until(["peer-claimed", "peer-joined"]) }),
    // The TTL we asked for, not the server's expiresAt: the two machines' clocks need not agree.
    Effect.timeoutFail({ duration: ttl, onTimeout: () => new CodeRejected({ reason: "expired" }) }),
    Effect.flatMap((message) =>
      message._tag === "peer-joined"
        ? Effect.void
        : next(server, session).pipe(
            Effect.repeat({ until: until(["peer-joined"]) }),
            Effect.timeoutFail({
              duration: ClaimTimeout,
              onTimeout: () =>
                new ClaimAbandoned({
                  why: `no receiver connected within ${Duration.format(ClaimTimeout)} of claiming it`,
                }),
            }),
          ),
    ),
  )
