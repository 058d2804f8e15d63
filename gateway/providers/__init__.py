"""Provider ephemeral tokens (DESIGN §3.5): short-lived client tokens minted with the operator's key.

``gemini`` and ``openai`` each speak to one provider through its own SDK; ``minting`` picks the provider, reads the
key from the SDK's own variable, bounds the call in time and turns every failure into a problem+json the browser
can show, naming the provider and its status, never the key. ``forward_auth`` asks the app's own auth endpoint
whether the browser behind a request is signed in.
"""
