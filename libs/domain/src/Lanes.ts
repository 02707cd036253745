import { Schema } from "effect"

/**
 * One transfer runs over up to `MaxLanes` peer connections ("lanes"), each its own SCTP association
 * with its own congestion window: one loss-based flow gets little from a lossy or long path, several add
 * up. Every binary message carries a sequence number in front (`SeqBytes`, big-endian), so the receiving
 * side hands them on in the order they were sent whichever lane each took. Its top bit says the message
 * goes on in the next number: a long message crosses as several pieces (see infra's LaneFrames).
 */
export const MaxLanes = 32
export const SeqBytes = 6

/** A lane's number: 0 is the connection a transfer starts with. */
export const LaneIndex = Schema.Int.pipe(Schema.between(0, MaxLanes - 1))

/**
 * What the two ends of a set of lanes tell each other, as text messages on any open lane (binary
 * messages are the transfer's own): every message before `seq` was handed on, so the sender may forget
 * them. Lanes are set up through the signal app's sealed relay, like the first: their queues here can
 * hold seconds of data on a lossy path.
 */
export const LaneControl = Schema.TaggedStruct("got", { seq: Schema.NonNegativeInt })
export type LaneControl = typeof LaneControl.Type

export const LaneControlFromJson = Schema.parseJson(LaneControl)
