import { Args, Command, Options } from "@effect/cli"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { unknownOption } from "../src/CommandLine.js"

const send = Command.make(
  "send",
  {
    server: Options.text("server"),
    yes: Options.boolean("yes").pipe(Options.withAlias("y")),
    quiet: Options.boolean("quiet").pipe(Options.withAlias("q")),
    files: Args.text({ name: "file" }).pipe(Args.repeated),
  },
  () => Effect.void,
)
const root = Command.make("p2pal").pipe(Command.withSubcommands([send]))
const check = (...args: ReadonlyArray<string>) => Option.getOrUndefined(unknownOption(root, args))

describe("unknownOption", () => {
  it("lets known flags, their values, `-` and everything after `--` through", () => {
    expect(check("send", "--server", "-x", "-y", "a.txt")).toBeUndefined()
    expect(check("send", "--server=http://x", "--quiet", "-", "--", "--bogus", "-z")).toBeUndefined()
    expect(check("--help")).toBeUndefined()
  })

  it("names an unknown flag, and the nearest real one when it is close", () => {
    expect(check("send", "--bogus", "a.txt")).toBe(
      "unknown option --bogus; `p2pal send --help` lists the options (a file whose name starts with - goes after --: p2pal send -- --bogus)",
    )
    expect(check("send", "-server", "http://x")).toMatch(/^unknown option -server; did you mean --server\?/)
    expect(check("send", "--quite")).toMatch(/^unknown option --quite; did you mean --quiet\?/)
  })

  it("asks for a cluster of short flags apart", () => {
    expect(check("send", "-yq")).toBe("unknown option -yq; write short flags apart: -y -q")
  })
})
