# Misuses its secret ($env.TEST_SECRET) as `inputs.mode` says, after echoing it raw,
# base64- and percent-encoded to stderr (and, unless it must print JSON, to stdout):
#   ok      succeeds with the secret's sha256 (never the value) as its output
#   fail    exits 1 with the secret in its last stderr line
#   sleep   writes `started` in its bundle, then waits to be killed
#   output  puts the secret itself into its output
def main [] {
    let input = ($in | from json)
    let secret = $env.TEST_SECRET
    let mode = ($input.inputs.mode? | default "ok")
    print -e $"raw: ($secret)"
    print -e $"base64: ($secret | encode base64)"
    print -e $"url: ($secret | url encode --all) ($secret | url encode)"
    if $mode in [fail sleep] {
        print $"stdout: ($secret) ($secret | encode base64)"
    }
    match $mode {
        "fail" => {
            print -e $"upload refused for token ($secret)"
            exit 1
        }
        "sleep" => {
            "started" | save -f $"($env.STRATUM_BUNDLE)/started"
            ^sleep 30
        }
        "output" => { {result: {token: $secret}} | to json -r }
        _ => {
            let other = ($env.OTHER_SECRET? | default "")
            {result: {sha256: ($secret | hash sha256), other: ($other | hash sha256)}} | to json -r
        }
    }
}
