# Reports which commands the script can find on its PATH.
def main [] {
    $in | ignore
    {tools: {tput: (which tput | is-not-empty), sh: (which sh | is-not-empty), path: $env.PATH}} | to json -r
}
