import { spawnSync } from "node:child_process"
import { afterAll, beforeAll } from "vitest"
import { type Finished, type Running, type StartOptions, start } from "./Processes.js"

/**
 * Several hosts on one machine, each a network namespace, for tests that cut links: `sig` runs the
 * signal app, `snd` and `rcv` the two peers. Each host has one veth `eth0` with an address on a private
 * /24; the other ends sit on a bridge in a fourth namespace (`lan`), so taking one host's link down
 * leaves the others talking. Nothing is created in the machine's own namespace: deleting the
 * namespaces removes every interface with them.
 *
 * NAT later: a router namespace joins the bridge like a host (`plug`), the peer moves behind it on a
 * second veth with a private subnet and a default route, and the router gets an iptables MASQUERADE rule.
 */
export type Host = "sig" | "snd" | "rcv"

const hosts: ReadonlyArray<Host> = ["sig", "snd", "rcv"]
export const addresses: Readonly<Record<Host, string>> = {
  sig: "10.77.0.1",
  snd: "10.77.0.2",
  rcv: "10.77.0.3",
}
const prefixLength = 24

export interface Netns {
  /** The namespace of each host, for `ip netns exec` and `ip -n`. */
  readonly namespaces: Readonly<Record<Host, string>>
  readonly addresses: Readonly<Record<Host, string>>
  /** `Processes.start` inside the host's namespace: same output capture, killed at exit like the rest. */
  readonly start: (
    host: Host,
    command: string,
    args: ReadonlyArray<string>,
    options?: StartOptions,
  ) => Running
  readonly run: (host: Host, command: string, args: ReadonlyArray<string>) => Promise<Finished>
  /** Takes the host's own end of its link down (no carrier, its routes gone) or back up. */
  readonly linkDown: (host: Host) => Promise<void>
  readonly linkUp: (host: Host) => Promise<void>
  /** Kills what still runs inside and deletes the namespaces, and with them every interface. */
  readonly destroy: () => Promise<void>
}

/** Namespaces not yet deleted, removed at exit if `destroy` never ran (a test file that crashed). */
const existing = new Set<string>()
process.on("exit", () => existing.forEach((ns) => spawnSync("ip", ["netns", "del", ns])))

/** Every namespace this harness makes is named after the process that made it. */
const owned = /^p2pal(\d+)-/

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/**
 * Deletes what earlier test processes left: Ctrl+C or SIGKILL ends a test worker without its exit
 * handlers. Another file sweeping at the same time may delete one first, so failures are ignored.
 */
const sweepLeftovers = async () => {
  const listed = await start("ip", ["netns", "list"]).finished
  for (const line of listed.stdout.split("\n")) {
    const name = line.split(" ")[0]!
    const pid = name.match(owned)?.[1]
    if (pid !== undefined && !isAlive(Number(pid))) await start("ip", ["netns", "del", name]).finished
  }
}

const ip = async (...args: ReadonlyArray<string>) => {
  const done = await start("ip", args).finished
  if (done.code !== 0) throw new Error(`ip ${args.join(" ")} failed (${done.code}): ${done.stderr.trim()}`)
}

const addNamespace = async (ns: string) => {
  await ip("netns", "add", ns)
  existing.add(ns)
  await ip("-n", ns, "link", "set", "lo", "up")
}

/** Joins `ns` to the bridge as `eth0` with `address`; no IPv6 address, so ICE sees one candidate. */
const plug = async (lan: string, port: string, ns: string, address: string) => {
  await ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
  await ip("-n", lan, "link", "set", port, "master", "br0", "up")
  await ip("-n", ns, "link", "set", "eth0", "addrgenmode", "none")
  await ip("-n", ns, "addr", "add", `${address}/${prefixLength}`, "dev", "eth0")
  await ip("-n", ns, "link", "set", "eth0", "up")
}

const deleteNamespaces = async (names: ReadonlyArray<string>) => {
  for (const ns of names) {
    if (!existing.has(ns)) continue
    await ip("netns", "del", ns)
    existing.delete(ns)
  }
}

let topologies = 0

/** Builds the topology under names unique to this process (interface names stay short: eth0, br0, snd). */
export const createNetns = async (): Promise<Netns> => {
  await sweepLeftovers()
  const prefix = `p2pal${process.pid}-${++topologies}`
  const lan = `${prefix}-lan`
  const namespaces = { sig: `${prefix}-sig`, snd: `${prefix}-snd`, rcv: `${prefix}-rcv` }
  const all = [lan, ...hosts.map((h) => namespaces[h])]
  try {
    for (const ns of all) await addNamespace(ns)
    await ip("-n", lan, "link", "add", "br0", "type", "bridge")
    await ip("-n", lan, "link", "set", "br0", "up")
    for (const host of hosts) await plug(lan, host, namespaces[host], addresses[host])
  } catch (e) {
    await deleteNamespaces(all)
    throw e
  }

  const started = new Set<Running>()
  const startIn = (host: Host, command: string, args: ReadonlyArray<string>, options?: StartOptions) => {
    const running = start("ip", ["netns", "exec", namespaces[host], command, ...args], options)
    started.add(running)
    void running.finished.then(() => started.delete(running))
    return running
  }
  return {
    namespaces,
    addresses,
    start: startIn,
    run: (host, command, args) => startIn(host, command, args).finished,
    linkDown: (host) => ip("-n", namespaces[host], "link", "set", "eth0", "down"),
    linkUp: (host) => ip("-n", namespaces[host], "link", "set", "eth0", "up"),
    destroy: async () => {
      // A namespace outlives its deletion while a process is still inside it.
      const remaining = [...started]
      remaining.forEach((p) => p.child.kill("SIGKILL"))
      await Promise.all(remaining.map((p) => p.finished))
      await deleteNamespaces(all)
    },
  }
}

const whyNot = (): string | undefined => {
  if (process.getuid?.() !== 0) return "network namespaces need root"
  const trial = `p2pal${process.pid}-trial`
  const added = spawnSync("ip", ["netns", "add", trial], { encoding: "utf8" })
  if (added.error !== undefined) return `cannot run ip (install iproute2): ${added.error.message}`
  if (added.status !== 0) return `ip netns add failed: ${added.stderr.trim()}`
  spawnSync("ip", ["netns", "del", trial])
  return undefined
}

/** Why this machine cannot build the topology (not root, no `ip`, namespaces refused), or undefined. */
export const cannotUseNetns = whyNot()
export const canUseNetns = cannotUseNetns === undefined

/**
 * One topology for the calling test file, built before its tests when the machine allows it and
 * destroyed after them; the accessor throws if it was not built.
 */
export const useNetns = () => {
  let netns: Netns | undefined
  beforeAll(async () => {
    if (canUseNetns) netns = await createNetns()
  })
  afterAll(() => netns?.destroy())
  return () => {
    if (netns === undefined) throw new Error(`no network namespaces: ${cannotUseNetns}`)
    return netns
  }
}
