# Compensation of upload-assets: delete this run's uploaded assets (and the receipt) from the
# registry, then the registry directories the step created, if empty. Idempotent.
#
# stdin: {"run": {...}, "event": {...}, "inputs": {...}, "outputs": {"uploaded-assets": {...}}}

def say [message: string] { print -e $"upload-assets \(undo\): ($message)" }

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
    let uploaded = ($input.outputs? | default {} | get -o uploaded-assets)

    # Without outputs (the step failed or never reported), look where it would have uploaded.
    let dir = if $uploaded != null { $uploaded.dir } else {
        let staged = ($input.inputs? | default {} | get -o release-staging)
        if $staged == null {
            say "no outputs and no release-staging input: nothing to undo"
            exit 0
        }
        $staged.root | path join registry $staged.name $staged.version
    }
    let receipt_path = ($dir | path join receipt.json)
    let receipt = if ($receipt_path | path exists) {
        try { open --raw $receipt_path | from json } catch { {} }
    } else { {} }
    if ($dir | path exists) and ($receipt | get -o run) != $run {
        say $"left ($dir) alone: it was uploaded by run ($receipt | get -o run | default 'unknown'), not ($run)"
        exit 0
    }

    let assets = if $uploaded != null { $uploaded.assets } else { $receipt | get -o assets | default [] }
    for a in $assets {
        if ($a.path | path exists) {
            delete $a.path
            say $"deleted uploaded asset ($a.name) \(($a.path)\)"
        } else {
            say $"uploaded asset ($a.path) is already gone"
        }
    }
    if ($receipt_path | path exists) {
        # a partial upload can leave files the outputs never listed: they are ours too
        let leftovers = (ls -a $dir | where name != $receipt_path | get name)
        for f in $leftovers {
            delete $f
            say $"deleted partial upload ($f)"
        }
        delete $receipt_path
        say $"deleted receipt ($receipt_path)"
    }
    let created = if $uploaded != null { $uploaded.created } else { $receipt | get -o created | default [] }
    prune $created
}
