import { Checkpoint, DurationText, Frames, SignalApi } from "@p2pal/domain"
import { UsageError } from "@p2pal/domain/Errors"
import * as IceServers from "@p2pal/domain/IceServers"
import { Options } from "@effect/cli"
import { Config, Duration, Effect, Either, Option, Redacted } from "effect"

/** Flags shared by send and recv, spelled as on the product sheet. */
export const server = Options.text("server").pipe(
  Options.withDefault("http://localhost:8080"),
  Options.withDescription("signal server URL"),
)
const stun = Options.text("stun").pipe(
  Options.withDefault("stun:stun.l.google.com:19302"),
  Options.withDescription("STUN server URL; --stun '' uses none (LAN or loopback only)"),
)
const turn = Options.text("turn").pipe(
  Options.withDescription(
    "TURN server (turn:host[:port][?transport=udp]) to relay through when no direct path exists; " +
      "repeatable, at most 2 used; TURN over TCP or TLS (turns:) is not supported",
  ),
  Options.repeated,
)
const turnUser = Options.text("turn-user").pipe(
  Options.withDescription("username for --turn; env TURN_USER"),
  Options.withFallbackConfig(Config.string("TURN_USER")),
  Options.optional,
)
const turnPass = Options.redacted("turn-pass").pipe(
  Options.withDescription("password for --turn; env TURN_PASS"),
  Options.withFallbackConfig(Config.redacted("TURN_PASS")),
  Options.optional,
)
const relayOnly = Options.boolean("relay-only").pipe(
  Options.withDescription(
    "connect only through a TURN relay (yours or the signal app's): the peer never learns your addresses",
  ),
)
/** How to reach the peer: STUN, TURN and whether only the relay may be used. */
export const ice = Options.all({ stun, turn, turnUser, turnPass, relayOnly })
export type IceFlags = typeof ice extends Options.Options<infer A> ? A : never
export const yes = Options.boolean("yes").pipe(
  Options.withAlias("y"),
  Options.withDescription("skip confirmation prompts"),
)
export const quiet = Options.boolean("quiet").pipe(
  Options.withAlias("q"),
  Options.withDescription("print only the join code (send) or nothing but errors (recv)"),
)
export const ttl = Options.text("ttl").pipe(
  Options.withDefault("5m"),
  Options.withDescription("how long the join code stays valid (e.g. 10m, 1h)"),
)
export const recursive = Options.boolean("recursive").pipe(
  Options.withAlias("r"),
  Options.withDescription("send directories with everything in them"),
)
export const chunkSize = Options.integer("chunk-size").pipe(
  Options.withDefault(63),
  Options.withDescription("chunk size in KiB (1-63)"),
)
export const out = Options.directory("out").pipe(
  Options.withDefault("."),
  Options.withDescription("directory to receive into (created if missing)"),
)
export const overwrite = Options.boolean("overwrite").pipe(Options.withDescription("replace existing files"))
export const skipErrors = Options.boolean("skip-errors").pipe(
  Options.withDescription(
    "skip files that cannot be read (or change while being sent) instead of aborting; exits 10 if any were skipped",
  ),
)

export const checkpointTtl = Options.text("checkpoint-ttl").pipe(
  Options.withDefault(DurationText.format(Checkpoint.DefaultTtl)),
  Options.withDescription("how long the checkpoint of an interrupted transfer stays resumable (e.g. 24h)"),
)

const maxRetries = Options.integer("max-retries").pipe(
  Options.withDefault(3),
  Options.withDescription(
    "attempts to reconnect when the connection drops mid-transfer (0: stop at once); the checkpoint stays either way",
  ),
)
const retryBackoff = Options.text("retry-backoff").pipe(
  Options.withDefault("1s"),
  Options.withDescription(
    "wait before the first reconnect attempt; it doubles, with jitter, for each next one",
  ),
)
/** How hard to try to get a dropped connection back. */
export const reconnect = Options.all({ maxRetries, retryBackoff })
export type ReconnectFlags = typeof reconnect extends Options.Options<infer A> ? A : never

