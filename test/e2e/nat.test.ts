import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  cannotUseCoturn,
  type Coturn,
  requireCoturn,
  restCredentials,
  startCoturn,
} from "../support/Coturn.js"
import { cannotUseNatNetns, natAddresses, useNetns } from "../support/Netns.js"
import {
  bin,
  finishedWithin,
  leftIn,
  midTransfer,
  removeTempDirs,
  repo,
  type Running,
  signalArgs,
  start,
  snapshot,
  sparseRandomFile,
  startSignal,
  stderrMatch,
  tempDir,
} from "../support/Processes.js"

const netns = useNetns({ nat: true })
afterAll(removeTempDirs)

const node = process.execPath
const signalPort = 8080
const signalUrl = `http://${natAddresses.sig}:${signalPort}`
const secret = "p2pal-nat-test"
const probe = path.join(repo, "test", "support", "relay-probe.mjs")

/** node-datachannel's object form of an ICE server: REST usernames contain ':', which a URL would mangle. */
const iceServer = (coturn: Coturn, credentials: { username: string; password: string }) =>
  JSON.stringify({ hostname: coturn.hostname, port: coturn.port, ...credentials, relayType: "TurnUdp" })

interface Candidate {
  readonly type: string
  readonly address: string
}
type Pair = { readonly local: Candidate; readonly remote: Candidate }

