# Succeeds: echoes its input and reports what it can see of its environment.
def main [] {
    let input = ($in | from json)
    {
        result: {
            value: $input.inputs.value
            attempt: ($env.STRATUM_ATTEMPT | into int)
            node: $env.STRATUM_NODE
            stage: ($env.STRATUM_STAGE | into int)
            home: $env.HOME
            cwd: $env.PWD
            workspace: $env.STRATUM_WORKSPACE
            leaked: ($env.STRATUM_TEST_PARENT_ONLY? != null)
            secret_seen: ($env.STRATUM_TEST_SECRET? == "hunter2-very-secret")
        }
    } | to json -r
}
