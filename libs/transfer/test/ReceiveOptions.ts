import * as Receiver from "@p2pal/transfer/Receiver"
import { Effect } from "effect"

/** Receive options for these tests; the sender never skips a file unless a test says so. */
export const receiveOptions = (
  out: string,
  overrides: Partial<Receiver.ReceiveOptions> = {},
): Receiver.ReceiveOptions => ({
  out,
  overwrite: false,
  windowsNames: false,
  renameUnsafe: false,
  confirm: () => Effect.succeed(true),
  onStart: () => Effect.void,
  onSkipped: (skipped) => Effect.die(`unexpected skip of ${skipped.path}`),
  ...overrides,
})
