# Compensation of publish-release: take this run's entry out of <target>/index.json, and
# delete the index if this run created it and nothing else is left in it. Idempotent.
#
# stdin: {"run": {...}, "event": {...}, "inputs": {...}, "outputs": {"published-release": {...}}}

def say [message: string] { print -e $"publish-release \(undo\): ($message)" }

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
    let published = ($input.outputs? | default {} | get -o published-release)
    let staged = ($input.inputs? | default {} | get -o release-staging)

    let index_path = if $published != null { $published.index } else if $staged != null {
        $staged.root | path join index.json
    } else {
        say "no outputs and no release-staging input: nothing to undo"
        exit 0
    }
    if not ($index_path | path exists) {
        say $"index ($index_path) is already gone"
        exit 0
    }

    let index = (open --raw $index_path | from json)
    let ours = ($index.releases | where run == $run)
    if ($ours | is-empty) {
        say $"index ($index_path) has no release published by run ($run)"
    }
    let rest = ($index.releases | where run != $run)
    if ($rest | is-empty) and ($index | get -o created_by) == $run {
        delete $index_path
        say $"deleted index ($index_path): this run created it and nothing else is in it"
    } else if ($ours | is-not-empty) {
        let tmp = $"($index_path).($run).tmp"
        $index | update releases $rest | to json | save -f --raw $tmp
        mv -f $tmp $index_path
        if ($tmp | path exists) {
            say $"could not move ($tmp) over ($index_path)"
            exit 1
        }
        for r in $ours {
            say $"unpublished ($r.name) ($r.version) from ($index_path)"
        }
    }
}
