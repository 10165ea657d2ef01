# Compensation of prepare-release: remove the staging directory, then the directories the
# step created (the target, staging/) if they are empty. Idempotent: whatever is already
# gone is skipped.
#
# stdin: {"run": {...}, "event": {...}, "inputs": {}, "outputs": {"release-staging": {...}}}

def say [message: string] { print -e $"prepare-release \(undo\): ($message)" }

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
    let event = ($input.event? | default {})
    let staged = ($input.outputs? | default {} | get -o release-staging)

    # Without outputs (the step never reported), look where it would have staged and trust
    # the staging manifest only if this run wrote it.
    let dir = if $staged != null { $staged.dir } else {
        let target = ($event | get -o target | default "")
        let version = ($event | get -o version | default "" | into string)
        if ($target | is-empty) or ($version | is-empty) {
            say "no outputs and no target/version in the event: nothing to undo"
            exit 0
        }
        $target | path expand | path join staging $"v($version)"
    }
    if ($dir | path dirname | path basename) != "staging" {
        say $"refusing to remove ($dir): not a staging directory"
        exit 1
    }
    let manifest = try { open --raw ($dir | path join release.json) | from json } catch { {} }
    if $staged == null and ($dir | path exists) and ($manifest | get -o run) != $run {
        say $"left ($dir) alone: it was staged by run ($manifest | get -o run | default 'unknown'), not ($run)"
        exit 0
    }
    let created = if $staged != null { $staged.created } else { $manifest | get -o created | default [] }

    if ($dir | path exists) {
        delete $dir
        say $"removed staging directory ($dir)"
    } else {
        say $"staging directory ($dir) is already gone"
    }
    prune $created
}
