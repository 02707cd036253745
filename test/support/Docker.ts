import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { expect, test } from "vitest"
import { onPath, repo, start, waitFor } from "./Processes.js"

/**
 * A Docker engine for the Docker suite, on a machine like the CI's: Debian, root, no systemd, Docker Hub
 * out of reach. What is missing is installed (Debian's docker.io, docker-compose, debootstrap), the daemon
 * is started if none answers, and the base images the repo's files name are built locally as stand-ins
 * when absent (see test/docker/standins). Whatever this started, it undoes: the daemon, and the iptables
 * rules, forwarding and bridge the daemon added.
 */

/** Why the Docker suite cannot run here, or undefined. */
export const cannotUseDocker =
  process.platform !== "linux"
    ? "Docker suite: Linux only"
    : process.getuid?.() !== 0
      ? "Docker suite: run as root (it installs and starts a Docker daemon)"
      : onPath("dockerd") === undefined && onPath("apt-get") === undefined
        ? "Docker suite: no dockerd, and no apt-get to install docker.io"
        : undefined

/** Skipped locally with a visible reason; under CI=true a failing test is declared instead. */
export const requireDocker = (): boolean => {
  if (cannotUseDocker === undefined) return true
  if (process.env.CI === "true") test("Docker can run here", () => expect(cannotUseDocker).toBeUndefined())
  else console.warn(`${cannotUseDocker}: skipping it`)
  return false
}

/** Runs a command and fails with its output unless it exits 0. */
export const must = async (command: string, args: ReadonlyArray<string>, stdin?: string) => {
  const done = await start(command, args, stdin === undefined ? {} : { stdin }).finished
  if (done.code !== 0)
    throw new Error(`${command} ${args.join(" ")} exited ${done.code}:\n${done.stdout}\n${done.stderr}`)
  return done.stdout.trim()
}

export const docker = (...args: ReadonlyArray<string>) => must("docker", args)

const exists = async (image: string) =>
  (await start("docker", ["image", "inspect", image]).finished).code === 0

/**
 * `always` rebuilds the app's image from scratch (`make test_integration`); `skip` reuses it when it
 * exists (the `_quick` targets); unset, the build cache decides.
 */
export const buildMode = process.env.P2PAL_DOCKER_BUILD ?? "cached"

const installPackages = async () => {
  const missing = [
    ["dockerd", "docker.io"],
    ["docker-compose", "docker-compose"],
    ["debootstrap", "debootstrap"],
  ].filter(([binary]) => onPath(binary!) === undefined)
  if (missing.length === 0) return
  const packages = missing.map(([, name]) => name!)
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
  const install = () => start("apt-get", ["install", "-y", "-qq", ...packages], { env }).finished
  if ((await install()).code === 0) return
  await must("apt-get", ["update", "-qq"])
  const retried = await install()
  if (retried.code !== 0) throw new Error(`apt-get install ${packages.join(" ")}: ${retried.stderr}`)
}

export interface Engine {
  /** Stops the daemon if this started it, and restores what it changed on the host. */
  readonly stop: () => Promise<void>
}

/** A daemon that answers `docker info`: the one already running, or one started here. */
export const startEngine = async (): Promise<Engine> => {
  await installPackages()
  if ((await start("docker", ["info"]).finished).code === 0) return { stop: async () => {} }
  // dockerd sets FORWARD's policy to DROP, turns forwarding on and adds its chains and docker0.
  const rules = await must("iptables-save", [])
  const forwarding = (await fs.readFile("/proc/sys/net/ipv4/ip_forward", "utf8")).trim()
  const daemon = start("dockerd", [])
  await waitFor(
    "dockerd to answer",
    async () => {
      const ended = await Promise.race([daemon.finished, Promise.resolve(undefined)])
      if (ended !== undefined) throw new Error(`dockerd exited (${ended.code}): ${ended.stderr}`)
      return (await start("docker", ["info"]).finished).code === 0 ? true : undefined
    },
    60_000,
  )
  return {
    stop: async () => {
      daemon.child.kill("SIGTERM")
      await daemon.finished
      await must("iptables-restore", [], rules)
      await fs.writeFile("/proc/sys/net/ipv4/ip_forward", forwarding)
      await start("ip", ["link", "del", "docker0"]).finished
    },
  }
}

const standins = path.join(repo, "test/docker/standins")
const base = "p2pal-standin/bookworm:minbase"

/** Debian bookworm (minbase) from apt's configured mirror, imported as an image. */
const buildBase = async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "p2pal-rootfs-"))
  try {
    const mirror = /^URIs:\s*(\S+)/m.exec(
      await fs.readFile("/etc/apt/sources.list.d/debian.sources", "utf8").catch(() => ""),
    )?.[1]
    await must("debootstrap", [
      "--variant=minbase",
      "bookworm",
      root,
      mirror ?? "http://deb.debian.org/debian",
    ])
    await must("sh", [
      "-c",
      `rm -rf "$1"/var/lib/apt/lists/* && tar -C "$1" -c . | docker import - ${base}`,
      "sh",
      root,
    ])
  } finally {
    await fs.rm(root, { recursive: true, force: true })
  }
}

