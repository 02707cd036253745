import type { TransferError } from "@p2pal/domain/Errors"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import * as Format from "./Format.js"
import * as Skipped from "./Skipped.js"

/** Stable exit codes: scripts tell a wrong code from a network problem from a disk problem. */
export const ExitCode = {
  ok: 0,
  internal: 1,
  usage: 2,
  codeRejected: 3,
  serverUnreachable: 4,
  peerFailed: 5,
  integrity: 6,
  localIo: 7,
  declined: 8,
  codeMismatch: 9,
  skipped: 10,
  interrupted: 130,
} as const

/** An https:// URL whose server answered in plain HTTP: OpenSSL's own text would say so in its jargon. */
const tlsMismatch = (error: { readonly server: string; readonly detail: string }) =>
  error.server.startsWith("https:") && /EPROTO|wrong version number|SSL routines/.test(error.detail)

/** The one place that turns a failure into what the user reads and the code the shell sees. */
export const describe = (error: TransferError): { readonly message: string; readonly exitCode: number } => {
  switch (error._tag) {
    case "UsageError":
      return { message: error.message, exitCode: ExitCode.usage }
    case "CodeRejected":
      return {
        message: {
          not_found: "no transfer has that code; check it for typos or ask the sender for a new one",
          expired: "the code has expired; ask the sender to start again (see --ttl)",
          already_claimed: "that code was already used by a receiver; ask the sender for a new one",
        }[error.reason],
        exitCode: ExitCode.codeRejected,
      }
    case "ServerUnreachable":
      return {
        message: tlsMismatch(error)
          ? `the signal server at ${escapeForDisplay(error.server)} does not speak TLS; if it serves plain HTTP, use --server ${escapeForDisplay(error.server.replace(/^https:/, "http:"))}`
          : `cannot reach the signal server at ${escapeForDisplay(error.server)} (${escapeForDisplay(error.detail)}); check --server and your network`,
        exitCode: ExitCode.serverUnreachable,
      }
    case "ServerFailed":
      return {
        message: `the signal server at ${escapeForDisplay(error.server)} failed: ${escapeForDisplay(error.detail)}`,
        exitCode: ExitCode.serverUnreachable,
      }
    case "PeerFailed":
      // Often quotes what the peer or the server said: escaped, so it cannot drive the terminal.
      return { message: escapeForDisplay(error.message), exitCode: ExitCode.peerFailed }
    case "IntegrityFailed":
      return {
        message: error.toStdout
          ? `${escapeForDisplay(error.path)} did not arrive intact (SHA-256 mismatch), but its bytes already went to stdout: discard what was written there — send it again`
          : `${escapeForDisplay(error.path)} did not arrive intact (SHA-256 mismatch); it was not saved — send it again`,
        exitCode: ExitCode.integrity,
      }
    case "LocalIoFailed":
      return {
        message: `${escapeForDisplay(error.path)}: ${escapeForDisplay(error.message)}`,
        exitCode: ExitCode.localIo,
      }
    case "CodeMismatch":
      return {
        message:
          error.cause === "tampered"
            ? "a connection message was tampered with on the way (by the signal server or the network); stopped before connecting — nothing was sent"
            : error.side === "receiver"
              ? "code did not match — ask the sender for a new code"
              : "the receiver's code did not match: someone tried a wrong code (or tampered with the exchange); the code is now burned (one guess per code) — run p2pal send again for a new one",
        exitCode: ExitCode.codeMismatch,
      }
    case "Declined":
      return { message: "transfer declined; nothing was written", exitCode: ExitCode.declined }
    case "FilesSkipped": {
      const count = Format.count(error.files.length, "file")
      return {
        message: [
          error.side === "sender"
            ? `completed, but ${count} could not be read and ${error.files.length === 1 ? "was" : "were"} skipped:`
            : `completed, but the sender skipped ${count}; ${error.files.length === 1 ? "it was" : "they were"} not saved:`,
          ...error.files.map((file) => `  ${Skipped.describe(file)}`),
        ].join("\n"),
        exitCode: ExitCode.skipped,
      }
    }
    case "CheckpointNotFound":
      // Naming a checkpoint that is not there is a wrong value on the command line.
      return {
        message: `no checkpoint for transfer ${escapeForDisplay(error.transferId)}; \`p2pal checkpoint list\` shows the ones there are`,
        exitCode: ExitCode.usage,
      }
    case "CheckpointCorrupt":
      return {
        message: `the checkpoint file ${escapeForDisplay(error.path)} is damaged (${escapeForDisplay(error.detail)}): delete it with \`p2pal checkpoint delete ${escapeForDisplay(error.transferId)}\``,
        exitCode: ExitCode.localIo,
      }
    case "CheckpointIo":
      return {
        message: `checkpoint file ${escapeForDisplay(error.path)}: ${escapeForDisplay(error.detail)}`,
        exitCode: ExitCode.localIo,
      }
  }
}
