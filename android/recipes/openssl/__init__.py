"""OpenSSL 3.5 (LTS) for Tidings (p4a's stock recipe is 3.3.1).

OpenSSL has ML-KEM from 3.5 on; ``cryptography`` >= 47 exposes it, and ``tidings.crypto.kem``
prefers it (constant-time) over the pure-Python fallback. The build is p4a's (shared
``libcrypto.so``/``libssl.so``, ``no-asm``, the same build directory name ``openssl3`` that the
python3 recipe links ``_ssl`` against); only the version and the download location change.
"""

from pythonforandroid.recipes.openssl import OpenSSLRecipe


class TidingsOpenSSLRecipe(OpenSSLRecipe):
    version = "3.5.4"
    url = "https://github.com/openssl/openssl/releases/download/openssl-{version}/openssl-{version}.tar.gz"


recipe = TidingsOpenSSLRecipe()
