"""cryptography 50.0.2 for Tidings (p4a's stock recipe is 46.0.3), on our OpenSSL 3.5.

The same Rust (maturin/PyO3) build as p4a's recipe, pointed at the ``openssl`` recipe's headers
and libraries by the parent's ``<TARGET>_OPENSSL_{INCLUDE,LIB}_DIR``; 50.0.2 is the version the
desktop runs and has ``hazmat.primitives.asymmetric.mlkem``. Not built on this project's machines
(no NDK here): if it fails to build, delete this recipe and ``openssl``'s; p4a's 46.0.3 then
ships and ``tidings.crypto.kem`` runs ML-KEM on its pure-Python fallback (``kyber-py``).
"""

from pythonforandroid.recipes.cryptography import CryptographyRecipe


class TidingsCryptographyRecipe(CryptographyRecipe):
    version = "50.0.2"
    url = "https://github.com/pyca/cryptography/archive/refs/tags/{version}.tar.gz"


recipe = TidingsCryptographyRecipe()
