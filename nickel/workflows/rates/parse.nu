# parse-rates: read `CODE,RATE` lines (blank lines and `#` comments skipped); a code is three
# capital letters, a rate a number above 0. The first bad line fails the node, naming the
# file and line, and the run is held until the file is fixed and the run resumed.
#
# stdin:  {"run": {...}, "event": {"source": "..."}, "inputs": {"rates-snapshot": {...}}}
# stdout: {"parsed-rates": {source, rates: [{code, rate}]}}

def fail [message: string] {
    print -e $"parse-rates: ($message)"
    exit 1
}

def main [] {
    let input = ($in | from json)
    let source = ($input.event | get -o source | default "")
    if ($source | is-empty) or not ($source | path exists) {
        fail $"no rates file at '($source)' \(the event's `source`\)"
    }
    mut rates = []
    for row in (open --raw $source | lines | enumerate) {
        let text = ($row.item | str trim)
        if ($text | is-empty) or ($text | str starts-with "#") { continue }
        let where = $"($source) line ($row.index + 1)"
        let fields = ($text | split row "," | each { str trim })
        if ($fields | length) != 2 { fail $"($where): expected CODE,RATE, got '($text)'" }
        let code = ($fields | get 0)
        if not ($code =~ '^[A-Z]{3}$') { fail $"($where): '($code)' is not a currency code" }
        let rate = try { $fields | get 1 | into float } catch { null }
        if $rate == null or $rate <= 0 { fail $"($where): '($fields | get 1)' is not a rate" }
        $rates = ($rates | append {code: $code, rate: $rate})
    }
    if ($rates | is-empty) { fail $"($source) holds no rates" }
    {"parsed-rates": {source: $source, rates: $rates}} | to json -r
}
