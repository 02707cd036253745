import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { beforeAll, describe, expect, it } from "vitest"
import { bin, onPath, run, start, tempDir, waitFor } from "../support/Processes.js"

const p2pal = bin("p2pal")
const exec = promisify(execFile)

/** The command lines every shell must complete, and what each must offer (among others, for files). */
const Cases: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
  ["p2pal s", ["send"]],
  ["p2pal send --sk", ["--skip-errors"]],
  ["p2pal checkpoint d", ["delete"]],
  ["p2pal checkpoint clean-all --he", ["--help"]],
  ["p2pal --completions ", ["bash", "fish", "zsh"]],
  // File names for send's arguments, after a switch too; directories only for --out.
  ["p2pal send -r some", ["some file.txt", "somedir", "somefile.txt"]],
  ["p2pal recv --out s", ["somedir"]],
]

let cwd = ""
let scripts = ""
beforeAll(async () => {
  cwd = await tempDir()
  await fs.mkdir(path.join(cwd, "somedir"))
  await fs.writeFile(path.join(cwd, "somefile.txt"), "")
  await fs.writeFile(path.join(cwd, "some file.txt"), "")
  await fs.writeFile(path.join(cwd, "other.txt"), "")
  scripts = await tempDir()
  for (const shell of ["bash", "zsh", "fish"]) {
    const { code, stdout } = await run(p2pal, ["--completions", shell])
    expect(code).toBe(0)
    await fs.writeFile(path.join(scripts, shell === "zsh" ? "_p2pal" : `p2pal.${shell}`), stdout)
  }
})

/** Without the shell, a laptop skips saying so; CI must have it (.ci/run installs zsh and fish). */
const withShell = (shell: string) => {
  const missing = onPath(shell) === undefined
  return it.skipIf(missing && process.env.CI !== "true")(
    missing
      ? `SKIPPED: ${shell} is not installed`
      : `${shell} completes subcommands, flags, values and file names`,
    async () => {
      expect(onPath(shell), `install ${shell}`).toBeDefined()
      for (const [line, expected] of Cases) {
        const offered = new Set(await completions[shell as keyof typeof completions](line))
        expect([...offered].filter((word) => expected.includes(word)).sort(), `${shell}: ${line}`).toEqual(
          [...expected].sort(),
        )
        if (line.includes("--out")) expect([...offered], `${shell}: ${line}`).toEqual(["somedir"])
      }
    },
  )
}

const completions = {
  /** The function `complete -F` registered, called as bash calls it. */
  bash: async (line: string) => {
    const script = `
      source "$1"
      fn=$(complete -p p2pal | sed 's/.*-F \\([^ ]*\\).*/\\1/')
      COMP_LINE="$2"; COMP_POINT=\${#2}
      read -ra COMP_WORDS <<< "$2"
      [[ "$2" == *" " ]] && COMP_WORDS+=("")
      COMP_CWORD=$((\${#COMP_WORDS[@]} - 1))
      "$fn" p2pal "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
      printf '%s\\n' "\${COMPREPLY[@]}"`
    const { stdout } = await exec("bash", ["-c", script, "bash", path.join(scripts, "p2pal.bash"), line], {
      cwd,
    })
    return stdout.split("\n").filter((word) => word !== "")
  },
  /** fish's own `complete -C`, with the script loaded as fish loads it. */
  fish: async (line: string) => {
    const { stdout } = await exec(
      "fish",
      ["-c", `source $argv[1]; complete -C $argv[2]`, path.join(scripts, "p2pal.fish"), line],
      { cwd },
    )
    return stdout
      .split("\n")
      .filter((word) => word !== "")
      .map((word) => word.split("\t")[0]!.replace(/\/$/, ""))
  },
  /**
   * An interactive zsh on a terminal with compinit and the script in $fpath: the line is typed, then
   * TAB. Every match completion adds is printed as it is added, since a menu cannot be read back.
   */
  zsh: async (line: string) => {
    const rc = path.join(scripts, "zshrc")
    await fs.writeFile(
      rc,
      [
        "PS1='> '",
        `fpath=(${scripts} $fpath)`,
        `autoload -U compinit && compinit -u -d ${scripts}/.zcompdump`,
        'compadd() { local -a m; local x; builtin compadd -A m "$@"; for x in "${m[@]}"; do print -r -- "<<$x>>"; done; builtin compadd "$@" }',
        `cd ${cwd}`,
        "print READY-$((1+1))",
      ].join("\n"),
    )
    const shell = start("script", ["-qfec", "zsh -f -i", "/dev/null"], {
      keepStdinOpen: true,
      stdin: `source ${rc}\n`,
    })
    const stdout = () => shell.output().stdout
    // Typed before the line editor starts, the line would be echoed and its TAB lost: wait for the editor.
    await waitFor("zsh's line editor", async () => {
      const ready = stdout().indexOf("READY-2")
      return ready >= 0 && stdout().includes("\x1b[?2004h", ready) ? true : undefined
    })
    // ^U clears the completed line, then a marker says the TAB has been dealt with.
    shell.child.stdin!.write(`${line}\t\x15print DONE-$((2+2))\n`)
    await waitFor("the completion", async () => (stdout().includes("DONE-4") ? true : undefined))
    shell.child.stdin!.end("exit\n")
    await shell.finished
    const shown = stdout().slice(stdout().indexOf("READY-2"), stdout().indexOf("DONE-4"))
    // As the line would hold them: zsh quotes a space in a file name.
    return [...shown.matchAll(/<<([^>\r\n]*)>>/g)].map((m) => m[1]!.replace(/\\(.)/g, "$1"))
  },
}

describe("shell completion, run in each shell", () => {
  withShell("bash")
  withShell("zsh")
  withShell("fish")
})
