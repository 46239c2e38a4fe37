"""The sans-I/O core of the client (docs/architecture.md).

- :mod:`.engine`: the delivery state machine of one device (frames and timers in, store
  effects, frames and connection notices out).
- :mod:`.sealing`: end-to-end encryption. Sealing an outgoing message is a generator that
  yields the I/O it needs (claim keys for these devices, the device list of a conversation,
  send these device messages and answer with DeviceAccepted) and returns the sealed ``Send``;
  opening decrypts envelopes. Every call into :mod:`tidings.crypto` is made there.
- :mod:`.opening`: turns the engine's ciphertext store effects into plaintext ones (what the
  local store writes), in the transaction that also holds the session state they advanced.
- :mod:`.payload`: message content ↔ payload bytes, bound to conversation and message id.
- :mod:`.types`: value types shared by the core modules.

Nothing here opens a socket, reads a clock or awaits: the runtime (:mod:`tidings.client.runtime`)
drives it.
"""
