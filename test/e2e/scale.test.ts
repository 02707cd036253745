import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { startBalancer } from "../support/Balancer.js"
import {
  bin,
  removeTempDirs,
  run,
  type Signal,
  snapshot,
  start,
  startSignal,
  tempDir,
  waitFor,
} from "../support/Processes.js"
import { requireRedis, useRedisServer } from "../support/Redis.js"
import { requireRedisCluster, useRedisCluster } from "../support/RedisCluster.js"

const p2pal = bin("p2pal")
const flags = (server: string) => ["--server", server, "--stun", ""]

const signals: Array<Signal> = []
afterAll(async () => {
  await Promise.all(signals.map((signal) => signal.stop()))
  await removeTempDirs()
})

const instance = async (redis: string) => {
  const signal = await startSignal(["--redis", redis])
  signals.push(signal)
  return signal
}

/** `p2pal send -q` through `server`: its stdout carries only the join code. */
const startSend = async (server: string, file: string) => {
  const sender = start(p2pal, ["send", "-q", ...flags(server), file])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, finished: sender.finished }
}

/** `p2pal recv` through `server` into the files' output directory. */
const receive = (server: string, out: string, code: string) =>
  run(p2pal, ["recv", "-y", "-q", ...flags(server), "--out", out, code])

const someFile = async () => {
  const root = await tempDir()
  const file = path.join(root, "payload.bin")
  await fs.writeFile(file, randomBytes(3 * 1024 * 1024 + 17))
  return { root, file, out: path.join(root, "out") }
}

/** Both sides exit 0 and the file arrived byte for byte. */
const expectDelivered = async (
  sent: Promise<{ code: number | null; stderr: string }>,
  received: { code: number | null; stderr: string },
  { root, out }: { root: string; out: string },
) => {
  const sender = await sent
  expect({ sent: sender.code, received: received.code }, sender.stderr + received.stderr).toEqual({
    sent: 0,
    received: 0,
  })
  expect((await snapshot(out)).get("payload.bin")).toBe((await snapshot(root)).get("payload.bin"))
}

/** Polls an instance's /metrics until `name` reads `value`. */
const metricReaches = (signal: Signal, name: string, value: number) =>
  waitFor(`${name} to reach ${value}`, async () => {
    const text = await (await fetch(signal.metricsUrl)).text()
    const line = text.split("\n").find((l) => l.startsWith(`${name} `))
    return line !== undefined && Number(line.split(" ")[1]) === value ? true : undefined
  })

const status = async (signal: Signal, route: string) => (await fetch(new URL(route, signal.url))).status

/**
 * Two instances on `redis`, both ready: a sender on one and a receiver on the other pair, the file
 * verifies, and both then stop cleanly on SIGTERM.
 */
const pairsAcrossInstances = async (redis: string) => {
  const [a, b] = [await instance(redis), await instance(redis)]
  expect([await status(a, "/readyz"), await status(b, "/readyz")]).toEqual([200, 200])
  const files = await someFile()
  const sender = await startSend(a.url, files.file)
  const received = await receive(b.url, files.out, sender.code)
  await expectDelivered(sender.finished, received, files)
  const stopped = await Promise.all([a.stop(), b.stop()])
  expect(
    stopped.map(({ code, signal }) => signal ?? code),
    stopped.map(({ stderr }) => stderr.split("\n").slice(-5).join("\n")).join("\n"),
  ).toEqual([0, 0])
}

/**
 * With `server` (one Redis or a cluster) killed, an instance on it stays live but reports not ready and
 * refuses creates fast with 503; once it is back, empty, new transfers work.
 */
const outageThenBack = async (server: {
  readonly url: string
  readonly kill: () => Promise<void>
  readonly restart: () => Promise<void>
}) => {
  const signal = await instance(server.url)
  expect(await status(signal, "/readyz")).toBe(200)
  await server.kill()
  await waitFor("/readyz to report 503", async () =>
    (await status(signal, "/readyz")) === 503 ? true : undefined,
  )
  expect(await status(signal, "/healthz")).toBe(200)
  const started = performance.now()
  const refused = await fetch(new URL("/api/transfer", signal.url), {
    method: "POST",
    body: JSON.stringify({ ttlSeconds: 60 }),
  })
  expect(refused.status).toBe(503)
  expect(((await refused.json()) as { message: string }).message).toMatch(/retry/)
  expect(performance.now() - started).toBeLessThan(3_000)
  const files = await someFile()
  const failed = await run(p2pal, ["send", "-q", ...flags(signal.url), files.file])
  expect(failed.code).not.toBe(0)
  expect(failed.stderr).toMatch(/signal server/)

  await server.restart()
  await waitFor("/readyz to report 200 again", async () =>
    (await status(signal, "/readyz")) === 200 ? true : undefined,
  )
  const sender = await startSend(signal.url, files.file)
  const received = await receive(signal.url, files.out, sender.code)
  await expectDelivered(sender.finished, received, files)
}

describe.runIf(requireRedis())("several signal instances on one Redis", () => {
  const redis = useRedisServer()

  it("pairs a sender on instance A with a receiver on instance B: the transfer verifies, then both stop on SIGTERM", () =>
    pairsAcrossInstances(redis().url))

  it.each([
    ["killed (SIGKILL: the socket just breaks)", "SIGKILL"],
    ["stopped (SIGTERM: it closes the socket with 'going away')", "SIGTERM"],
  ] as const)(
    "a sender whose instance is %s reconnects through the balancer to the other one and pairing completes",
    async (_, how) => {
      const [a, b] = [await instance(redis().url), await instance(redis().url)]
      const balancer = await startBalancer([a.url, b.url])
      try {
        const files = await someFile()
        const sender = await startSend(balancer.url, files.file)
        // The sender is waiting for its peer on instance A.
        await metricReaches(a, "p2pal_websockets_active", 1)
        a.child.kill(how)
        const ended = await a.finished
        expect(ended.signal ?? ended.code).toBe(how === "SIGKILL" ? "SIGKILL" : 0)
        await metricReaches(b, "p2pal_websockets_active", 1)
        const received = await receive(balancer.url, files.out, sender.code)
        await expectDelivered(sender.finished, received, files)
        expect(balancer.handed()[1]).toBeGreaterThan(0)
      } finally {
        await balancer.close()
      }
    },
  )

  it("Redis killed and back empty: live but not ready meanwhile, fails fast with 503, then new transfers work", () =>
    outageThenBack(redis()))
})

it("refuses a malformed redis+cluster:// URL: exit 2, one line saying what it expected", async () => {
  const refused = await run(bin("p2pal-signal"), ["--port", "0", "--redis", "redis+cluster://h:7000,:7001"])
  expect(refused.code).toBe(2)
  expect(refused.stderr.trim()).toBe(
    "--redis: expected redis+cluster://[[user]:password@]host:port[,host:port...]",
  )
})

describe.runIf(requireRedisCluster())("several signal instances on one Redis Cluster", () => {
  const cluster = useRedisCluster()

  it("pairs a sender on instance A with a receiver on instance B: the transfer verifies, then both stop on SIGTERM", () =>
    pairsAcrossInstances(cluster().url))

  it("the cluster killed and back empty: live but not ready meanwhile, fails fast with 503, then new transfers work", () =>
    outageThenBack(cluster()))
})
