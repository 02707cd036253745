import { describe, expect, it } from "vitest"
import { address, limitKey } from "../src/ClientIp.js"

describe("ClientIp.address", () => {
  it("is the socket's peer unless the proxy is trusted", () => {
    expect(address("10.0.0.5", "203.0.113.9", false)).toBe("10.0.0.5")
    expect(address("10.0.0.5", undefined, true)).toBe("10.0.0.5")
    expect(address(undefined, undefined, false)).toBe("unknown")
  })

  it("believes only the last X-Forwarded-For entry, the one the proxy appended", () => {
    expect(address("10.0.0.5", "203.0.113.9", true)).toBe("203.0.113.9")
    expect(address("10.0.0.5", "198.51.100.1, 203.0.113.9", true)).toBe("203.0.113.9")
    expect(address("10.0.0.5", "198.51.100.1,2001:db8::7", true)).toBe("2001:db8::7")
  })

  it("falls back to the peer when the trusted entry is no address", () => {
    expect(address("10.0.0.5", "203.0.113.9, not-an-ip", true)).toBe("10.0.0.5")
    expect(address("10.0.0.5", "", true)).toBe("10.0.0.5")
    expect(address("10.0.0.5", "203.0.113.9:4711", true)).toBe("10.0.0.5")
  })

  it("treats IPv4-mapped IPv6 as IPv4 and drops zones", () => {
    expect(address("::ffff:127.0.0.1", undefined, false)).toBe("127.0.0.1")
    expect(address("::FFFF:7f00:1", undefined, false)).toBe("127.0.0.1")
    expect(address("10.0.0.5", "::ffff:203.0.113.9", true)).toBe("203.0.113.9")
    expect(address("fe80::1%eth0", undefined, false)).toBe("fe80::1")
    expect(address("2001:DB8::1", undefined, false)).toBe("2001:db8::1")
  })
})

describe("ClientIp.limitKey", () => {
  it("counts IPv4 addresses one by one", () => {
    expect(limitKey("203.0.113.9")).toBe("203.0.113.9")
    expect(limitKey("203.0.113.10")).toBe("203.0.113.10")
  })

  it("groups IPv6 addresses by /64, however they are written", () => {
    const key = limitKey("2001:db8:1:2::1")
    expect(limitKey("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe(key)
    expect(limitKey("2001:0db8:0001:0002:0:0:0:9")).toBe(key)
    expect(limitKey("2001:db8:1:2::192.0.2.1")).toBe(key)
    expect(limitKey("2001:db8:1:3::1")).not.toBe(key)
    expect(limitKey("2001:db8::1")).toBe(limitKey("2001:db8:0:0:1::"))
    expect(limitKey("::1")).toBe(limitKey("::2"))
  })
})
