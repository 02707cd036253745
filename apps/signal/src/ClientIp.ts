import { isIPv4, isIPv6 } from "node:net"
import { HttpServerRequest } from "@effect/platform"
import { Context, Effect, Option } from "effect"

/**
 * Whether `X-Forwarded-For` is believed. Only behind a proxy that appends the address it saw: anyone
 * else can write the header, and a limit keyed on it would reset with every made-up address.
 */
export class TrustProxy extends Context.Tag("@p2pal/signal/TrustProxy")<TrustProxy, boolean>() {}

/** Two bytes of a dotted IPv4 address as one IPv6 group, in hex. */
const hexGroup = (high: string | undefined, low: string | undefined) =>
  ((Number(high) << 8) | Number(low)).toString(16)

/** The eight 16-bit groups of an address `isIPv6` accepted; a dotted IPv4 tail counts as the last two. */
const groups = (ipv6: string): Array<number> => {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ipv6)
  const hex =
    dotted === null
      ? ipv6
      : `${ipv6.slice(0, dotted.index)}${hexGroup(dotted[1], dotted[2])}:${hexGroup(dotted[3], dotted[4])}`
  const numbers = (part: string | undefined) =>
    part === undefined || part === "" ? [] : part.split(":").map((group) => parseInt(group, 16))
  const [head, tail] = hex.split("::")
  if (tail === undefined) return numbers(head)
  const left = numbers(head)
  const right = numbers(tail)
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right]
}

/** `::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 client. */
const isIPv4Mapped = (g: ReadonlyArray<number>) => g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff

/** A valid address as the client's IP (IPv4-mapped IPv6 as plain IPv4, no zone), or None. */
const parse = (text: string): Option.Option<string> => {
  const address = text.trim().replace(/%.*$/, "")
  if (isIPv4(address)) return Option.some(address)
  if (!isIPv6(address)) return Option.none()
  const g = groups(address)
  return Option.some(
    isIPv4Mapped(g) ? `${g[6]! >> 8}.${g[6]! & 0xff}.${g[7]! >> 8}.${g[7]! & 0xff}` : address.toLowerCase(),
  )
}

/**
 * The client's IP: the socket's peer or, when the proxy is trusted, the last `X-Forwarded-For` entry
 * (the one our proxy appended; earlier ones are whatever the client sent). An entry that is no address
 * means a misconfigured proxy: the peer (the proxy) is used, so all its clients share one allowance.
 */
export const address = (
  peer: string | undefined,
  forwardedFor: string | undefined,
  trustProxy: boolean,
): string => {
  const fromPeer = Option.getOrElse(Option.flatMap(Option.fromNullable(peer), parse), () => "unknown")
  const forwarded =
    trustProxy && forwardedFor !== undefined
      ? parse(forwardedFor.slice(forwardedFor.lastIndexOf(",") + 1))
      : Option.none()
  return Option.getOrElse(forwarded, () => fromPeer)
}

/**
 * What rate limits count against: an IPv4 address, or an IPv6 address's /64, which is what one
 * subscriber usually gets (counting single IPv6 addresses would give each client 2^64 allowances).
 */
export const limitKey = (ip: string): string =>
  isIPv6(ip)
    ? `${groups(ip)
        .slice(0, 4)
        .map((g) => g.toString(16))
        .join(":")}::/64`
    : ip

/** The address of the client behind the current request, as `address` returns it. */
export const ClientIp = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  return address(
    Option.getOrUndefined(request.remoteAddress),
    request.headers["x-forwarded-for"],
    yield* TrustProxy,
  )
})
