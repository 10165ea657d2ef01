# Never finishes on its own: a shell that waits on a background grandchild. Records the
# pids of nu, the shell and the grandchild in the bundle so a test can check they are gone.
def main [] {
    $in | ignore
    $nu.pid | into string | save -f $"($env.STRATUM_BUNDLE)/nu.pid"
    ^sh -c 'sleep 30 & echo $! > "$STRATUM_BUNDLE/grandchild.pid"; echo $$ > "$STRATUM_BUNDLE/sh.pid"; sleep 30'
}
