"""Call recordings: the browser uploads the call in stereo chunks, the gateway stores them and links them from
the trace (DESIGN §8).

    store.py    the object store (obstore: a local directory or S3-compatible storage), retention, deletion
    uploads.py  one chunk's way in: consent, order, type, limits, streaming to the store
    links.py    signed, expiring links the gateway serves, so a backend's UI plays without the admin key
    trace.py    the recording's attributes on the root and each turn, from session facts
    metrics.py  what recording costs and how it fails, on the gateway's /metrics
"""
