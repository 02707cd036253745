import * as path from "node:path"
import { addresses, type Netns } from "./Netns.js"
import { type Finished, repo, start } from "./Processes.js"

/**
 * A delay/loss/rate link between `snd` and `rcv` of a Netns topology, through test/support/wanlink.py
 * (a user-space forwarder: this kernel has no netem), for tests of transfers over a WAN-like link.
 * While it is up, each peer's route to the other's bridge address is unreachable, so the peers meet
 * only over the link; both still reach `sig` on the bridge, so signaling is not delayed.
 */
export interface WanLink {
  /** Each peer's address on the link. */
  readonly addresses: Readonly<Record<"snd" | "rcv", string>>
  /** Stops the forwarder (its devices go with it) and gives the bridge path back; its output. */
  readonly stop: () => Promise<Finished>
}

export interface WanLinkOptions {
  readonly rttMs: number
  /** Drop probability per packet, each way: 0.005 is 0.5 %. */
  readonly loss?: number
  /** Per direction, 0 (the default) for no cap. */
  readonly rateMbit?: number
}

const forwarder = path.join(repo, "test/support/wanlink.py")
const prefix = "10.203.0"
let links = 0

const ip = async (...args: ReadonlyArray<string>) => {
  const done = await start("ip", args).finished
  if (done.code !== 0) throw new Error(`ip ${args.join(" ")} failed (${done.code}): ${done.stderr.trim()}`)
}

/** Cuts (`add`) or gives back (`del`) the bridge path between the two peers. */
const bridgePath = async (netns: Netns, action: "add" | "del") => {
  await ip("-n", netns.namespaces.snd, "route", action, "unreachable", `${addresses.rcv}/32`)
  await ip("-n", netns.namespaces.rcv, "route", action, "unreachable", `${addresses.snd}/32`)
}

export const startWanLink = async (netns: Netns, options: WanLinkOptions): Promise<WanLink> => {
  // Created in the machine's namespace before they are moved: unique to this process and link.
  const id = `wl${process.pid}-${++links}`
  const link = start("python3", [
    ...[forwarder, netns.namespaces.snd, netns.namespaces.rcv, "--dev-a", `${id}s`, "--dev-b", `${id}r`],
    ...["--delay-ms", String(options.rttMs / 2), "--loss", String(options.loss ?? 0)],
    ...["--rate-mbit", String(options.rateMbit ?? 0), "--prefix", prefix],
  ])
  await link.line(/^wanlink up: /)
  await bridgePath(netns, "add")
  return {
    addresses: { snd: `${prefix}.1`, rcv: `${prefix}.2` },
    stop: async () => {
      link.child.kill("SIGTERM")
      const finished = await link.finished
      await bridgePath(netns, "del")
      return finished
    },
  }
}
