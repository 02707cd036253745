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
 * With `{ nat: true }` the bridge is the public internet: `sig` stays on it, while `snd` and `rcv` each
 * sit alone on a private LAN behind their own router (`routerS`, `routerR`), a namespace with one leg
 * on the bridge and one on the LAN that forwards and masquerades, like a home router. Each router also
 * drops what it would forward to the other router, so the peers never reach each other directly; only
 * `sig` (signal app, STUN/TURN) is reachable from both. Without those rules hole punching through the
 * two masquerades still failed in the runs tried here, but by a race that could go either way: a check
 * that reached a router before its own peer had sent left a conntrack entry, and the peer's packet
 * then left with another source port than the one STUN had reported.
 */
export type Host = "sig" | "snd" | "rcv"
/** The NAT topology's routers: `routerS` in front of `snd`, `routerR` in front of `rcv`. */
export type Router = "routerS" | "routerR"

const hosts: ReadonlyArray<Host> = ["sig", "snd", "rcv"]
export const addresses: Readonly<Record<Host, string>> = {
  sig: "10.77.0.1",
  snd: "10.77.0.2",
  rcv: "10.77.0.3",
}
const prefixLength = 24

/** The NAT topology's addresses: the routers' public legs on the bridge, the peers' on their own LAN. */
export const natAddresses: Readonly<Record<Host | Router, string>> = {
  sig: "10.77.0.1",
  routerS: "10.77.0.2",
  routerR: "10.77.0.3",
  snd: "192.168.1.2",
  rcv: "192.168.2.2",
}
type Peer = "snd" | "rcv"
const peers: ReadonlyArray<Peer> = ["snd", "rcv"]
const routerOf: Readonly<Record<Peer, Router>> = { snd: "routerS", rcv: "routerR" }
/** Each router's address on its peer's LAN: the peer's default gateway. */
const gateways: Readonly<Record<Peer, string>> = { snd: "192.168.1.1", rcv: "192.168.2.1" }

