import { Context, Effect, Either, Layer, Option, Runtime } from "effect"
import type { Scope } from "effect"
import { Cluster, Redis as Node, type RedisOptions } from "ioredis"
import { StoreUnavailable } from "./TransferStore.js"

/** One Redis, or a Redis Cluster: the same commands, each routed by its keys' hash slot. */
export type Client = Node | Cluster

/** How long a command may wait for its answer before the request fails instead of hanging. */
const CommandTimeoutMs = 1_000
/** How long the layer waits for the first connection before starting anyway, not ready. */
const FirstConnectWait = "2 seconds"

/**
 * Fail fast during an outage: nothing queues while disconnected and nothing is retried, so a request
 * fails within the command timeout, while the client keeps reconnecting in the background forever.
 */
const options: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: CommandTimeoutMs,
  connectTimeout: CommandTimeoutMs,
  retryStrategy: (attempt) => Math.min(250 * attempt, 1_000),
}

export interface Service {
  /** Runs commands on the shared command connection; any failure is StoreUnavailable. */
  readonly use: <A>(f: (client: Client) => Promise<A>) => Effect.Effect<A, StoreUnavailable>
  /**
   * Calls `onMessage` for each message on `channel` until the scope ends. One subscriber connection
   * serves every channel; a channel is subscribed once however many readers on this instance share it.
   */
  readonly subscribe: (
    channel: string,
    onMessage: () => void,
  ) => Effect.Effect<void, StoreUnavailable, Scope.Scope>
  /**
   * Succeeds when both connections are up: the command one answers PING (a cluster: serves every slot),
   * the subscriber one is ready.
   */
  readonly ping: Effect.Effect<void, StoreUnavailable>
}

export class Redis extends Context.Tag("@p2pal/infra/Redis")<Redis, Service>() {}

/**
 * Every command ends within this: a cluster's subscriber connection is ioredis' own, without the command
 * timeout, and would otherwise wait for its node forever (holding a subscription's lock, or a shutdown).
 * The wait is interruptible even where its caller is not (a subscription's acquire and release).
 */
const AnswerWait = "2 seconds"

const attempt = <A>(f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new StoreUnavailable({ cause }) }).pipe(
    Effect.interruptible,
    Effect.timeoutFail({
      duration: AnswerWait,
      onTimeout: () => new StoreUnavailable({ cause: "no answer" }),
    }),
  )

/** The scheme of a Redis Cluster's URL; after it come its seed nodes, `host:port` separated by commas. */
const ClusterScheme = "redis+cluster://"

/**
 * The seed nodes and credentials of `redis+cluster://[[user]:password@]host:port[,host:port...]` (the
 * client asks them for the other nodes and who serves which slot); None for any other URL; a failure
 * saying why when it is such a URL, but not a well-formed one.
 */
export const clusterSeeds = (url: string) => {
  if (!url.startsWith(ClusterScheme)) return Either.right(Option.none())
  const rest = url.slice(ClusterScheme.length)
  const at = rest.lastIndexOf("@")
  return Either.try({
    try: () => {
      const credentials = new URL(`redis://${rest.slice(0, at + 1)}seed`)
      const nodes = rest
        .slice(at + 1)
        .split(",")
        .map((node) => new URL(`redis://${node}`))
        .map(({ hostname, port }) => ({
          host: hostname.replace(/^\[(.*)\]$/, "$1"),
          port: Number(port || 6379),
        }))
      if (nodes.some(({ host }) => host === "")) throw new Error("a node without a host")
      const username = decodeURIComponent(credentials.username)
      const password = decodeURIComponent(credentials.password)
      return Option.some({ nodes, username, password })
    },
    catch: () => `expected ${ClusterScheme}[[user]:password@]host:port[,host:port...]`,
  })
}

/** A client for `url`: `redis://...` as ioredis reads it, or a cluster's (see clusterSeeds). */
const clientFor = (url: string): Client =>
  Option.match(Either.getOrThrow(clusterSeeds(url)), {
    onNone: () => new Node(url, options),
    onSome: ({ nodes, username, password }) =>
      new Cluster(nodes, {
        enableOfflineQueue: false,
        clusterRetryStrategy: options.retryStrategy!,
        redisOptions: { ...options, username, password },
      }),
  })

/**
 * Succeeds when `client` can serve every key: a node answers PING; a cluster, through the node asked,
 * reports every slot served (`cluster_state:ok`).
 */
