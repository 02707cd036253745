import { DurationText } from "@p2pal/domain"
import { Frames } from "@p2pal/domain"
import { UsageError } from "@p2pal/domain/Errors"
import { Options } from "@effect/cli"
import { Effect, Option } from "effect"

/** Flags shared by send and recv, spelled as on the product sheet. */
export const server = Options.text("server").pipe(
  Options.withDefault("http://localhost:8080"),
  Options.withDescription("signal server URL"),
)
export const stun = Options.text("stun").pipe(
  Options.withDefault("stun:stun.l.google.com:19302"),
  Options.withDescription("STUN server URL; --stun '' uses none (LAN or loopback only)"),
)
export const yes = Options.boolean("yes").pipe(
  Options.withAlias("y"),
  Options.withDescription("skip confirmation prompts"),
)
export const quiet = Options.boolean("quiet").pipe(
  Options.withAlias("q"),
  Options.withDescription("print only the join code (send) or nothing but errors (recv)"),
)
export const ttl = Options.text("ttl").pipe(
  Options.withDefault("5m"),
  Options.withDescription("how long the join code stays valid (e.g. 10m, 1h)"),
)
export const recursive = Options.boolean("recursive").pipe(
  Options.withAlias("r"),
  Options.withDescription("send directories with everything in them"),
)
export const chunkSize = Options.integer("chunk-size").pipe(
  Options.withDefault(63),
  Options.withDescription("chunk size in KiB (1-63)"),
)
export const out = Options.directory("out").pipe(
  Options.withDefault("."),
  Options.withDescription("directory to receive into (created if missing)"),
)
export const overwrite = Options.boolean("overwrite").pipe(Options.withDescription("replace existing files"))

export const stunServers = (value: string): ReadonlyArray<string> =>
  value.trim() === "" ? [] : [value.trim()]

export const parseTtl = (value: string) =>
  Option.match(DurationText.parse(value), {
    onNone: () => Effect.fail(new UsageError({ message: `--ttl ${value} is not a duration like 5m or 1h` })),
    onSome: Effect.succeed,
  })

export const chunkBytes = (kib: number) =>
  kib >= 1 && kib * 1024 <= Frames.MaxChunkBytes
    ? Effect.succeed(kib * 1024)
    : Effect.fail(new UsageError({ message: `--chunk-size must be between 1 and 63 KiB (got ${kib})` }))
