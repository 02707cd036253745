import { Checkpoint, DurationText, Frames, SignalApi } from "@p2pal/domain"
import * as IceServers from "@p2pal/domain/IceServers"
import * as Rate from "@p2pal/domain/Rate"
import * as Compression from "@p2pal/transfer/Compression"
import * as Zstd from "@p2pal/transfer/Zstd"
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Config, Duration, Effect, Either, Option, Redacted } from "effect"

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
  Options.withPseudoName("URL"),
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
  Options.withPseudoName("URL"),
  Options.withDefault("stun:stun.l.google.com:19302"),
  Options.withDescription(
    "STUN server (stun:host[:port]); --stun '' uses none (LAN or loopback only); default stun:stun.l.google.com:19302",
  ),
)
const turn = Options.text("turn").pipe(
  Options.withPseudoName("URL"),
  Options.withDescription(
    "TURN server (turn:host[:port][?transport=udp]) to relay through when no direct path exists; " +
      "repeatable, at most 2 used; none by default; TURN over TCP or TLS (turns:) is not supported",
  ),
  Options.repeated,
  // Shown as optional in the usage line: none is the default.
  Options.withDefault([]),
)
/** The environment variables options fall back to, by long flag name: they beat the config file. */
export const EnvFallback: Readonly<Record<string, string>> = {
  "turn-user": "TURN_USER",
  "turn-pass": "TURN_PASS",
}

const turnUser = Options.text("turn-user").pipe(
  Options.withPseudoName("NAME"),
  Options.withDescription("username for --turn; default $TURN_USER"),
  Options.withFallbackConfig(Config.string(EnvFallback["turn-user"]!)),
  Options.optional,
)
const turnPass = Options.redacted("turn-pass").pipe(
  Options.withPseudoName("PASS"),
  Options.withDescription("password for --turn; default $TURN_PASS"),
  Options.withFallbackConfig(Config.redacted(EnvFallback["turn-pass"]!)),
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
  Options.withDescription("skip confirmation prompts; off by default"),
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
  Options.withPseudoName("DURATION"),
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
  Options.withDescription(
    "send directories with everything in them (kept under the directory's name); off by default",
  ),
)

const MaxChunkKiB = Frames.MaxChunkBytes / 1024
/** In bytes. */
export const chunkSize = Options.integer("chunk-size").pipe(
  Options.withPseudoName("KiB"),
  Options.withDefault(MaxChunkKiB),
  Options.withDescription(`chunk size in KiB, 1 to ${MaxChunkKiB}; default ${MaxChunkKiB}`),
  checked((kib) =>
    kib >= 1 && kib <= MaxChunkKiB
      ? Either.right(kib * 1024)
      : Either.left(`--chunk-size must be between 1 and ${MaxChunkKiB} KiB (got ${kib})`),
  ),
)
export const out = Options.text("out").pipe(
  Options.withPseudoName("DIR"),
  Options.withDefault("."),
  Options.withDescription("directory to receive into (created if missing); default the current directory"),
  // Checked here so that a file named by mistake stops the command before it joins.
  Options.mapEffect((dir) =>
    Effect.flatMap(FileSystem.FileSystem, (fs) => fs.stat(dir)).pipe(
      Effect.option,
      Effect.flatMap((info) =>
        Option.isSome(info) && info.value.type !== "Directory"
          ? Effect.fail(
              ValidationError.invalidValue(
                HelpDoc.p(
                  `p2pal: --out ${dir} is not a directory; name a directory (it is created if missing)`,
                ),
              ),
            )
          : Effect.succeed(dir),
      ),
    ),
  ),
)
export const overwrite = Options.boolean("overwrite").pipe(
  Options.withDescription(
    "replace existing files; off by default (an existing file stops the transfer before anything is written)",
  ),
)
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
  Options.withPseudoName("DURATION"),
  Options.withDefault(defaultCheckpointTtl),
  Options.withDescription(
    `how long the checkpoint of an interrupted transfer stays resumable (e.g. 24h); default ${defaultCheckpointTtl}`,
  ),
  checked(duration("--checkpoint-ttl", "24h or 168h")),
)

/** The most attempts per drop: with the backoff doubling, more would wait for days. */
const MaxRetries = 20
const maxRetries = Options.integer("max-retries").pipe(
  Options.withPseudoName("N"),
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
  Options.withPseudoName("DURATION"),
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
export const compress = Options.choice("compress", Compression.Modes).pipe(
  Options.withDefault("auto"),
  Options.withDescription(
    "compress file bytes with zstd: auto (default) skips files compressed already and data that does not " +
      "shrink, and sends raw while the link outruns the compressor; zstd compresses everything that shrinks; none",
  ),
)
export const compressLevel = Options.integer("compress-level").pipe(
  Options.withPseudoName("N"),
  Options.withDefault(Compression.DefaultLevel),
  Options.withDescription(
    `zstd level, ${Zstd.MinLevel} (fastest) to ${Zstd.MaxLevel} (smallest); default ${Compression.DefaultLevel}`,
  ),
  checked((level) =>
    level >= Zstd.MinLevel && level <= Zstd.MaxLevel
      ? Either.right(level)
      : Either.left(`--compress-level must be between ${Zstd.MinLevel} and ${Zstd.MaxLevel} (got ${level})`),
  ),
)

export const verify = Options.boolean("verify").pipe(
  Options.withDescription(
    "print a short verification string derived from the session key; compare it with the other side's out of band",
  ),
)

export const limitRate = Options.text("limit-rate").pipe(
  Options.withPseudoName("RATE"),
  Options.withDescription(
    "cap the transfer at RATE bytes per second, with K, M or G (powers of 1024) as curl takes it, e.g. 10M; " +
      "send caps what it puts on the wire, recv what it takes in (by holding back its acknowledgements)",
  ),
  checked(Rate.parse),
  Options.optional,
)

/** The flags send and recv share: the signal app, the way to the peer, prompts and output, recovery. */
export const shared = { server, ice, yes, quiet, verify, checkpointTtl, reconnect, limitRate }

type Parsed<O> = O extends Options.Options<infer A> ? A : never
export type IceFlags = Parsed<typeof ice>
export type ReconnectFlags = Parsed<typeof reconnect>

/** What `--verify` prints once the code is confirmed; both sides print the same digits unless someone sat in between. */
export const verificationLine = (verification: string) =>
  `Verification: ${verification} — the other side must show the same digits`
