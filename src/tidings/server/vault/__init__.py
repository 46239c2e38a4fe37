"""tidings.server.vault: the history vault's server side — opaque, size-capped and quota'd.

Guarantees: the server stores per account the wrapped vault key, its public KDF params and a
verifier ``HMAC-SHA256(pepper, b"tidings vault verifier v1" || credential)`` of the recovery
credential (compared in constant time), and sealed pages by (account, page id) with their
generation; it never imports ``tidings.crypto`` and cannot open anything it holds. The pepper
and the secret behind fake params for unknown usernames live in ``<data>/vault.key`` (0600),
not in the database, so a stolen database alone does not give a verifier oracle.

Modules: :mod:`.records` (what the store returns), :mod:`.store` (the
:class:`~.store.VaultStore` protocol), :mod:`.keys` (pepper, verifiers, fake params),
:mod:`.attempts` (backoff of failed proofs per account and per client address) and
:mod:`.service` (the rules every handler applies).
"""
