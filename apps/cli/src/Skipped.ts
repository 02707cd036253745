import { FilesSkipped, type SkippedFile } from "@p2pal/domain/Errors"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import { Array as Arr, Effect } from "effect"
import { Ui } from "./Ui.js"

/** One skipped file as the user reads it; the reason may come from the other side, so both are escaped. */
export const describe = (file: SkippedFile) =>
  `${escapeForDisplay(file.path)}: ${escapeForDisplay(file.reason)}`

/**
 * The files a command leaves out (`send --skip-errors`): each is reported as it happens, even in quiet
 * mode, and `outcome` fails with all of them once the rest has completed (exit 10).
 */
export const tracker = (side: FilesSkipped["side"]) =>
  Effect.map(Ui, (ui) => {
    const files: Array<SkippedFile> = []
    return {
      skip: (file: SkippedFile) => {
        files.push(file)
        return ui.notice(`skipped ${describe(file)}`)
      },
      outcome: Effect.suspend(() =>
        Arr.isNonEmptyArray(files) ? new FilesSkipped({ side, files }) : Effect.void,
      ),
    }
  })
