import { createHmac } from "node:crypto"
import * as dgram from "node:dgram"
import * as path from "node:path"
import { expect, test } from "vitest"
import { type Finished, type Running, start, tempDir, onPath } from "./Processes.js"

const binary = onPath("turnserver")

/** Whether coturn's `turnserver` is on the PATH. */
export const hasCoturn = binary !== undefined
/** Why coturn tests cannot run here, or undefined. */
export const cannotUseCoturn = hasCoturn
  ? undefined
  : "turnserver not found on the PATH (apt-get install coturn)"

/**
 * Whether a file's coturn tests should run. Without turnserver they are skipped locally, saying so,
 * but under CI=true a failing test is declared instead: CI must never skip them silently.
 */
export const requireCoturn = (): boolean => {
  if (hasCoturn) return true
  if (process.env.CI === "true") {
    test("turnserver is installed", () => expect(binary, "turnserver on the PATH").toBeDefined())
  } else {
    console.warn(`${cannotUseCoturn}: skipping the TURN tests`)
  }
  return false
}

/**
 * How clients authenticate: with REST credentials derived from a shared secret (what a signal app
 * hands out, see `restCredentials`), or as fixed users (name to password).
 */
export type TurnAuth = { readonly secret: string } | { readonly users: Readonly<Record<string, string>> }

export interface CoturnOptions {
  readonly auth: TurnAuth
  /**
   * Where it runs when not here on loopback: `start` launches a command there (e.g. in a namespace,
   * `(command, args) => netns().start("sig", command, args)`), and it listens and relays on `ip`, port 3478.
   */
  readonly inside?: {
    readonly ip: string
    readonly start: (command: string, args: ReadonlyArray<string>) => Running
  }
}

export interface Coturn {
  /** Its address and UDP port, for node-datachannel's `IceServer` or a `turn:` URL. */
  readonly hostname: string
  readonly port: number
  /** Resolves with the next line of its (verbose) log that matches `pattern`. */
  readonly logLine: (pattern: RegExp) => Promise<RegExpMatchArray>
  /** Stops it with SIGTERM and tells how it ended; its stdout is its verbose log. */
  readonly stop: () => Promise<Finished>
}

/** A UDP port nothing on `ip` uses right now. */
const freeUdpPort = (ip: string) =>
  new Promise<number>((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    socket.on("error", reject)
    socket.bind(0, ip, () => {
      const { port } = socket.address()
      socket.close(() => resolve(port))
    })
  })

const StandardPort = 3478
/**
 * Not 127.0.0.1, where the peers' own sockets are: coturn lets traffic into a relay by the sender's IP
 * alone (a permission), so with one shared address a peer's direct socket passes for its relay, and
 * node-datachannel, even with `iceTransportPolicy: "relay"` on both ends, then selects a pair with no
 * relay on one side (seen in 5 of 5 runs).
 */
const LoopbackIp = "127.0.0.2"

/**
 * A real coturn: UDP only (node-datachannel's TURN client uses nothing else), no TLS, relay ports from
 * a small range, no config file, and its database and pid file in a temporary directory rather than
 * the system's. Resolves once it has opened its UDP listener.
 */
/** coturn listens within a second here; longer means it never will. */
const StartupMs = 10_000

export const startCoturn = async (options: CoturnOptions): Promise<Coturn> => {
  if (binary === undefined) throw new Error(cannotUseCoturn)
  const ip = options.inside?.ip ?? LoopbackIp
  const port = options.inside === undefined ? await freeUdpPort(ip) : StandardPort
  const dir = await tempDir()
  const auth =
    "secret" in options.auth
      ? ["--use-auth-secret", `--static-auth-secret=${options.auth.secret}`]
      : [
          "--lt-cred-mech",
          ...Object.entries(options.auth.users).map(([name, pass]) => `--user=${name}:${pass}`),
        ]
  const args = [
    ...["-n", "--realm=p2pal", ...auth],
    ...["--no-tls", "--no-dtls", "--no-tcp", "--no-cli"],
    ...[`--listening-ip=${ip}`, `--relay-ip=${ip}`, `--listening-port=${port}`],
    ...["--min-port=49152", "--max-port=49251"],
    // Verbose: it then logs the line that says it listens, and every allocation, for a failing test.
    ...["-v", "--simple-log", "--log-file=stdout"],
    ...[`--userdb=${path.join(dir, "turndb")}`, `--pidfile=${path.join(dir, "turnserver.pid")}`],
    // coturn refuses loopback peers by default, and on loopback every peer is one.
    ...(options.inside === undefined ? ["--allow-loopback-peers"] : []),
  ]
  const running = (options.inside?.start ?? start)(binary, args)
  const listening = new RegExp(`UDP listener opened on: ${ip.replace(/\./g, "\\.")}:${port}$`)
  const startup = setTimeout(() => running.child.kill("SIGKILL"), StartupMs)
  await running
    .line(listening)
    .catch(async () => {
      throw new Error(
        `turnserver did not listen on ${ip}:${port} within ${StartupMs} ms:\n${(await running.finished).stdout}`,
      )
    })
    .finally(() => clearTimeout(startup))
  return {
    hostname: ip,
    port,
    logLine: running.line,
    stop: () => {
      running.child.kill("SIGTERM")
      return running.finished
    },
  }
}

/**
 * TURN REST credentials (coturn's --use-auth-secret): the username is `<expiry in Unix seconds>:<id>`,
 * the password base64(HMAC-SHA1(secret, username)).
 */
export const restCredentials = (secret: string, id: string, validSeconds = 3600) => {
  const username = `${Math.floor(Date.now() / 1000) + validSeconds}:${id}`
  return { username, password: createHmac("sha1", secret).update(username).digest("base64") }
}
