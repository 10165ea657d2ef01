# tag-release: write the release tag <target>/tags/v<version>, pointing at the staged tarball.
#
# stdin:  {"run": {...}, "event": {..., "fail_at"?: "tag"}, "inputs": {"release-staging": {...}}}
# stdout: {"release-tag": {tag, path, object, created}}
#
# The tag file is JSON: {tag, name, version, object (sha256 of the tarball), run, tagged_at,
# created}. A tag that exists and was made by another run is a conflict (exit 1); one made
# by this run (an earlier attempt) is rewritten.

def fail [message: string] {
    print -e $"tag-release: ($message)"
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

def main [] {
    let input = ($in | from json)
    let run = ($input.run? | default {} | get -o id | default ($env.STRATUM_RUN_ID? | default "manual"))
    let at = ($input.event? | default {} | get -o fail_at | default "")
    let staged = ($input.inputs | get -o release-staging)
    if $staged == null { fail "needs `release-staging` as input" }
    if $at in [tag tag-release] {
        fail $"failing on purpose before tagging ($staged.tag) \(event fail_at=($at)\)"
    }

    let tarball = ($staged.assets | where {|a| $a.name | str ends-with ".tar.gz" } | get -o 0)
    if $tarball == null { fail $"no tarball among the staged assets of ($staged.tag)" }
    if not ($tarball.path | path exists) { fail $"staged tarball ($tarball.path) is missing" }
    let object = (open --raw $tarball.path | hash sha256)
    if $object != $tarball.sha256 {
        fail $"staged tarball ($tarball.path) changed since staging \(sha256 ($object), expected ($tarball.sha256)\)"
    }

    let tags = ($staged.root | path join tags)
    let path = ($tags | path join $staged.tag)
    mut created_before = []
    if ($path | path exists) {
        let existing = try { open --raw $path | from json } catch { {} }
        if ($existing | get -o run) != $run {
            fail $"tag ($staged.tag) already exists at ($path) \(made by run ($existing | get -o run | default 'unknown')\)"
        }
        $created_before = ($existing | get -o created | default [])
    }
    let created = ($created_before | append (make-dirs $tags) | uniq)

    {
        tag: $staged.tag
        name: $staged.name
        version: $staged.version
        object: $object
        run: $run
        tagged_at: (date now | date to-timezone UTC | format date "%Y-%m-%dT%H:%M:%SZ")
        created: $created
    } | to json | save -f --raw $path

    print -e $"tag-release: tagged ($staged.tag) -> ($object) in ($path)"
    {release-tag: {tag: $staged.tag, path: $path, object: $object, created: $created}} | to json -r
}
