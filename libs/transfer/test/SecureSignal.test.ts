import { describe, expect, it } from "@effect/vitest"
import { PeerSignal } from "@p2pal/domain"
import * as CPace from "@p2pal/transfer/CPace"
import * as SecureSignal from "@p2pal/transfer/SecureSignal"
import { Chunk, Effect, Either, Fiber, Queue, Schema, Stream } from "effect"

const transferId = "t-0123456789abcdef"
const words = ["zebra", "luna"] as const
const offer: PeerSignal.RoundSignal = {
  round: 0,
  signal: { _tag: "description", type: "offer", sdp: "v=0\r\na=fingerprint:sha-256 AA:BB\r\n" },
}
const answered: PeerSignal.RoundSignal = { round: 0, signal: { _tag: "answered" } }

/**
 * Two in-memory relays, one per direction. `rewrite` plays a hostile server: it sees (and may change)
 * every string the sender sends before the receiver gets it.
 */
const pair = (rewrite: (data: string, index: number) => string | ReadonlyArray<string> = (d) => d) =>
  Effect.gen(function* () {
    const toReceiver = yield* Queue.unbounded<string>()
    const toSender = yield* Queue.unbounded<string>()
    let index = 0
    const sender: SecureSignal.RawPort = {
      send: (data) => Queue.offerAll(toReceiver, [rewrite(data, index++)].flat()),
      next: Queue.take(toSender),
    }
    const receiver: SecureSignal.RawPort = {
      send: (data) => Queue.offer(toSender, data),
      next: Queue.take(toReceiver),
    }
    return { sender, receiver }
  })

const handshake = (
  rewrite?: (data: string, index: number) => string,
  receiverWords: readonly [string, string] = words,
) =>
  Effect.gen(function* () {
    const { sender, receiver } = yield* pair(rewrite)
    return yield* Effect.all(
      [
        Effect.either(SecureSignal.secure(sender, { side: "sender", words, transferId })),
        Effect.either(SecureSignal.secure(receiver, { side: "receiver", words: receiverWords, transferId })),
      ],
      { concurrency: 2 },
    )
  })

const envelope = Schema.decodeSync(PeerSignal.EnvelopeFromJson)
const encode = Schema.encodeSync(PeerSignal.EnvelopeFromJson)

