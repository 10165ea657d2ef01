# Fails until attempt `inputs.succeed_on`, then succeeds.
def main [] {
    let input = ($in | from json)
    let attempt = ($env.STRATUM_ATTEMPT | into int)
    if $attempt < $input.inputs.succeed_on {
        print -e $"attempt ($attempt): not yet"
        exit 1
    }
    {result: {value: "ok", attempt: $attempt}} | to json -r
}
