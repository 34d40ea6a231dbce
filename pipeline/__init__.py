"""pipeline: YAML asset manifests in, generated game art out, through the Scenario API.

The flow, one module per stage:
    manifest.py   load pipeline.yaml and manifests/*.yaml, validate strictly, expand into Items
    plan.py       fingerprint each Item and diff against assets.lock and the files on disk (pure)
    lockfile.py   read and write assets.lock: versioned, deterministic, atomic
    client.py     the async API client; the one place where httpx errors become ours
    emulator/     the `local` backend: the same API, in process or on loopback, placeholder art
    cli.py        the only module that prints or exits; parses, calls, renders
Errors form one tree, drawn in errors.py.
"""

__version__ = "0.1.0"