/** A topology; `M` names its machines: the hosts, and in the NAT topology the routers too. */
export interface Netns<M extends string = Host> {
  /** The namespace of each machine, for `ip netns exec` and `ip -n`. */
  readonly namespaces: Readonly<Record<M, string>>
  readonly addresses: Readonly<Record<M, string>>
  /** `Processes.start` inside the machine's namespace: same output capture, killed at exit like the rest. */
  readonly start: (
    machine: M,
    command: string,
    args: ReadonlyArray<string>,
    options?: StartOptions,
  ) => Running
  readonly run: (machine: M, command: string, args: ReadonlyArray<string>) => Promise<Finished>
  /**
   * Takes the host's own end of its link down (no carrier, its routes gone) or back up (with its
   * default route again, behind a NAT router). A peer's link is the one to its router, if it has one.
   */
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

/** Gives one end of a veth its address and brings it up; no IPv6 address, so ICE sees one candidate. */
const configure = async (ns: string, dev: string, address: string) => {
  await ip("-n", ns, "link", "set", dev, "addrgenmode", "none")
  await ip("-n", ns, "addr", "add", `${address}/${prefixLength}`, "dev", dev)
  await ip("-n", ns, "link", "set", dev, "up")
}

/** Joins `ns` to the bridge as `eth0` with `address`. */
const plug = async (lan: string, port: string, ns: string, address: string) => {
  await ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
  await ip("-n", lan, "link", "set", port, "master", "br0", "up")
  await configure(ns, "eth0", address)
}

/** Puts `peer` on its own LAN as `eth0`, the router's `eth1`, with the router as its default route. */
const wire = async (router: string, peer: Peer, ns: string) => {
  await ip("-n", router, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", ns)
  await configure(router, "eth1", gateways[peer])
  await configure(ns, "eth0", natAddresses[peer])
  await ip("-n", ns, "route", "add", "default", "via", gateways[peer])
}

const inside = async (ns: string, ...command: ReadonlyArray<string>) => {
  const done = await start("ip", ["netns", "exec", ns, ...command]).finished
  if (done.code !== 0)
    throw new Error(`${command.join(" ")} in ${ns} failed (${done.code}): ${done.stderr.trim()}`)
}

/**
 * Makes `ns` a NAT router between its LAN (`eth1`) and the bridge (`eth0`) that drops anything it would
 * forward to `blocked`, the other router. `sh -c` since a namespace has its own `ip_forward` and the
 * machine may have no `sysctl`.
 */
const route = async (ns: string, blocked: string) => {
  await inside(ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
  await inside(ns, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-j", "MASQUERADE")
  await inside(ns, "iptables", "-A", "FORWARD", "-d", blocked, "-j", "DROP")
}

const deleteNamespaces = async (names: ReadonlyArray<string>) => {
  for (const ns of names) {
    if (!existing.has(ns)) continue
    await ip("netns", "del", ns)
    existing.delete(ns)
  }
}

let topologies = 0

/** The NAT topology: hosts and routers. */
export type NatNetns = Netns<Host | Router>

/**
 * Builds the topology under names unique to this process (interface names stay short: eth0, eth1, br0,
 * and the bridge ports named after the machines); `{ nat: true }` builds the NAT topology.
 */
export function createNetns(): Promise<Netns>
export function createNetns(options: { readonly nat: true }): Promise<NatNetns>
export async function createNetns(options?: { readonly nat: true }): Promise<Netns | NatNetns> {
  await sweepLeftovers()
  const nat = options?.nat === true
  const prefix = `p2pal${process.pid}-${++topologies}`
  const lan = `${prefix}-lan`
  const machines: ReadonlyArray<Host | Router> = nat ? [...hosts, "routerS", "routerR"] : hosts
  const namespaces = Object.fromEntries(machines.map((m) => [m, `${prefix}-${m}`])) as Record<
    Host | Router,
    string
  >
  const topologyAddresses: Readonly<Record<string, string>> = nat ? natAddresses : addresses
  /** The peers are behind their routers in the NAT topology, so only sig and the routers are on the bridge. */
  const onBridge: ReadonlyArray<Host | Router> = nat ? ["sig", "routerS", "routerR"] : hosts
  const all = [lan, ...machines.map((m) => namespaces[m])]
  try {
    for (const ns of all) await addNamespace(ns)
    await ip("-n", lan, "link", "add", "br0", "type", "bridge")
    await ip("-n", lan, "link", "set", "br0", "up")
    for (const m of onBridge) await plug(lan, m, namespaces[m], topologyAddresses[m]!)
    if (nat) {
      for (const peer of peers) await wire(namespaces[routerOf[peer]], peer, namespaces[peer])
      await route(namespaces.routerS, natAddresses.routerR)
      await route(namespaces.routerR, natAddresses.routerS)
      // Like a host on the internet, sig sends what is not on its segment to a default gateway (one
      // that does not exist here), where it is lost quietly. Without a route, coturn's send of an ICE
      // check to a peer's private address fails with ENETUNREACH, and coturn then drops the whole
      // allocation, so no relayed pair could ever work (strace showed it).
      await ip("-n", namespaces.sig, "route", "add", "default", "via", "10.77.0.254")
    }
  } catch (e) {
    await deleteNamespaces(all)
    throw e
  }

  const started = new Set<Running>()
  const startIn = (
    machine: Host | Router,
    command: string,
    args: ReadonlyArray<string>,
    options?: StartOptions,
  ) => {
    const running = start("ip", ["netns", "exec", namespaces[machine], command, ...args], options)
    started.add(running)
    void running.finished.then(() => started.delete(running))
    return running
  }
  // Typed as the NAT topology; the overloads give the flat one its narrower type.
  const netns: NatNetns = {
    namespaces,
    addresses: topologyAddresses as Record<Host | Router, string>,
    start: startIn,
    run: (machine, command, args) => startIn(machine, command, args).finished,
    linkDown: (host) => ip("-n", namespaces[host], "link", "set", "eth0", "down"),
    linkUp: async (host) => {
      await ip("-n", namespaces[host], "link", "set", "eth0", "up")
      // Routes through a link go with it; only the LAN's own route comes back with the link.
      if (nat && host !== "sig") {
        await ip("-n", namespaces[host], "route", "replace", "default", "via", gateways[host])
      }
    },
    destroy: async () => {
      // A namespace outlives its deletion while a process is still inside it.
      const remaining = [...started]
      remaining.forEach((p) => p.child.kill("SIGKILL"))
      await Promise.all(remaining.map((p) => p.finished))
      await deleteNamespaces(all)
    },
  }
  return netns
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

const whyNoNat = (): string | undefined => {
  if (cannotUseNetns !== undefined) return cannotUseNetns
  // The kernel may lack NAT, and iptables may be missing: ask for a NAT table in a namespace of its own.
  const trial = `p2pal${process.pid}-trial`
  spawnSync("ip", ["netns", "add", trial])
  try {
    const nat = spawnSync("ip", ["netns", "exec", trial, "iptables", "-t", "nat", "-L", "-n"], {
      encoding: "utf8",
    })
    if (nat.status !== 0) return `iptables -t nat failed (install iptables): ${nat.stderr.trim()}`
    return undefined
  } finally {
    spawnSync("ip", ["netns", "del", trial])
  }
}

/** Why this machine cannot build the NAT topology (as `cannotUseNetns`, or no iptables NAT), or undefined. */
export const cannotUseNatNetns = whyNoNat()
export const canUseNatNetns = cannotUseNatNetns === undefined

/**
 * One topology for the calling test file, built before its tests when the machine allows it and
 * destroyed after them; the accessor throws if it was not built.
 */
export function useNetns(): () => Netns
export function useNetns(options: { readonly nat: true }): () => NatNetns
export function useNetns(options?: { readonly nat: true }): () => Netns | NatNetns {
  const cannot = options?.nat ? cannotUseNatNetns : cannotUseNetns
  let netns: Netns | NatNetns | undefined
  beforeAll(async () => {
    if (cannot === undefined) netns = options === undefined ? await createNetns() : await createNetns(options)
  })
  afterAll(() => netns?.destroy())
  return () => {
    if (netns === undefined) throw new Error(`no network namespaces: ${cannot}`)
    return netns
  }
}