const descriptionLine = /^\{"description":.*$/
const candidateTypes = (line: string) =>
  [...(JSON.parse(line).description.sdp as string).matchAll(/^a=candidate:.* typ (\w+)/gm)].map((m) => m[1])

/**
 * Connects the two ends of relay-probe.mjs by handing each one's description to the other, then ends
 * both; resolves with the candidate types each offered and the pair each selected.
 */
const connectThroughTurn = async (offerer: Running, answerer: Running) => {
  const [offer] = await offerer.line(descriptionLine)
  answerer.child.stdin!.write(`${offer}\n`)
  const [answer] = await answerer.line(descriptionLine)
  // Both listen before the offerer has the answer: neither can connect before that.
  const connected = [offerer, answerer].map((p) => p.line(/^\{"connected":.*$/))
  offerer.child.stdin!.write(`${answer}\n`)
  const pairs = (await Promise.all(connected)).map(([line]) => JSON.parse(line!).connected as Pair)
  offerer.child.stdin!.end()
  answerer.child.stdin!.end()
  const exits = await Promise.all([offerer.finished, answerer.finished])
  expect(exits.map((f) => f.code)).toEqual([0, 0])
  return { offered: [candidateTypes(offer!), candidateTypes(answer!)], pairs }
}

const relayed = (address: string): Pair => ({
  local: expect.objectContaining({ type: "relay", address }),
  remote: expect.objectContaining({ type: "relay", address }),
})

/** Prints one line per datagram received on argv[1]:argv[2], after "listening". */
const udpListen = `const socket = require("node:dgram").createSocket("udp4")
socket.on("message", (message) => console.log(String(message)))
socket.bind(Number(process.argv[2]), process.argv[1], () => console.log("listening"))`
/** Sends "blocked" to argv[2] and then "control" to argv[3], both on port argv[1]. */
const udpSend = `const socket = require("node:dgram").createSocket("udp4")
const [, port, blocked, control] = process.argv
socket.send("blocked", Number(port), blocked, () =>
  socket.send("control", Number(port), control, () => socket.close()))`
const fetchStatus = `fetch(process.argv[1]).then(async (r) => console.log(r.status, await r.text()))`

const cannot = cannotUseNatNetns ?? cannotUseCoturn

/** The receiver's summary line for a relayed connection: a relay candidate on at least one end. */
const relayedSummary = /^Relayed through TURN: .*relay /m

describe.skipIf(cannot !== undefined && process.env.CI !== "true")(
  cannot === undefined
    ? "snd and rcv behind NAT routers that keep them apart, signal app and coturn on sig"
    : `SKIPPED: ${cannot}`,
  () => {
    const precondition = () =>
      expect(cannot, "run as root with iproute2, iptables and coturn").toBeUndefined()
    let signalApp: Running | undefined
    let coturn: Coturn | undefined
    beforeAll(async () => {
      if (cannot !== undefined) return
      signalApp = netns().start(
        "sig",
        bin("p2pal-signal"),
        signalArgs(["--host", "0.0.0.0", "--port", String(signalPort)]),
      )
      await signalApp.line(/^p2pal-signal listening on /)
      coturn = await startCoturn({
        auth: { secret },
        inside: { ip: natAddresses.sig, start: (command, args) => netns().start("sig", command, args) },
      })
    })
    afterAll(async () => {
      signalApp?.child.kill("SIGTERM")
      await Promise.all([signalApp?.finished, coturn?.stop()])
    })

    /** `p2pal send` in snd, `p2pal recv` in rcv (summary on stderr), both with `flags`; a small file. */
    const transferBetweenPeers = async (flags: ReadonlyArray<string>) => {
      const root = await tempDir()
      const file = path.join(root, "payload.bin")
      await fs.writeFile(file, randomBytes(2 * 1024 * 1024 + 5))
      const out = path.join(root, "out")
      const sender = netns().start("snd", bin("p2pal"), ["send", "-q", "--stun", "", ...flags, file])
      const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
      const receiver = netns().start("rcv", bin("p2pal"), [
        ...["recv", "-y", "--stun", "", ...flags, "--out", out, code!],
      ])
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      const same =
        sent.code === 0 &&
        received.code === 0 &&
        Buffer.compare(await fs.readFile(file), await fs.readFile(path.join(out, "payload.bin"))) === 0
      return { sent, received, same }
    }

    it("lets snd reach sig, masqueraded as routerS, but not routerR", async () => {
      precondition()
      const request = stderrMatch(signalApp!, /^(\{.*"path":"\/healthz".*)\n/m)
      const health = await netns().run("snd", node, ["-e", fetchStatus, `${signalUrl}/healthz`])
      expect(health).toMatchObject({ code: 0, stdout: `200 {"status":"ok"}\n` })
      expect(JSON.parse((await request)[1]!).annotations.clientIp).toBe(natAddresses.routerS)

      const port = "5000"
      const listen = async (machine: "sig" | "routerR") => {
        const listener = netns().start(machine, node, ["-e", udpListen, natAddresses[machine], port])
        await listener.line(/^listening$/)
        return listener
      }
      const [atRouterR, atSig] = await Promise.all([listen("routerR"), listen("sig")])
      const drops = async () => {
        const rules = await netns().run("routerS", "iptables", ["-L", "FORWARD", "-v", "-x", "-n"])
        // A line of `-L -v -x -n`: packets, bytes, target, ..., source, destination.
        const rule = rules.stdout
          .split("\n")
          .map((line) => line.trim().split(/\s+/))
          .find((fields) => fields[2] === "DROP" && fields.at(-1) === natAddresses.routerR)
        if (rule === undefined) throw new Error(`no DROP rule for routerR in routerS:\n${rules.stdout}`)
        return Number(rule[0])
      }
      const dropsBefore = await drops()
      const control = atSig.line(/^control$/)
      const sent = await netns().run("snd", node, [
        "-e",
        udpSend,
        port,
        natAddresses.routerR,
        natAddresses.sig,
      ])
      expect(sent.code).toBe(0)
      // The control datagram left after the blocked one on the same path: once it is in, routerS has
      // passed judgement on both.
      await control
      expect(await drops(), "datagrams routerS dropped on their way to routerR").toBe(dropsBefore + 1)
      atRouterR.child.kill("SIGTERM")
      atSig.child.kill("SIGTERM")
      expect((await atRouterR.finished).stdout).toBe("listening\n")
    })

    it("fails a transfer from snd to rcv without TURN, on both sides, within 45 s, suggesting TURN", async ({
      annotate,
    }) => {
      precondition()
      const root = await tempDir()
      const file = path.join(root, "hello.txt")
      await fs.writeFile(file, "hello\n")
      const out = path.join(root, "out")
      // coturn answers STUN too: each peer learns its router's public address and mapped port, and
      // still the routers keep the direct path shut.
      const cli = ["--server", signalUrl, "--stun", `stun:${natAddresses.sig}:${coturn!.port}`]

      const began = Date.now()
      const sender = netns().start("snd", bin("p2pal"), ["send", "-q", ...cli, file])
      const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
      const receiver = netns().start("rcv", bin("p2pal"), ["recv", "-y", "-q", ...cli, "--out", out, code!])
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      const tookMs = Date.now() - began
      await annotate(`both sides gave up after ${tookMs} ms; receiver said: ${received.stderr.trim()}`)

      expect({ sender: sent.code === 0, receiver: received.code === 0 }).toEqual({
        sender: false,
        receiver: false,
      })
      expect(tookMs).toBeLessThan(45_000)
      for (const side of [sent, received])
        expect(side.stderr).toMatch(/could not reach the peer within 30s.*use a TURN server \(--turn/)
      expect(await leftIn(out)).toEqual([])
    }, 50_000)

    it("falls back to the relay through coturn with --turn and the user's own credentials", async () => {
      precondition()
      const { username, password } = restCredentials(secret, "alice")
      const turn = ["--turn", `turn:${natAddresses.sig}:${coturn!.port}`, "--turn-user", username]
      const result = await transferBetweenPeers([
        ...[...turn, "--turn-pass", password, "--server", signalUrl],
      ])
      expect(result.received.stderr).toMatch(relayedSummary)
      expect(result.same).toBe(true)
    })

    it("falls back to the relay with the credentials the signal app hands out (--turn-url, --turn-secret)", async () => {
      precondition()
      const issuing = netns().start(
        "sig",
        bin("p2pal-signal"),
        signalArgs([
          ...["--host", "0.0.0.0", "--port", String(signalPort + 1)],
          ...["--turn-url", `turn:${natAddresses.sig}:${coturn!.port}`, "--turn-secret", secret],
        ]),
      )
      try {
        await issuing.line(/^p2pal-signal listening on /)
        const result = await transferBetweenPeers([
          ...["--server", `http://${natAddresses.sig}:${signalPort + 1}`],
        ])
        expect(result.received.stderr).toMatch(relayedSummary)
        expect(result.same).toBe(true)
      } finally {
        issuing.child.kill("SIGTERM")
        await issuing.finished
      }
    })

    it("stops at once, naming TURN, when --relay-only gets no relay address (a wrong password)", async () => {
      precondition()
      const { username } = restCredentials(secret, "mallory")
      const turn = ["--turn", `turn:${natAddresses.sig}:${coturn!.port}`, "--turn-user", username]
      const began = Date.now()
      const result = await transferBetweenPeers([
        ...[...turn, "--turn-pass", "wrong", "--relay-only", "--server", signalUrl],
      ])
      expect(Date.now() - began).toBeLessThan(20_000)
      for (const side of [result.sent, result.received]) {
        expect(side.code).toBe(5)
        expect(side.stderr).toMatch(/the TURN server gave no relay address \(--relay-only\)/)
      }
    })

    it("reconnects through the relay after an 8 s drop of the receiver's link, and verifies", async ({
      annotate,
    }) => {
      precondition()
      const root = await tempDir()
      const file = path.join(root, "src", "large.bin")
      await sparseRandomFile(file, 96 * 1024 * 1024)
      const out = path.join(root, "out")
      const flags = ["--stun", "", "--server", signalUrl, "--relay-only"]
      const { username, password } = restCredentials(secret, "drop")
      flags.push("--turn", `turn:${natAddresses.sig}:${coturn!.port}`, "--turn-user", username)
      const env = { TURN_PASS: password }
      const sender = netns().start("snd", bin("p2pal"), ["send", ...flags, file], { env })
      const [, code] = await sender.line(/^Join code: (\S+)$/, "stderr")
      const receiver = netns().start("rcv", bin("p2pal"), ["recv", "-y", ...flags, "--out", out, code!], {
        env,
      })
      await midTransfer(out, "large.bin", [sender, receiver])
      await netns().linkDown("rcv")
      // Down 8 s, and up again only once both sides have seen the drop: the silence that tells them takes
      // 5 to 7 s, and a link back before one of them noticed would be no drop for it.
      await Promise.all([
        new Promise((resolve) => setTimeout(resolve, 8_000)),
        ...[sender, receiver].map((side) => side.line(/^Connection lost /, "stderr")),
      ])
      await netns().linkUp("rcv")
      const up = Date.now()
      const [sent, received] = await Promise.all([sender.finished, receiver.finished])
      await annotate(`done ${Date.now() - up} ms after the link came back`)

      expect({ sender: sent.code, receiver: received.code }, sent.stderr + received.stderr).toEqual({
        sender: 0,
        receiver: 0,
      })
      for (const side of [sent, received])
        expect(side.stderr).toMatch(/^Reconnected\. Relayed through TURN: .*; carrying on$/m)
      expect(await snapshot(out)).toEqual(await snapshot(path.dirname(file)))
    }, 90_000)

    it("relays a DataChannel between snd and rcv through coturn with REST credentials", async ({
      annotate,
    }) => {
      precondition()
      const probeIn = (machine: "snd" | "rcv", role: "offer" | "answer") =>
        netns().start(machine, node, [probe, role, iceServer(coturn!, restCredentials(secret, machine))], {
          keepStdinOpen: true,
        })
      const began = Date.now()
      const { offered, pairs } = await connectThroughTurn(probeIn("snd", "offer"), probeIn("rcv", "answer"))
      await annotate(`relayed DataChannel up ${Date.now() - began} ms after the probes started`)

      expect(offered.map((types) => [...new Set(types)])).toEqual([["relay"], ["relay"]])
      expect(pairs).toEqual([relayed(natAddresses.sig), relayed(natAddresses.sig)])
    })

    it("gets no relay candidate from coturn with a wrong password", async () => {
      precondition()
      const credentials = { ...restCredentials(secret, "snd"), password: "wrong" }
      const refused = coturn!.logLine(new RegExp(`user <${credentials.username}>: .* error 401`))
      const offerer = netns().start("snd", node, [probe, "offer", iceServer(coturn!, credentials)], {
        keepStdinOpen: true,
      })
      const [offer] = await offerer.line(descriptionLine)
      offerer.child.stdin!.end()
      expect((await offerer.finished).code).toBe(0)
      expect(candidateTypes(offer!)).toEqual([])
      await refused
    })
  },
)

describe.runIf(requireCoturn())("coturn on loopback with a fixed user", () => {
  it("p2pal --relay-only on an open network connects through the relay at both ends", async () => {
    const coturn = await startCoturn({ auth: { users: { alice: "wonderland" } } })
    const signal = await startSignal()
    try {
      const root = await tempDir()
      const file = path.join(root, "payload.bin")
      await fs.writeFile(file, randomBytes(1024 * 1024 + 3))
      const out = path.join(root, "out")
      const flags = [
        ...["--server", signal.url, "--stun", "", "--relay-only"],
        ...[
          "--turn",
          `turn:${coturn.hostname}:${coturn.port}`,
          "--turn-user",
          "alice",
          "--turn-pass",
          "wonderland",
        ],
      ]
      const sender = start(bin("p2pal"), ["send", ...flags, file])
      const [, code] = await stderrMatch(sender, /Join code: (\S+)/)
      const receiver = start(bin("p2pal"), ["recv", "-y", ...flags, "--out", out, code!])
      const received = await finishedWithin(receiver, 40_000, "the receiver")
      const sent = await finishedWithin(sender, 10_000, "the sender")
      expect({ sent: sent.code, received: received.code }, sent.stderr + received.stderr).toEqual({
        sent: 0,
        received: 0,
      })
      // Relay candidates at both ends of the selected pair, on both sides.
      for (const side of [sent, received])
        expect(side.stderr).toMatch(/^Relayed through TURN: relay \S+ <-> relay \S+/m)
      expect(Buffer.compare(await fs.readFile(file), await fs.readFile(path.join(out, "payload.bin")))).toBe(
        0,
      )
    } finally {
      await Promise.all([signal.stop(), coturn.stop()])
    }
  })

  it("relays a DataChannel between two local processes", async () => {
    const coturn = await startCoturn({ auth: { users: { alice: "wonderland" } } })
    try {
      const server = iceServer(coturn, { username: "alice", password: "wonderland" })
      const probeAs = (role: "offer" | "answer") =>
        start(node, [probe, role, server], { keepStdinOpen: true })
      const { pairs } = await connectThroughTurn(probeAs("offer"), probeAs("answer"))
      // Relayed at both ends only because coturn is not on the peers' 127.0.0.1 (see Coturn.ts).
      expect(pairs).toEqual([relayed(coturn.hostname), relayed(coturn.hostname)])
    } finally {
      await coturn.stop()
    }
  })
})
