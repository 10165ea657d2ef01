# Prints `inputs.raw` verbatim: lets a test choose exactly what stdout holds.
def main [] {
    let input = ($in | from json)
    print -n $input.inputs.raw
}