/** The host's Node and npm and its CA bundle, the context of the Node stand-in. */
const nodeContext = async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "p2pal-node-"))
  await fs.copyFile(process.execPath, path.join(dir, "node"))
  const npm = path.resolve(await fs.realpath(onPath("npm")!), "../..")
  await fs.cp(npm, path.join(dir, "npm"), { recursive: true })
  const ca = process.env.NODE_EXTRA_CA_CERTS ?? "/etc/ssl/certs/ca-certificates.crt"
  await fs.copyFile(ca, path.join(dir, "ca.pem")).catch(() => fs.writeFile(path.join(dir, "ca.pem"), ""))
  return dir
}

/** Builds a stand-in for each base image the repo's files name and the engine does not have. */
export const ensureBaseImages = async () => {
  const wanted = [
    { tags: ["node:20-bookworm-slim", "node:20-alpine"], file: "node.Dockerfile", context: nodeContext },
    { tags: ["redis:7-alpine"], file: "redis.Dockerfile" },
    { tags: ["coturn/coturn:4.6"], file: "coturn.Dockerfile" },
  ]
  for (const { tags, file, context } of wanted) {
    const present = await Promise.all(tags.map(exists))
    if (present.every(Boolean)) continue
    if (!(await exists(base))) await buildBase()
    const dir = context === undefined ? standins : await context()
    try {
      const tagged = tags.flatMap((tag) => ["-t", tag])
      await docker("build", "-q", ...tagged, "-f", path.join(standins, file), dir)
    } finally {
      if (dir !== standins) await fs.rm(dir, { recursive: true, force: true })
    }
  }
}

/** The signal app's image, built from apps/signal/Dockerfile as a user would build it. */
export const buildSignalImage = async (tag: string) => {
  if (buildMode === "skip" && (await exists(tag))) return
  await docker(
    "build",
    "-q",
    ...(buildMode === "always" ? ["--no-cache"] : []),
    "-f",
    "apps/signal/Dockerfile",
    "-t",
    tag,
    repo,
  )
}

/** A container's health: starting, healthy or unhealthy. */
export const health = (container: string) => docker("inspect", "-f", "{{.State.Health.Status}}", container)

export const healthy = (container: string, timeoutMs = 60_000) =>
  waitFor(
    `${container} to turn healthy`,
    async () => ((await health(container)) === "healthy" ? true : undefined),
    timeoutMs,
  )

export interface Stack {
  /** `docker-compose` (or `docker compose`) on the repo's compose.yaml, in this stack's project. */
  readonly compose: (args: ReadonlyArray<string>, env?: Readonly<Record<string, string>>) => Promise<string>
  /** The containers of a service, in instance order. */
  readonly containers: (service: string) => Promise<ReadonlyArray<string>>
  /** Where instance `index` (1-based) of the signal service is published on this host. */
  readonly signalUrl: (index?: number) => Promise<string>
  /** Takes everything down: containers, networks, volumes. */
  readonly down: () => Promise<void>
}

/** The compose file as it is in the repo, under its own project name; none of the caller's settings leak in. */
export const composeStack = (project: string): Stack => {
  const [command, ...prefix] =
    onPath("docker-compose") !== undefined ? ["docker-compose"] : ["docker", "compose"]
  const compose = async (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
    const file = ["-p", project, "-f", path.join(repo, "compose.yaml")]
    const unset = { TURN_SECRET: "", TURN_URL: "", P2PAL_SIGNAL_PUBLISH: "" }
    const done = await start(command!, [...prefix, ...file, ...args], { env: { ...unset, ...env } }).finished
    if (done.code !== 0) throw new Error(`compose ${args.join(" ")} exited ${done.code}:\n${done.stderr}`)
    return done.stdout.trim()
  }
  const containers = async (service: string) => {
    const labels = [`com.docker.compose.project=${project}`, `com.docker.compose.service=${service}`]
    const listed = await docker(
      "ps",
      ...labels.flatMap((label) => ["--filter", `label=${label}`]),
      "--format",
      '{{.Label "com.docker.compose.container-number"}} {{.ID}}',
    )
    return listed
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => line.split(" "))
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([, id]) => id!)
  }
  return {
    compose,
    containers,
    signalUrl: async (index = 1) => {
      const published = await compose(["port", "--index", String(index), "signal", "8080"])
      return `http://127.0.0.1:${published.split(":").at(-1)}`
    },
    down: async () => {
      await compose(["--profile", "turn", "down", "--volumes", "--remove-orphans"])
    },
  }
}
