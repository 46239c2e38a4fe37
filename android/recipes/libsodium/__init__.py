"""libsodium 1.0.20 for Tidings (p4a's stock recipe is 1.0.16).

XEdDSA signs with ``crypto_core_ed25519_scalar_*`` and ``crypto_scalarmult_ed25519_base_noclamp``,
which libsodium has from 1.0.18 on. The build is p4a's (shared library, ``-Os``, full: never
``--enable-minimal``, which would drop those functions); only the version changes, and the
1.0.16 ``SIZE_MAX`` patch no longer applies.
"""

from pythonforandroid.recipes.libsodium import LibsodiumRecipe


class TidingsLibsodiumRecipe(LibsodiumRecipe):
    version = "1.0.20"
    # https://github.com/jedisct1/libsodium/releases/download/1.0.20-RELEASE/libsodium-1.0.20.tar.gz
    url = "https://github.com/jedisct1/libsodium/releases/download/{}/libsodium-{}.tar.gz"
    # p4a checks md5/sha512 only; the tarball's sha256 is
    # ebb65ef6ca439333c2bb41a0c1990587288da07f6c7fd07cb3a18cc18d30ce19
    patches = []


recipe = TidingsLibsodiumRecipe()
