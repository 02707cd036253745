// The signal app as users run it in Docker: apps/signal/Dockerfile and compose.yaml, unmodified, built and
// started on a real engine, with real p2pal transfers through them. See test/support/Docker.ts for how the
// engine and the base images come to be on a machine without Docker Hub.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startBalancer } from "../support/Balancer.js"
import {
  buildSignalImage,
  buildMode,
  composeStack,
  docker,
  type Engine,
  ensureBaseImages,
  healthy,
  requireDocker,
  startEngine,
} from "../support/Docker.js"
import {
  bin,
  midTransfer,
  removeTempDirs,
  type Running,
  snapshot,
  sparseRandomFile,
  start,
  tempDir,
  waitFor,
} from "../support/Processes.js"

const p2pal = bin("p2pal")
const MiB = 1024 * 1024
const image = "p2pal-signal:test"

const flags = (server: string) => ["--server", server, "--stun", ""]

/** `p2pal send` through `server`, once it printed its code. */
const send = async (server: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) => {
  const sender = start(p2pal, ["send", "-q", ...flags(server), ...args], { env })
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { sender, code: code! }
}

const recv = (server: string, out: string, code: string, more: ReadonlyArray<string> = []) =>
  start(p2pal, ["recv", "-y", ...flags(server), ...more, "--out", out, code])

/** A small tree: a file of random bytes and a nested text file. */
const someTree = async () => {
  const root = await tempDir()
  const src = path.join(root, "tree")
  await fs.mkdir(path.join(src, "nested"), { recursive: true })
  await fs.writeFile(path.join(src, "payload.bin"), randomBytes(2 * MiB + 17))
  await fs.writeFile(path.join(src, "nested", "notes.txt"), "through the compose stack\n")
  return { src, out: path.join(root, "out") }
}

/** Both sides exit 0 and `out` holds the tree byte for byte; the receiver's stderr, for more checks. */
const delivered = async (sender: Running, receiver: Running, src: string, out: string) => {
  const [sent, received] = await Promise.all([sender.finished, receiver.finished])
  expect({ sent: sent.code, received: received.code }, sent.stderr + received.stderr).toEqual({
    sent: 0,
    received: 0,
  })
  expect(await snapshot(path.join(out, path.basename(src)))).toEqual(await snapshot(src))
  return received.stderr
}

/** Sends a fresh tree from `sendVia` to `recvVia` (the same instance unless told) and checks it arrived. */
const roundTrip = async (sendVia: string, recvVia = sendVia, more: ReadonlyArray<string> = []) => {
  const { src, out } = await someTree()
  const { sender, code } = await send(sendVia, [...more, "-r", src])
  return delivered(sender, recv(recvVia, out, code, more), src, out)
}

