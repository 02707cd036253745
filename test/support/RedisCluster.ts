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
  /** Stops every node with SIGKILL, as a crash would. */
  readonly kill: () => Promise<void>
  /** Starts every node again, empty, on its ports and with its slots; resolves once the cluster is ok. */
  readonly restart: () => Promise<void>
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
  const nodes = ports
    .slice(0, Masters)
    .map((port, i) => ({ port: String(port), bus: String(ports[Masters + i]) }))
  // A node failing is noticed after a second (not the default 15), so a test of an outage is quick.
  const launch = () =>
    nodes.map(({ port, bus }) =>
      start(server, [
        ...["--port", port, "--bind", "127.0.0.1", "--dir", dir],
        ...["--cluster-enabled", "yes", "--cluster-port", bus, "--cluster-node-timeout", "1000"],
        ...["--cluster-config-file", `nodes-${port}.conf`],
        ...["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"],
      ]),
    )
  let running: ReadonlyArray<Running> = launch()
  const end = async (signal: NodeJS.Signals) => {
    running.forEach((node) => node.child.kill(signal))
    await Promise.all(running.map((node) => node.finished))
  }
  const stop = async () => {
    await end("SIGTERM")
    await fs.rm(dir, { recursive: true, force: true })
  }
  const everyNode = (what: string, probe: (port: string) => Promise<boolean>) =>
    waitFor(what, async () => {
      const exited = running.find((node) => node.child.exitCode !== null)
      if (exited !== undefined) throw new Error(`redis-server exited: ${(await exited.finished).stdout}`)
      return (await Promise.all(nodes.map(({ port }) => probe(port)))).every(Boolean) ? true : undefined
    })
  const clusterOk = () =>
    everyNode("every cluster node to report cluster_state:ok", async (port) =>
      (await redisCli(["-p", port, "cluster", "info"])).includes("cluster_state:ok"),
    )
  try {
    await everyNode(
      "every cluster node to answer PING",
      async (port) => (await run(cli, ["-p", port, "ping"])).stdout.trim() === "PONG",
    )
    await redisCli([
      ...["--cluster", "create", ...nodes.map(({ port }) => `127.0.0.1:${port}`)],
      ...["--cluster-replicas", "0", "--cluster-yes"],
    ])
    await clusterOk()
  } catch (error) {
    await stop()
    throw error
  }
  return {
    url: `redis+cluster://${nodes.map(({ port }) => `127.0.0.1:${port}`).join(",")}`,
    stop,
    kill: () => end("SIGKILL"),
    restart: async () => {
      await end("SIGKILL")
      // Each node reads its identity and slots back from its config file, so the cluster forms again.
      running = launch()
      await clusterOk()
    },
  }
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
