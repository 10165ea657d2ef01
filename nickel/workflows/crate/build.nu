# build-crate: package the formatted copy of a crate as a gzip'd tarball.
#
# stdin:  {"run": {...}, "event": {...}, "inputs": {"linted-code": {...}, "formatted-code": {...}}}
# stdout: {"built-artifact": {crate, version, path, sha256, bytes, entries, warnings}}
#
# Refuses (exit 1) when lint found any finding of severity "error". The tarball is written to
# $STRATUM_WORKSPACE/artifacts/<name>-<version>.tar.gz and holds one top-level directory, the
# formatted copy (<name>-<version>/...), like `cargo package` does.

def fail [message: string] {
    print -e $"build-crate: ($message)"
    exit 1
}

def main [] {
    let input = ($in | from json)
    let lint = ($input.inputs | get -o linted-code)
    let formatted = ($input.inputs | get -o formatted-code)
    if $lint == null or $formatted == null {
        fail "needs both `linted-code` and `formatted-code` as inputs"
    }
    let workspace = ($env | get -o STRATUM_WORKSPACE)
    if ($workspace | is-empty) { fail "STRATUM_WORKSPACE is not set" }
    if $lint.source != $formatted.source {
        fail $"lint checked ($lint.source) but fmt formatted ($formatted.source)"
    }

    let name = $lint.crate.name
    let version = $lint.crate.version
    let errors = ($lint.findings | where severity == error)
    if ($errors | is-not-empty) {
        print -e $"build-crate: lint found ($errors | length) error\(s\) in ($name) ($version), not building it:"
        for e in $errors {
            print -e $"  ($e.file):($e.line):($e.column): [($e.rule)] ($e.message)"
        }
        exit 1
    }

    let dir = $formatted.dir
    if not ($dir | path exists) { fail $"formatted copy ($dir) is missing" }

    let artifacts = ($workspace | path expand | path join artifacts)
    mkdir $artifacts
    let artifact = ($artifacts | path join $"($name)-($version).tar.gz")
    rm -f $artifact
    let tar = (do { ^tar -czf $artifact -C ($dir | path dirname) ($dir | path basename) } | complete)
    if $tar.exit_code != 0 {
        rm -f $artifact
        fail $"tar failed \(exit ($tar.exit_code)\): ($tar.stderr | str trim)"
    }
    let listing = (do { ^tar -tzf $artifact } | complete)
    if $listing.exit_code != 0 {
        fail $"the tarball ($artifact) does not read back: ($listing.stderr | str trim)"
    }

    let sha256 = (open --raw $artifact | hash sha256)
    let bytes = (ls $artifact | get 0.size | into int)
    let entries = ($listing.stdout | lines | where {|l| $l != "" })
    print -e $"build-crate: ($artifact) \(($bytes) bytes, ($entries | length) entries, ($lint.warnings) lint warnings\)"
    print -e $"build-crate: sha256 ($sha256)"

    {
        built-artifact: {
            crate: $name
            version: $version
            path: $artifact
            sha256: $sha256
            bytes: $bytes
            entries: $entries
            warnings: $lint.warnings
        }
    } | to json -r
}
