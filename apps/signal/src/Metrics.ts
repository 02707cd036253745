import type { Kind } from "@p2pal/infra/RateLimiter"
import { expiredTransfers } from "@p2pal/infra/TransferStore"
import { Effect, Metric, MetricKeyType, MetricState, Option } from "effect"
import type { MetricPair } from "effect"

export const transfersCreated = Metric.counter("p2pal_transfers_created_total", {
  description: "Transfers created (POST /api/transfer answered 201).",
  incremental: true,
})

export const transfersJoined = Metric.counter("p2pal_transfers_joined_total", {
  description: "Transfers joined (POST /api/join answered 200).",
  incremental: true,
})

/** One counter family, a series per value of its `label`. */
const family = <V extends string>(
  name: string,
  description: string,
  label: string,
  values: ReadonlyArray<V>,
): Record<V, Metric.Metric.Counter<number>> =>
  Object.fromEntries(
    values.map((value) => [
      value,
      Metric.counter(name, { description, incremental: true }).pipe(Metric.tagged(label, value)),
    ]),
  ) as Record<V, Metric.Metric.Counter<number>>

export const rateLimited = family<Kind>(
  "p2pal_rate_limited_total",
  "Requests refused with 429, by the limit that refused them.",
  "kind",
  ["create", "join", "failed-join"],
)

export const websocketsActive = Metric.gauge("p2pal_websockets_active", {
  description: "Relay WebSockets (GET /api/ws) being served now.",
})

/** Which cap refused a request (see Flags.Caps). */
export type Cap = "transfers" | "websockets" | "websockets-per-client"

export const refused = family<Cap>(
  "p2pal_refused_total",
  "Requests refused because a cap was reached (503, or 429 per client), by the cap.",
  "cap",
  ["transfers", "websockets", "websockets-per-client"],
)

export const transfersHeld = Metric.gauge("p2pal_transfers_held", {
  description: "Transfers the store held at the last create (the --max-transfers count).",
})

/**
 * Reads every metric of this app (and the store's) once, which puts it in the registry: a series shows
 * from the start at 0 instead of appearing with its first event (a scraper would miss that increase).
 */
export const register = Effect.all([
  Metric.value(transfersCreated),
  Metric.value(transfersJoined),
  Metric.value(expiredTransfers),
  Metric.value(websocketsActive),
  Metric.value(transfersHeld),
  ...Object.values(rateLimited).map(Metric.value),
  ...Object.values(refused).map(Metric.value),
])

const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabel = (text: string) => escapeHelp(text).replace(/"/g, '\\"')

/** To Prometheus a counter never goes down; Effect's may (its own effect_fiber_active does): a gauge then. */
const isMonotonic = (keyType: unknown) => MetricKeyType.isCounterKey(keyType) && keyType.incremental

interface Family {
  readonly help: Option.Option<string>
  readonly type: "counter" | "gauge"
  readonly samples: Array<string>
}

/**
 * The Prometheus text format (0.0.4) of every counter and gauge in `pairs`, tags as labels. Other
 * kinds are left out: the app defines none (Effect's own fiber-lifetime histogram is one). Sorted, so
 * two scrapes list the series in the same order.
 */
export const render = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, Family>()
  for (const { metricKey, metricState } of pairs) {
    const sample = MetricState.isCounterState(metricState)
      ? {
          type: isMonotonic(metricKey.keyType) ? ("counter" as const) : ("gauge" as const),
          value: metricState.count,
        }
      : MetricState.isGaugeState(metricState)
        ? { type: "gauge" as const, value: metricState.value }
        : undefined
    if (sample === undefined) continue
    const labels = metricKey.tags.map(({ key, value }) => `${key}="${escapeLabel(value)}"`).join(",")
    const family = families.get(metricKey.name) ?? {
      help: metricKey.description,
      type: sample.type,
      samples: [],
    }
    family.samples.push(`${metricKey.name}${labels === "" ? "" : `{${labels}}`} ${sample.value}`)
    families.set(metricKey.name, family)
  }
  return [...families]
    .sort(([a], [b]) => a.localeCompare(b))
    .flatMap(([name, { help, type, samples }]) => [
      ...Option.toArray(Option.map(help, (text) => `# HELP ${name} ${escapeHelp(text)}`)),
      `# TYPE ${name} ${type}`,
      ...samples.sort(),
    ])
    .map((line) => `${line}\n`)
    .join("")
}

export const ContentType = "text/plain; version=0.0.4; charset=utf-8"

/** What `GET /metrics` answers, for a Prometheus scraper (see MetricsListener). */
export const text = Effect.map(Metric.snapshot, render)
