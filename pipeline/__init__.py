"""pipeline: YAML asset manifests in, generated game art out, through the Scenario API.

The flow, one module per stage:
    manifest.py   pipeline.yaml (settings.py) and manifests/*.yaml (yamlsrc.py), strictly checked,
                  expanded into Items and Trainings (expand.py); local input files (inputs.py)
    plan.py       fingerprint each Item (each stage of a `then:` chain) and Training, diff against
                  assets.lock (lockfile.py) and disk; pure
    cost.py       price the pending work with the API's dry runs (plan --cost, run --budget)
    schedule.py   run the plan: uploads (uploads.py), trainings (training.py), pre-flight
                  (request.py), intents (journal.py), submit and follow under one retry policy and
                  an adaptive limit (limits.py), chains, captions, collect (collect.py), remote
                  collections
    client.py     the async API client; the one place where httpx errors become ours
    emulator/     the `local` backend: the same API, in process or on loopback, placeholder art
    index.py      output/<collection>/index.json for engine import scripts
    lockmerge.py  the git merge driver for assets.lock; rebuild.py: the lock again from output/
    cli.py        parses, calls, prints (views.py and summary.py render; console.py says)
Errors form one tree, drawn in errors.py.
"""

__version__ = "0.1.0"
