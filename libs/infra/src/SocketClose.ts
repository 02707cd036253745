import { SignalApi } from "@p2pal/domain"
import { CodeRejected, ServerFailed } from "@p2pal/domain/Errors"

/** What the close of a signaling socket means, and how to say it. */

/** Why the server ended a session before the peers found each other. */
export type SessionError = CodeRejected | ServerFailed

/** What a close code means for a session the server ended before the peers found each other. */
export const refusal = (server: string, code: number, reason: string, lastError: string): SessionError => {
  switch (code) {
    case SignalApi.CloseCode.expired:
      return new CodeRejected({ reason: "expired" })
    case SignalApi.CloseCode.notFound:
      return new CodeRejected({ reason: "not_found" })
    case SignalApi.CloseCode.conflict:
      return new CodeRejected({ reason: "already_claimed" })
    default: {
      // 1006: no close frame at all, so the socket's own error says more than the empty reason.
      const why = reason !== "" ? reason : lastError !== "" ? lastError : "connection closed"
      return new ServerFailed({ server, detail: `${code} ${why}` })
    }
  }
}

/**
 * Close codes after which the same socket may come back: the instance is going away (graceful
 * shutdown), restarting or overloaded, or the connection broke without a close frame (1006, e.g. the
 * instance was killed). Behind a load balancer the next attempt reaches another instance, which resumes
 * after the last message id we saw.
 */
export const Reconnectable: ReadonlySet<number> = new Set([
  SignalApi.CloseCode.goingAway,
  1006,
  1012,
  SignalApi.CloseCode.tryAgainLater,
])

export interface Closed {
  readonly code: number
  readonly reason: string
  /** The socket's own last error: says more than the empty reason of a 1006. */
  readonly lastError: string
}

/** What a close says, for the user: its reason, else the socket's own last error. */
export const closeText = (closed: Closed) =>
  `${closed.code} ${closed.reason || closed.lastError || "connection closed"}`
