import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import * as Ice from "../src/IceServers.js"

const creds = { username: "1767225600:tr_abc", password: "c2VjcmV0" }

/** Why a server was refused; throws if it was accepted. */
const reason = (parsed: Either.Either<Ice.IceServer, string>) => Option.getOrThrow(Either.getLeft(parsed))

describe("ICE servers from flags and from the signal app", () => {
  it.each([
    ["stun:stun.l.google.com:19302", { kind: "stun", hostname: "stun.l.google.com", port: 19302 }],
    ["stun:198.51.100.1", { kind: "stun", hostname: "198.51.100.1", port: 3478 }],
    ["stun:[2001:db8::1]:3479", { kind: "stun", hostname: "2001:db8::1", port: 3479 }],
  ])("parses %s", (url, expected) => {
    expect(Ice.parseStun(url)).toEqual(Either.right(expected))
  })

  it.each(["stun:", "stun:host:0", "stun:host:70000", "turn:host", "stun:user@host", "http://host"])(
    "refuses the STUN URL %s",
    (url) => {
      expect(Either.isLeft(Ice.parseStun(url))).toBe(true)
    },
  )

  it("parses TURN over UDP with credentials whose username holds a colon", () => {
    for (const url of ["turn:turn.example.org", "turn:turn.example.org:3478?transport=udp"])
      expect(Ice.parseTurn(url, creds)).toEqual(
        Either.right({ kind: "turn", hostname: "turn.example.org", port: 3478, ...creds }),
      )
  })

  it.each([
    ["turns:turn.example.org:5349", /TLS/],
    ["turn:turn.example.org?transport=tcp", /TCP/],
    ["turn:", /not a TURN server/],
  ])("refuses %s, saying why", (url, why) => {
    expect(reason(Ice.parseTurn(url, creds))).toMatch(why)
  })

  it("refuses TURN without credentials, naming the flags", () => {
    expect(reason(Ice.parseTurn("turn:t.example.org", undefined))).toMatch(/--turn-user/)
  })

  it("takes the signal app's servers in the same form", () => {
    expect(
      Ice.parseIssued({ urls: "turn:10.0.0.1:3478", username: creds.username, credential: creds.password }),
    ).toEqual(Either.right({ kind: "turn", hostname: "10.0.0.1", port: 3478, ...creds }))
    expect(reason(Ice.parseIssued({ urls: "turn:10.0.0.1:3478" }))).toMatch(/needs a username/)
  })

  it("uses at most one STUN and two TURN servers, in order, and names every one it leaves out", () => {
    const turn = (host: string) => Ice.parseTurn(`turn:${host}`, creds)
    const result = Ice.plan([
      Ice.parseStun("stun:a"),
      Ice.parseStun("stun:b"),
      turn("t1"),
      Ice.parseTurn("turns:t0", creds),
      turn("t2"),
      turn("t3"),
    ])
    expect(result.servers.map((s) => s.hostname)).toEqual(["a", "t1", "t2"])
    expect(result.ignored).toHaveLength(3)
    expect(result.ignored.join("\n")).toMatch(/stun:b:3478: at most 1 STUN server is used/)
    expect(result.ignored.join("\n")).toMatch(/turns:t0: TURN over TLS/)
    expect(result.ignored.join("\n")).toMatch(/turn:t3:3478: at most 2 TURN servers are used/)
  })
})
