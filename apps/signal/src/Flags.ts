import { HelpDoc, Options, ValidationError } from "@effect/cli"
import type { Limits } from "@p2pal/infra/RateLimiter"
import { Config, Duration, Effect, Option, Redacted } from "effect"

export const trustProxy = Options.boolean("trust-proxy").pipe(
  Options.withDescription(
    "believe X-Forwarded-For: the client is its last address, the one your reverse proxy appended. " +
      "Only behind such a proxy, or any client dodges the rate limits by claiming addresses. " +
      "Off by default: the client is the connection's peer",
  ),
)

/** Who a limit counts: an IPv4 address, or an IPv6 /64 (what one subscriber usually gets). */
const client = "one client (an IPv4 address or an IPv6 /64)"

const perWindow = (name: string, description: string, fallback: number) =>
  Options.integer(name).pipe(
    Options.withDescription(`${description}; default ${fallback}`),
    Options.filterMap((n) => (n >= 1 ? Option.some(n) : Option.none()), `--${name} must be at least 1`),
    Options.withDefault(fallback),
  )

const creates = perWindow(
  "limit-creates",
  `transfers ${client} may create (POST /api/transfer) per --limit-window`,
  30,
)
const joins = perWindow("limit-joins", `joins (POST /api/join) ${client} may make per --limit-window`, 60)
const failedJoins = perWindow(
  "limit-failed-joins",
  `failed joins (unknown, expired or already claimed nameplate) ${client} may make per --limit-window; ` +
    "past it, every join of that client is refused until the window ends",
  10,
)

const window = Options.text("limit-window").pipe(
  Options.withDescription(
    'how long each allowance lasts, as "<number> <unit>": "1 minute", "30 seconds", "2 hours"; default 1 minute',
  ),
  Options.filterMap(
    (text) =>
      Option.filter(Duration.decodeUnknown(text), (d) => Duration.isFinite(d) && Duration.toMillis(d) > 0),
    'expected a duration such as "1 minute" or "30 seconds"',
  ),
  Options.withDefault(Duration.minutes(1)),
)

/** The rate limits, for whichever limiter layer serves them. */
export const limits: Options.Options<Limits> = Options.all({ creates, joins, failedJoins, window }).pipe(
  Options.map(({ creates, joins, failedJoins, window }) => {
    const windowMs = Duration.toMillis(window)
    return {
      create: { max: creates, windowMs },
      join: { max: joins, windowMs },
      "failed-join": { max: failedJoins, windowMs },
    }
  }),
)

const turnUrls = Options.text("turn-url").pipe(
  Options.withDescription(
    "a TURN server (turn:host:3478) to hand each side of a transfer, with credentials made from " +
      "--turn-secret; repeatable; env TURN_URL (comma-separated)",
  ),
  Options.repeated,
)

const turnSecret = Options.redacted("turn-secret").pipe(
  Options.withDescription(
    "the secret shared with the TURN server (coturn: use-auth-secret, static-auth-secret); env TURN_SECRET",
  ),
  Options.withFallbackConfig(Config.redacted("TURN_SECRET")),
  Options.optional,
)

/** TURN_URL's servers; set but empty counts as unset, as compose passes `${TURN_URL:-}` through. */
const turnUrlsFromEnv = Config.string("TURN_URL").pipe(
  Config.withDefault(""),
  Config.map((text) =>
    text
      .split(",")
      .map((url) => url.trim())
      .filter((url) => url !== ""),
  ),
)

/** TURN for the clients: both flags (or their env), or neither. */
export const turn: Options.Options<
  Option.Option<{ urls: ReadonlyArray<string>; secret: Redacted.Redacted }>
> = Options.all({ urls: turnUrls, secret: turnSecret }).pipe(
  Options.mapEffect(({ urls: given, secret: anySecret }) =>
    Effect.gen(function* () {
      const urls = given.length > 0 ? given : yield* Effect.orElseSucceed(turnUrlsFromEnv, () => [])
      const secret = Option.filter(anySecret, (s) => Redacted.value(s) !== "")
      if (urls.length === 0 && Option.isNone(secret)) return Option.none()
      if (urls.length > 0 && Option.isSome(secret)) return Option.some({ urls, secret: secret.value })
      return yield* Effect.fail(
        ValidationError.invalidValue(
          HelpDoc.p("--turn-url and --turn-secret go together: give both or neither"),
        ),
      )
    }),
  ),
)

const atLeastOne = (name: string, description: string, fallback: number) =>
  Options.integer(name).pipe(
    Options.withDescription(`${description}; default ${fallback}`),
    Options.filterMap((n) => (n >= 1 ? Option.some(n) : Option.none()), `--${name} must be at least 1`),
    Options.withDefault(fallback),
  )

/** What one instance takes on at most, whoever asks: past a cap the request is refused, not queued. */
export interface Caps {
  /** Transfers the store holds (in memory: this instance's; with Redis: every instance's, not yet ended). */
  readonly transfers: number
  /** Relay WebSockets open on this instance, in all and per client. */
  readonly webSockets: number
  readonly webSocketsPerClient: number
}

export const caps: Options.Options<Caps> = Options.all({
  transfers: atLeastOne(
    "max-transfers",
    "transfers the signal app holds at once (without --redis: in this instance's memory, until forgotten; " +
      "with --redis: all instances' transfers not yet ended); past it, creates get 503 with Retry-After",
    10_000,
  ),
  webSockets: atLeastOne(
    "max-websockets",
    "relay WebSockets this instance serves at once; past it, new ones get 503 with Retry-After",
    5_000,
  ),
  webSocketsPerClient: atLeastOne(
    "max-websockets-per-client",
    `relay WebSockets ${client} may hold open on this instance; past it, new ones get 429 with Retry-After`,
    32,
  ),
})

/** Where /metrics is served: its own listener, on loopback unless told otherwise. */
export const metricsPort = Options.integer("metrics-port").pipe(
  Options.withDescription(
    "TCP port of the /metrics listener (Prometheus text), 0 (picks a free one) to 65535; default 9464",
  ),
  Options.filterMap(
    (n) => (n >= 0 && n <= 65535 ? Option.some(n) : Option.none()),
    "p2pal-signal: --metrics-port must be between 0 and 65535",
  ),
  Options.withDefault(9464),
)

export const metricsHost = Options.text("metrics-host").pipe(
  Options.withDescription(
    "address of the /metrics listener; default 127.0.0.1 (only this host's scraper reads it)",
  ),
  Options.withDefault("127.0.0.1"),
)
