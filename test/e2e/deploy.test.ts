// What `docker compose up` relies on, checked without a Docker engine: the compose file and the Dockerfile
// are read as data, and the image's entry point runs here on exactly the files the image would hold.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { parse } from "yaml"
import { removeTempDirs, repo, start, tempDir } from "../support/Processes.js"

afterAll(removeTempDirs)

interface Service {
  readonly image?: string
  readonly command?: ReadonlyArray<string>
  readonly build?: { readonly context: string; readonly dockerfile: string }
  readonly environment?: Record<string, string>
  readonly depends_on?: Record<string, { readonly condition: string }>
  readonly healthcheck?: { readonly test: ReadonlyArray<string> }
  readonly stop_grace_period?: string
  readonly profiles?: ReadonlyArray<string>
}

const compose = async () =>
  parse(await fs.readFile(path.join(repo, "compose.yaml"), "utf8")) as { services: Record<string, Service> }

interface Instruction {
  readonly keyword: string
  readonly args: string
}

/** Dockerfile instructions grouped by stage (each starts at a FROM), continuations joined, comments dropped. */
const stages = async (): Promise<Array<Array<Instruction>>> => {
  const text = await fs.readFile(path.join(repo, "apps/signal/Dockerfile"), "utf8")
  const result: Array<Array<Instruction>> = []
  for (const line of text.replace(/\\\n/g, " ").split("\n")) {
    const match = /^\s*([A-Z]+)\s+(.*)$/.exec(line)
    if (match === null) continue
    const instruction = { keyword: match[1]!, args: match[2]!.trim() }
    if (instruction.keyword === "FROM") result.push([])
    result.at(-1)!.push(instruction)
  }
  return result
}

const only = (stage: ReadonlyArray<Instruction>, keyword: string) =>
  stage.filter((i) => i.keyword === keyword).map((i) => i.args)

/** The command of the stage's one instruction of this kind, in JSON (exec) form, after any options. */
const execForm = (stage: ReadonlyArray<Instruction>, keyword: string): Array<string> => {
  const [args] = only(stage, keyword)
  return JSON.parse(args!.slice(args!.indexOf("[")))
}

describe("compose.yaml", () => {
  it("runs redis without eviction, with a health check", async () => {
    const { redis } = (await compose()).services
    const command = redis!.command!
    expect(redis!.image).toMatch(/^redis:7/)
    expect(command[command.indexOf("--maxmemory-policy") + 1]).toBe("noeviction")
    expect(redis!.healthcheck!.test).toEqual(["CMD", "redis-cli", "ping"])
  })

  it("builds the signal app from its Dockerfile and points it at the redis service once that is healthy", async () => {
    const { services } = await compose()
    const signal = services.signal!
    expect(signal.build).toEqual({ context: ".", dockerfile: "apps/signal/Dockerfile" })
    const redisUrl = new URL(signal.environment!.REDIS_URL!)
    expect(redisUrl.protocol).toBe("redis:")
    expect(services[redisUrl.hostname]?.image).toMatch(/^redis:/)
    expect(signal.depends_on).toEqual({ [redisUrl.hostname]: { condition: "service_healthy" } })
    expect(signal.healthcheck!.test.join(" ")).toContain("/readyz")
    expect(signal.stop_grace_period).toBeDefined()
  })

  it("offers coturn behind the turn profile, checking the credentials the signal app makes with TURN_SECRET", async () => {
    const { services } = await compose()
    const coturn = services.coturn!
    expect(coturn.image).toMatch(/^coturn\//)
    expect(coturn.profiles).toEqual(["turn"])
    expect(coturn.command).toContain("--use-auth-secret")
    expect(coturn.command!.find((arg) => arg.startsWith("--static-auth-secret="))).toMatch(
      /\$\{TURN_SECRET\b/,
    )
    expect(services.signal!.environment).toMatchObject({
      TURN_SECRET: "${TURN_SECRET:-}",
      TURN_URL: "${TURN_URL:-}",
    })
  })
})

describe("apps/signal/Dockerfile", () => {
  it("builds in one stage and runs only the bundle, as a non-root user, in another", async () => {
    const [build, runtime, ...rest] = await stages()
    expect(rest).toEqual([])
    expect(build![0]!.args).toMatch(/ AS build$/)
    expect(only(runtime!, "RUN")).toEqual([])
    const copies = only(runtime!, "COPY")
    expect(copies.length).toBeGreaterThan(0)
    for (const copy of copies) expect(copy).toMatch(/^--from=build \S+\/apps\/signal\/dist\/bundle\/\S+ \S+$/)
    const users = only(runtime!, "USER")
    expect(users.at(-1)).toMatch(/^(?!root\b|0\b)\S+$/)
    expect(only(runtime!, "STOPSIGNAL")).toEqual(["SIGTERM"])
    expect(only(runtime!, "EXPOSE")).toEqual(["8080"])
    expect(only(runtime!, "HEALTHCHECK").join(" ")).toContain("/healthz")
  })

  it("installs dependencies from every workspace's manifest before the sources arrive", async () => {
    const [build] = await stages()
    const { workspaces } = JSON.parse(await fs.readFile(path.join(repo, "package.json"), "utf8")) as {
      workspaces: ReadonlyArray<string>
    }
    expect(only(build!, "COPY")).toEqual([
      "package.json package-lock.json ./",
      ...workspaces.map((w) => `${w}/package.json ${w}/`),
      ". .",
    ])
  })

  it("its entry point runs the copied bundle alone, answers the health checks and stops on SIGTERM", async () => {
    const [build, runtime] = await stages()
    const buildDir = only(build!, "WORKDIR").at(-1)!
    const appDir = only(runtime!, "WORKDIR").at(-1)!
    // The image's files, in a directory with no node_modules anywhere above it.
    const image = await tempDir()
    const inImage = (file: string) => path.join(image, path.posix.relative(appDir, file))
    for (const copy of only(runtime!, "COPY")) {
      const [, from, to] = copy.split(" ")
      await fs.mkdir(path.dirname(inImage(to!)), { recursive: true })
      await fs.copyFile(path.join(repo, path.posix.relative(buildDir, from!)), inImage(to!))
    }
    const [node, ...args] = execForm(runtime!, "ENTRYPOINT")
    expect(node).toBe("node")
    const app = start(process.execPath, [
      ...args.map((arg) => (arg.startsWith(`${appDir}/`) ? inImage(arg) : arg)),
      ...["--port", "0", "--host", "127.0.0.1"],
    ])
    const [, url] = await app.line(/^p2pal-signal listening on (http:\/\/\S+)$/)
    expect((await fetch(`${url}/healthz`)).status).toBe(200)
    expect((await fetch(`${url}/readyz`)).status).toBe(200)

    // Both health checks, as Docker would run them inside the container (PORT comes from the image).
    const port = new URL(url!).port
    const checks = [
      execForm(runtime!, "HEALTHCHECK"),
      (await compose()).services.signal!.healthcheck!.test.slice(1),
    ]
    for (const [command, ...checkArgs] of checks) {
      expect(command).toBe("node")
      const check = await start(process.execPath, checkArgs, { env: { PORT: port } }).finished
      expect(check.code, check.stderr).toBe(0)
    }

    const startedStopping = Date.now()
    app.child.kill("SIGTERM")
    const finished = await app.finished
    expect(Date.now() - startedStopping).toBeLessThan(5_000)
    expect(finished.code, finished.stderr).toBe(0)
  })
})