/** The most attempts per drop: with the backoff doubling, more would wait for days. */
const MaxRetries = 20

export const reconnectPolicy = (flags: ReconnectFlags) =>
  Effect.gen(function* () {
    if (!Number.isInteger(flags.maxRetries) || flags.maxRetries < 0 || flags.maxRetries > MaxRetries)
      return yield* usage(`--max-retries must be between 0 and ${MaxRetries} (got ${flags.maxRetries})`)
    const retryBackoff = yield* Option.match(DurationText.parse(flags.retryBackoff), {
      onNone: () => usage(`--retry-backoff ${flags.retryBackoff} is not a duration like 1s or 500ms`),
      onSome: Effect.succeed,
    })
    return { maxRetries: flags.maxRetries, retryBackoff }
  })

const usage = (message: string) => Effect.fail(new UsageError({ message }))

/**
 * The user's ICE servers. One that p2pal cannot use is a usage error naming why: node-datachannel
 * would ignore it without a word.
 */
export const iceServers = (flags: IceFlags) =>
  Effect.gen(function* () {
    const servers: Array<IceServers.IceServer> = []
    const stunUrl = flags.stun.trim()
    if (stunUrl !== "") servers.push(yield* orUsage("--stun", IceServers.parseStun(stunUrl)))
    const credentials = Option.all({ username: flags.turnUser, password: flags.turnPass }).pipe(
      Option.map(({ username, password }) => ({ username, password: Redacted.value(password) })),
      Option.getOrUndefined,
    )
    for (const url of flags.turn)
      servers.push(yield* orUsage("--turn", IceServers.parseTurn(url.trim(), credentials)))
    return servers
  })

const orUsage = <A>(flag: string, parsed: Either.Either<A, string>) =>
  Either.match(parsed, { onLeft: (reason) => usage(`${flag} ${reason}`), onRight: Effect.succeed })

export const serverUrl = (value: string) => {
  const url = URL.canParse(value) ? new URL(value) : undefined
  return url !== undefined && (url.protocol === "http:" || url.protocol === "https:")
    ? Effect.succeed(url.origin)
    : usage(`--server ${value} is not an http:// or https:// URL`)
}

/** Whole seconds, as the signal app counts them, so both sides wait for the same TTL. */
export const parseTtl = (value: string) =>
  Option.match(DurationText.parse(value), {
    onNone: () => usage(`--ttl ${value} is not a duration like 5m or 1h`),
    onSome: (ttl) => {
      const seconds = Math.ceil(Duration.toSeconds(ttl))
      return seconds >= SignalApi.MinTtlSeconds && seconds <= SignalApi.MaxTtlSeconds
        ? Effect.succeed(Duration.seconds(seconds))
        : usage(
            `--ttl must be between ${SignalApi.MinTtlSeconds}s and ${SignalApi.MaxTtlSeconds / 3600}h (got ${value})`,
          )
    },
  })

export const parseCheckpointTtl = (value: string) =>
  Option.match(DurationText.parse(value), {
    onNone: () => usage(`--checkpoint-ttl ${value} is not a duration like 24h or 168h`),
    onSome: Effect.succeed,
  })

export const chunkBytes = (kib: number) =>
  kib >= 1 && kib * 1024 <= Frames.MaxChunkBytes
    ? Effect.succeed(kib * 1024)
    : usage(`--chunk-size must be between 1 and 63 KiB (got ${kib})`)
export const encrypt = Options.boolean("encrypt").pipe(
  Options.withDescription(
    "also seal every chunk with AES-256-GCM under a key from the code, on top of DTLS (for when you distrust a TURN relay)",
  ),
)
export const verify = Options.boolean("verify").pipe(
  Options.withDescription(
    "print a short verification string derived from the session key; compare it with the other side's out of band",
  ),
)

/** What `--verify` prints once the code is confirmed; both sides print the same digits unless someone sat in between. */
export const verificationLine = (verification: string) =>
  `Verification: ${verification} — the other side must show the same digits`
