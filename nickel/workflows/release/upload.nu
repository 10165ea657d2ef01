# upload-assets: "upload" the staged assets to the registry at <target>/registry/<name>/<version>/
# (a directory standing in for a package registry), checking each copy's sha256.
#
# stdin:  {"run": {...}, "event": {..., "fail_at"?: "upload", "flaky_at"?: "upload",
#          "slow_at"?: "upload"},
#          "inputs": {"release-staging": {...}}}
# stdout: {"uploaded-assets": {dir, assets, created}}
#
# The registry directory gets a receipt.json {run, created, assets} before any copy, so a
# retry (or the compensation) knows the directory belongs to this run. `flaky_at: "upload"`
# makes the first attempt fail half-way, like a dropped connection; the retry redoes it.
# `slow_at: "upload"` makes it wait 20 s before it starts, like a slow registry: time to
# `stratum cancel` the run while it runs beside tag-release.
#
# The registry token comes in REGISTRY_TOKEN (the node's `secrets`). A directory needs no
# token, so the script only proves it had one: the receipt's `auth` is a fingerprint (the
# start of its sha256), never the token; without one it uploads as `anonymous`.

def fail [message: string] {
    print -e $"upload-assets: ($message)"
    exit 1
}

# Create `dir` and any missing parents; return the ones that did not exist, outermost first.
def make-dirs [dir: string] {
    mut missing = []
    mut d = $dir
    while not ($d | path exists) {
        $missing = ($missing | prepend $d)
        $d = ($d | path dirname)
    }
    mkdir $dir
    $missing
}

# `rm` reports a failure and carries on: make a failed delete fatal.
def delete [path: string] {
    rm -rf $path
    if ($path | path exists) {
        print -e $"upload-assets: could not delete ($path)"
        exit 1
    }
}

def main [] {
    let input = ($in | from json)
    let run = ($input.run? | default {} | get -o id | default ($env.STRATUM_RUN_ID? | default "manual"))
    let event = ($input.event? | default {})
    let at = ($event | get -o fail_at | default "")
    let attempt = ($env.STRATUM_ATTEMPT? | default "1" | into int)
    let staged = ($input.inputs | get -o release-staging)
    if $staged == null { fail "needs `release-staging` as input" }
    if $at in [upload upload-assets] {
        fail $"failing on purpose before uploading ($staged.name) ($staged.version) \(event fail_at=($at)\)"
    }

    if ($event | get -o slow_at | default "") in [upload upload-assets] {
        print -e "upload-assets: waiting 20 s before uploading (event slow_at=upload)"
        sleep 20sec
    }

    let dir = ($staged.root | path join registry $staged.name $staged.version)
    let receipt = ($dir | path join receipt.json)
    mut created_before = []
    if ($dir | path exists) {
        let previous = try { open --raw $receipt | from json } catch { {} }
        if ($previous | get -o run) != $run {
            fail $"($staged.name) ($staged.version) is already in the registry at ($dir) \(uploaded by run ($previous | get -o run | default 'unknown')\)"
        }
        print -e $"upload-assets: attempt ($attempt): clearing the partial upload of an earlier attempt"
        $created_before = ($previous | get -o created | default [])
        delete $dir
    }
    let created = ($created_before | append (make-dirs $dir) | uniq)
    let token = ($env.REGISTRY_TOKEN? | default "")
    let auth = if ($token | is-empty) { "anonymous" } else {
        $"token sha256:($token | hash sha256 | str substring 0..11)"
    }
    print -e $"upload-assets: authenticated to the registry with ($auth)"
    {run: $run, auth: $auth, created: $created, assets: []} | to json | save -f --raw $receipt

    let flaky = ($event | get -o flaky_at | default "") in [upload upload-assets]
    mut uploaded = []
    for a in $staged.assets {
        if $flaky and $attempt == 1 and ($uploaded | length) == 1 {
            fail $"connection reset while uploading ($a.name) \(simulated on attempt 1, event flaky_at=upload\)"
        }
        let dest = ($dir | path join $a.name)
        cp $a.path $dest
        if not ($dest | path exists) { fail $"could not copy ($a.path) to ($dest)" }
        let sha256 = (open --raw $dest | hash sha256)
        if $sha256 != $a.sha256 {
            fail $"uploaded ($a.name) has sha256 ($sha256), expected ($a.sha256)"
        }
        let bytes = (ls $dest | get 0.size | into int)
        $uploaded = ($uploaded | append {name: $a.name, path: $dest, sha256: $sha256, bytes: $bytes})
        print -e $"upload-assets: uploaded ($a.name) \(($bytes) bytes\) to ($dir)"
    }
    {run: $run, auth: $auth, created: $created, assets: $uploaded} | to json | save -f --raw $receipt

    {uploaded-assets: {dir: $dir, assets: $uploaded, created: $created}} | to json -r
}