const ready = (url: string) =>
  waitFor(
    `${url}/readyz to answer 200`,
    async () => ((await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200 ? true : undefined),
    60_000,
  )

/**
 * Polls an instance's /metrics until `name` reads `value`. The metrics listener is on the container's
 * loopback (--metrics-port), so it is read from inside the container, as a sidecar scraper would.
 */
const metricReaches = (container: string, name: string, value: number) =>
  waitFor(`${name} to reach ${value} in ${container}`, async () => {
    const text = await docker(
      "exec",
      container,
      "node",
      "-e",
      "fetch('http://127.0.0.1:9464/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))",
    )
    const line = text.split("\n").find((l) => l.startsWith(`${name} `))
    return line !== undefined && Number(line.split(" ")[1]) === value ? true : undefined
  })

/** This host's address on its default route: reachable from the host and from coturn's host network. */
const hostAddress = () => {
  const addresses = Object.entries(os.networkInterfaces())
    .filter(([name]) => name !== "docker0" && !name.startsWith("br-") && !name.startsWith("veth"))
    .flatMap(([, list]) => list ?? [])
  const address = addresses.find((a) => a.family === "IPv4" && !a.internal)?.address
  expect(address, "a non-loopback IPv4 address for the TURN relay").toBeDefined()
  return address!
}

if (requireDocker()) {
  let engine: Engine | undefined
  beforeAll(async () => {
    engine = await startEngine()
    await ensureBaseImages()
  }, 600_000)
  afterAll(async () => {
    await removeTempDirs()
    await engine?.stop()
  }, 120_000)

  describe("apps/signal/Dockerfile", () => {
    beforeAll(() => buildSignalImage(image), 600_000)

    it("holds Node and the bundle only, and runs as a user other than root", async ({ annotate }) => {
      expect(await docker("image", "inspect", "-f", "{{.Config.User}}", image)).toBe("node")
      const inside = await docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "id -u; ls -A /app; for t in npm npx yarn corepack; do command -v $t || true; done",
      )
      const [uid, ...rest] = inside.split("\n")
      expect(Number(uid)).toBeGreaterThan(0)
      expect(rest).toEqual(["main.js"])
      const bytes = Number(await docker("image", "inspect", "-f", "{{.Size}}", image))
      await annotate(`image size ${(bytes / MiB).toFixed(0)} MiB (on this machine's stand-in base image)`)
    })

    it("turns healthy, and `docker stop` ends it cleanly within the grace period", async () => {
      const container = await docker("run", "-d", "-p", "127.0.0.1::8080", image)
      try {
        await healthy(container)
        const port = (await docker("port", container, "8080")).split(":").at(-1)
        expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200)
        const began = Date.now()
        await docker("stop", container)
        // Docker's default grace is 10 s; SIGKILL after it would show as 137.
        expect(Date.now() - began).toBeLessThan(10_000)
        expect(await docker("inspect", "-f", "{{.State.ExitCode}}", container)).toBe("0")
      } finally {
        await docker("rm", "-f", container)
      }
    })
  })

  describe("compose.yaml", () => {
    const stack = composeStack("p2paltest")
    // What the README says: `docker compose up`, then --server http://localhost:8080.
    const published = "http://127.0.0.1:8080"
    beforeAll(async () => {
      await stack.down()
      // Built by compose as a user's `up` would, unless told to reuse it: an image left from an earlier
      // run holds an earlier app.
      await stack.compose(["up", "-d", ...(buildMode === "skip" ? [] : ["--build"])])
      for (const container of await stack.containers("signal")) await healthy(container)
    }, 600_000)
    afterAll(() => stack.down(), 120_000)

    it("`docker compose up` with nothing set: Redis and the app; a directory arrives through it", async () => {
      const [redis] = await stack.containers("redis")
      // A flood must fail writes (the app answers 503), not evict live transfers.
      expect(await docker("exec", redis!, "redis-cli", "config", "get", "maxmemory-policy")).toMatch(
        /noeviction$/,
      )
      expect(await stack.containers("coturn")).toHaveLength(0)
      await ready(published)
      await roundTrip(published)
    })

    it("Redis restarted: the app is ready again, then a new transfer works", async () => {
      await stack.compose(["restart", "redis"])
      await ready(published)
      await roundTrip(published)
    })

    it("resumes through the stack: Ctrl+C on the receiver mid-transfer, then send --resume", async () => {
      const root = await tempDir()
      const src = path.join(root, "big")
      await sparseRandomFile(path.join(src, "big.bin"), 256 * MiB)
      const out = path.join(root, "out")
      const env = { P2PAL_HOME: path.join(root, "home") }
      const first = await send(published, ["-r", src], env)
      const receiver = recv(published, out, first.code)
      await midTransfer(path.join(out, "big"), "big.bin", [first.sender, receiver])
      receiver.child.kill("SIGINT")
      const interrupted = await receiver.finished
      await first.sender.finished
      expect(interrupted.code).toBe(130)
      const [, id] = /p2pal send --resume (\S+),/.exec(interrupted.stderr) ?? []
      expect(id, interrupted.stderr).toBeDefined()

      const again = await send(published, ["--resume", id!], env)
      const stderr = await delivered(again.sender, recv(published, out, again.code), src, out)
      expect(stderr).toMatch(/^Resuming: /m)
    }, 120_000)

    describe("scaled to three instances on one Redis", () => {
      const urls: Array<string> = []
      beforeAll(async () => {
        // A fixed host port fits one container: each instance gets a free one instead (the README's way).
        await stack.compose(["up", "-d", "--scale", "signal=3"], { P2PAL_SIGNAL_PUBLISH: "8080" })
        const containers = await stack.containers("signal")
        expect(containers).toHaveLength(3)
        for (const container of containers) await healthy(container)
        for (let i = 1; i <= 3; i++) urls.push(await stack.signalUrl(i))
      }, 300_000)

      it("a sender on one instance and a receiver on another: the transfer verifies", async () => {
        await roundTrip(urls[0]!, urls[1]!)
      })

      it("an instance stopped mid-signaling: the sender reconnects through the others and pairing completes", async () => {
        const balancer = await startBalancer(urls)
        try {
          const { src, out } = await someTree()
          const { sender, code } = await send(balancer.url, ["-r", src])
          // The sender waits for its peer on the first instance.
          const [first, second] = await stack.containers("signal")
          await metricReaches(first!, "p2pal_websockets_active", 1)
          await docker("stop", first!)
          expect(await docker("inspect", "-f", "{{.State.ExitCode}}", first!)).toBe("0")
          await metricReaches(second!, "p2pal_websockets_active", 1)
          await delivered(sender, recv(balancer.url, out, code), src, out)
          expect(balancer.handed()[1]).toBeGreaterThan(0)
        } finally {
          await balancer.close()
        }
      })
    })

    it("the turn profile: coturn checks the app's credentials and relays a --relay-only transfer", async () => {
      const turn = {
        TURN_SECRET: randomBytes(32).toString("hex"),
        TURN_URL: `turn:${hostAddress()}:3478`,
        P2PAL_SIGNAL_PUBLISH: "8080",
      }
      // Without the secret coturn says what is missing instead of relaying for anyone.
      await stack.compose(["--profile", "turn", "up", "-d", "--no-deps", "coturn"])
      const [unset] = await stack.containers("coturn")
      await waitFor("coturn to say what is missing", async () => {
        const logs = await start("docker", ["logs", unset!]).finished
        return logs.stderr.includes("coturn: set TURN_SECRET") ? true : undefined
      })
      await stack.compose(["--profile", "turn", "up", "-d", "--scale", "signal=1"], turn)
      expect(await stack.containers("coturn")).toHaveLength(1)
      const [signal] = await stack.containers("signal")
      await healthy(signal!)
      const url = await stack.signalUrl()
      const stderr = await roundTrip(url, url, ["--relay-only"])
      expect(stderr).toMatch(/^Relayed through TURN: relay /m)
    }, 180_000)
  })
}
