import { Schema } from "effect"
import { LaneIndex } from "./Lanes.js"

/**
 * What the peers tell each other through the signal app's relay to set up the WebRTC connection.
 * The signal app relays these as opaque strings and never parses them.
 */
export const PeerSignal = Schema.Union(
  Schema.TaggedStruct("description", { type: Schema.Literal("offer", "answer"), sdp: Schema.String }),
  Schema.TaggedStruct("candidate", { candidate: Schema.String, mid: Schema.String }),
  /**
   * The offerer has applied the answer. Until then the answerer holds back the offerer's candidates:
   * otherwise its DTLS handshake can reach the offerer before the answer's fingerprint does, and the
   * offerer rejects the certificate ("unknown CA") and the connection fails.
   */
  Schema.TaggedStruct("answered", {}),
)
export type PeerSignal = typeof PeerSignal.Type

/**
 * The receiver has verified every file: said through the relay too, not only as Done on the peer
 * connection, as a connection lost just after Done left would leave the sender reconnecting to no one.
 */
export const Verified = Schema.TaggedStruct("verified", {})

/**
 * A PeerSignal for one attempt at the peer connection. After a drop the sender opens round after round
 * until one connects; the round keeps a late message of an abandoned attempt out of the next. (Verified
 * belongs to no attempt; it goes with round 0.)
 */
export const RoundSignal = Schema.Struct({
  round: Schema.NonNegativeInt,
  /** Which of the round's peer connections (Lanes.ts); absent for the first. */
  lane: Schema.optional(LaneIndex),
  signal: Schema.Union(PeerSignal, Verified),
})
export type RoundSignal = typeof RoundSignal.Type

export const RoundSignalFromJson = Schema.parseJson(RoundSignal)

/** Base64 of at most `max` bytes. */
const Base64 = (max: number) =>
  Schema.String.pipe(Schema.maxLength(Math.ceil(max / 3) * 4), Schema.pattern(/^[A-Za-z0-9+/]*={0,2}$/))

/**
 * What actually crosses the signal app: the two PAKE messages in the clear (they reveal nothing about
 * the code), then every PeerSignal sealed with a key only the two code holders can derive.
 */
export const Envelope = Schema.Union(
  /** This side's CPace element (a ristretto255 point). */
  Schema.TaggedStruct("pake", { element: Base64(32) }),
  /** Explicit key confirmation (the draft's HMAC-SHA512 tag): only the holder of the same ISK can produce it. */
  Schema.TaggedStruct("confirm", { mac: Base64(64) }),
  /**
   * A RoundSignal as JSON, AES-256-GCM sealed; `seq` numbers this direction's sealed messages from 0 and
   * only ever grows (a message lost with a dropped socket leaves a gap; a replay or reorder is refused).
   */
  Schema.TaggedStruct("sealed", { seq: Schema.NonNegativeInt, box: Base64(32 * 1024) }),
)
export type Envelope = typeof Envelope.Type

export const EnvelopeFromJson = Schema.parseJson(Envelope)
