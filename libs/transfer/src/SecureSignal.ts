import { PeerSignal } from "@p2pal/domain"
import { CodeMismatch, type ConnectError, type PeerFailed } from "@p2pal/domain/Errors"
import { Effect, Either, Schema, Stream } from "effect"
import { createCipheriv, createDecipheriv, hkdfSync, timingSafeEqual } from "node:crypto"
import * as CPace from "./CPace.js"

/**
 * CPace (draft-irtf-cfrg-cpace, CPACE-RISTR255-SHA512, see CPace.ts) run through the signal app's relay
 * with the code's two secret words, the draft's key confirmation, then every PeerSignal sealed with keys
 * derived from the ISK. The DTLS fingerprints travel inside the SDP, so sealing binds the peer-to-peer
 * connection to the code: a server that swaps them, or plays each side against the other, fails key
 * confirmation or authentication.
 */

export type Side = "sender" | "receiver"

/** The relay as the handshake sees it: opaque strings, in order, each way. */
export interface RawPort {
  readonly send: (data: string) => Effect.Effect<void, PeerFailed>
  readonly next: Effect.Effect<string, ConnectError>
}

/** The sealed relay: each attempt's PeerSignals, tagged with its round, each way. */
export interface SealedPort {
  readonly send: (message: PeerSignal.RoundSignal) => Effect.Effect<void, PeerFailed>
  readonly incoming: Stream.Stream<PeerSignal.RoundSignal, ConnectError>
}

export interface Secured {
  readonly port: SealedPort
  /** Short string both users can compare out of band (`--verify`): equal only if no one sat in between. */
  readonly verification: string
  /** Key for sealing chunk payloads (`--encrypt`); never used for anything else. */
  readonly payloadKey: Buffer
}

/**
 * The draft's inputs as p2pal fills them. The sender is the initiator A and the receiver the responder B
 * (fixed roles, so the initiator-responder transcript); both role names go into CI, initiator first, as
 * the draft's guidance on party identifiers asks. The transfer id is the session id. AD stays empty.
 */
const Protocol = "p2pal/2"
const ChannelId = CPace.lvCat(Buffer.from(`${Protocol} sender`), Buffer.from(`${Protocol} receiver`))
const NoAd = new Uint8Array(0)

interface Keys {
  readonly seal: Record<Side, Buffer>
  readonly verify: Buffer
  readonly payload: Buffer
}

/** The draft recommends a KDF over ISK before use: HKDF-SHA512, salted with the session id. */
const derive = (isk: Uint8Array, sid: Uint8Array): Keys => {
  const key = (label: string, length = 32) =>
    Buffer.from(hkdfSync("sha512", isk, sid, `${Protocol} ${label}`, length))
  return {
    seal: { sender: key("seal sender"), receiver: key("seal receiver") },
    verify: key("verify", 4),
    payload: key("payload"),
  }
}

const nonce = (seq: number) => {
  const bytes = Buffer.alloc(12)
  bytes.writeBigUInt64BE(BigInt(seq), 4)
  return bytes
}

/** AES-256-GCM; each direction has its own key and counts its own messages, so a nonce never repeats. */
const seal = (key: Buffer, seq: number, plaintext: string): string => {
  const cipher = createCipheriv("aes-256-gcm", key, nonce(seq))
  return Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]).toString(
    "base64",
  )
}

const open = (key: Buffer, seq: number, box: string): string | undefined => {
  const bytes = Buffer.from(box, "base64")
  if (bytes.length < 16) return undefined
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, nonce(seq))
    decipher.setAuthTag(bytes.subarray(bytes.length - 16))
    return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - 16)), decipher.final()]).toString(
      "utf8",
    )
  } catch {
    return undefined
  }
}

/** Six digits in two groups, easy to read aloud. */
const verificationOf = (bytes: Buffer) => {
  const digits = String(bytes.readUInt32BE() % 1_000_000).padStart(6, "0")
  return `${digits.slice(0, 3)} ${digits.slice(3)}`
}

