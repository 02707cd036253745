import { addresses, type Netns } from "./Netns.js"
import { bin, type Running, signalArgs, waitFor } from "./Processes.js"

/** Whether the signal app answers /readyz with 200 (its store is reachable), asked from inside `sig`. */
const isReady = `fetch(process.argv[1]).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))`

/**
 * The signal app in `sig` on `port` (fixed: a restart must come back where the peers look), once it
 * listens and its store is reachable; `args` are more flags (`--redis URL`).
 */
export const startSignalIn = async (netns: Netns, port: number, args: ReadonlyArray<string> = []) => {
  const app = netns.start(
    "sig",
    bin("p2pal-signal"),
    signalArgs([...["--host", "0.0.0.0", "--port", String(port)], ...args]),
  )
  await app.line(/^p2pal-signal listening on /)
  const readyz = `http://${addresses.sig}:${port}/readyz`
  await waitFor("the signal app ready", async () =>
    (await netns.run("sig", process.execPath, ["-e", isReady, readyz])).code === 0 ? true : undefined,
  )
  return app
}

/**
 * redis-server in `sig` on `port`, with no persistence, once it accepts connections. It listens on
 * sig's bridge address: only the signal app, in the same namespace, reaches it, but not on loopback.
 */
export const startRedisIn = async (netns: Netns, port: number): Promise<Running> => {
  const redis = netns.start("sig", "redis-server", [
    ...["--port", String(port), "--bind", addresses.sig, "--save", "", "--appendonly", "no"],
    ...["--protected-mode", "no"],
  ])
  await redis.line(/Ready to accept connections/)
  return redis
}
