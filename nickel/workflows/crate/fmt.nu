# fmt-crate: whitespace-format a Rust crate into a copy under $STRATUM_WORKSPACE/formatted/.
#
# stdin:  {"run": {...}, "event": {"source": "<crate dir, relative to cwd or absolute>"}, "inputs": {}}
# stdout: {"formatted-code": {source, dir, files, changed: [{file, fixes, lines}]}}
#
# Fixes applied to every UTF-8 text file (other files are copied as they are):
#   crlf                 CRLF line endings become LF
#   trailing-whitespace  spaces/tabs at the end of a line are removed
#   tab-indent           each tab in a line's indentation becomes 4 spaces
#   final-newline        the file ends with exactly one newline (blank lines at the end go)
# The source directory itself is never modified.

def crate-dir-name [src: string] {
    let fallback = ($src | path basename)
    let package = try {
        open --raw ($src | path join Cargo.toml) | decode utf-8 | from toml | get -o package | default {}
    } catch { {} }
    let name = ($package | get -o name | default $fallback)
    let version = ($package | get -o version)
    if $version == null { $name } else { $"($name)-($version)" }
}

def fix-indent [line: string] {
    let indent = ($line | parse -r '^(?<ws>[ \t]*)' | get 0.ws)
    if ($indent | str contains "\t") {
        let rest = ($line | str substring -g ($indent | str length -g)..)
        ($indent | str replace -a "\t" "    ") + $rest
    } else { $line }
}

# {text, fixes, lines} for one file's text.
def format-text [text: string] {
    let crlf = ($text | str contains "\r\n")
    let unix = ($text | str replace -a "\r\n" "\n")
    let parts = ($unix | split row "\n")
    let body = if ($unix | str ends-with "\n") { $parts | drop 1 } else { $parts }
    let rows = ($body | enumerate | each {|it|
        let trimmed = ($it.item | str trim --right)
        let fixed = (fix-indent $trimmed)
        {
            n: ($it.index + 1)
            text: $fixed
            trailing: ($trimmed != $it.item)
            tabs: ($fixed != $trimmed)
        }
    })
    # drop blank lines at the end, then end with exactly one newline
    let kept = ($rows | reverse | skip while {|r| $r.text == "" } | reverse)
    let formatted = if ($kept | is-empty) { "" } else { ($kept | get text | str join "\n") + "\n" }
    let trailing_lines = ($rows | where trailing | get n)
    let tab_lines = ($rows | where tabs | get n)
    let final_fix = ($unix != "") and ((not ($unix | str ends-with "\n")) or (($kept | length) != ($rows | length)))
    let fixes = [
        (if $crlf { "crlf" })
        (if ($trailing_lines | is-not-empty) { "trailing-whitespace" })
        (if ($tab_lines | is-not-empty) { "tab-indent" })
        (if $final_fix { "final-newline" })
    ] | compact
    let final_line = if $final_fix { [($body | length)] } else { [] }
    {
        text: $formatted
        fixes: $fixes
        lines: ($trailing_lines | append $tab_lines | append $final_line | uniq | sort)
    }
}

def main [] {
    let input = ($in | from json)
    let source = ($input.event | get -o source)
    if ($source | is-empty) {
        print -e "fmt-crate: the event has no `source` (the crate directory to format)"
        exit 1
    }
    let src = ($source | path expand)
    if not ($src | path exists) or (($src | path type) != dir) {
        print -e $"fmt-crate: source directory ($src) does not exist"
        exit 1
    }
    let workspace = ($env | get -o STRATUM_WORKSPACE)
    if ($workspace | is-empty) {
        print -e "fmt-crate: STRATUM_WORKSPACE is not set"
        exit 1
    }

    let out = ($workspace | path expand | path join formatted (crate-dir-name $src))
    # a retry starts from a clean copy
    if ($out | path exists) {
        rm -rf $out
        if ($out | path exists) {
            print -e $"fmt-crate: could not clear ($out)"
            exit 1
        }
    }
    mkdir $out

    let files = (
        glob ($src | path join "**" "*" | into glob) --no-dir --exclude [**/target/** **/.git/**]
        | each {|f| $f | path relative-to $src }
        | sort
    )
    let changed = ($files | each {|file|
        let from = ($src | path join $file)
        let to = ($out | path join $file)
        mkdir ($to | path dirname)
        let text = try { open --raw $from | decode utf-8 } catch { null }
        if $text == null {
            cp $from $to
            null
        } else {
            let result = (format-text $text)
            $result.text | save -f --raw $to
            if ($result.fixes | is-empty) { null } else {
                print -e $"fmt-crate: ($file): ($result.fixes | str join ', ') \(lines ($result.lines | str join ', ')\)"
                {file: $file, fixes: $result.fixes, lines: $result.lines}
            }
        }
    } | compact)

    print -e $"fmt-crate: ($changed | length) of ($files | length) files reformatted into ($out)"
    {
        formatted-code: {
            source: $src
            dir: $out
            files: $files
            changed: $changed
        }
    } | to json -r
}
