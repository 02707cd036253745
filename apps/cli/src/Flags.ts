import { Checkpoint, DurationText, Frames, SignalApi } from "@p2pal/domain"
import * as IceServers from "@p2pal/domain/IceServers"
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Config, Duration, Either, Option, Redacted } from "effect"

/**
 * A flag's value checked as @effect/cli parses the command line, so a bad one never reaches a command:
 * the parser prints the message and main.ts exits 2 (usage). The message starts as p2pal's own do.
 */
const checked =
  <A, B>(parse: (value: A) => Either.Either<B, string>) =>
  (self: Options.Options<A>): Options.Options<B> =>
    Options.mapEffect(self, (value) =>
      Either.mapLeft(parse(value), (message) => ValidationError.invalidValue(HelpDoc.p(`p2pal: ${message}`))),
    )

const duration = (flag: string, examples: string) => (value: string) =>
  Either.fromOption(DurationText.parse(value), () => `${flag} ${value} is not a duration like ${examples}`)

export const server = Options.text("server").pipe(
  Options.withDefault("http://localhost:8080"),
  Options.withDescription("signal server URL (http:// or https://); default http://localhost:8080"),
  checked((value) => {
    const url = URL.canParse(value) ? new URL(value) : undefined
    return url !== undefined && (url.protocol === "http:" || url.protocol === "https:")
      ? Either.right(url.origin)
      : Either.left(`--server ${value} is not an http:// or https:// URL`)
  }),
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

/**
 * The user's ICE servers. One that p2pal cannot use is a usage error naming why: node-datachannel
 * would ignore it without a word.
 */
const iceServers = (flags: {
  readonly stun: string
  readonly turn: ReadonlyArray<string>
  readonly turnUser: Option.Option<string>
  readonly turnPass: Option.Option<Redacted.Redacted>
}) => {
  const stunUrl = flags.stun.trim()
  const credentials = Option.all({ username: flags.turnUser, password: flags.turnPass }).pipe(
    Option.map(({ username, password }) => ({ username, password: Redacted.value(password) })),
    Option.getOrUndefined,
  )
  return Either.all([
    ...(stunUrl === "" ? [] : [Either.mapLeft(IceServers.parseStun(stunUrl), (why) => `--stun ${why}`)]),
    ...flags.turn.map((url) =>
      Either.mapLeft(IceServers.parseTurn(url.trim(), credentials), (why) => `--turn ${why}`),
    ),
  ])
}

/** How to reach the peer: the user's STUN and TURN servers, and whether only the relay may be used. */
export const ice = Options.all({ stun, turn, turnUser, turnPass, relayOnly }).pipe(
  checked((flags) =>
    Either.map(iceServers(flags), (servers) => ({ iceServers: servers, relayOnly: flags.relayOnly })),
  ),
)
export const yes = Options.boolean("yes").pipe(
  Options.withAlias("y"),
  Options.withDescription("skip confirmation prompts"),
)
export const listAll = Options.boolean("list-all").pipe(
  Options.withDescription(
    "list every entry before accepting; a file list of more than 20 entries is otherwise summarised",
  ),
)
export const quiet = Options.boolean("quiet").pipe(
  Options.withAlias("q"),
  Options.withDescription("print only the join code (send) or nothing but errors (recv)"),
)

const ttlRange = `between ${SignalApi.MinTtlSeconds}s and ${SignalApi.MaxTtlSeconds / 3600}h`
/** Whole seconds, as the signal app counts them, so both sides wait for the same TTL. */
export const ttl = Options.text("ttl").pipe(
  Options.withDefault("5m"),
  Options.withDescription(`how long the join code stays valid (e.g. 10m, 1h), ${ttlRange}; default 5m`),
  checked((value) =>
    Either.flatMap(duration("--ttl", "5m or 1h")(value), (ttl) => {
      const seconds = Math.ceil(Duration.toSeconds(ttl))
      return seconds >= SignalApi.MinTtlSeconds && seconds <= SignalApi.MaxTtlSeconds
        ? Either.right(Duration.seconds(seconds))
        : Either.left(`--ttl must be ${ttlRange} (got ${value})`)
    }),
  ),
)
export const recursive = Options.boolean("recursive").pipe(
  Options.withAlias("r"),
  Options.withDescription("send directories with everything in them"),
)

const MaxChunkKiB = Frames.MaxChunkBytes / 1024
/** In bytes. */
export const chunkSize = Options.integer("chunk-size").pipe(
  Options.withDefault(MaxChunkKiB),
  Options.withDescription(`chunk size in KiB, 1 to ${MaxChunkKiB}; default ${MaxChunkKiB}`),
  checked((kib) =>
    kib >= 1 && kib <= MaxChunkKiB
      ? Either.right(kib * 1024)
      : Either.left(`--chunk-size must be between 1 and ${MaxChunkKiB} KiB (got ${kib})`),
  ),
)
export const out = Options.directory("out").pipe(
  Options.withDefault("."),
  Options.withDescription("directory to receive into (created if missing)"),
)
export const overwrite = Options.boolean("overwrite").pipe(Options.withDescription("replace existing files"))
export const renameUnsafe = Options.boolean("rename-unsafe").pipe(
  Options.withDescription(
    "save a name this system cannot hold (on Windows CON, a:b, name.; where names differ only in case or Unicode form, the second) under an escaped one (a%3Ab, README~2), listed at the end, instead of refusing the transfer",
  ),
)
export const skipErrors = Options.boolean("skip-errors").pipe(
  Options.withDescription(
    "skip files that cannot be read (or change while being sent) instead of aborting; exits 10 if any were skipped",
  ),
)

const defaultCheckpointTtl = DurationText.format(Checkpoint.DefaultTtl)
export const checkpointTtl = Options.text("checkpoint-ttl").pipe(
  Options.withDefault(defaultCheckpointTtl),
  Options.withDescription(
    `how long the checkpoint of an interrupted transfer stays resumable (e.g. 24h); default ${defaultCheckpointTtl}`,
  ),
  checked(duration("--checkpoint-ttl", "24h or 168h")),
)

/** The most attempts per drop: with the backoff doubling, more would wait for days. */
const MaxRetries = 20
const maxRetries = Options.integer("max-retries").pipe(
  Options.withDefault(3),
  Options.withDescription(
    `attempts to reconnect when the connection drops mid-transfer, 0 (stop at once) to ${MaxRetries}; ` +
      "default 3; the checkpoint stays either way",
  ),
  checked((n) =>
    n >= 0 && n <= MaxRetries
      ? Either.right(n)
      : Either.left(`--max-retries must be between 0 and ${MaxRetries} (got ${n})`),
  ),
)
const retryBackoff = Options.text("retry-backoff").pipe(
  Options.withDefault("1s"),
  Options.withDescription(
    "wait before the first reconnect attempt (e.g. 500ms, 2s); it doubles, with jitter, for each next one; default 1s",
  ),
  checked(duration("--retry-backoff", "1s or 500ms")),
)
/** How hard to try to get a dropped connection back. */
export const reconnect = Options.all({ maxRetries, retryBackoff })

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

/** The flags send and recv share: the signal app, the way to the peer, prompts and output, recovery. */
export const shared = { server, ice, yes, quiet, verify, checkpointTtl, reconnect }

type Parsed<O> = O extends Options.Options<infer A> ? A : never
export type IceFlags = Parsed<typeof ice>
export type ReconnectFlags = Parsed<typeof reconnect>

/** What `--verify` prints once the code is confirmed; both sides print the same digits unless someone sat in between. */
export const verificationLine = (verification: string) =>
  `Verification: ${verification} — the other side must show the same digits`
