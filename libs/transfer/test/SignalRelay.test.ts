import { describe, expect, it } from "@effect/vitest"
import { SignalApi } from "@p2pal/domain"
import { CodeMismatch, CodeRejected, PeerFailed, ServerFailed } from "@p2pal/domain/Errors"
import type { Session } from "@p2pal/infra/SignalClient"
import * as SignalRelay from "@p2pal/transfer/SignalRelay"
import { Duration, Effect, Fiber, Option, Queue, Ref, TestClock } from "effect"

/** A signal socket played by the test: what the server "sends" is offered to `from`; None is a close. */
const socket = Effect.gen(function* () {
  const from = yield* Queue.unbounded<Option.Option<SignalApi.ServerMessage>>()
  const sent: Array<SignalApi.ClientMessage> = []
  const session: Session = {
    send: (message) => Effect.sync(() => void sent.push(message)),
    next: Queue.take(from),
    refresh: Effect.void,
  }
  return { from, sent, session }
})

const relayOf = (met: boolean) =>
  Effect.gen(function* () {
    const s = yield* socket
    const port = SignalRelay.relay("http://signal.test", s.session, "receiver", yield* Ref.make(met))
    return { ...s, port }
  })

describe("SignalRelay (the signal socket as a relay of opaque strings)", () => {
  it.effect("passes the peer's signals on and skips the server's other news", () =>
    Effect.gen(function* () {
      const { from, sent, port } = yield* relayOf(false)
      yield* Queue.offerAll(from, [
        Option.some({ _tag: "peer-joined" }),
        Option.some({ _tag: "signal", data: "sealed" }),
      ])
      expect(yield* port.next).toBe("sealed")
      yield* port.send("ours")
      expect(sent).toEqual([{ _tag: "signal", data: "ours" }])
    }),
  )

  it.effect("a peer that tells of a code mismatch ends it as one", () =>
    Effect.gen(function* () {
      const { from, port } = yield* relayOf(false)
      yield* Queue.offer(from, Option.some({ _tag: "peer-left", reason: "tampered" }))
      expect(yield* Effect.flip(port.next)).toEqual(new CodeMismatch({ side: "receiver", cause: "tampered" }))
    }),
  )

  it.effect("once the peers met, a peer whose socket dropped is waited for; one that stopped is lost", () =>
    Effect.gen(function* () {
      const { from, port } = yield* relayOf(true)
      yield* Queue.offerAll(from, [
        Option.some({ _tag: "peer-left", reason: "disconnected" }),
        Option.some({ _tag: "signal", data: "back" }),
        Option.some({ _tag: "peer-left", reason: "stopped" }),
      ])
      expect(yield* port.next).toBe("back")
      expect(yield* Effect.flip(port.next)).toEqual(
        new PeerFailed({ message: "the peer left (the other side stopped the transfer)", lost: true }),
      )
    }),
  )

  it.effect(
    "before the peers met, a peer that left is not a lost connection; a closed socket is the server gone",
    () =>
      Effect.gen(function* () {
        const { from, port } = yield* relayOf(false)
        yield* Queue.offer(from, Option.some({ _tag: "peer-left", reason: "disconnected" }))
        const left = yield* Effect.flip(port.next)
        expect(left).toBeInstanceOf(PeerFailed)
        expect(left.message).toBe("the peer left (peer disconnected)")
        expect((left as PeerFailed).lost).toBeUndefined()
        yield* Queue.offer(from, Option.none())
        expect(yield* Effect.flip(port.next)).toEqual(
          new ServerFailed({ server: "http://signal.test", detail: "it closed the connection" }),
        )
      }),
  )

  it.effect(
    "tells the other side why this one stops: a mismatch, a failure after meeting, never a drop",
    () =>
      Effect.sync(() => {
        const mismatch = new CodeMismatch({ side: "sender", cause: "wrong-code" })
        expect(SignalRelay.farewell(mismatch, false)).toBe("wrong-code")
        expect(SignalRelay.farewell(new PeerFailed({ message: "disk" }), true)).toBe("failed")
        expect(SignalRelay.farewell(new PeerFailed({ message: "disk" }), false)).toBeUndefined()
        expect(SignalRelay.farewell(new PeerFailed({ message: "gone", lost: true }), true)).toBeUndefined()
      }),
  )
})

describe("SignalRelay.awaitPeer (the sender waiting for its receiver)", () => {
  it.effect("a claim whose socket does not follow within ClaimTimeout is an abandoned claim", () =>
    Effect.gen(function* () {
      const { from, session } = yield* socket
      yield* Queue.offer(from, Option.some({ _tag: "peer-claimed" }))
      const waiting = yield* Effect.fork(
        SignalRelay.awaitPeer("http://signal.test", session, Duration.minutes(5)),
      )
      yield* TestClock.adjust(Duration.subtract(SignalRelay.ClaimTimeout, Duration.millis(1)))
      expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
      yield* TestClock.adjust(Duration.millis(1))
      const failure = yield* Effect.flip(Fiber.join(waiting))
      expect(failure).toBeInstanceOf(SignalRelay.ClaimAbandoned)
      expect((failure as SignalRelay.ClaimAbandoned).why).toBe(
        "no receiver connected within 10s of claiming it",
      )
    }),
  )

  it.effect("a claim whose socket connects is the receiver; a code nobody claims expires with its TTL", () =>
    Effect.gen(function* () {
      const { from, session } = yield* socket
      yield* Queue.offerAll(from, [
        Option.some({ _tag: "peer-claimed" }),
        Option.some({ _tag: "peer-joined" }),
      ])
      yield* SignalRelay.awaitPeer("http://signal.test", session, Duration.minutes(5))
      const waiting = yield* Effect.fork(
        SignalRelay.awaitPeer("http://signal.test", session, Duration.minutes(5)),
      )
      yield* TestClock.adjust(Duration.minutes(5))
      expect(yield* Effect.flip(Fiber.join(waiting))).toEqual(new CodeRejected({ reason: "expired" }))
    }),
  )
})
