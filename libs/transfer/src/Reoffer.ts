import { Manifest } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import { Effect } from "effect"

/**
 * Whether the sender's offer after a drop is what the user accepted: the same transfer and the same files
 * are taken without asking again; anything else is refused. The transfer's
 * id comes first: it names the checkpoint the bytes go on into, so another one would carry this
 * connection on into that transfer's files.
 */
export const sameOffer = (
  accepted: Manifest.Manifest,
  offered: Manifest.Manifest,
): Effect.Effect<void, PeerFailed> =>
  offered.transfer !== accepted.transfer
    ? new PeerFailed({
        message: `the sender named another transfer after reconnecting (${offered.transfer ?? "none"}, not ${accepted.transfer ?? "none"})`,
      })
    : Buffer.from(Manifest.encodeManifest(offered)).equals(Manifest.encodeManifest(accepted))
      ? Effect.void
      : new PeerFailed({ message: "the sender offered other files after reconnecting" })
