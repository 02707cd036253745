import type { Ids, Manifest } from "@p2pal/domain"
import type { SkippedFile } from "@p2pal/domain/Errors"
import type { ConnectedPath } from "@p2pal/infra/PeerLink"
import { Data, type Deferred, type Duration, type Effect } from "effect"
import type { Progress } from "./Progress.js"

/** What happens during a transfer that the user may need to see while it runs, in the order it happens. */
export type TransferEvent = Data.TaggedEnum<{
  /** An ICE server the signal app offered cannot be used, and why. */
  IceIgnored: { readonly reason: string }
  /** The sender's checkpoint is saved under this id, the one `send --resume` takes. */
  CheckpointSaved: { readonly transferId: Ids.TransferId }
  /** Before the peers met, the signal app went away (`why`); it is tried again for `retryFor`. */
  SignalLost: { readonly why: string; readonly retryFor: Duration.Duration }
  /** The signal app is back after SignalLost. */
  SignalBack: {}
  /** The join code to show the user. */
  CodeReady: { readonly code: string }
  /** The code shown last was claimed by someone who went no further (`why`): it is void, a new one follows. */
  ClaimAbandoned: { readonly why: string }
  /** The PAKE succeeded: the string both sides can compare (`--verify`). */
  Verified: { readonly verification: string }
  /**
   * The receiver asks whether to accept `manifest`; the transfer waits for `reply` (false declines it).
   * A transfer that stops meanwhile interrupts `reply`, so whoever asks can stop asking.
   */
  Confirm: { readonly manifest: Manifest.Manifest; readonly reply: Deferred.Deferred<boolean> }
  /**
   * The transfer has begun (once, not again after a drop): the counters to render, and the bytes the
   * receiver already held from an interrupted session.
   */
  Started: { readonly progress: Progress; readonly manifest: Manifest.Manifest; readonly already: number }
  /** A file left out (`send --skip-errors`): the sender could not read it, and the receiver kept none of it. */
  Skipped: { readonly file: SkippedFile }
  /** The connection dropped (`why`), and reconnect attempt `attempt` of `of` begins. */
  Reconnecting: { readonly attempt: number; readonly of: number; readonly why: string }
  /** A new connection is up after a drop. */
  Reconnected: { readonly path: ConnectedPath | undefined }
}>

export const TransferEvent = Data.taggedEnum<TransferEvent>()

/** Where a transfer puts its events (a Queue or a Mailbox the caller reads in its own fiber). */
export interface Sink {
  readonly offer: (event: TransferEvent) => Effect.Effect<boolean>
}
