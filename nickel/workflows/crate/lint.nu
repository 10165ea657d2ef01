# lint-crate: check a Rust crate's sources and report findings per file and line.
#
# stdin:  {"run": {...}, "event": {"source": "<crate dir, relative to cwd or absolute>"}, "inputs": {}}
# stdout: {"linted-code": {source, crate, files, findings, errors, warnings}}
#
# Rules (severity):
#   line-too-long (warning)        a line longer than 100 characters
#   trailing-whitespace (warning)  spaces or tabs at the end of a line
#   tab (warning)                  a tab character (indent with spaces)
#   missing-final-newline (warning) the file does not end with a newline
#   todo (info)                    a TODO/FIXME/XXX marker left in the code
#   dbg-macro (error)              a `dbg!(...)` call left in Rust code
#   conflict-marker (error)        a merge-conflict marker line (<<<<<<<, =======, >>>>>>>)
#   cargo-toml (error)             Cargo.toml missing or not valid TOML
#   cargo-field (error/warning)    [package] lacks name/version (error) or
#                                  edition/description/license (warning)
# The build step refuses to package a crate with any finding of severity "error".

const MAX_LINE = 100

def finding [file: string, line: int, column: int, rule: string, severity: string, message: string] {
    {file: $file, line: $line, column: $column, rule: $rule, severity: $severity, message: $message}
}

# Findings for one line of text (`n` is 1-based).
def check-line [file: string, n: int, line: string, rust: bool] {
    let len = ($line | str length -g)
    let trimmed = ($line | str trim --right)
    let marker = ($line | parse -r '\b(?<word>TODO|FIXME|XXX)\b' | get -o 0.word)
    [
        (if $len > $MAX_LINE {
            finding $file $n ($MAX_LINE + 1) line-too-long warning $"line is ($len) characters long \(max ($MAX_LINE)\)"
        })
        (if $trimmed != $line {
            finding $file $n (($trimmed | str length -g) + 1) trailing-whitespace warning "trailing whitespace"
        })
        (if ($line | str contains "\t") {
            finding $file $n (($line | str index-of -g "\t") + 1) tab warning "tab character (indent with spaces)"
        })
        (if $marker != null {
            finding $file $n (($line | str index-of -g $marker) + 1) todo info $"($marker) left in the code: ($line | str trim)"
        })
        (if $rust and ($line =~ '\bdbg!\s*\(') {
            finding $file $n (($line | str index-of -g "dbg!") + 1) dbg-macro error "dbg!() call left in the code"
        })
        (if ($line =~ '^(<{7}|={7}|>{7})( |$)') {
            finding $file $n 1 conflict-marker error "merge-conflict marker"
        })
    ] | compact
}

# Findings for one text file: every line, plus the final newline.
def check-text [file: string, text: string] {
    let rust = ($file | str ends-with ".rs")
    let parts = ($text | split row "\n")
    # "a\nb\n" splits into ["a", "b", ""]: the last element is not a line
    let body = if ($text | str ends-with "\n") { $parts | drop 1 } else { $parts }
    let per_line = ($body | enumerate | each {|it| check-line $file ($it.index + 1) $it.item $rust } | flatten)
    let final = if ($text != "") and not ($text | str ends-with "\n") {
        let last = ($body | length)
        [(finding $file $last ((($body | last) | str length -g) + 1) missing-final-newline warning "no newline at end of file")]
    } else { [] }
    $per_line | append $final
}

# 1-based number of the first line of `text` that matches `pattern` (1 if none does).
def line-of [text: string, pattern: string] {
    let hit = ($text | lines | enumerate | where {|it| $it.item =~ $pattern } | get -o 0.index)
    if $hit == null { 1 } else { $hit + 1 }
}

# Crate identity and findings for Cargo.toml.
def check-manifest [src: string] {
    let path = ($src | path join Cargo.toml)
    let fallback = {name: ($src | path basename), version: "0.0.0"}
    if not ($path | path exists) {
        return {crate: $fallback, findings: [(finding Cargo.toml 1 1 cargo-toml error "Cargo.toml is missing")]}
    }
    let text = (open --raw $path | decode utf-8)
    let parsed = try { $text | from toml } catch {|err|
        return {crate: $fallback, findings: [(finding Cargo.toml 1 1 cargo-toml error $"Cargo.toml is not valid TOML: ($err.msg)")]}
    }
    let package = ($parsed | get -o package | default {})
    let line = (line-of $text '^\s*\[package\]\s*$')
    let required = [name version]
    let wanted = [edition description license]
    let missing = (
        ($required | where {|f| ($package | get -o $f) == null } | each {|f|
            finding Cargo.toml $line 1 cargo-field error $"[package] has no `($f)`"
        })
        | append ($wanted | where {|f| ($package | get -o $f) == null } | each {|f|
            finding Cargo.toml $line 1 cargo-field warning $"[package] has no `($f)`"
        })
    )
    {
        crate: {
            name: ($package | get -o name | default $fallback.name | into string)
            version: ($package | get -o version | default $fallback.version | into string)
        }
        findings: $missing
    }
}

def main [] {
    let input = ($in | from json)
    let source = ($input.event | get -o source)
    if ($source | is-empty) {
        print -e "lint-crate: the event has no `source` (the crate directory to check)"
        exit 1
    }
    let src = ($source | path expand)
    if not ($src | path exists) or (($src | path type) != dir) {
        print -e $"lint-crate: source directory ($src) does not exist"
        exit 1
    }

    let files = (
        glob ($src | path join "**" "*" | into glob) --no-dir --exclude [**/target/** **/.git/**]
        | each {|f| $f | path relative-to $src }
        | sort
    )
    let manifest = (check-manifest $src)
    let text_findings = ($files | each {|file|
        let text = try { open --raw ($src | path join $file) | decode utf-8 } catch { null }
        if $text == null { [] } else { check-text $file $text }
    } | flatten)
    let findings = ($manifest.findings | append $text_findings)
    let errors = ($findings | where severity == error | length)
    let warnings = ($findings | where severity == warning | length)

    for f in $findings {
        print -e $"($f.file):($f.line):($f.column): ($f.severity) [($f.rule)] ($f.message)"
    }
    print -e $"lint-crate: ($manifest.crate.name) ($manifest.crate.version): ($files | length) files, ($errors) errors, ($warnings) warnings"

    {
        linted-code: {
            source: $src
            crate: $manifest.crate
            files: $files
            findings: $findings
            errors: $errors
            warnings: $warnings
        }
    } | to json -r
}
