"""A witness of the audit log: a separate process, with its own key, that cosigns a checkpoint only
after checking it is consistent with the last one it cosigned (C2SP tlog-witness, tlog-cosignature).

One job a module::

    cosignature  cosignature/v1 keys, signature lines, their verification (pure)
    protocol     the add-checkpoint request and the 409 size body: parse and build (pure)
    decide       what the witness answers a well-formed submission, given what it holds (pure)
    state        the witness's folder: its key and a small SQLite file of logs and latest checkpoints
    server       the HTTP face (Starlette): POST /add-checkpoint, GET /healthz
    cli          ``lienthong witness init | add-log | vkey | serve``
    client       the gateway's side: submits new checkpoints, keeps the cosignatures in its database
    cosigned     ``audit verify``'s check of the kept cosignatures
"""
