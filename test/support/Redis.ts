import * as net from "node:net"
import { Effect, Layer } from "effect"
import { Cluster } from "ioredis"
import { afterAll, beforeAll, expect, test } from "vitest"
import * as RedisService from "../../libs/infra/src/Redis.js"
import { type Running, start, waitFor, onPath } from "./Processes.js"

const binary = onPath("redis-server")

/** Whether `redis-server` is on the PATH. */
export const hasRedis = binary !== undefined

/**
 * Whether a file's Redis tests should run. Without redis-server they are skipped locally, saying so,
 * but under CI=true a failing test is declared instead: CI must never skip them silently.
 */
export const requireRedis = (): boolean => {
  if (hasRedis) return true
  if (process.env.CI === "true") {
    test("redis-server is installed", () => expect(binary, "redis-server on the PATH").toBeDefined())
  } else {
    console.warn(
      "redis-server not found on the PATH: skipping the Redis tests (apt-get install redis-server)",
    )
  }
  return false
}

export interface RedisServer {
  readonly url: string
  /** Stops it with SIGTERM. */
  readonly stop: () => Promise<void>
  /** Stops it with SIGKILL, as a crash would. */
  readonly kill: () => Promise<void>
  /** Starts it again, empty, on the same port (killing it first if it still runs). */
  readonly restart: () => Promise<void>
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Whether something on `port` answers PING with PONG. */
const pong = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.setTimeout(1_000)
    socket.on("connect", () => socket.write("PING\r\n"))
    socket.on("data", (data) => {
      socket.destroy()
      resolve(data.toString().startsWith("+PONG"))
    })
    socket.on("error", () => resolve(false))
    socket.on("timeout", () => {
      socket.destroy()
      resolve(false)
    })
  })

/** A real redis-server on a free loopback port, with no persistence, so a restart comes back empty. */
export const startRedis = async (): Promise<RedisServer> => {
  if (binary === undefined) throw new Error("redis-server not found on the PATH")
  const port = await freePort()
  const args = [
    ...["--port", String(port), "--bind", "127.0.0.1"],
    ...["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
  ]
  const launch = async () => {
    const running = start(binary, args)
    let exited = false
    void running.finished.then(() => (exited = true))
    await waitFor("redis-server to answer PING", async () => {
      if (exited) throw new Error(`redis-server exited: ${(await running.finished).stdout}`)
      return (await pong(port)) ? true : undefined
    })
    return running
  }
  let running: Running | undefined = await launch()
  const end = async (signal: NodeJS.Signals) => {
    const current = running
    running = undefined
    if (current === undefined) return
    current.child.kill(signal)
    await current.finished
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    restart: async () => {
      await end("SIGKILL")
      running = await launch()
    },
  }
}

/** One redis-server for the calling test file (call it inside the file's Redis `describe`), stopped after it. */
export const useRedisServer = () => {
  let server: RedisServer | undefined
  beforeAll(async () => {
    server = await startRedis()
  })
  afterAll(() => server?.stop())
  return () => server!
}

/**
 * The Redis service on `url()`, emptied (FLUSHALL, on every master of a cluster) when built: every test
 * that provides it starts clean.
 */
export const emptyRedis = (url: () => string): Layer.Layer<RedisService.Redis> =>
  Layer.unwrapEffect(
    Effect.sync(() => {
      const flush = Effect.flatMap(RedisService.Redis, (redis) =>
        redis.use((client) =>
          client instanceof Cluster
            ? Promise.all(client.nodes("master").map((node) => node.flushall())).then(() => "OK")
            : client.flushall(),
        ),
      )
      return Layer.provideMerge(Layer.effectDiscard(Effect.orDie(flush)), RedisService.layer(url()))
    }),
  )