const answers = (client: Client) =>
  client instanceof Cluster
    ? attempt(() => client.cluster("INFO")).pipe(
        Effect.filterOrFail(
          (info) => info.includes("cluster_state:ok"),
          (info) =>
            new StoreUnavailable({ cause: `redis cluster not serving every slot: ${info.split("\r\n")[0]}` }),
        ),
      )
    : attempt(() => client.ping())

/** When the client is ready: now, or the next time it connects. */
const ready = (client: Client) =>
  Effect.async<void>((resume) => {
    if (client.status === "ready") return resume(Effect.void)
    const onReady = () => resume(Effect.void)
    client.once("ready", onReady)
    return Effect.sync(() => client.off("ready", onReady))
  })

/** A client that reconnects forever, logs each outage once, and is closed with the scope. */
const connect = (url: string, role: string) =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => clientFor(url)),
      (client) =>
        Effect.ignore(attempt(() => client.quit())).pipe(
          Effect.ensuring(Effect.sync(() => client.disconnect())),
        ),
    )
    // ioredis emits "error" on every failed reconnect; without a listener each one would crash the process.
    // A cluster stays ready while one node is down: it emits "node error" naming the node, and reconnects
    // it as a new client, ready once that node answers again. Each outage is logged once per node.
    const down = new Set<string>()
    const to = (node: string) => (node === "" ? "" : ` to ${node}`)
    const lost = (error: Error, node = "") => {
      if (down.has(node)) return
      down.add(node)
      runFork(Effect.logWarning(`redis ${role} connection${to(node)} down, reconnecting: ${error.message}`))
    }
    const back = (node = "") => {
      if (down.delete(node)) runFork(Effect.logInfo(`redis ${role} connection${to(node)} back`))
    }
    client.on("error", (error: Error) => lost(error))
    client.on("ready", () => back())
    client.on("node error", lost)
    client.on("+node", (node: Node) =>
      node.once("ready", () => back(`${node.options.host}:${node.options.port}`)),
    )
    return client
  })

const make = (url: string) =>
  Effect.gen(function* () {
    const commands = yield* connect(url, "command")
    const subscriber = yield* connect(url, "subscriber")
    // With the offline queue off, commands fail until the first connection is up: give it a moment.
    yield* Effect.timeoutOption(Effect.all([ready(commands), ready(subscriber)]), FirstConnectWait)

    const readers = new Map<string, Set<() => void>>()
    subscriber.on("message", (channel: string) => readers.get(channel)?.forEach((onMessage) => onMessage()))
    // Messages published while the subscriber was reconnecting are lost: ring every reader once it is back.
    subscriber.on("ready", () => readers.forEach((set) => set.forEach((onMessage) => onMessage())))
    // Serialises SUBSCRIBE/UNSUBSCRIBE so a channel's last reader leaving cannot race its next one arriving.
    const lock = yield* Effect.makeSemaphore(1)

    const join = (channel: string, onMessage: () => void) =>
      Effect.gen(function* () {
        const current = readers.get(channel)
        if (current !== undefined) return current.add(onMessage)
        yield* attempt(() => subscriber.subscribe(channel))
        readers.set(channel, new Set([onMessage]))
      })

    const leave = (channel: string, onMessage: () => void) =>
      Effect.suspend(() => {
        const current = readers.get(channel)
        current?.delete(onMessage)
        if (current === undefined || current.size > 0) return Effect.void
        readers.delete(channel)
        return Effect.ignore(attempt(() => subscriber.unsubscribe(channel)))
      })

    const ping = Effect.zipRight(
      answers(commands),
      Effect.suspend(() =>
        subscriber.status === "ready"
          ? Effect.void
          : Effect.fail(new StoreUnavailable({ cause: `redis subscriber connection ${subscriber.status}` })),
      ),
    )

    return Redis.of({
      use: (f) => attempt(() => f(commands)),
      ping,
      subscribe: (channel, onMessage) =>
        Effect.acquireRelease(lock.withPermits(1)(join(channel, onMessage)), () =>
          lock.withPermits(1)(leave(channel, onMessage)),
        ),
    })
  })

/**
 * One command connection and one subscriber connection to `url` (with a cluster: each to every node it
 * needs). Building it never fails: with Redis
 * down the app starts anyway, every request fails with StoreUnavailable, and it recovers on its own.
 */
export const layer = (url: string): Layer.Layer<Redis> => Layer.scoped(Redis, make(url))