const encodeEnvelope = Schema.encodeSync(PeerSignal.EnvelopeFromJson)
const decodeEnvelope = Schema.decodeEither(PeerSignal.EnvelopeFromJson)
const encodeSignal = Schema.encodeSync(PeerSignal.RoundSignalFromJson)
const decodeSignal = Schema.decodeEither(PeerSignal.RoundSignalFromJson)

/**
 * Runs the PAKE as `side` with the code's words and returns a signal port that seals what PeerLink
 * sends and opens what it receives. Fails with CodeMismatch on a wrong code or any tampering.
 */
export const secure = Effect.fn("SecureSignal.secure")(function* (
  raw: RawPort,
  options: { readonly side: Side; readonly words: readonly [string, string]; readonly transferId: string },
) {
  const { side } = options
  const peer: Side = side === "sender" ? "receiver" : "sender"
  const tampered = new CodeMismatch({ side, cause: "tampered" })
  const send = (envelope: PeerSignal.Envelope) => raw.send(encodeEnvelope(envelope))
  const receive = <Tag extends PeerSignal.Envelope["_tag"]>(tag: Tag) =>
    Effect.flatMap(raw.next, (data) => {
      const envelope = decodeEnvelope(data)
      return Either.isRight(envelope) && envelope.right._tag === tag
        ? Effect.succeed(envelope.right as Extract<PeerSignal.Envelope, { _tag: Tag }>)
        : Effect.fail(tampered)
    })

  const sid = Buffer.from(options.transferId)
  const scalar = CPace.sampleScalar()
  const mine = CPace.scalarMult(
    scalar,
    CPace.calculateGenerator(Buffer.from(options.words.join("-")), ChannelId, sid),
  )
  yield* send({ _tag: "pake", element: Buffer.from(mine).toString("base64") })
  const theirs = Buffer.from((yield* receive("pake")).element, "base64")
  const shared = CPace.scalarMultVfy(scalar, theirs)
  // The identity would make the key independent of the code, and our own element sent back would make
  // us agree with ourselves: only a forged message produces either.
  if (Buffer.from(shared).equals(CPace.Identity) || Buffer.from(mine).equals(theirs)) return yield* tampered
  const [ya, yb] = side === "sender" ? [mine, theirs] : [theirs, mine]
  const isk = CPace.isk(sid, shared, CPace.transcriptIr(ya, NoAd, yb, NoAd))
  const keys = derive(isk, sid)
  yield* send({
    _tag: "confirm",
    mac: CPace.confirmationTag(sid, isk, mine, NoAd).toString("base64"),
  })
  const confirmation = Buffer.from((yield* receive("confirm")).mac, "base64")
  const expected = CPace.confirmationTag(sid, isk, theirs, NoAd)
  if (confirmation.length !== expected.length || !timingSafeEqual(confirmation, expected))
    return yield* new CodeMismatch({ side, cause: "wrong-code" })

  let sent = 0
  /** The next sequence number that may arrive: lower ones were seen (or skipped) already. */
  let nextSeq = 0
  const port: SealedPort = {
    send: (message) =>
      send({ _tag: "sealed", seq: sent, box: seal(keys.seal[side], sent++, encodeSignal(message)) }),
    incoming: Stream.repeatEffect(
      Effect.flatMap(receive("sealed"), (envelope) => {
        // A number seen (or stepped over) already is a replay, or a message that a dropped socket delivered
        // late: it is authenticated, so it is only dropped. A gap is a message lost with a dropped socket;
        // the round it belonged to is retried anyway.
        if (envelope.seq < nextSeq) return Effect.succeedNone
        const plaintext = open(keys.seal[peer], envelope.seq, envelope.box)
        const signal = plaintext === undefined ? undefined : decodeSignal(plaintext)
        if (signal === undefined || Either.isLeft(signal)) return Effect.fail(tampered)
        nextSeq = envelope.seq + 1
        return Effect.succeedSome(signal.right)
      }),
    ).pipe(Stream.filterMap((signal) => signal)),
  }
  return { port, verification: verificationOf(keys.verify), payloadKey: keys.payload } satisfies Secured
})
