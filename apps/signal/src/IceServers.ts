import { createHmac } from "node:crypto"
import type { Ids, SignalApi } from "@p2pal/domain"
import { ActiveLeaseMs } from "@p2pal/infra/TransferStore"
import { Context, Effect, Layer, Redacted } from "effect"

/** The ICE servers the signal app hands each side of a transfer with its token. */
export class IceServers extends Context.Tag("@p2pal/signal/IceServers")<
  IceServers,
  {
    /** For the transfer `transferId` whose code expires at `expiresAt` (epoch ms). */
    readonly forTransfer: (
      transferId: Ids.TransferId,
      expiresAt: number,
    ) => Effect.Effect<ReadonlyArray<SignalApi.IceServer>>
  }
>() {
  /** Clients bring their own (`--stun`, `--turn`). */
  static readonly none = Layer.succeed(IceServers, { forTransfer: () => Effect.succeed([]) })

  /**
   * TURN credentials of the REST-API scheme coturn's `use-auth-secret` checks: the username is the
   * expiry (Unix seconds) and the transfer id, the password its HMAC-SHA1 under the shared secret. They
   * expire when the transfer can last no longer (its code's deadline plus the active lease), so a
   * relayed transfer is never cut off, and a leaked pair is no good after that.
   */
  static readonly turnRest = (urls: ReadonlyArray<string>, secret: Redacted.Redacted) =>
    Layer.succeed(IceServers, {
      forTransfer: (transferId, expiresAt) =>
        Effect.sync(() => {
          const username = `${Math.ceil((expiresAt + ActiveLeaseMs) / 1000)}:${transferId}`
          const credential = createHmac("sha1", Redacted.value(secret)).update(username).digest("base64")
          return urls.map((url) => ({ urls: url, username, credential }))
        }),
    })
}
