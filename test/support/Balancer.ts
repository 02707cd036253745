import * as net from "node:net"

export interface Balancer {
  readonly url: string
  /** How many client connections each backend has been handed so far. */
  readonly handed: () => ReadonlyArray<number>
  readonly close: () => Promise<void>
}

/**
 * A TCP load balancer in front of several signal app instances, failover style: each new connection
 * goes to the first backend that accepts it, so a test knows where a client landed, and a client
 * whose instance died lands on the next one when it reconnects. Bytes pass through untouched.
 */
export const startBalancer = async (backends: ReadonlyArray<string>): Promise<Balancer> => {
  const targets = backends.map((url) => new URL(url))
  const handed = targets.map(() => 0)
  const sockets = new Set<net.Socket>()
  const track = (socket: net.Socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    // Either end may reset; the pair is torn down together below.
    socket.on("error", () => {})
  }
  const server = net.createServer((client) => {
    track(client)
    client.pause()
    const tryBackend = (index: number) => {
      const target = targets[index]
      if (target === undefined) return void client.destroy()
      const upstream = net.connect(Number(target.port), target.hostname)
      track(upstream)
      let connected = false
      upstream.once("error", () => {
        if (!connected) tryBackend(index + 1)
      })
      upstream.once("connect", () => {
        connected = true
        handed[index]!++
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
        client.on("close", () => upstream.destroy())
        upstream.on("close", () => client.destroy())
      })
    }
    tryBackend(0)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    handed: () => [...handed],
    close: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((socket) => socket.destroy())
        server.close(() => resolve())
      }),
  }
}
