# A compensation: output is free-form text, and it leaves a mark in the workspace.
def main [] {
    let input = ($in | from json)
    $"undone ($input.inputs.value)" | save -f $"($env.STRATUM_WORKSPACE)/undone.txt"
    print "compensated (plain text, not JSON)"
}
