"""Session agreement: X3DH (session version 3) and PQXDH (version 4, with a Kyber prekey).

Both sides build the same master secret, with 32 ``0xFF`` bytes in front as libsignal does::

    0xFF * 32 ‖ DH(IK_A, SPK_B) ‖ DH(EK_A, IK_B) ‖ DH(EK_A, SPK_B) [‖ DH(EK_A, OPK_B)] [‖ KEM]

and expand it (:func:`~tidings.crypto.ratchet.derive_initial_keys`) into a root and a chain
key. The initiator (Alice) then turns the ratchet once with a fresh key against Bob's signed
prekey, which doubles as Bob's first ratchet key; the chain key derived before that turn is
Alice's receiver chain for it and Bob's (unused) first sending chain.
"""

from __future__ import annotations

from typing import Final

from . import kem
from .errors import InvalidMessageError
from .keys import IdentityKey, IdentityKeyPair, KeyPair, PublicKey
from .messages import CURRENT_VERSION, PRE_KYBER_VERSION
from .ratchet import derive_initial_keys, root_step
from .session import ReceiverChain, SenderChain, SessionState

__all__ = ["initialize_initiator_session", "initialize_recipient_session"]

_DISCONTINUITY: Final = b"\xff" * 32


def initialize_initiator_session(
    our_identity: IdentityKeyPair,
    our_base_key: KeyPair,
    their_identity: IdentityKey,
    their_signed_pre_key: PublicKey,
    their_one_time_pre_key: PublicKey | None,
    their_kyber_pre_key: kem.KyberPublicKey | None,
) -> tuple[SessionState, bytes | None]:
    """Alice's side: the new state and, for PQXDH, the Kyber ciphertext to send."""
    base = our_base_key.private_key
    secrets = [
        _DISCONTINUITY,
        our_identity.private_key.calculate_agreement(their_signed_pre_key),
        base.calculate_agreement(their_identity.public_key),
        base.calculate_agreement(their_signed_pre_key),
    ]
    if their_one_time_pre_key is not None:
        secrets.append(base.calculate_agreement(their_one_time_pre_key))
    kyber_ciphertext = None
    version = PRE_KYBER_VERSION
    if their_kyber_pre_key is not None:
        kyber_ciphertext, shared = kem.encapsulate(their_kyber_pre_key)
        secrets.append(shared)
        version = CURRENT_VERSION
    root_key, chain_key = derive_initial_keys(b"".join(secrets), version)

    sending = KeyPair.generate()
    root_key, sending_chain_key = root_step(root_key, their_signed_pre_key, sending.private_key)
    state = SessionState(
        session_version=version,
        local_identity=our_identity.identity_key.serialize(),
        remote_identity=their_identity.serialize(),
        root_key=root_key,
        previous_counter=0,
        sender_chain=SenderChain(
            sending.public_key.serialize(), sending.private_key.serialize(), sending_chain_key, 0
        ),
        receiver_chains=[ReceiverChain(their_signed_pre_key.serialize(), chain_key, 0)],
        pending_pre_key=None,
        remote_registration_id=0,
        local_registration_id=0,
        alice_base_key=our_base_key.public_key.serialize(),
    )
    return state, kyber_ciphertext


def initialize_recipient_session(
    our_identity: IdentityKeyPair,
    our_signed_pre_key: KeyPair,
    our_one_time_pre_key: KeyPair | None,
    our_kyber_pre_key: kem.KyberKeyPair | None,
    their_identity: IdentityKey,
    their_base_key: PublicKey,
    their_kyber_ciphertext: bytes | None,
) -> SessionState:
    """Bob's side, on the first PreKey message. Kyber key pair and ciphertext come together."""
    signed = our_signed_pre_key.private_key
    secrets = [
        _DISCONTINUITY,
        signed.calculate_agreement(their_identity.public_key),
        our_identity.private_key.calculate_agreement(their_base_key),
        signed.calculate_agreement(their_base_key),
    ]
    if our_one_time_pre_key is not None:
        secrets.append(our_one_time_pre_key.private_key.calculate_agreement(their_base_key))
    version = PRE_KYBER_VERSION
    if our_kyber_pre_key is not None and their_kyber_ciphertext is not None:
        secrets.append(our_kyber_pre_key.decapsulate(their_kyber_ciphertext))
        version = CURRENT_VERSION
    elif our_kyber_pre_key is not None or their_kyber_ciphertext is not None:
        raise InvalidMessageError("Kyber key pair and ciphertext must come together")
    root_key, chain_key = derive_initial_keys(b"".join(secrets), version)
    return SessionState(
        session_version=version,
        local_identity=our_identity.identity_key.serialize(),
        remote_identity=their_identity.serialize(),
        root_key=root_key,
        previous_counter=0,
        sender_chain=SenderChain(
            our_signed_pre_key.public_key.serialize(), signed.serialize(), chain_key, 0
        ),
        receiver_chains=[],
        pending_pre_key=None,
        remote_registration_id=0,
        local_registration_id=0,
        alice_base_key=their_base_key.serialize(),
    )
