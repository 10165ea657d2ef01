# prepare-release: stage a release under <target>/staging/v<version>/.
#
# stdin:  {"run": {...}, "event": {"version": "1.4.0", "target": ".stratum/release-target",
#          "name"?: "stratum", "notes"?: "...", "fail_at"?: "prepare"}, "inputs": {}}
# stdout: {"release-staging": {root, name, version, tag, dir, notes, assets, created}}
#         (`root` is the absolute target directory; the later steps work under it)
#
# Writes RELEASE_NOTES.md, VERSION, release.json and assets/ (<name>-<version>.tar.gz and
# SHA256SUMS). `created` lists the directories this step made, outermost first, so the
# compensation (prepare-undo.nu) can remove exactly those.

def fail [message: string] {
    print -e $"prepare-release: ($message)"
    exit 1
}

# The release's paths under the target directory, checked.
def layout [event: record] {
    let version = ($event | get -o version | default "" | into string)
    if not ($version =~ '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$') {
        fail $"the event's `version` must look like 1.4.0, got '($version)'"
    }
    let target = ($event | get -o target | default "" | into string)
    if ($target | is-empty) { fail "the event has no `target` (the release directory)" }
    let name = ($event | get -o name | default "stratum" | into string)
    if not ($name =~ '^[a-z0-9][a-z0-9_-]*$') { fail $"bad release name '($name)'" }
    let root = ($target | path expand)
    {
        name: $name
        version: $version
        tag: $"v($version)"
        root: $root
        staging: ($root | path join staging $"v($version)")
        tag_file: ($root | path join tags $"v($version)")
        registry: ($root | path join registry $name $version)
        index: ($root | path join index.json)
    }
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

def asset [path: string] {
    {
        name: ($path | path basename)
        path: $path
        sha256: (open --raw $path | hash sha256)
        bytes: (ls $path | get 0.size | into int)
    }
}

# `rm` reports a failure and carries on: make a failed delete fatal.
def delete [path: string] {
    rm -rf $path
    if ($path | path exists) {
        print -e $"prepare-release: could not delete ($path)"
        exit 1
    }
}

def main [] {
    let input = ($in | from json)
    let run = ($input.run? | default {} | get -o id | default ($env.STRATUM_RUN_ID? | default "manual"))
    let at = ($input.event | get -o fail_at | default "")
    let l = (layout $input.event)

    if $at in [prepare prepare-release] {
        fail $"failing on purpose before staging ($l.name) ($l.version) \(event fail_at=($at)\)"
    }
    if ($l.index | path exists) {
        let published = (open --raw $l.index | from json | get -o releases | default [])
        if ($published | any {|r| $r.version == $l.version }) {
            fail $"($l.name) ($l.version) is already published in ($l.index)"
        }
    }

    # a retry of this run picks up what its first attempt created; anyone else's staging stops us
    let manifest_path = ($l.staging | path join release.json)
    mut created_before = []
    if ($l.staging | path exists) {
        let previous = try { open --raw $manifest_path | from json } catch { {} }
        if ($previous | get -o run) != $run {
            fail $"($l.staging) already exists \(staged by run ($previous | get -o run | default 'unknown')\); remove it or release another version"
        }
        $created_before = ($previous | get -o created | default [])
        delete $l.staging
    }
    let created = ($created_before | append (make-dirs ($l.staging | path join assets)) | uniq)

    let now = (date now | date to-timezone UTC | format date "%Y-%m-%dT%H:%M:%SZ")
    let notes_text = ($input.event | get -o notes | default "No notes were given for this release.")
    let notes = ($l.staging | path join RELEASE_NOTES.md)
    [
        $"# ($l.name) ($l.version)"
        ""
        $"Tag ($l.tag), staged ($now) by run ($run) for tenant ($input.run?.tenant? | default 'unknown')."
        ""
        $notes_text
        ""
    ] | str join "\n" | save -f --raw $notes
    $"($l.version)\n" | save -f --raw ($l.staging | path join VERSION)

    let tarball = ($l.staging | path join assets $"($l.name)-($l.version).tar.gz")
    let tar = (do { ^tar -czf $tarball -C $l.staging RELEASE_NOTES.md VERSION } | complete)
    if $tar.exit_code != 0 { fail $"tar failed: ($tar.stderr | str trim)" }
    let sums = ($l.staging | path join assets SHA256SUMS)
    $"(open --raw $tarball | hash sha256)  ($tarball | path basename)\n" | save -f --raw $sums
    let assets = [(asset $tarball) (asset $sums)]

    let out = {
        root: $l.root
        name: $l.name
        version: $l.version
        tag: $l.tag
        dir: $l.staging
        notes: $notes
        assets: $assets
        created: $created
    }
    $out | insert run $run | to json | save -f --raw $manifest_path

    print -e $"prepare-release: staged ($l.name) ($l.version) in ($l.staging) \(($assets | length) assets\)"
    {release-staging: $out} | to json -r
}
