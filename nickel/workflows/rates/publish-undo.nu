# Compensation of publish-rates: put back what rates.json held before the run (or remove it
# if there was none). Idempotent.
#
# stdin: {"run": {...}, "inputs": {"rates-snapshot": {...}, ...}, "outputs": {...}}

def main [] {
    let input = ($in | from json)
    let snapshot = $input.inputs.rates-snapshot
    if $snapshot.existed {
        $snapshot.content | save -f --raw $snapshot.path
        print -e $"publish-rates \(undo\): restored ($snapshot.path)"
    } else {
        rm -f $snapshot.path
        print -e $"publish-rates \(undo\): removed ($snapshot.path)"
    }
    {restored: $snapshot.path} | to json -r
}
