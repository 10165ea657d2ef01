# snapshot-rates: remember what <target>/rates.json holds before this run changes it.
#
# stdin:  {"run": {...}, "event": {"target": "..."}, "inputs": {}}
# stdout: {"rates-snapshot": {path, existed, content}}

def main [] {
    let input = ($in | from json)
    let target = ($input.event | get -o target | default "")
    if ($target | is-empty) {
        print -e "snapshot-rates: the event needs a `target` directory"
        exit 1
    }
    let path = ($target | path expand | path join rates.json)
    let existed = ($path | path exists)
    let content = if $existed { open --raw $path } else { "" }
    {"rates-snapshot": {path: $path, existed: $existed, content: $content}} | to json -r
}
