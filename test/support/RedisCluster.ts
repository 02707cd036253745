import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, expect, test } from "vitest"
import { onPath, run, type Running, start, waitFor } from "./Processes.js"

const server = onPath("redis-server")
const cli = onPath("redis-cli")

/**
 * Whether a file's Redis Cluster tests should run. Without redis-server and redis-cli they are skipped
 * locally, saying so, but under CI=true a failing test is declared instead: CI must never skip them.
 */
export const requireRedisCluster = (): boolean => {
  if (server !== undefined && cli !== undefined) return true
  if (process.env.CI === "true") {
    test("redis-server and redis-cli are installed", () =>
      expect({ server, cli }, "redis-server and redis-cli on the PATH").toEqual({
        server: expect.any(String),
        cli: expect.any(String),
      }))
  } else {
    console.warn(
      "redis-server or redis-cli not found on the PATH: skipping the Redis Cluster tests (apt-get install redis-server)",
    )
  }
  return false
}

export interface RedisCluster {
  /** The `--redis` URL naming every master. */
  readonly url: string
  readonly stop: () => Promise<void>
}

/** `n` distinct free loopback ports: all held open at once, so none is handed out twice. */
const freePorts = async (n: number) => {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer()
          server.on("error", reject)
          server.listen(0, "127.0.0.1", () => resolve(server))
        }),
    ),
  )
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

const redisCli = async (args: ReadonlyArray<string>) => {
  const { code, stdout, stderr } = await run(cli!, args)
  if (code !== 0) throw new Error(`redis-cli ${args.join(" ")} exited ${code}: ${stdout}${stderr}`)
  return stdout
}

const Masters = 3

/**
 * A real Redis Cluster of three masters (no replicas, no persistence) on free loopback ports, its
 * config files in a temp dir: the slots split by `redis-cli --cluster create`, ready once every node
 * reports `cluster_state:ok`.
 */
export const startRedisCluster = async (): Promise<RedisCluster> => {
  if (server === undefined || cli === undefined) throw new Error("redis-server or redis-cli not on the PATH")
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "p2pal-redis-cluster-"))
  const ports = await freePorts(2 * Masters)
  const nodes = ports.slice(0, Masters).map((port, i) => ({ port, bus: ports[Masters + i]! }))
  const running: Array<Running> = nodes.map(({ port, bus }) =>
    start(server, [
      ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir],
      ...["--cluster-enabled", "yes", "--cluster-port", String(bus)],
      ...["--cluster-config-file", `nodes-${port}.conf`],
      ...["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
    ]),
  )
  const stop = async () => {
    running.forEach((node) => node.child.kill("SIGTERM"))
    await Promise.all(running.map((node) => node.finished))
    await fs.rm(dir, { recursive: true, force: true })
  }
  try {
    const everyNode = (what: string, probe: (port: string) => Promise<boolean>) =>
      waitFor(what, async () =>
        (await Promise.all(nodes.map(({ port }) => probe(String(port))))).every(Boolean) ? true : undefined,
      )
    await everyNode("every cluster node to answer PING", async (port) => {
      const ended = running.find((node) => node.child.exitCode !== null)
      if (ended !== undefined) throw new Error(`redis-server exited: ${(await ended.finished).stdout}`)
      return (await run(cli, ["-p", port, "ping"])).stdout.trim() === "PONG"
    })
    await redisCli([
      ...["--cluster", "create", ...nodes.map(({ port }) => `127.0.0.1:${port}`)],
      ...["--cluster-replicas", "0", "--cluster-yes"],
    ])
    await everyNode("every cluster node to report cluster_state:ok", async (port) =>
      (await redisCli(["-p", port, "cluster", "info"])).includes("cluster_state:ok"),
    )
  } catch (error) {
    await stop()
    throw error
  }
  return { url: `redis+cluster://${nodes.map(({ port }) => `127.0.0.1:${port}`).join(",")}`, stop }
}

/** One Redis Cluster for the calling test file (call it inside the file's cluster `describe`), stopped after it. */
export const useRedisCluster = () => {
  let cluster: RedisCluster | undefined
  beforeAll(async () => {
    cluster = await startRedisCluster()
  })
  afterAll(() => cluster?.stop())
  return () => cluster!
}