describe("SecureSignal (CPace over ristretto255, sealed signaling)", () => {
  it.effect("the same words give both sides the same verification string and a working sealed channel", () =>
    Effect.gen(function* () {
      const [sent, received] = yield* handshake()
      const sender = Either.getOrThrow(sent)
      const receiver = Either.getOrThrow(received)
      expect(sender.verification).toMatch(/^\d{3} \d{3}$/)
      expect(receiver.verification).toBe(sender.verification)
      yield* sender.port.send(offer)
      yield* sender.port.send(answered)
      const got = yield* Stream.runCollect(Stream.take(receiver.port.incoming, 2))
      expect(Chunk.toReadonlyArray(got)).toEqual([offer, answered])
    }),
  )

  it.effect("nothing on the wire contains the words or the SDP", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const [sent] = yield* handshake((data) => (seen.push(data), data))
      yield* Either.getOrThrow(sent).port.send(offer)
      const wire = seen.join("\n")
      expect(seen).toHaveLength(3)
      expect(wire).not.toMatch(/zebra|luna|fingerprint|AA:BB/)
    }),
  )

  it.effect("a wrong word fails both sides as a wrong code", () =>
    Effect.gen(function* () {
      const [sent, received] = yield* handshake(undefined, ["zebra", "apple"])
      expect(Either.flip(sent).pipe(Either.getOrThrow)).toMatchObject({ side: "sender", cause: "wrong-code" })
      expect(Either.flip(received).pipe(Either.getOrThrow)).toMatchObject({
        side: "receiver",
        cause: "wrong-code",
      })
    }),
  )

  it.effect("a server in the middle, running the PAKE with each side on a guessed code, fails both", () =>
    Effect.gen(function* () {
      const toSender = yield* pair()
      const toReceiver = yield* pair()
      const guess = ["guess", "work"] as const
      const [sent, received] = yield* Effect.all(
        [
          Effect.either(SecureSignal.secure(toSender.sender, { side: "sender", words, transferId })),
          Effect.either(SecureSignal.secure(toReceiver.receiver, { side: "receiver", words, transferId })),
          Effect.either(
            SecureSignal.secure(toSender.receiver, { side: "receiver", words: guess, transferId }),
          ),
          Effect.either(SecureSignal.secure(toReceiver.sender, { side: "sender", words: guess, transferId })),
        ],
        { concurrency: 4 },
      )
      expect(Either.flip(sent!).pipe(Either.getOrThrow)).toMatchObject({ cause: "wrong-code" })
      expect(Either.flip(received!).pipe(Either.getOrThrow)).toMatchObject({ cause: "wrong-code" })
    }),
  )

  const tamperedAt = (index: number, change: (e: PeerSignal.Envelope) => PeerSignal.Envelope) =>
    Effect.gen(function* () {
      const [sent, received] = yield* handshake((data, i) =>
        i === index ? encode(change(envelope(data))) : data,
      )
      if (Either.isLeft(received)) return received.left
      yield* Either.getOrThrow(sent).port.send(offer)
      return yield* Effect.flip(Stream.runHead(received.right.port.incoming))
    })

  const flipMiddle = (text: string) => {
    const at = Math.floor(text.length / 2)
    return `${text.slice(0, at)}${text[at] === "A" ? "B" : "A"}${text.slice(at + 1)}`
  }

  it.effect("a changed byte in a sealed message is caught as tampering", () =>
    Effect.gen(function* () {
      const error = yield* tamperedAt(2, (e) => (e._tag === "sealed" ? { ...e, box: flipMiddle(e.box) } : e))
      expect(error).toMatchObject({ side: "receiver", cause: "tampered" })
    }),
  )

  it.effect("a sealed message under another (later) sequence number is caught as tampering", () =>
    Effect.gen(function* () {
      const error = yield* tamperedAt(2, (e) => (e._tag === "sealed" ? { ...e, seq: e.seq + 1 } : e))
      expect(error).toMatchObject({ side: "receiver", cause: "tampered" })
    }),
  )

  /**
   * What the receiver opens of three sealed messages (rounds 0, 1, 2) when the relay does `relay` to the
   * i-th sealed one (returning what it passes on in its place).
   */
  const throughRelay = (relay: (data: string, sealed: number) => ReadonlyArray<string>) =>
    Effect.gen(function* () {
      // The first two messages are the PAKE's.
      const { sender, receiver } = yield* pair((data, index) => (index < 2 ? [data] : relay(data, index - 2)))
      const [sent, received] = yield* Effect.all(
        [
          SecureSignal.secure(sender, { side: "sender", words, transferId }),
          SecureSignal.secure(receiver, { side: "receiver", words, transferId }),
        ],
        { concurrency: 2 },
      )
      for (const round of [0, 1, 2]) yield* sent.port.send({ ...offer, round })
      return yield* received.port.incoming.pipe(
        Stream.map((m) => m.round),
        Stream.take(2),
        Stream.runCollect,
        Effect.map(Chunk.toReadonlyArray),
        Effect.either,
      )
    })

  it.effect("a sealed message lost with a dropped socket leaves a gap the next one steps over", () =>
    Effect.gen(function* () {
      const got = yield* throughRelay((data, sealed) => (sealed === 1 ? [] : [data]))
      expect(got).toEqual(Either.right([0, 2]))
    }),
  )

  it.effect(
    "a sealed message replayed, or delivered late after a later one, is dropped: nothing arrives twice",
    () =>
      Effect.gen(function* () {
        const replayed = yield* throughRelay((data, sealed) => (sealed === 0 ? [data, data] : [data]))
        expect(replayed).toEqual(Either.right([0, 1]))
        let held: string | undefined
        const late = yield* throughRelay((data, sealed) =>
          sealed === 0 ? ((held = data), []) : sealed === 1 ? [data, held!] : [data],
        )
        expect(late).toEqual(Either.right([1, 2]))
      }),
  )

  it.effect("the identity element, which would make the key independent of the code, is refused", () =>
    Effect.gen(function* () {
      const { sender, receiver } = yield* pair((data, i) =>
        i === 0 ? encode({ _tag: "pake", element: Buffer.alloc(32).toString("base64") }) : data,
      )
      const senderFiber = yield* Effect.fork(
        SecureSignal.secure(sender, { side: "sender", words, transferId }),
      )
      const error = yield* Effect.flip(SecureSignal.secure(receiver, { side: "receiver", words, transferId }))
      yield* Fiber.interrupt(senderFiber)
      expect(error).toMatchObject({ side: "receiver", cause: "tampered" })
    }),
  )

  it.effect(
    "the sender runs the draft's CPace with the documented inputs: a responder built from them agrees",
    () =>
      Effect.gen(function* () {
        const { sender, receiver } = yield* pair()
        const senderFiber = yield* Effect.fork(
          SecureSignal.secure(sender, { side: "sender", words, transferId }),
        )
        // The inputs as the README states them: PRS the two words joined by "-", CI the two role names
        // (initiator first), sid the transfer id, empty AD, initiator-responder transcript.
        const sid = Buffer.from(transferId)
        const ci = CPace.lvCat(Buffer.from("p2pal/2 sender"), Buffer.from("p2pal/2 receiver"))
        const none = new Uint8Array(0)
        const scalar = CPace.sampleScalar()
        const yb = CPace.scalarMult(scalar, CPace.calculateGenerator(Buffer.from("zebra-luna"), ci, sid))
        const first = envelope(yield* receiver.next)
        const ya = Buffer.from(first._tag === "pake" ? first.element : "", "base64")
        yield* receiver.send(encode({ _tag: "pake", element: Buffer.from(yb).toString("base64") }))
        const isk = CPace.isk(sid, CPace.scalarMultVfy(scalar, ya), CPace.transcriptIr(ya, none, yb, none))
        const confirm = envelope(yield* receiver.next)
        expect(confirm).toEqual({
          _tag: "confirm",
          mac: CPace.confirmationTag(sid, isk, ya, none).toString("base64"),
        })
        yield* receiver.send(
          encode({ _tag: "confirm", mac: CPace.confirmationTag(sid, isk, yb, none).toString("base64") }),
        )
        const secured = yield* Fiber.join(senderFiber)
        expect(secured.verification).toMatch(/^\d{3} \d{3}$/)
      }),
  )

  it.effect("the sender's own element sent back to it is refused", () =>
    Effect.gen(function* () {
      const { sender, receiver } = yield* pair()
      const senderFiber = yield* Effect.fork(
        Effect.flip(SecureSignal.secure(sender, { side: "sender", words, transferId })),
      )
      yield* receiver.send(yield* receiver.next)
      expect(yield* Fiber.join(senderFiber)).toMatchObject({ side: "sender", cause: "tampered" })
    }),
  )
})
