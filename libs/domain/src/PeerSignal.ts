import { Schema } from "effect"

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

export const PeerSignalFromJson = Schema.parseJson(PeerSignal)
