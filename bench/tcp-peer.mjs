// One side of the plain-TCP baseline in bench/link.mjs: one TCP connection moving a file, file to file,
// so it reads and writes the disk as p2pal does.
//
//   node bench/tcp-peer.mjs receiver PORT OUT_FILE
//   node bench/tcp-peer.mjs sender HOST PORT FILE
//
// The receiver prints {ready} once it listens, {firstByte} on its first bytes (the parent takes the time)
// and {done: {bytes}} once the sender has closed and the file is on disk.
import { createReadStream, createWriteStream } from "node:fs"
import { connect, createServer } from "node:net"
import { pipeline } from "node:stream/promises"

const emit = (message) => process.stdout.write(JSON.stringify(message) + "\n")
const [role, ...args] = process.argv.slice(2)

if (role === "receiver" && args.length === 2) {
  const [port, out] = args
  const server = createServer((socket) => {
    server.close()
    let bytes = 0
    socket.on("data", (chunk) => {
      if (bytes === 0) emit({ firstByte: true })
      bytes += chunk.length
    })
    pipeline(socket, createWriteStream(out)).then(
      () => {
        emit({ done: { bytes } })
        process.exit(0)
      },
      (error) => {
        process.stderr.write(`${error.message}\n`)
        process.exit(1)
      },
    )
  })
  server.listen(Number(port), () => emit({ ready: true }))
} else if (role === "sender" && args.length === 3) {
  const [host, port, file] = args
  const socket = connect(Number(port), host)
  socket.setNoDelay(true)
  await pipeline(createReadStream(file, { highWaterMark: 1024 * 1024 }), socket)
} else {
  process.stderr.write("usage: node bench/tcp-peer.mjs receiver PORT OUT_FILE | sender HOST PORT FILE\n")
  process.exit(2)
}
