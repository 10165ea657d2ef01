# publish-rates: write the parsed rates to <target>/rates.json ({run, source, rates: {CODE:
# rate}}), replacing what was there (snapshot-rates kept it for the undo).
#
# stdin:  {"run": {...}, "inputs": {"rates-snapshot": {...}, "parsed-rates": {...}}}
# stdout: {"published-rates": {path, count}}

def main [] {
    let input = ($in | from json)
    let snapshot = $input.inputs.rates-snapshot
    let parsed = $input.inputs.parsed-rates
    mkdir ($snapshot.path | path dirname)
    let table = ($parsed.rates | reduce --fold {} {|r, acc| $acc | insert $r.code $r.rate })
    {run: $input.run.id, source: $parsed.source, rates: $table} | to json | save -f --raw $snapshot.path
    print -e $"publish-rates: wrote ($parsed.rates | length) rates to ($snapshot.path)"
    {"published-rates": {path: $snapshot.path, count: ($parsed.rates | length)}} | to json -r
}
