# publish-release: add the release to the registry's index, <target>/index.json.
#
# stdin:  {"run": {...}, "event": {..., "fail_at"?: "publish"},
#          "inputs": {"release-staging": {...}, "release-tag": {...}, "uploaded-assets": {...}}}
# stdout: {"published-release": {name, version, tag, index, published_at, assets}}
#
# index.json is {"created_by": <run id that created the file>, "releases": [entry...]}; an
# entry is {name, version, tag, object, notes, assets, run, published_at}. Before writing,
# the step checks that the tag points at the tarball that was uploaded.

def fail [message: string] {
    print -e $"publish-release: ($message)"
    exit 1
}

def main [] {
    let input = ($in | from json)
    let run = ($input.run? | default {} | get -o id | default ($env.STRATUM_RUN_ID? | default "manual"))
    let at = ($input.event? | default {} | get -o fail_at | default "")
    let staged = ($input.inputs | get -o release-staging)
    let tag = ($input.inputs | get -o release-tag)
    let uploaded = ($input.inputs | get -o uploaded-assets)
    if $staged == null or $tag == null or $uploaded == null {
        fail "needs `release-staging`, `release-tag` and `uploaded-assets` as inputs"
    }
    if $at in [publish publish-release] {
        fail $"failing on purpose before publishing ($staged.name) ($staged.version) \(event fail_at=($at)\)"
    }

    # the tag must point at the tarball the registry holds
    if not ($tag.path | path exists) { fail $"tag file ($tag.path) is missing" }
    let tagged = (open --raw $tag.path | from json)
    let tarball = ($uploaded.assets | where {|a| $a.name | str ends-with ".tar.gz" } | get -o 0)
    if $tarball == null or not ($tarball.path | path exists) {
        fail $"no uploaded tarball for ($staged.tag) in ($uploaded.dir)"
    }
    let object = (open --raw $tarball.path | hash sha256)
    if $tagged.object != $object {
        fail $"tag ($tag.tag) points at ($tagged.object) but the uploaded tarball is ($object)"
    }

    let index_path = ($staged.root | path join index.json)
    let index = if ($index_path | path exists) {
        open --raw $index_path | from json
    } else {
        {created_by: $run, releases: []}
    }
    let others = ($index.releases | where {|r| not ($r.version == $staged.version and $r.name == $staged.name) })
    let clash = ($index.releases | where {|r| $r.version == $staged.version and $r.name == $staged.name and $r.run != $run })
    if ($clash | is-not-empty) {
        fail $"($staged.name) ($staged.version) is already published in ($index_path) \(run ($clash.0.run)\)"
    }

    let now = (date now | date to-timezone UTC | format date "%Y-%m-%dT%H:%M:%SZ")
    let entry = {
        name: $staged.name
        version: $staged.version
        tag: $tag.tag
        object: $object
        notes: (open --raw $staged.notes | decode utf-8)
        assets: $uploaded.assets
        run: $run
        published_at: $now
    }
    # write a sibling file, then rename it over the index: readers never see half an index
    let tmp = $"($index_path).($run).tmp"
    $index | update releases ($others | append $entry) | to json | save -f --raw $tmp
    mv -f $tmp $index_path
    if ($tmp | path exists) { fail $"could not move ($tmp) over ($index_path)" }

    print -e $"publish-release: published ($staged.name) ($staged.version) \(($tag.tag)\) in ($index_path)"
    {
        published-release: {
            name: $staged.name
            version: $staged.version
            tag: $tag.tag
            index: $index_path
            published_at: $now
            assets: $uploaded.assets
        }
    } | to json -r
}
