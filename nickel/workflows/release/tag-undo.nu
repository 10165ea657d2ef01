# Compensation of tag-release: delete the tag file if this run made it, then the tags/
# directory if the step created it and it is empty. Idempotent.
#
# stdin: {"run": {...}, "event": {...}, "inputs": {...}, "outputs": {"release-tag": {...}}}

def say [message: string] { print -e $"tag-release \(undo\): ($message)" }

# Remove `dirs` (outermost first, as recorded) deepest first, each only if it is empty.
def prune [dirs: list<string>] {
    for d in ($dirs | reverse) {
        if ($d | path exists) {
            # (rm without -r leaves a directory that something wrote into meanwhile)
            if (ls -a $d | is-empty) { rm $d }
            if not ($d | path exists) {
                say $"removed empty directory ($d)"
            } else {
                say $"kept ($d): not empty"
            }
        }
    }
}

# `rm` reports a failure and carries on: make a failed delete fatal.
def delete [path: string] {
    rm -rf $path
    if ($path | path exists) {
        say $"could not delete ($path)"
        exit 1
    }
}

def main [] {
    let input = ($in | from json)
    let run = ($input.run? | default {} | get -o id | default ($env.STRATUM_RUN_ID? | default "manual"))
    let tagged = ($input.outputs? | default {} | get -o release-tag)

    # Without outputs (the step never reported), look where it would have tagged.
    let path = if $tagged != null { $tagged.path } else {
        let staged = ($input.inputs? | default {} | get -o release-staging)
        if $staged == null {
            say "no outputs and no release-staging input: nothing to undo"
            exit 0
        }
        $staged.root | path join tags $staged.tag
    }
    let existing = try { open --raw $path | from json } catch { {} }
    let created = if $tagged != null { $tagged.created } else { $existing | get -o created | default [] }

    if ($path | path exists) {
        if ($existing | get -o run) == $run {
            delete $path
            say $"deleted tag ($path | path basename) \(($path)\)"
        } else {
            say $"left tag ($path) alone: it was made by run ($existing | get -o run | default 'unknown'), not ($run)"
        }
    } else {
        say $"tag ($path) is already gone"
    }
    prune $created
}
