# Waits `inputs.delay_ms`, writes `inputs.message` to stderr, exits with `inputs.code`.
def main [] {
    let input = ($in | from json)
    sleep ($input.inputs.delay_ms * 1ms)
    print -e $input.inputs.message
    exit $input.inputs.code
}
