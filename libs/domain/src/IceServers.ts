import { Either } from "effect"
import type { IceServer as ServerIssued } from "./SignalApi.js"

/**
 * One ICE server in the object form node-datachannel takes. The object form, not a URL: coturn REST
 * usernames contain ":", which a turn:user:pass@host URL cannot carry.
 */
export type IceServer =
  | { readonly kind: "stun"; readonly hostname: string; readonly port: number }
  | {
      readonly kind: "turn"
      readonly hostname: string
      readonly port: number
      readonly username: string
      readonly password: string
    }

export interface Credentials {
  readonly username: string
  readonly password: string
}

/** What to use, and what was given but cannot be, each with the reason to tell the user. */
export interface Plan {
  readonly servers: ReadonlyArray<IceServer>
  readonly ignored: ReadonlyArray<string>
}

/** libdatachannel uses at most this many of each; more would be dropped without a word. */
export const MaxStun = 1
export const MaxTurn = 2

const DefaultPort = 3478
const HostPort = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/?#@[\]]+)(?::(\d{1,5}))?$/

const hostPort = (rest: string): { hostname: string; port: number } | undefined => {
  const m = HostPort.exec(rest)
  const port = m?.[2] === undefined ? DefaultPort : Number(m[2])
  if (m === null || port < 1 || port > 65535) return undefined
  return { hostname: m[1]!.replace(/^\[(.*)\]$/, "$1"), port }
}

/** `stun:host[:port]`. */
export const parseStun = (url: string): Either.Either<IceServer, string> => {
  const address = url.startsWith("stun:") ? hostPort(url.slice("stun:".length)) : undefined
  return address === undefined
    ? Either.left(`${url} is not a STUN server like stun:stun.example.org:3478`)
    : Either.right({ kind: "stun", ...address })
}

/**
 * `turn:host[:port][?transport=udp]` with its credentials. TURN over TCP or TLS is refused by name:
 * the node-datachannel build p2pal uses relays over UDP only, and would ignore them silently.
 */
export const parseTurn = (
  url: string,
  credentials: Credentials | undefined,
): Either.Either<IceServer, string> => {
  if (url.startsWith("turns:"))
    return Either.left(`${url}: TURN over TLS (turns:) is not supported, only turn: over UDP`)
  const [base = "", query] = url.split("?", 2)
  if (query !== undefined && query !== "transport=udp")
    return Either.left(`${url}: only ?transport=udp is supported (TURN over TCP is not)`)
  const address = base.startsWith("turn:") ? hostPort(base.slice("turn:".length)) : undefined
  if (address === undefined) return Either.left(`${url} is not a TURN server like turn:turn.example.org:3478`)
  if (credentials === undefined)
    return Either.left(
      `${url} needs a username and password (--turn-user, --turn-pass or $TURN_USER, $TURN_PASS)`,
    )
  return Either.right({ kind: "turn", ...address, ...credentials })
}

/** An entry of a signal app's `iceServers`: STUN, or TURN with the credentials it issued. */
export const parseIssued = (server: ServerIssued): Either.Either<IceServer, string> =>
  server.urls.startsWith("stun:")
    ? parseStun(server.urls)
    : parseTurn(
        server.urls,
        server.username === undefined || server.credential === undefined
          ? undefined
          : { username: server.username, password: server.credential },
      )

/**
 * The servers to use, the user's own first, then the signal app's, at most MaxStun STUN and MaxTurn
 * TURN servers; every server left out is named with the reason.
 */
export const plan = (candidates: ReadonlyArray<Either.Either<IceServer, string>>): Plan => {
  const servers: Array<IceServer> = []
  const ignored: Array<string> = []
  for (const candidate of candidates) {
    if (Either.isLeft(candidate)) {
      ignored.push(candidate.left)
      continue
    }
    const server = candidate.right
    const max = server.kind === "stun" ? MaxStun : MaxTurn
    if (servers.filter((s) => s.kind === server.kind).length < max) servers.push(server)
    else
      ignored.push(
        `${server.kind}:${server.hostname}:${server.port}: at most ${max} ${server.kind.toUpperCase()} server${max > 1 ? "s are" : " is"} used`,
      )
  }
  return { servers, ignored }
}
